package journal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// plain is the plain (format 3) encoding of records: what the reader must
// give back from the compact one, field for field.
func plain(t *testing.T, recs []engine.Record) string {
	t.Helper()
	var b strings.Builder
	for _, r := range recs {
		line, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
	}
	return b.String()
}

// asRead is recs as the plain encoding reads them back (invalid UTF-8
// replaced, times as written).
func asRead(t *testing.T, recs []engine.Record) []engine.Record {
	t.Helper()
	var out []engine.Record
	for _, r := range recs {
		line, _ := Marshal(r)
		back, err := Parse(line[:len(line)-1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, back)
	}
	return out
}

// history is a mixed journal: launches (the same probes, then others),
// cycles whose probes pass, fail, change output, duration, detail, warning
// and timeout, results taken at odd distances, in another time zone, at the
// zero time, twice in one batch, without a name; and other records between.
func history(n int) []engine.Record {
	rng := rand.New(rand.NewSource(7))
	zone := time.FixedZone("", 5*3600+1800)
	names := []string{"api", "db", "vm:redis", "disk"}
	var out []engine.Record
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i)*time.Minute + time.Duration(rng.Intn(5))*time.Millisecond)
		probes := names
		if i%17 == 5 {
			probes = names[:2]
		}
		if i%31 == 7 {
			probes = nil // a launch of nothing, then a cycle of nothing
		}
		out = append(out, engine.Record{Time: at, Type: "launch", Policy: "h1", Probes: probes})
		var rs []engine.Result
		for k, name := range probes {
			r := engine.Result{Name: name, Passed: (i/40+k)%3 != 0, Output: "ok", DurationMS: 12, Critical: k < 2,
				At: at.Add(-time.Duration(k) * time.Millisecond)}
			if !r.Passed {
				r.Output = fmt.Sprintf("exit status 1: down since %d", i/40)
			}
			switch rng.Intn(12) {
			case 0:
				r.DurationMS = int64(rng.Intn(5000))
			case 1:
				r.Detail = map[string]string{"load": fmt.Sprint(rng.Intn(3))}
			case 2:
				r.Warning = true
			case 3:
				r.TimedOut, r.Output = true, "timeout after 5s"
			case 4:
				r.At = r.At.In(zone)
			case 5:
				r.At = at.Add(-time.Duration(rng.Int63n(int64(time.Hour))))
			case 6:
				r.At = time.Time{}
			case 7:
				r.Output = "café ✓ \xff\n<b>"
			}
			rs = append(rs, r)
		}
		if i%23 == 0 {
			rs = append(rs, engine.Result{Name: "api", Passed: true, Output: "again", At: at})
		}
		if i%97 == 0 {
			rs = append(rs, engine.Result{Passed: true, At: at})
		}
		out = append(out, engine.Record{Time: at.Add(15 * time.Millisecond), Type: "cycle", Policy: "h1", Results: rs})
		if i%10 == 3 {
			out = append(out, engine.Record{Time: at, Type: "event", Policy: "h1", Event: &engine.Event{Type: "probe_down", Probe: "db", At: at}})
		}
	}
	return out
}

