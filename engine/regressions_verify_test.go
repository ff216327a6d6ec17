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

type flipAction struct{ flag *atomic.Bool }

func (a *flipAction) Describe() string   { return "fix" }
func (a *flipAction) Programs() []string { return nil }
func (a *flipAction) Run(ctx context.Context, _ *ActionEnv) ActionResult {
	time.Sleep(300 * time.Millisecond)
	a.flag.Store(true)
	return ActionResult{OK: true}
}

// R5 end to end: the verify re-probe overlaps a scheduled run of the same
// probe; the scheduled run (started before the fix) lands after the verify
// and opens a second incident for an outage that is over.
func TestRegressionVerifyOverlapReopens(t *testing.T) {
	var fixed atomic.Bool
	probe := &Probe{Name: "api", Critical: true, Digest: "a", Timeout: 5 * time.Second, Check: func(ctx context.Context, _ *ProbeEnv) Outcome {
		if fixed.Load() {
			time.Sleep(50 * time.Millisecond)
			return Outcome{Passed: true}
		}
		time.Sleep(time.Second) // a down service answers slowly (connect timeout)
		return Outcome{Output: "down"}
	}}
	pol := &Policy{Hash: "p", Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1, CriticalAfter: time.Hour},
		Probes: []*Probe{probe},
		Ladder: []*Rung{{Name: "heal", Do: []Action{&flipAction{&fixed}}, Verify: true, Cooldown: time.Hour}}}
	j := &memJournal{}
	d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: "p"} },
		Interval: 300 * time.Millisecond, Journal: j, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	time.Sleep(4 * time.Second)
	n := j.count(func(r Record) bool { return r.Type == "event" && r.Event.Type == "incident_open" })
	if n != 1 {
		t.Fatalf("one outage, healed once, but %d incidents opened", n)
	}
}
