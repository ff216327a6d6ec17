package engine

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

type memJournal struct {
	mu   sync.Mutex
	recs []Record
}

func (j *memJournal) Append(r Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, r)
	return nil
}
func (j *memJournal) Sync() error { return nil }

func (j *memJournal) count(f func(Record) bool) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, r := range j.recs {
		if f(r) {
			n++
		}
	}
	return n
}

type recAction struct {
	name  string
	sleep time.Duration
	runs  atomic.Int32
}

func (a *recAction) Describe() string   { return a.name }
func (a *recAction) Programs() []string { return nil }
func (a *recAction) Run(ctx context.Context, _ *ActionEnv) ActionResult {
	a.runs.Add(1)
	select {
	case <-time.After(a.sleep):
	case <-ctx.Done():
	}
	return ActionResult{OK: true, Output: a.name + " done"}
}

type recPager struct {
	mu   sync.Mutex
	msgs []Message
}

func (p *recPager) Describe() string   { return "rec" }
func (p *recPager) Programs() []string { return nil }
func (p *recPager) Channel() string    { return "rec" }
func (p *recPager) Run(ctx context.Context, env *ActionEnv) ActionResult {
	return ActionResult{OK: p.Send(ctx, env, env.Message) == nil}
}
func (p *recPager) Send(_ context.Context, _ *ActionEnv, m Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return nil
}
func (p *recPager) kinds() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var k []string
	for _, m := range p.msgs {
		k = append(k, m.Kind)
	}
	return k
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// advance moves a synctest bubble's fake clock by d: every goroutine runs
// until it blocks, time jumps to the next timer, and so on; then it waits
// until the daemon is idle. Nothing sleeps for real.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestDaemonEscalatesBesideProbesAndSurvivesRestart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testDaemonEscalates)
}

func testDaemonEscalates(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	probe := &Probe{Name: "api", Critical: true, Digest: "api1", Check: func(context.Context, *ProbeEnv) Outcome {
		if healthy.Load() {
			return Outcome{Passed: true, Output: "ok"}
		}
		return Outcome{Output: "HTTP 503"}
	}}
	heal := &recAction{name: "heal", sleep: time.Second}
	pager := &recPager{}
	pol := &Policy{Hash: "pol1", Probes: []*Probe{probe},
		Thresholds: Thresholds{FailedAfter: 2, CriticalAfter: 2 * time.Second, RecoverAfter: 1},
		Ladder: []*Rung{
			{Name: "heal", Do: []Action{heal}, Cooldown: time.Hour, Verify: true},
			{Name: "sos", Do: []Action{pager}, State: "sos", Repeat: time.Hour},
		}}
	statePath := filepath.Join(t.TempDir(), "state.json")
	j := &memJournal{}
	newDaemon := func() *Daemon {
		return New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: 200 * time.Millisecond, StateFile: statePath, Probes: effect.NewLive(), Actions: effect.NewLive(),
			Journal: j, Logger: log.New(io.Discard)})
	}
	d := newDaemon()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	advance(time.Second)
	if !d.Snapshot().OK {
		t.Fatalf("not healthy: %+v", d.Snapshot())
	}

	healthy.Store(false)
	advance(450 * time.Millisecond) // two failing cycles at 200 ms
	if n := heal.runs.Load(); n != 1 {
		t.Fatalf("heal ran %d times after two failures", n)
	}
	// The heal sleeps a second; cycles must keep coming meanwhile.
	cyclesAtStart := j.count(func(r Record) bool { return r.Type == "cycle" })
	advance(700 * time.Millisecond)
	if s := d.Snapshot(); s.Rung == nil || *s.Rung != "heal" {
		t.Fatalf("snapshot does not show the running rung: %+v", s.Rung)
	}
	if n := j.count(func(r Record) bool { return r.Type == "cycle" }) - cyclesAtStart; n < 3 {
		t.Fatalf("only %d cycles ran during a 1 s heal: escalation blocks the probe loop", n)
	}
	advance(3 * time.Second) // critical after 2 s: the page goes out
	if k := pager.kinds(); len(k) != 1 || d.Snapshot().State != SOS {
		t.Fatalf("pages %v, state %s", k, d.Snapshot().State)
	}
	if s := d.Snapshot(); s.RungRuns["heal"] != 1 || s.RungRuns["sos"] != 1 || s.Pages != 1 {
		t.Fatalf("counters for /metrics: rung runs %v, pages %d", s.RungRuns, s.Pages)
	}

	// Stop mid-incident and start again: no second page inside the repeat,
	// no second heal inside its cooldown.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d2 := newDaemon()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { done <- d2.Run(ctx2) }()
	advance(1500 * time.Millisecond)
	if s := d2.Snapshot(); s.State != SOS || s.Incident == nil {
		t.Fatalf("restart forgot the incident: %+v", s)
	}
	if k := pager.kinds(); len(k) != 1 || heal.runs.Load() != 1 {
		t.Fatalf("after restart: pages %v heals %d", k, heal.runs.Load())
	}
	healthy.Store(true)
	advance(time.Second)
	if !d2.Snapshot().OK {
		t.Fatalf("not resolved: %+v", d2.Snapshot())
	}
	if k := pager.kinds(); len(k) != 2 || k[1] != "resolved" {
		t.Fatalf("messages %v", k)
	}
	cancel2()
	<-done
}

