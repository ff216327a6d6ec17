package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// outageJournal writes the journal of one night's outage: redis fails, the
// heal fails, the agent runs, the page goes out, redis comes back. It adds a
// record type and a field this build does not know, and a line that is not a
// record, as a newer daemon or a crash might.
func outageJournal(t *testing.T, dir string) {
	t.Helper()
	t0 := time.Date(2026, 11, 23, 3, 12, 4, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	yes, no := true, false
	inc := "20261123T031204Z-7"
	ev := func(d time.Duration, e engine.Event) engine.Record {
		e.At = at(d)
		return engine.Record{Time: at(d), Type: "event", Policy: "9f2c00aa11bb22", Event: &e}
	}
	recs := []engine.Record{
		{Time: at(-time.Hour), Type: "start", Policy: "9f2c00aa11bb22", Phase: engine.Healthy},
		{Time: at(-time.Minute), Type: "cycle", Policy: "9f2c00aa11bb22", Results: []engine.Result{{Name: "redis", Passed: true, Output: "PONG"}}},
		{Time: at(0), Type: "cycle", Policy: "9f2c00aa11bb22", Results: []engine.Result{{Name: "redis", Output: "PONG missing: connection refused"}}},
		ev(0, engine.Event{Type: "probe_down", Probe: "redis", Reason: "PONG missing: connection refused"}),
		ev(0, engine.Event{Type: "incident_open", Incident: inc, Reason: "[redis]"}),
		ev(0, engine.Event{Type: "transition", From: engine.Healthy, To: engine.Failed, Incident: inc}),
		ev(0, engine.Event{Type: "rung_start", Incident: inc, Rung: "heal"}),
		{Time: at(41 * time.Second), Type: "action", Policy: "9f2c00aa11bb22", Rung: "heal", Action: "exec heal.sh", OK: &no, Output: "exit status 1\nheal: redis-server would not start"},
		ev(41*time.Second, engine.Event{Type: "rung_done", Incident: inc, Rung: "heal", Reason: "failed: exit status 1"}),
		{Time: at(50 * time.Second), Type: "cycle", Policy: "9f2c00aa11bb22", Rung: "heal", Results: []engine.Result{{Name: "redis", Output: "PONG missing: connection refused"}}},
		ev(51*time.Second, engine.Event{Type: "transition", From: engine.Failed, To: engine.Investigating, Incident: inc}),
		ev(51*time.Second, engine.Event{Type: "rung_start", Incident: inc, Rung: "agent"}),
		{Time: at(3*time.Minute + 2*time.Second), Type: "action", Policy: "9f2c00aa11bb22", Rung: "agent", Action: "agent pi -p …", OK: &yes, Output: "looked at redis: the disk is full"},
		ev(3*time.Minute+2*time.Second, engine.Event{Type: "rung_done", Incident: inc, Rung: "agent", Reason: "ok"}),
		{Time: at(5 * time.Minute), Type: "start", Policy: "9f2c00aa11bb22", Phase: engine.Investigating}, // after kill -9
		ev(15*time.Minute, engine.Event{Type: "transition", From: engine.Investigating, To: engine.Critical, Incident: inc}),
		ev(15*time.Minute, engine.Event{Type: "rung_start", Incident: inc, Rung: "sos"}),
		{Time: at(15*time.Minute + time.Second), Type: "action", Policy: "9f2c00aa11bb22", Rung: "sos", Action: "page sos via telegram:42", OK: &yes},
		{Time: at(15*time.Minute + time.Second), Type: "action", Policy: "9f2c00aa11bb22", Rung: "sos", Action: "page sos via webhook:hooks.example", OK: &no, Output: "webhook: 502 Bad Gateway"},
		ev(15*time.Minute+time.Second, engine.Event{Type: "rung_done", Incident: inc, Rung: "sos", Reason: "paged [telegram:42]", Channels: []string{"telegram:42"}}),
		ev(15*time.Minute+time.Second, engine.Event{Type: "transition", From: engine.Critical, To: engine.SOS, Incident: inc}),
		{Time: at(17 * time.Minute), Type: "reload", Policy: "77aa00bb11cc22", OldHash: "9f2c00aa11bb22"},
		ev(19*time.Minute, engine.Event{Type: "probe_up", Probe: "redis"}),
		ev(19*time.Minute, engine.Event{Type: "incident_resolved", Incident: inc, Reason: "probes recovered", Channels: []string{"telegram:42"}}),
		ev(19*time.Minute, engine.Event{Type: "transition", From: engine.SOS, To: engine.Healthy, Incident: inc}),
		{Time: at(19*time.Minute + time.Second), Type: "action", Policy: "77aa00bb11cc22", Rung: "resolved", Action: "page resolved via telegram:42", OK: &yes},
		{Time: at(2 * time.Hour), Type: "stop", Policy: "77aa00bb11cc22", Phase: engine.Healthy},
	}
	var b strings.Builder
	for i, r := range recs {
		line, err := journal.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		if i == 3 {
			// A newer daemon's record type and field, and a line cut by a crash.
			b.WriteString(`{"t":"2026-11-23T03:12:04Z","type":"probe_launch","policy":"9f2c00aa11bb22","probes":["redis"]}` + "\n")
			b.WriteString(`{"t":"2026-11-23T03:12:04Z","type":"event","policy":"9f2c00aa11bb22","batch":3,"event":{"type":"verification_batch","at":"2026-11-23T03:12:04Z"}}` + "\n")
			b.WriteString("{\"t\":\"2026-11-23T03:1\n")
		}
	}
	if err := os.WriteFile(filepath.Join(dir, journal.FileName), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEventsStory(t *testing.T) {
	dir := t.TempDir()
	outageJournal(t, dir)
	cases := []struct {
		name string
		args []string
	}{
		{"events_all", []string{"events", "--utc", "--format", "table", dir}},
		{"events_since", []string{"events", "--utc", "--format", "table", "--since", "2026-11-23T03:30:00Z", dir}},
		{"events_until", []string{"events", "--utc", "--format", "table", "--since", "2026-11-23T03:00:00Z", "--until", "2026-11-23T03:13:00Z", dir}},
		{"events_incident", []string{"events", "--utc", "--format", "table", "--incident", "20261123T031204Z-7", dir}},
		{"events_json", []string{"events", "--utc", "--since", "2026-11-23T03:27:00Z", dir}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := talon(t, tc.args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			golden(t, tc.name, out)
		})
	}
}

// The story of the whole night, as the operator reads it in the morning.
func TestEventsStoryReadsLikeOne(t *testing.T) {
	dir := t.TempDir()
	outageJournal(t, dir)
	out, _, code := talon(t, "events", "--utc", "--format", "table", dir)
	if code != 0 {
		t.Fatal(out)
	}
	for _, want := range []string{
		"03:12:04   redis down (PONG missing: connection refused)",
		"03:12:45 ✗ heal ran 41 s, exit 1: heal: redis-server would not start",
		"after heal: still failing: redis (PONG missing: connection refused)",
		"03:15:06   agent ran 2 min 11 s, ok: looked at redis: the disk is full",
		"03:27:05   page sent via telegram:42",
		"03:27:05 ✗ page via webhook:hooks.example failed: webhook: 502 Bad Gateway",
		"incident 20261123T031204Z-7 resolved after 19 min (probes recovered)",
		"↳ 03:12:04 redis down → heal ran 41 s, exit 1 → agent ran 2 min 11 s, ok → page sent via telegram:42 → page via webhook:hooks.example failed → 03:31:04 resolved",
		"“resolved” sent via telegram:42",
		"03:17:04   talon started again after an unclean end (crash, kill -9 or power loss: no stop recorded), in phase investigating",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("story lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "probe_launch") || strings.Contains(out, "verification_batch") {
		t.Errorf("unknown record types must tell nothing:\n%s", out)
	}
}

func TestEventsJSONLines(t *testing.T) {
	dir := t.TempDir()
	outageJournal(t, dir)
	out, _, code := talon(t, "events", "--json", "--incident", "20261123T031204Z-7", dir)
	if code != 0 {
		t.Fatal(out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	kinds := map[string]int{}
	for _, l := range lines {
		var sl storyLine
		if err := json.Unmarshal([]byte(l), &sl); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		kinds[sl.Kind]++
		if sl.Time.Before(time.Date(2026, 11, 23, 3, 12, 4, 0, time.UTC)) || sl.Time.After(time.Date(2026, 11, 23, 3, 31, 5, 0, time.UTC)) {
			t.Errorf("a line outside the incident: %s", l)
		}
	}
	if kinds["probe_down"] != 1 || kinds["action"] != 2 || kinds["page"] != 3 || kinds["summary"] != 1 || kinds["reload"] != 1 || kinds["start"] != 1 {
		t.Fatalf("kinds %v", kinds)
	}
}

func TestEventsErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"events", dir}, 1, "talon: no journal at " + filepath.Join(dir, "journal.jsonl") + " yet: the daemon writes it (see --state-dir, --config)\n"},
		{[]string{"events", "--since", "yesterdayish", dir}, 2, "talon: events --since: \"yesterdayish\" is neither a duration (2h, 30m, 1d) nor a time (15:04, 2006-01-02 15:04, RFC 3339)\n"},
		{[]string{"events", "a", "b"}, 2, "talon: events takes at most one journal (journal.jsonl or its directory), got 2; see talon help events\n"},
	}
	for _, tc := range cases {
		_, stderr, code := talon(t, tc.args...)
		if code != tc.code || stderr != tc.stderr {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.stderr)
		}
	}
	outageJournal(t, dir)
	_, stderr, code := talon(t, "events", "--incident", "nope", dir)
	if code != 1 || stderr != "talon: events: no incident \"nope\" in "+filepath.Join(dir, "journal.jsonl")+"\n" {
		t.Errorf("unknown incident: %d %q", code, stderr)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"2h", now.Add(-2 * time.Hour)},
		{"1d", now.Add(-24 * time.Hour)},
		{"1d6h", now.Add(-30 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"03:12", time.Date(2026, 11, 23, 3, 12, 0, 0, time.UTC)},
		{"11:00", time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)}, // still to come today: yesterday
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)},
		{"2026-11-20 04:05", time.Date(2026, 11, 20, 4, 5, 0, 0, time.UTC)},
		{"2026-11-20T04:05:06+01:00", time.Date(2026, 11, 20, 3, 5, 6, 0, time.UTC)},
	}
	for _, tc := range cases {
		got, err := parseWhen(tc.in, now, time.UTC)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseWhen("-2h", now, time.UTC); err == nil {
		t.Error("a negative duration must be refused")
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		240 * time.Millisecond:                "0.2 s",
		4*time.Second + 60*time.Millisecond:   "4.1 s",
		41 * time.Second:                      "41 s",
		59*time.Second + 600*time.Millisecond: "1 min",
		131 * time.Second:                     "2 min 11 s",
		19 * time.Minute:                      "19 min",
		12*time.Minute + 5*time.Second:        "12 min",
		time.Hour:                             "1 h",
		80 * time.Minute:                      "1 h 20 min",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// A journal the daemon wrote over five hours, in compact records and small
// files, so most of it is in compressed generations: talon events and
// talon journal cut read a window out of them, cycles expanded.
func TestEventsAndCutReadCompressedGenerations(t *testing.T) {
	dir := t.TempDir()
	path := journal.Path(dir)
	j, err := journal.Open(path, journal.Options{MaxBytes: 8 << 10, Keep: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var all []engine.Record
	for i := 0; i < 300; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		down := i%60 >= 30 && i%60 < 33
		output := "PONG"
		if down {
			output = "connection refused"
		}
		recs := []engine.Record{
			{Time: at, Type: "launch", Policy: "9f2c", Probes: []string{"redis", "api"}},
			{Time: at.Add(10 * time.Millisecond), Type: "cycle", Policy: "9f2c", Results: []engine.Result{
				{Name: "redis", Passed: !down, Output: output, DurationMS: 3, Critical: true, At: at.Add(5 * time.Millisecond)},
				{Name: "api", Passed: true, Output: "HTTP 200", DurationMS: 12, At: at.Add(9 * time.Millisecond)}}},
		}
		if i%60 == 30 {
			recs = append(recs, engine.Record{Time: at.Add(10 * time.Millisecond), Type: "event", Policy: "9f2c",
				Event: &engine.Event{Type: "probe_down", Probe: "redis", Reason: "connection refused", At: at.Add(10 * time.Millisecond)}})
		}
		for _, r := range recs {
			if err := j.Append(r); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, recs...)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	files := journal.Files(path)
	if len(files) < 5 || !strings.HasSuffix(files[0], ".gz") {
		t.Fatalf("files %v: want several compressed generations", files)
	}
	since, until := t0.Add(85*time.Minute), t0.Add(215*time.Minute) // the outages at 90 and 150 and 210 minutes

	out, errOut, code := talon(t, "events", "--json", "--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339), dir)
	if code != 0 || errOut != "" {
		t.Fatalf("events: exit %d %q", code, errOut)
	}
	var downs []time.Time
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var sl storyLine
		if err := json.Unmarshal([]byte(l), &sl); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		if sl.Kind == "probe_down" {
			downs = append(downs, sl.Time)
		}
	}
	if len(downs) != 3 || !downs[0].Equal(t0.Add(90*time.Minute+10*time.Millisecond)) || !downs[2].Equal(t0.Add(210*time.Minute+10*time.Millisecond)) {
		t.Fatalf("probe_down at %v, want 1:30, 2:30, 3:30\n%s", downs, out)
	}

	out, errOut, code = talon(t, "journal", "cut", "--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339), path)
	if code != 0 || errOut != "" {
		t.Fatalf("cut: exit %d %q", code, errOut)
	}
	var want strings.Builder
	for _, r := range all {
		if !r.Time.Before(since) && !r.Time.After(until) {
			line, _ := journal.Marshal(r)
			want.Write(line)
		}
	}
	if out != want.String() {
		t.Fatalf("cut:\n%s\nwant (in full):\n%s", out, want.String())
	}
}

// A resume's "by" (journal version 4 on) goes on the resume lines of that
// command, every pause it lifted; a resume record without one (an older
// CLI) reads as before.
func TestEventsStoryNamesWhoResumed(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	p1 := engine.Pause{Scope: engine.ScopeProbe, Name: "redis", Until: t0.Add(time.Hour), By: "ann (uid 502)"}
	p2 := engine.Pause{Scope: engine.ScopeRung, Name: "heal", Until: t0.Add(time.Hour)}
	ev := func(at time.Time, p engine.Pause) engine.Record {
		return engine.Record{Time: at, Type: "event", Event: &engine.Event{Type: "resume", Reason: p.Describe(), At: at}}
	}
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	recs := []engine.Record{
		{Time: t1, Type: "resume", Control: &engine.Control{By: "joel (uid 501)"}},
		ev(t1, p1), ev(t1, p2),
		{Time: t2, Type: "resume", Control: &engine.Control{Scope: engine.ScopeRung, Name: "heal"}},
		ev(t2, p2),
	}
	s := newStory()
	var got []string
	for _, r := range recs {
		for _, l := range s.add(r) {
			got = append(got, l.Text)
		}
	}
	want := []string{
		"resumed by joel (uid 501): probe redis until 2026-12-02T04:00:00Z (by ann (uid 502))",
		"resumed by joel (uid 501): rung heal until 2026-12-02T04:00:00Z",
		"resumed: rung heal until 2026-12-02T04:00:00Z",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("story:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
