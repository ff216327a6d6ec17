package journal_test

import (
	"context"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/journal"
)

type slowHeal struct{ runs atomic.Int32 }

func (a *slowHeal) Describe() string   { return "heal" }
func (a *slowHeal) Programs() []string { return nil }
func (a *slowHeal) Run(ctx context.Context, _ *engine.ActionEnv) engine.ActionResult {
	a.runs.Add(1)
	select {
	case <-time.After(20 * time.Second):
	case <-ctx.Done():
	}
	return engine.ActionResult{OK: true, Output: "healed"}
}

// The daemon journals a checkpoint where a journal file begins after a
// rotation: once the file with the process start is rotated away, the live
// file alone replays faithfully through the same policy (the state it
// starts from is the daemon's, not a blank one).
func TestRotatedJournalReplaysFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var broken atomic.Bool
		check := func(context.Context, *engine.ProbeEnv) engine.Outcome {
			if broken.Load() {
				return engine.Outcome{Output: "HTTP 503"}
			}
			return engine.Outcome{Passed: true, Output: "ok"}
		}
		heal := &slowHeal{}
		pol := &engine.Policy{Hash: "pol1", Probes: []*engine.Probe{{Name: "api", Critical: true, Digest: "api", Check: check}},
			Thresholds: engine.Thresholds{FailedAfter: 2, RecoverAfter: 1, CriticalAfter: time.Hour},
			Ladder:     []*engine.Rung{{Name: "heal", Do: []engine.Action{heal}, Cooldown: 2 * time.Minute, Verify: true}}}
		path := journal.Path(t.TempDir())
		j, err := journal.Open(path, journal.Options{MaxBytes: 24 << 10, Keep: 1})
		if err != nil {
			t.Fatal(err)
		}
		d := engine.New(engine.Options{Load: func() *engine.LoadResult { return &engine.LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: time.Second, Journal: j, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		time.Sleep(30 * time.Second)
		broken.Store(true) // an outage that outlives the first file
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		cancel()
		<-done
		j.Close()

		// The live file alone, as if every earlier one were rotated away,
		// read as every reader reads it.
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		alone := journal.Path(t.TempDir())
		if err := os.WriteFile(alone, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var recs []engine.Record
		starts, checkpoints := 0, 0
		if _, err := journal.Read(alone, func(r engine.Record) error {
			switch r.Type {
			case "start":
				starts++
			case "checkpoint":
				checkpoints++
			}
			recs = append(recs, r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if starts != 0 || checkpoints == 0 || heal.runs.Load() < 2 {
			t.Fatalf("live file: %d start and %d checkpoint records, %d heals; want the start rotated away, a checkpoint, heals", starts, checkpoints, heal.runs.Load())
		}
		res := engine.Replay(pol, recs, engine.ReplayOptions{})
		if res.Mode != engine.ModeFaithful || len(res.Divergences) > 0 {
			t.Fatalf("replay of the live file: mode %s (%s), divergences %+v", res.Mode, res.ModeReason, res.Divergences)
		}
	})
}