func TestDaemonBadPolicyKeepsRunning(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testDaemonBadPolicy)
}

func testDaemonBadPolicy(t *testing.T) {
	good := &Policy{Hash: "good", Thresholds: DefaultThresholds(), Probes: []*Probe{{Name: "p", Digest: "p", Check: func(context.Context, *ProbeEnv) Outcome {
		return Outcome{Passed: true}
	}}}}
	var bad atomic.Bool
	bad.Store(true)
	load := func() *LoadResult {
		if bad.Load() {
			return &LoadResult{Hash: "bad", Errors: []*PosError{{File: "talon.star", Line: 3, Col: 1, Message: "got newline, want ')'"}}}
		}
		return &LoadResult{Policy: good, Hash: good.Hash}
	}
	d := New(Options{Load: load, Interval: 100 * time.Millisecond, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	advance(time.Second)
	if s := d.Snapshot(); s.OK || *s.PolicyError != "talon.star:3:1: got newline, want ')'" {
		t.Fatalf("snapshot %+v", s)
	}
	bad.Store(false)
	if h, err := d.Reload(ctx); err != nil || h != "good" {
		t.Fatalf("reload: %q %v", h, err)
	}
	advance(time.Second)
	if !d.Snapshot().OK {
		t.Fatalf("not healthy after a good reload: %+v", d.Snapshot())
	}
	bad.Store(true)
	if _, err := d.Reload(ctx); err == nil {
		t.Fatal("bad reload reported success")
	}
	s := d.Snapshot()
	if s.PolicyHash != "good" || s.PolicyError == nil || s.ProbeCount != 1 {
		t.Fatalf("bad reload did not keep the last good policy: %+v", s)
	}
}

func TestReloadDuringIncidentNeverRepages(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testReloadNeverRepages)
}

func testReloadNeverRepages(t *testing.T) {
	check := func(context.Context, *ProbeEnv) Outcome { return Outcome{Output: "down"} }
	pager := &recPager{}
	mkPolicy := func(hash string, extra ...*Probe) *Policy {
		return &Policy{Hash: hash, Probes: append([]*Probe{{Name: "api", Critical: true, After: 1, Digest: "api", Check: check}}, extra...),
			Thresholds: Thresholds{FailedAfter: 1, CriticalAfter: time.Hour, RecoverAfter: 1},
			Ladder:     []*Rung{{Name: "sos", Do: []Action{pager}, State: "sos", Repeat: time.Hour}}}
	}
	var cur atomic.Pointer[Policy]
	cur.Store(mkPolicy("v1"))
	d := New(Options{Load: func() *LoadResult { p := cur.Load(); return &LoadResult{Policy: p, Hash: p.Hash} },
		Interval: 100 * time.Millisecond, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	advance(time.Second)
	if k := pager.kinds(); len(k) != 1 {
		t.Fatalf("pages %v", k)
	}
	inc := d.Snapshot().Incident.ID
	for i, p := range []*Policy{
		mkPolicy("v2", &Probe{Name: "extra", Digest: "extra", Check: func(context.Context, *ProbeEnv) Outcome { return Outcome{Passed: true} }}),
		mkPolicy("v3"),
	} {
		cur.Store(p)
		if h, err := d.Reload(ctx); err != nil || h != p.Hash {
			t.Fatalf("reload %d: %q %v", i, h, err)
		}
		advance(400 * time.Millisecond) // several cycles under the new policy
	}
	s := d.Snapshot()
	if s.Incident == nil || s.Incident.ID != inc || s.State != SOS || s.PolicyHash != "v3" || s.Reloads != 2 {
		t.Fatalf("after reloads: %+v", s)
	}
	if k := pager.kinds(); len(k) != 1 {
		t.Fatalf("a reload re-sent the page: %v", k)
	}
}

func TestDaemonRunsAFallbackLoudly(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testDaemonFallback)
}

// testDaemonFallback: a daemon whose loader fell back at start runs the
// fallback's probes but is never healthy-looking; a failed reload keeps the
// fallback; a good reload ends it, even with the same policy.
func testDaemonFallback(t *testing.T) {
	lastGood := &Policy{Hash: "lkg", Thresholds: DefaultThresholds(), Probes: []*Probe{{Name: "p", Digest: "p", Check: func(context.Context, *ProbeEnv) Outcome {
		return Outcome{Passed: true}
	}}}}
	why := "talon.star:3:1: got newline, want ')'"
	since := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var step atomic.Int32
	load := func() *LoadResult {
		switch step.Load() {
		case 0:
			return &LoadResult{Policy: lastGood, Hash: lastGood.Hash, Fallback: &Fallback{Source: FallbackLastGood, Since: since, Hash: "lkg", Error: why}}
		case 1:
			return &LoadResult{Hash: "bad2", Errors: []*PosError{{File: "talon.star", Line: 4, Col: 2, Message: "undefined: x"}}}
		}
		return &LoadResult{Policy: lastGood, Hash: lastGood.Hash}
	}
	d := New(Options{Load: load, Interval: 100 * time.Millisecond, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	advance(time.Second)
	s := d.Snapshot()
	if s.OK || s.State != Degraded || s.Fallback == nil || s.Fallback.Source != FallbackLastGood || s.PolicyError == nil || *s.PolicyError != why ||
		s.ProbeCount != 1 || len(s.Probes) != 1 || !s.Probes[0].Passed {
		t.Fatalf("running the last good policy: %+v", s)
	}
	if got := s.Fallback.Summary(); got != "running the last good policy, loaded cleanly on 2026-11-30 08:00 UTC (lkg): the policy failed to load; fix "+why {
		t.Fatalf("summary %q", got)
	}
	step.Store(1)
	if _, err := d.Reload(ctx); err == nil {
		t.Fatal("a bad reload reported success")
	}
	if s := d.Snapshot(); s.Fallback == nil || s.OK || *s.PolicyError != "talon.star:4:2: undefined: x" {
		t.Fatalf("after a bad reload: %+v", s)
	}
	step.Store(2)
	if _, err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	advance(time.Second)
	if s := d.Snapshot(); !s.OK || s.Fallback != nil || s.PolicyError != nil || s.State != Healthy {
		t.Fatalf("after the fix: %+v", s)
	}
}

// TestNoProbesIsNotHealthy: a daemon left with no probe by a failed start
// (no fallback at all) is not healthy by any field.
func TestNoProbesIsNotHealthy(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Errors: []*PosError{{Message: "broken"}}} },
			Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(io.Discard)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		advance(time.Second)
		if s := d.Snapshot(); s.OK || s.State == Healthy || s.ProbeCount != 0 {
			t.Fatalf("healthy with zero probes: %+v", s)
		}
	})
}

