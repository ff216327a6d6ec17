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

// Regression (review finding 7), the defect this guards against: a reload that shortens a probe's every= keeps the old due time.
func TestRegressionReloadShorterEveryKeepsOldDue(t *testing.T) {
	var runs atomic.Int32
	check := func(context.Context, *ProbeEnv) Outcome { runs.Add(1); return Outcome{Passed: true} }
	mk := func(every time.Duration, h string) *Policy {
		return &Policy{Hash: h, Thresholds: DefaultThresholds(), Probes: []*Probe{{Name: "p", Digest: h, Every: every, Check: check}}}
	}
	var v atomic.Int32
	d := New(Options{Load: func() *LoadResult {
		if v.Load() == 0 {
			return &LoadResult{Policy: mk(time.Hour, "a"), Hash: "a"}
		}
		return &LoadResult{Policy: mk(200*time.Millisecond, "b"), Hash: "b"}
	}, Interval: time.Minute, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	waitFor(t, "first run", 5*time.Second, func() bool { return runs.Load() == 1 })
	v.Store(1)
	d.Reload(ctx)
	time.Sleep(2 * time.Second)
	if n := runs.Load(); n < 3 {
		t.Fatalf("every=200ms after reload, but only %d runs in 2s (next due still an hour out)", n)
	}
}
