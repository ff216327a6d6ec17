package engine

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

// Regression (review finding 6), the defect this guards against: a result of the old definition, in flight across a reload that
// changed the probe, is counted against the new definition.
func TestRegressionInflightOldDefinitionCounts(t *testing.T) {
	v1 := &Probe{Name: "api", Critical: true, Digest: "v1", Timeout: 5 * time.Second, Check: func(ctx context.Context, _ *ProbeEnv) Outcome {
		time.Sleep(800 * time.Millisecond) // wrong URL: connect timeout
		return Outcome{Output: "connect timeout"}
	}}
	v2 := &Probe{Name: "api", Critical: true, Digest: "v2", Check: pass}
	mk := func(p *Probe, h string) *Policy {
		return &Policy{Hash: h, Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1, CriticalAfter: time.Hour}, Probes: []*Probe{p},
			Ladder: []*Rung{{Name: "heal", Do: []Action{&recAction{name: "heal"}}, Cooldown: time.Hour}}}
	}
	var which atomic.Int32
	j := &memJournal{}
	d := New(Options{Load: func() *LoadResult {
		if which.Load() == 0 {
			return &LoadResult{Policy: mk(v1, "h1"), Hash: "h1"}
		}
		return &LoadResult{Policy: mk(v2, "h2"), Hash: "h2"}
	}, Interval: 10 * time.Second, Journal: j, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	<-d.Ready()
	time.Sleep(300 * time.Millisecond) // v1 in flight
	which.Store(1)
	if h, err := d.Reload(ctx); err != nil || h != "h2" {
		t.Fatal(h, err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := j.count(func(r Record) bool { return r.Type == "event" && r.Event.Type == "rung_start" }); n > 0 {
		t.Fatalf("the fixed definition never failed, but a stale v1 result ran %d rung(s)", n)
	}
}
