package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// replayJournal is testdata/replay/journal.jsonl: 50 one-minute cycles of a
// host where the witness vm:redis fails for three cycles, then api fails
// for 33 cycles and recovers. It also holds what a real journal holds
// besides cycles (start, a recorded event and action, a reload, stop) and
// the results of a probe no policy declares ("legacy").
func replayJournal() []engine.Record {
	t0 := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	const rec = "9f2c4e1a7b3d"
	ok := true
	recs := []engine.Record{{Time: t0, Type: "start", Policy: rec, Phase: engine.Healthy}}
	for c := 0; c < 50; c++ {
		at := t0.Add(time.Duration(c)*time.Minute + 5*time.Second)
		result := func(name string, passed bool, out string, critical bool) engine.Result {
			return engine.Result{Name: name, Passed: passed, Output: out, DurationMS: 12, Critical: critical, At: at}
		}
		api := result("api", true, "HTTP 200", true)
		if c >= 8 && c <= 40 {
			api = result("api", false, "HTTP 503 Service Unavailable", true)
		}
		redis := result("vm:redis", true, "PONG", false)
		if c >= 3 && c <= 5 {
			redis = result("vm:redis", false, "dial tcp 127.0.0.1:6379: connect: connection refused", false)
		}
		recs = append(recs, engine.Record{Time: at, Type: "cycle", Policy: rec, Results: []engine.Result{
			api, result("db", true, "connected", true), redis, result("legacy", c%7 != 0, "old probe", false),
		}})
		switch c {
		case 9:
			recs = append(recs, engine.Record{Time: at, Type: "event", Policy: rec,
				Event: &engine.Event{Type: "incident_open", Incident: "20261123T030905Z-1", Reason: "[api]", At: at}})
			recs = append(recs, engine.Record{Time: at.Add(time.Second), Type: "action", Policy: rec, Rung: "heal",
				Action: "exec sh -c systemctl restart api", OK: &ok, Output: "restarted"})
		case 20:
			recs = append(recs, engine.Record{Time: at.Add(30 * time.Second), Type: "reload", Policy: "77aa01bc22dd", OldHash: rec})
		}
	}
	return append(recs, engine.Record{Time: t0.Add(50 * time.Minute), Type: "stop", Policy: "77aa01bc22dd", Phase: engine.Healthy})
}

func TestReplayJournalFixture(t *testing.T) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, r := range replayJournal() {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join("testdata", "replay", "journal.jsonl")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("%s differs from replayJournal() (run go test -update and review the diff)", path)
	}
}

func replayArgs(t *testing.T, args ...string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "$D", testdata(t, "replay"))
	}
	return append(out, "--config", testdata(t, "replay/config.toml"))
}

// talonText runs the command line as on a terminal: human output.
func talonText(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &pipeWriter{w: &out}, stderr: &errb, tty: true}
	err = a.dispatch(args)
	return out.String(), errb.String(), err
}

func TestReplayGolden(t *testing.T) {
	cases := []struct {
		name string
		args []string
		text bool
	}{
		{"replay/a_json", []string{"replay", "$D/journal.jsonl", "--policy", "$D/a", "--json"}, false},
		// A directory names its journal.jsonl; piped output is JSON.
		{"replay/b_json", []string{"replay", "$D", "--policy", "$D/b"}, false},
		{"replay/a_text", []string{"replay", "$D", "--policy", "$D/a"}, true},
		{"replay/b_text", []string{"replay", "$D", "--policy", "$D/b"}, true},
		{"replay/diff_json", []string{"replay", "$D", "--policy", "$D/a", "--diff", "$D/b", "--json"}, false},
		{"replay/diff_text", []string{"replay", "$D", "--policy", "$D/a", "--diff", "$D/b"}, true},
		{"replay/same_text", []string{"replay", "$D", "--policy", "$D/a", "--diff", "$D/a"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := replayArgs(t, tc.args...)
			run := func() string {
				if tc.text {
					out, errOut, err := talonText(t, args...)
					if err != nil || errOut != "" {
						t.Fatalf("err %v stderr %q\n%s", err, errOut, out)
					}
					return out
				}
				out, errOut, code := talon(t, args...)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d stderr %q\n%s", code, errOut, out)
				}
				return out
			}
			first := run()
			// Deterministic: the same journal and policy, the same bytes.
			if second := run(); second != first {
				t.Fatalf("two runs differ:\n%s\n---\n%s", first, second)
			}
			golden(t, tc.name, normalize(t, first))
		})
	}
}