func TestCompactRecordsReadBackAsWritten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	recs := history(3000)
	j, err := Open(path, Options{MaxBytes: 200 << 10, Keep: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	got, warnings := readAll(t, path)
	if len(warnings) > 0 {
		t.Fatalf("warnings %v", warnings)
	}
	if g, w := plain(t, got), plain(t, asRead(t, recs)); g != w {
		gl, wl := strings.Split(g, "\n"), strings.Split(w, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("record %d differs:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%d records, want %d", len(gl), len(wl))
	}
	// Compact: most of the journal is repeats, which cost a name.
	var disk int64
	files := Files(path)
	for _, f := range files {
		fi, _ := os.Stat(f)
		disk += fi.Size()
	}
	if full := int64(len(plain(t, recs))); disk*5 > full*3 {
		t.Errorf("compact journal %d bytes, plain %d: want it under 60%%", disk, full)
	}
	// Every generation reads on its own, from its first line.
	if len(files) < 3 {
		t.Fatalf("want several generations, got %d", len(files))
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		r, err := content(f, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ReadFrom(r, name, true, func(le *LineError) { t.Errorf("%s: %v", name, le) },
			func(engine.Record, Pos) error { n++; return nil })
		f.Close()
		if err != nil || n == 0 {
			t.Fatalf("%s alone: %d records, %v", name, n, err)
		}
	}
}

// A probe's result is written in full again every SnapshotEvery results, so
// a reader that starts mid-file (a seek) picks it up again.
func TestFullResultsRecurEverySnapshotEvery(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 2*SnapshotEvery + 10
	for i := 0; i < n; i++ {
		r := engine.Record{Time: t0.Add(time.Duration(i) * time.Second), Type: "cycle", Policy: "h",
			Results: []engine.Result{{Name: "api", Passed: true, Output: "ok", At: t0.Add(time.Duration(i) * time.Second)}}}
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	var full []int
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if bytes.Contains(sc.Bytes(), []byte(`"passed":true`)) {
			full = append(full, line)
		}
	}
	if want := []int{1, SnapshotEvery + 1, 2*SnapshotEvery + 1}; fmt.Sprint(full) != fmt.Sprint(want) {
		t.Fatalf("full results on lines %v, want %v", full, want)
	}
}

// A bad line is reported with its file and line and skipped. The compact
// records that may build on it are skipped too, until their probes' next
// full result, and counted with it; everything else is read.
func TestBadLineIsSkippedAndWhatBuildsOnItCounted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, events := SnapshotEvery+100, 0
	fullLine := 0 // where api's result is written in full again
	line := 0
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		j.Append(engine.Record{Time: at, Type: "cycle", Policy: "h",
			Results: []engine.Result{{Name: "api", Passed: true, Output: fmt.Sprint(i % 3), At: at}}})
		if line++; i == SnapshotEvery {
			fullLine = line
		}
		if i%100 == 50 {
			j.Append(engine.Record{Time: at, Type: "event", Policy: "h", Event: &engine.Event{Type: "probe_up", Probe: "api", At: at}})
			line++
			events++
		}
	}
	j.Close()
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	if !strings.Contains(lines[fullLine-1], `"passed":true`) || strings.Contains(lines[fullLine-2], `"passed":true`) {
		t.Fatalf("line %d is not where api is written in full again", fullLine)
	}
	// The cycle records between the bad line and that one build on it.
	wantDep := 0
	for _, l := range lines[500 : fullLine-1] {
		if strings.Contains(l, `"type":"cycle"`) {
			wantDep++
		}
	}
	lines[499] = `{"t":"2026-11-23T03:20:00Z","type":"cycle","policy":"h","delta":[{"name":"api","outptu":"x"}]}` + "\n"
	os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600)

	var cycles, readEvents int
	_, err = Read(path, func(r engine.Record) error {
		switch r.Type {
		case "cycle":
			cycles++
		case "event":
			readEvents++
		}
		return nil
	})
	var ce *CorruptError
	if !errors.As(err, &ce) || len(ce.Lines) != 1 {
		t.Fatalf("err = %v, want one bad line", err)
	}
	le := ce.Lines[0]
	if le.File != path || le.Line != 500 || !strings.Contains(le.Err.Error(), `unknown field "outptu"`) {
		t.Fatalf("bad line %+v", le)
	}
	if le.Dependent != wantDep || wantDep < 400 {
		t.Errorf("dependent %d, want %d", le.Dependent, wantDep)
	}
	if wantCycles := n - 1 - wantDep; cycles != wantCycles || readEvents != events {
		t.Errorf("read %d cycles (want %d) and %d events (want %d)", cycles, wantCycles, readEvents, events)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf(":500: bad record: json: unknown field \"outptu\" (and %d later records that build on it skipped", wantDep)) {
		t.Errorf("message %q", err)
	}
}

