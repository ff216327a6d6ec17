package cli

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// fullJournal fills dir with a journal at its bound (16 MiB × 6 files =
// 96 MiB): a cycle of ten probes a minute and an outage a day. It returns
// the journal's size and its last record's time.
func fullJournal(b *testing.B, dir string) (int64, time.Time) {
	b.Helper()
	opts := journal.Options{}
	j, err := journal.Open(journal.Path(dir), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var size int64
	var at time.Time
	for i := 0; size < opts.Bound(); i++ {
		at = t0.Add(time.Duration(i) * time.Minute)
		var rs []engine.Result
		for p := 0; p < 10; p++ {
			rs = append(rs, engine.Result{Name: fmt.Sprintf("probe_%d", p), Passed: true, Output: "HTTP 200: ok, all good here", DurationMS: 12, Critical: p < 3, At: at})
		}
		recs := []engine.Record{{Time: at, Type: "cycle", Policy: "9f2c00aa11bb22", Results: rs}}
		if i%1440 == 600 {
			inc := fmt.Sprintf("inc-%d", i)
			yes := true
			recs = append(recs,
				engine.Record{Time: at, Type: "event", Policy: "9f2c", Event: &engine.Event{Type: "probe_down", Probe: "probe_1", Reason: "connection refused", At: at}},
				engine.Record{Time: at, Type: "event", Policy: "9f2c", Event: &engine.Event{Type: "incident_open", Incident: inc, Reason: "[probe_1]", At: at}},
				engine.Record{Time: at, Type: "event", Policy: "9f2c", Event: &engine.Event{Type: "rung_start", Incident: inc, Rung: "heal", At: at}},
				engine.Record{Time: at.Add(time.Second), Type: "action", Policy: "9f2c", Rung: "heal", Action: "exec heal.sh", OK: &yes, Output: "restarted"},
				engine.Record{Time: at.Add(time.Minute), Type: "event", Policy: "9f2c", Event: &engine.Event{Type: "incident_resolved", Incident: inc, Reason: "probes recovered", At: at.Add(time.Minute)}})
		}
		for _, r := range recs {
			line, _ := journal.Marshal(r)
			if size+int64(len(line)) > opts.Bound()-opts.Bound()/64 {
				return size, at
			}
			if err := j.Append(r); err != nil {
				b.Fatal(err)
			}
			size += int64(len(line))
		}
	}
	return size, at
}

// BenchmarkEvents reads a full 96 MiB journal: all of it, and the last two
// hours (where --since seeks instead of reading).
func BenchmarkEvents(b *testing.B) {
	dir := b.TempDir()
	size, last := fullJournal(b, dir)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"all", []string{"events", "--format", "json", dir}},
		{"since2h", []string{"events", "--format", "json", "--since", last.Add(-2 * time.Hour).Format(time.RFC3339), dir}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				if code := Main(c.args, io.Discard, io.Discard); code != 0 {
					b.Fatalf("exit %d", code)
				}
			}
			b.ReportMetric(float64(size)/(1<<20), "journal_MiB")
		})
	}
}