func TestReplayJSONShape(t *testing.T) {
	out, _, code := talon(t, replayArgs(t, "replay", "$D", "--policy", "$D/a", "--diff", "$D/b")...)
	var d struct {
		A, B       engine.ReplayResult
		Comparison string
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 {
		t.Fatalf("exit %d %v\n%s", code, err, out)
	}
	want := "B pages 1 fewer time but reaches sos 2 min later; first page 2 min later; median time to detect 1 min → 3 min; rung runs heal 3 → 2, sos 2 → 1"
	if d.Comparison != want {
		t.Fatalf("comparison\n%s\nwant\n%s", d.Comparison, want)
	}
	if d.A.Summary.Pages != 2 || d.B.Summary.Pages != 1 || len(d.A.Incidents) != 1 || d.A.Incidents[0].DetectSecs != 60 {
		t.Fatalf("A %+v B %+v", d.A.Summary, d.B.Summary)
	}
}

func TestReplayJournalProblems(t *testing.T) {
	good := filepath.Join(testdata(t, "replay"), "journal.jsonl")
	lines, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "journal.jsonl"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	first, _, _ := strings.Cut(string(lines), "\n")

	// A truncated last line (a crash mid-write) is a warning.
	dir := write(string(lines) + first[:30])
	out, errOut, code := talon(t, replayArgs(t, "replay", dir, "--policy", "$D/a")...)
	var r engine.ReplayResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || errOut != "" {
		t.Fatalf("exit %d %q %v\n%s", code, errOut, err, out)
	}
	wantWarn := filepath.Join(dir, "journal.jsonl") + ":56: partial last line skipped (30 bytes; the writer stopped mid-line)"
	if len(r.Warnings) == 0 || r.Warnings[0] != wantWarn || r.Summary.Pages != 2 {
		t.Fatalf("warnings %q, %d pages", r.Warnings, r.Summary.Pages)
	}

	// A malformed line anywhere else is reported naming file:line and
	// skipped: the records after it are replayed, and the exit status says
	// the verdict is not clean.
	dir = write(first + "\n" + `{"t":"2026-11-23T03:00:05Z","type":"cycle","policy":"x","resultz":[]}` + "\n" + first + "\n")
	out, errOut, code = talon(t, replayArgs(t, "replay", dir, "--policy", "$D/a")...)
	r = engine.ReplayResult{}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || errOut != "" {
		t.Fatalf("exit %d %q %v\n%s", code, errOut, err, out)
	}
	want := filepath.Join(dir, "journal.jsonl") + `:2: bad record: json: unknown field "resultz" (line skipped)`
	starts := 0
	for _, st := range r.Timeline {
		if st.Kind == "journal" {
			starts++
		}
	}
	if len(r.Warnings) == 0 || r.Warnings[0] != want || starts != 2 {
		t.Fatalf("warnings %q, %d start records replayed (want 2: the line after the bad one is read)\nwant warning %q", r.Warnings, starts, want)
	}

	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"replay", "--policy", "$D/a"}, 2, "talon: replay takes one journal (journal.jsonl or the directory holding it), got 0 arguments; see talon help replay\n"},
		{[]string{"replay", "$D/nope.jsonl", "--policy", "$D/a"}, 1, "talon: replay: read journal $D/nope.jsonl: file does not exist\n"},
		{[]string{"replay", "$D", "--policy", "$D/a", "--diff", "$D/nope"}, 1, "talon: replay --diff: policy $D/nope has no talon.star: no such file or directory\n"},
	}
	for _, tc := range cases {
		_, errOut, code := talon(t, replayArgs(t, tc.args...)...)
		want := strings.ReplaceAll(tc.want, "$D", testdata(t, "replay"))
		if code != tc.code || errOut != want {
			t.Errorf("talon %v: exit %d stderr %q; want %d %q", tc.args, code, errOut, tc.code, want)
		}
	}
}

// Journals of formats 1, 2 and 3 still replay: the same recorded facts
// under each format's start record (format 1 has no "v" and no state),
// plain as the old daemons wrote them and rewritten by this journal
// (compact), give the same decisions, each in the mode its format allows.
func TestOldJournalFormatsReplay(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join(testdata(t, "replay"), "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	first, rest, _ := strings.Cut(string(fixture), "\n")
	if first != `{"t":"2026-11-23T03:00:00Z","type":"start","policy":"9f2c4e1a7b3d","phase":"healthy"}` {
		t.Fatalf("the format-1 fixture changed: %s", first)
	}
	state := `"state":{"version":1,"phase":"healthy","phase_since":"2026-11-23T03:00:00Z","probes":{},"consecutive_failures":0,"incident":null,"last_run":{},"last_page":"0001-01-01T00:00:00Z","incidents":0,"worker_restarts":0,"policy_hash":"","updated_at":"0001-01-01T00:00:00Z"}`
	var pages []int
	for _, c := range []struct {
		name, start, reason string
	}{
		{"format 1", first, "the journal is of format 1, which does not record every fact the core needs"},
		{"format 2", strings.TrimSuffix(first, "}") + `,"v":2,` + state + "}", "the journal is of format 2, written by an earlier Talon whose decision core followed other rules"},
		{"format 3", strings.TrimSuffix(first, "}") + `,"v":3,` + state + "}", "the journal was written by policy 9f2c4e1a7b3d"},
	} {
		for _, compact := range []bool{false, true} {
			dir := t.TempDir()
			path := filepath.Join(dir, journal.FileName)
			if err := os.WriteFile(path, []byte(c.start+"\n"+rest), 0o600); err != nil {
				t.Fatal(err)
			}
			if compact {
				var recs []engine.Record
				if _, err := journal.Read(path, func(r engine.Record) error { recs = append(recs, r); return nil }); err != nil {
					t.Fatal(err)
				}
				os.Remove(path)
				j, err := journal.Open(path, journal.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					j.Append(r)
				}
				j.Close()
				if b, _ := os.ReadFile(path); !strings.Contains(string(b), `"delta":[`) {
					t.Fatalf("%s: the rewritten journal is not compact", c.name)
				}
			}
			out, errOut, code := talon(t, replayArgs(t, "replay", dir, "--policy", "$D/a")...)
			var r engine.ReplayResult
			if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || errOut != "" {
				t.Fatalf("%s (compact %v): exit %d %q %v\n%s", c.name, compact, code, errOut, err, out)
			}
			if r.Mode != engine.ModeWhatIf || r.ModeReason != c.reason {
				t.Errorf("%s (compact %v): mode %s (%s), want what-if (%s)", c.name, compact, r.Mode, r.ModeReason, c.reason)
			}
			pages = append(pages, r.Summary.Pages)
		}
	}
	for _, p := range pages {
		if p != 2 {
			t.Fatalf("pages %v: want 2 for every format (the same facts)", pages)
		}
	}
}
