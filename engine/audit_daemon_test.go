package engine

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

// The daemon reloads to a policy with an empty ladder while a heal runs:
// it keeps running, the incident stays on /health, the journal says that
// nothing can act; a reload back to a ladder with a page pages.
func TestDaemonSurvivesAReloadToAnEmptyLadder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		down := func(context.Context, *ProbeEnv) Outcome { return Outcome{Output: "down"} }
		probes := []*Probe{{Name: "api", Critical: true, After: 1, Digest: "api", Check: down}}
		th := Thresholds{FailedAfter: 1, CriticalAfter: time.Hour, RecoverAfter: 1}
		heal := &recAction{name: "heal", sleep: 2 * time.Second}
		pager := &recPager{}
		pols := []*Policy{
			{Hash: "v1", Probes: probes, Thresholds: th, Ladder: []*Rung{{Name: "heal", Do: []Action{heal}, Verify: true, Cooldown: time.Hour}}},
			{Hash: "v2", Probes: probes, Thresholds: th},
			{Hash: "v3", Probes: probes, Thresholds: th, Ladder: []*Rung{{Name: "sos", Do: []Action{pager}, State: "sos"}}},
		}
		var cur atomic.Int32
		j := &memJournal{}
		d := New(Options{Load: func() *LoadResult { p := pols[cur.Load()]; return &LoadResult{Policy: p, Hash: p.Hash} },
			Interval: 200 * time.Millisecond, Journal: j, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		advance(500 * time.Millisecond)
		if heal.runs.Load() != 1 {
			t.Fatalf("heal runs %d", heal.runs.Load())
		}
		cur.Store(1)
		if _, err := d.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		advance(5 * time.Second) // the heal ends under the empty ladder
		s := d.Snapshot()
		if s.Incident == nil || s.PolicyHash != "v2" || s.Stale {
			t.Fatalf("after the heal ended: %+v", s)
		}
		if n := j.count(func(r Record) bool { return r.Type == "event" && r.Event.Type == "ladder_empty" }); n != 1 {
			t.Fatalf("%d ladder_empty events, want 1", n)
		}
		cur.Store(2)
		if _, err := d.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
		if k := pager.kinds(); len(k) != 1 || k[0] != "sos" {
			t.Fatalf("pages after the ladder came back: %v", k)
		}
		cancel()
		<-done
	})
}
