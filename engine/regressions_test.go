package engine

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pass(context.Context, *ProbeEnv) Outcome  { return Outcome{Passed: true, Output: "ok"} }
func failO(context.Context, *ProbeEnv) Outcome { return Outcome{Output: "down"} }

// Regression (review finding 1), the defect this guards against: a policy whose probes run every 10m reads as stale (health not ok)
// minutes after each perfectly good result.
func TestRegressionStaleWithSlowEvery(t *testing.T) {
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	pol := &Policy{Hash: "p", Thresholds: DefaultThresholds(),
		Probes: []*Probe{{Name: "disk", Digest: "d", Every: 10 * time.Minute, Check: pass}}}
	d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: "p"} },
		Interval: time.Minute, Now: clk.Now, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	<-d.Ready()
	clk.Add(3 * time.Second) // past the start jitter
	waitFor(t, "first result", 3*time.Second, func() bool { return !d.Snapshot().LastCycle.IsZero() })
	clk.Add(4 * time.Minute) // next run is due at 10m
	time.Sleep(300 * time.Millisecond)
	if s := d.Snapshot(); s.Stale || !s.OK {
		t.Fatalf("healthy daemon, next probe due in 6m, reads stale=%v ok=%v", s.Stale, s.OK)
	}
}

// Regression (review finding 2), the defect this guards against: Options.Parallel bounds one launch batch, not the daemon: probes
// that fall due on different ticks each get a fresh semaphore.
func TestRegressionParallelNotBounded(t *testing.T) {
	var cur, peak atomic.Int32
	check := func(ctx context.Context, _ *ProbeEnv) Outcome {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(1500 * time.Millisecond)
		cur.Add(-1)
		return Outcome{Passed: true}
	}
	var probes []*Probe
	for i := 0; i < 20; i++ {
		probes = append(probes, &Probe{Name: string(rune('a' + i)), Digest: "x", Every: 20 * time.Second, Check: check})
	}
	pol := &Policy{Hash: "p", Thresholds: DefaultThresholds(), Probes: probes}
	d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: "p"} },
		Interval: time.Minute, Parallel: 2, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	go d.Run(ctx)
	time.Sleep(2500 * time.Millisecond)
	cancel()
	if p := peak.Load(); p > 2 {
		t.Fatalf("Parallel=2 but %d probes ran at once", p)
	}
}

func critPol(cooldown time.Duration, pager Action) *Policy {
	return &Policy{Hash: "p", Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1, CriticalAfter: time.Hour},
		Probes: []*Probe{{Name: "api", Critical: true, Digest: "a", Check: pass}},
		Ladder: []*Rung{{Name: "sos", Do: []Action{pager}, Cooldown: cooldown, State: "sos"}}}
}

// Regression (review finding 3), the defect this guards against: a page delivered for an incident that resolved while it was on the
// way is not recorded (LastSent), so flap detection's "paged once already"
// does not know of it. (A cooldown from an earlier incident no longer holds
// a new incident's first page: TestNewIncidentPagesDespiteACooldownFromTheLastOne.)
func TestRegressionPageCooldownLostWhenIncidentResolvesMidSend(t *testing.T) {
	pol := critPol(time.Hour, &recPager{})
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState(t0)
	Observe(s, pol, []Result{{Name: "api", Critical: true, At: t0}}, t0)
	if s.Incident == nil {
		t.Fatal("no incident")
	}
	id := s.Incident.ID
	dec := Decide(s, pol, t0, nil)
	if dec.Run != 0 {
		t.Fatalf("decide %+v", dec)
	}
	BeginRung(s, pol, 0, t0)
	// The probe recovers while the page is in flight.
	t1 := t0.Add(5 * time.Second)
	Observe(s, pol, []Result{{Name: "api", Passed: true, At: t1}}, t1)
	if s.Incident != nil {
		t.Fatal("still open")
	}
	// The page was delivered.
	FinishRung(s, pol, id, "sos", RungOutcome{OK: true, Pages: true, Paged: []string{"rec"}}, t1.Add(time.Second))
	// Flap: fails again two minutes later.
	t2 := t0.Add(2 * time.Minute)
	Observe(s, pol, []Result{{Name: "api", Critical: true, At: t2}}, t2)
	if got := s.LastSent["sos"]; !got.Equal(t1.Add(time.Second)) {
		t.Fatalf("the page delivered after the incident resolved is not recorded: LastSent=%v", s.LastSent)
	}
	if d := Decide(s, pol, t2, nil); d.Run != 0 {
		t.Fatalf("the next incident's first page is held by the earlier incident's page: %+v", d)
	}
}

// Regression (review finding 4), the defect this guards against: one failing result of a parent (not yet down) resolves the child's
// open incident and sends "resolved"; the next pass re-opens it.
func TestRegressionParentBlipResolvesIncident(t *testing.T) {
	pol := &Policy{Hash: "p", Thresholds: Thresholds{FailedAfter: 2, RecoverAfter: 1, CriticalAfter: time.Hour},
		Probes: []*Probe{
			{Name: "net", Digest: "n", Check: pass},
			{Name: "api", Critical: true, Digest: "a", DependsOn: []string{"net"}, Check: pass},
		}}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState(t0)
	ok := func(n string, at time.Time) Result { return Result{Name: n, Passed: true, At: at} }
	bad := func(n string, at time.Time) Result { return Result{Name: n, At: at} }
	Observe(s, pol, []Result{ok("net", t0), bad("api", t0)}, t0)
	t1 := t0.Add(time.Minute)
	Observe(s, pol, []Result{ok("net", t1), bad("api", t1)}, t1)
	if s.Incident == nil {
		t.Fatal("no incident")
	}
	s.Incident.Paged = []string{"rec"}
	t2 := t1.Add(time.Minute)
	var evs []Event
	evs = append(evs, Observe(s, pol, []Result{bad("net", t2)}, t2)...) // one transient miss of the parent
	t3 := t2.Add(time.Minute)
	evs = append(evs, Observe(s, pol, []Result{ok("net", t3), bad("api", t3)}, t3)...)
	var seq []string
	for _, e := range evs {
		if e.Type == "incident_resolved" || e.Type == "incident_open" {
			seq = append(seq, e.Type)
		}
	}
	if len(seq) > 0 {
		t.Fatalf("api failed throughout, yet: %v", seq)
	}
}

// Regression (review finding 5), the defect this guards against: a result that started before the verify re-probe (an in-flight
// scheduled run overlapping the verify) lands after it and re-opens the
// incident the verify just resolved.
func TestRegressionStaleResultAfterVerify(t *testing.T) {
	pol := critPol(0, &recPager{})
	pol.Ladder = []*Rung{{Name: "heal", Do: []Action{&recAction{name: "heal"}}, Verify: true, Cooldown: time.Hour}}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewState(t0)
	Observe(s, pol, []Result{{Name: "api", Critical: true, At: t0}}, t0)
	id := s.Incident.ID
	BeginRung(s, pol, 0, t0)
	old := Result{Name: "api", Critical: true, At: t0.Add(time.Second)} // scheduled run started mid-heal
	tv := t0.Add(10 * time.Second)
	FinishRung(s, pol, id, "heal", RungOutcome{OK: true, Verify: []Result{{Name: "api", Passed: true, At: tv}}}, tv)
	if s.Incident != nil {
		t.Fatal("verify did not resolve")
	}
	Observe(s, pol, []Result{old}, tv.Add(time.Second))
	if s.Incident != nil {
		t.Fatalf("a result older than the verify re-opened an incident: %s", s.Incident.ID)
	}
}