// A pause of everything is not healthy: a watchdog that watches nothing
// must not look like one that finds nothing wrong. A pause of one probe
// is. Pauses longer than MaxPause are refused; a pause and an ack record
// who asked; the pause survives a restart and expires after it.
func TestPauseOfEverythingIsNotHealthy(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		probe := &Probe{Name: "api", Digest: "api1", Check: func(context.Context, *ProbeEnv) Outcome { return Outcome{Passed: true, Output: "ok"} }}
		pol := &Policy{Hash: "pol1", Probes: []*Probe{probe}, Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1}}
		statePath := filepath.Join(t.TempDir(), "state.json")
		newDaemon := func() *Daemon {
			return New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
				Interval: 10 * time.Minute, StateFile: statePath, Probes: effect.NewLive(), Actions: effect.NewLive(),
				Journal: &memJournal{}, Logger: log.New(io.Discard)})
		}
		ctx := context.Background()
		var stop func()
		start := func() *Daemon {
			d := newDaemon()
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error)
			go func() { done <- d.Run(rctx) }()
			stop = func() { cancel(); <-done }
			return d
		}
		d := start()
		defer func() { stop() }()
		advance(time.Second)
		if !d.Snapshot().OK {
			t.Fatalf("not healthy: %+v", d.Snapshot())
		}
		if _, err := d.Pause(ctx, Control{}, MaxPause+time.Minute); err == nil || !strings.Contains(err.Error(), "at most 24h") {
			t.Fatalf("a pause past the cap: %v", err)
		}
		if _, err := d.Pause(ctx, Control{Scope: ScopeProbe, Name: "api", By: "joel"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
		if !d.Snapshot().OK {
			t.Fatalf("a pause of one probe made it unhealthy: %+v", d.Snapshot())
		}
		p, err := d.Pause(ctx, Control{Reason: "upgrade", By: "joel (uid 501)"}, 0)
		if err != nil || p.By != "joel (uid 501)" || p.Until.Sub(p.Since) != DefaultPause {
			t.Fatalf("pause: %+v %v", p, err)
		}
		advance(time.Second)
		if s := d.Snapshot(); s.OK || len(s.Paused) != 2 || s.Paused[1].By != "joel (uid 501)" {
			t.Fatalf("paused everything and still ok: %+v", s)
		}
		stop()
		d = start()
		advance(time.Second)
		if s := d.Snapshot(); s.OK || len(s.Paused) != 2 || !s.Paused[1].Until.Equal(p.Until) {
			t.Fatalf("after a restart: %+v", s)
		}
		advance(DefaultPause)
		if s := d.Snapshot(); !s.OK || len(s.Paused) != 0 {
			t.Fatalf("after the pause expired: %+v", s)
		}
	})
}
