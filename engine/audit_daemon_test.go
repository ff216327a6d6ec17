package engine

import (
	"context"
	"io"
	"path/filepath"
	"sync"
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

// slowPager delivers after delay (honouring ctx) and keeps what it got.
type slowPager struct {
	name  string
	delay time.Duration
	mu    sync.Mutex
	got   []Message
}

func (p *slowPager) Describe() string   { return p.name }
func (p *slowPager) Programs() []string { return nil }
func (p *slowPager) Channel() string    { return p.name }
func (p *slowPager) Run(ctx context.Context, env *ActionEnv) ActionResult {
	return RunPager(ctx, p, env)
}
func (p *slowPager) Send(ctx context.Context, _ *ActionEnv, m Message) error {
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, m)
	return nil
}
func (p *slowPager) count() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.got) }

// A graceful stop (SIGTERM) while a slow channel is still delivering a page
// that a fast one accepted: the page is not lost. A channel that answers
// within the stop deadline is delivered; one that does not stays owed and
// the next start sends it again.
func TestGracefulStopDoesNotLoseAPageOnASlowChannel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		slow      time.Duration
		delivered int // deliveries to slow before the restart
	}{
		{"answers within the stop deadline", 3 * time.Second, 1},
		{"answers after the stop deadline", time.Minute, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				fast, slow := &slowPager{name: "fast"}, &slowPager{name: "slow", delay: tc.slow}
				down := func(context.Context, *ProbeEnv) Outcome { return Outcome{Output: "down"} }
				pol := &Policy{Hash: "v1", Probes: []*Probe{{Name: "api", Critical: true, After: 1, Digest: "api", Check: down}},
					Thresholds: Thresholds{FailedAfter: 1, CriticalAfter: time.Hour, RecoverAfter: 1},
					Ladder:     []*Rung{{Name: "sos", Do: []Action{fast, slow}, State: "sos"}}}
				statePath := filepath.Join(t.TempDir(), "state.json")
				run := func() (context.CancelFunc, chan error) {
					d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
						Interval: 200 * time.Millisecond, StateFile: statePath, ShutdownGrace: 5 * time.Second,
						Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error)
					go func() { done <- d.Run(ctx) }()
					return cancel, done
				}
				cancel, done := run()
				advance(time.Second)
				if fast.count() != 1 || slow.count() != 0 {
					t.Fatalf("before the stop: fast %d slow %d", fast.count(), slow.count())
				}
				cancel() // SIGTERM
				<-done
				if slow.count() != tc.delivered {
					t.Fatalf("slow got %d pages during the stop, want %d", slow.count(), tc.delivered)
				}
				cancel, done = run()
				advance(2 * time.Minute)
				cancel()
				<-done
				if fast.count() != 1 || slow.count() != 1 {
					t.Fatalf("after the restart: fast got %d pages, slow %d; want 1 each", fast.count(), slow.count())
				}
			})
		})
	}
}

// A rung that acts and pages: its page goes out beside its actions, not
// after a five-minute heal.
func TestMixedRungPagesBesideItsActions(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		down := func(context.Context, *ProbeEnv) Outcome { return Outcome{Output: "down"} }
		heal := &recAction{name: "heal", sleep: 5 * time.Minute}
		pager := &recPager{}
		pol := &Policy{Hash: "v1", Probes: []*Probe{{Name: "api", Critical: true, After: 1, Digest: "api", Check: down}},
			Thresholds: Thresholds{FailedAfter: 1, CriticalAfter: time.Hour, RecoverAfter: 1},
			Ladder:     []*Rung{{Name: "heal-and-page", Do: []Action{heal, pager}, Timeout: 10 * time.Minute}}}
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: time.Second, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		advance(10 * time.Second)
		if heal.runs.Load() != 1 || len(pager.kinds()) != 1 {
			t.Errorf("10 s into a 5 min heal: heal runs %d, pages %v; the page waited for the heal", heal.runs.Load(), pager.kinds())
		}
	})
}
