package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

var scanT0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// writeRotated writes n records one second apart through a small journal,
// so that they spread over several rotated files, and returns their times.
func writeRotated(t *testing.T, path string, n int) []time.Time {
	t.Helper()
	j, err := Open(path, Options{MaxBytes: 8 << 10, Keep: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var times []time.Time
	for i := 0; i < n; i++ {
		at := scanT0.Add(time.Duration(i) * time.Second)
		r := engine.Record{Time: at, Type: "cycle", Policy: "p", Results: []engine.Result{{Name: "disk", Passed: true, Output: strings.Repeat("x", i%50)}}}
		if i%10 == 0 {
			r = engine.Record{Time: at, Type: "event", Policy: "p", Event: &engine.Event{Type: "probe_down", Probe: "disk", At: at}}
		}
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
		times = append(times, at)
	}
	return times
}

func TestScanSinceUntilMatchesAFullRead(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	times := writeRotated(t, path, 2000)
	if n := len(Files(path)); n < 5 {
		t.Fatalf("want several rotated files, got %d", n)
	}
	for _, c := range []struct{ since, until time.Duration }{
		{0, 0}, {1, 0}, {999 * time.Second, 0}, {1500*time.Second + 500*time.Millisecond, 0},
		{1999 * time.Second, 0}, {3000 * time.Second, 0}, {300 * time.Second, 310 * time.Second},
		{0, 5 * time.Second}, {-time.Hour, 0},
	} {
		var opts ScanOptions
		if c.since != 0 {
			opts.Since = scanT0.Add(c.since)
		}
		if c.until != 0 {
			opts.Until = scanT0.Add(c.until)
		}
		var got []time.Time
		res, err := ScanWindow(path, opts, func(r engine.Record) error { got = append(got, r.Time); return nil })
		if err != nil {
			t.Fatal(err)
		}
		res.Cursor.Close()
		var want []time.Time
		for _, at := range times {
			if (opts.Since.IsZero() || !at.Before(opts.Since)) && (opts.Until.IsZero() || !at.After(opts.Until)) {
				want = append(want, at)
			}
		}
		if len(got) != len(want) || (len(want) > 0 && (!got[0].Equal(want[0]) || !got[len(got)-1].Equal(want[len(want)-1]))) {
			t.Fatalf("since %v until %v: got %d records, want %d", c.since, c.until, len(got), len(want))
		}
		// The seek skips what is older: a late --since reads little.
		if c.since == 1999*time.Second && res.Bytes > 64<<10 {
			t.Errorf("--since near the end read %d bytes; the seek should skip the rest", res.Bytes)
		}
	}
}

func TestScanWantSkipsWithoutDecoding(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	writeRotated(t, path, 100)
	var types = map[string]int{}
	res, err := ScanWindow(path, ScanOptions{Want: func(typ string, _ []byte) bool { return typ != "cycle" }},
		func(r engine.Record) error { types[r.Type]++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	res.Cursor.Close()
	if types["event"] != 10 || types["cycle"] != 0 || res.Lines != 100 {
		t.Fatalf("types %v, lines %d", types, res.Lines)
	}
}

func TestScanIsLenient(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	body := `{"t":"2026-11-23T00:00:00Z","type":"start","policy":"p","phase":"healthy"}
{"t":"2026-11-23T00:00:01Z","type":"rung_end","policy":"p","rung":"heal","exit_code":1}
not json at all
{"type":"event","t":"2026-11-23T00:00:02Z","policy":"p","event":{"type":"probe_up","probe":"x","at":"2026-11-23T00:00:02Z"},"new_field":[1,2]}
{"t":"2026-11-23T00:00:03Z","type":"stop","pol`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	res, err := ScanWindow(path, ScanOptions{}, func(r engine.Record) error { got = append(got, r.Type); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer res.Cursor.Close()
	if strings.Join(got, ",") != "start,rung_end,event" || res.Skipped != 1 {
		t.Fatalf("got %v, skipped %d", got, res.Skipped)
	}
	// The partial last line is being written: Next reads it once it is whole.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`icy":"p","phase":"healthy"}` + "\n")
	f.Close()
	got = nil
	if err := res.Cursor.Next(func(r engine.Record) error { got = append(got, r.Type); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "stop" {
		t.Fatalf("after the line was completed: %v", got)
	}
}

func TestScanFollowsAcrossRotation(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	j, err := Open(path, Options{MaxBytes: 4 << 10, Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	n := 0
	add := func(k int) {
		for i := 0; i < k; i++ {
			at := scanT0.Add(time.Duration(n) * time.Second)
			if err := j.Append(engine.Record{Time: at, Type: "reload", Policy: strings.Repeat("h", 200), OldHash: "o"}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	add(3)
	seen := 0
	res, err := ScanWindow(path, ScanOptions{}, func(engine.Record) error { seen++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer res.Cursor.Close()
	if seen != 3 {
		t.Fatalf("first scan saw %d", seen)
	}
	for round := 0; round < 5; round++ {
		add(7) // about 1.7 KiB: a rotation every few rounds
		if err := res.Cursor.Next(func(engine.Record) error { seen++; return nil }); err != nil {
			t.Fatal(err)
		}
		if seen != n {
			t.Fatalf("round %d: followed %d of %d records", round, seen, n)
		}
	}
}

func TestScanMissingJournal(t *testing.T) {
	t.Parallel()
	_, err := ScanWindow(filepath.Join(t.TempDir(), FileName), ScanOptions{}, func(engine.Record) error { return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v", err)
	}
}