// Compact records that do not hold together are bad lines, each named.
func TestCompactRecordsHeldToTheirRules(t *testing.T) {
	t.Parallel()
	full := `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"h","delta":[{"name":"api","passed":true,"output":"ok","duration_ms":1,"critical":true,"warning":false,"timed_out":false,"detail":{},"ago":0}]}`
	for _, tc := range []struct{ name, body, want string }{
		{"delta without a base", `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"h","delta":[{"name":"api","passed":false}]}`,
			`:1: delta for probe "api" leaves out output, duration_ms, critical, warning, timed_out, detail, ago or at, but the file has no earlier full result of it`},
		{"same without a launch", `{"t":"2026-11-23T03:12:00Z","type":"launch","policy":"h","same":true}`,
			`:1: launch record says "same" probes, but the file has no earlier launch`},
		{"same with probes", `{"t":"2026-11-23T03:12:00Z","type":"launch","policy":"h","probes":["a"],"same":true}`,
			`:1: "same" is only for a launch record without probes`},
		{"delta on an event", `{"t":"2026-11-23T03:12:00Z","type":"event","policy":"h","delta":[{"name":"api"}]}`,
			`:1: event record with a delta (only cycle records have one)`},
		{"results and delta", full[:len(full)-1] + `,"results":[]}`, `:1: cycle record with both results and delta`},
		{"ago and at", full + "\n" + `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"h","delta":[{"name":"api","ago":1,"at":"2026-11-23T03:12:00Z"}]}`,
			`:2: delta for probe "api" has both ago and at`},
		{"no name", `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"h","delta":[{"passed":true}]}`, `:1: delta element 1 has no name`},
		{"empty delta", `{"t":"2026-11-23T03:12:00Z","type":"cycle","policy":"h","delta":[]}`, `:1: cycle record with an empty delta`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			os.WriteFile(path, []byte(tc.body+"\n"), 0o600)
			_, err := Read(path, func(engine.Record) error { return nil })
			if want := path + tc.want; err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
		})
	}
	// A full element needs nothing before it.
	r, err := Parse([]byte(full))
	if err != nil || len(r.Results) != 1 || !r.Results[0].At.Equal(r.Time) || r.Results[0].Detail != nil {
		t.Fatalf("%+v %v", r, err)
	}
}

// Journals of formats 1 to 3 (the plain encoding) read as they always did,
// and the same records written compactly read back identically: the
// fixtures recorded by the daemon in the scenarios (format 3; a scenario
// recorded since is format 4 and only reads back the same compacted) and
// replay's format-1 fixture.
func TestOldFormatFixturesReadTheSameCompacted(t *testing.T) {
	t.Parallel()
	fixtures, _ := filepath.Glob("../../testdata/scenarios/*/journal.jsonl")
	fixtures = append(fixtures, "../../internal/cli/testdata/replay/journal.jsonl")
	if len(fixtures) < 5 {
		t.Fatalf("fixtures %v", fixtures)
	}
	for _, fx := range fixtures {
		var recs []engine.Record
		if _, err := Read(fx, func(r engine.Record) error { recs = append(recs, r); return nil }); err != nil {
			t.Fatalf("%s: %v", fx, err)
		}
		raw, _ := os.ReadFile(fx)
		first, _, _ := strings.Cut(string(raw), "\n")
		compact := strings.Contains(first, `"v":4`) // recorded by a format-4 daemon: compact already
		if !compact && string(raw) != plain(t, recs) && !strings.Contains(fx, "internal/cli") {
			t.Errorf("%s does not read back to its own lines", fx)
		}
		path := filepath.Join(t.TempDir(), FileName)
		j, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if err := j.Append(r); err != nil {
				t.Fatal(err)
			}
		}
		j.Close()
		var again []engine.Record
		if _, err := Read(path, func(r engine.Record) error { again = append(again, r); return nil }); err != nil {
			t.Fatalf("%s compacted: %v", fx, err)
		}
		if plain(t, again) != plain(t, recs) {
			t.Errorf("%s compacted reads back differently", fx)
		}
	}
}
