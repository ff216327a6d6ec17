package engine

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// coreRun feeds facts to a core and keeps what it decided.
type coreRun struct {
	t    *testing.T
	c    *Core
	runs []string // "rung@+offset"
	last Step
}

func newCoreRun(t *testing.T, pol *Policy) *coreRun {
	r := &coreRun{t: t, c: NewCore(CoreOptions{})}
	r.step(Fact{Kind: FactStart, At: t0, Policy: pol, State: NewState(t0)})
	return r
}

func (r *coreRun) step(f Fact) Step {
	st := r.c.Step(context.Background(), f)
	if st.run() != nil {
		r.runs = append(r.runs, st.run().Rung.Name+"@"+f.At.Sub(t0).String())
	}
	r.last = st
	return st
}

func (r *coreRun) results(at time.Duration, rs ...Result) Step {
	for i := range rs {
		rs[i].At = t0.Add(at)
	}
	return r.step(Fact{Kind: FactResults, At: t0.Add(at), Results: rs})
}

func (r *coreRun) launch(at time.Duration, names ...string) {
	r.step(Fact{Kind: FactLaunch, At: t0.Add(at), Probes: names})
}

func TestCoreHoldsWhileARungRuns(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, heal(),
		&Rung{Name: "agent", Do: []Action{fakeAction{"agent"}}, Verify: true})
	r := newCoreRun(t, pol)
	st := r.results(0, res("api", false))
	if st.run() == nil || st.run().Rung.Name != "heal" || len(st.run().Verify) != 1 || st.run().Timeout != DefaultRungTimeout {
		t.Fatalf("first step %+v", st.run())
	}
	// The heal takes three minutes; cycles recorded meanwhile are observed
	// but start nothing.
	for m := 1; m <= 3; m++ {
		if st := r.results(time.Duration(m)*time.Minute, res("api", false)); st.run() != nil {
			t.Fatalf("+%dm: started %s while heal runs", m, st.run().Rung.Name)
		}
	}
	// Its verification is green: the incident resolves, no agent.
	up := res("api", true)
	up.At = t0.Add(3*time.Minute + 10*time.Second)
	st = r.step(Fact{Kind: FactRungEnd, At: up.At, End: &RungEnd{Incident: r.c.State().Incident.ID, Rung: "heal", OK: true, Verify: []Result{up}}})
	if r.c.State().Incident != nil || st.run() != nil || !reflect.DeepEqual(r.runs, []string{"heal@0s"}) {
		t.Fatalf("incident %+v runs %v", r.c.State().Incident, r.runs)
	}
}

func TestCoreHoldsWhileAParentIsInFlight(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "colima", After: 2}, {Name: "docker", Critical: true, After: 1, DependsOn: []string{"colima"}}}, heal())
	r := newCoreRun(t, pol)
	r.launch(0, "colima", "docker")
	// The child fails at once; the parent is slow.
	if st := r.results(time.Second, res("docker", false)); st.run() != nil {
		t.Fatalf("heal started while the parent was in flight")
	}
	// The parent fails too: the child is suppressed, nothing runs.
	if st := r.results(8*time.Second, res("colima", false)); st.run() != nil {
		t.Fatalf("heal started for a suppressed child")
	}
	// Without the launch fact (a version 1 journal), the child's result alone would have run the heal.
	r2 := newCoreRun(t, pol)
	if st := r2.results(time.Second, res("docker", false)); st.run() == nil {
		t.Fatal("control: no heal without the parent in flight")
	}
}

func TestCoreActsOnlyOnResultsSinceTheStart(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}, {Name: "db", Critical: true, After: 1}}, heal())
	r := newCoreRun(t, pol)
	r.launch(0, "api", "db")
	r.results(0, res("api", false), res("db", false))
	id := r.c.State().Incident.ID
	r.step(Fact{Kind: FactRungEnd, At: t0.Add(time.Second), End: &RungEnd{Incident: id, Rung: "heal", OK: true, Verify: []Result{res("api", false), res("db", false)}}})
	// Restart: the state is kept, the process is new.
	restart := 20 * time.Minute
	r.step(Fact{Kind: FactStart, At: t0.Add(restart), Policy: pol})
	if st := r.results(restart+time.Second, res("api", false)); st.run() != nil {
		t.Fatalf("acted on a partial batch after a restart")
	}
	if st := r.results(restart+2*time.Second, res("db", false)); st.run() == nil || st.run().Rung.Name != "heal" {
		t.Fatalf("no heal once every probe had reported since the start: %+v", st.run())
	}
}

func TestCoreWakesWhenAGateOpens(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, sos(15*time.Minute, time.Hour))
	pol.Thresholds.CriticalAfter = 10 * time.Minute
	r := newCoreRun(t, pol)
	st := r.results(0, res("api", false))
	if want := t0.Add(10 * time.Minute); !st.Wake.Equal(want) {
		t.Fatalf("wake %v, want critical_after at %v", st.Wake, want)
	}
	st = r.step(Fact{Kind: FactWake, At: t0.Add(10 * time.Minute)})
	if phases(st.Events) != "failed>critical" || !st.Wake.Equal(t0.Add(15*time.Minute)) {
		t.Fatalf("at critical_after: %q, next wake %v", phases(st.Events), st.Wake)
	}
	st = r.step(Fact{Kind: FactWake, At: t0.Add(15 * time.Minute)})
	if st.run() == nil || st.run().Rung.Name != "sos" || len(st.run().Pagers) != 1 || len(st.run().Actions) != 0 || len(st.run().Verify) != 0 {
		t.Fatalf("the page did not go out at after=15m: %+v", st.run())
	}
	if st.run().Message.Kind != "sos" || !strings.Contains(st.run().Message.Text, "failing: api") {
		t.Fatalf("message %+v", st.run().Message)
	}
}

// Regression (issue 13): a when= that starts failing after the first walk
// is reported each time it is evaluated, and retried with backoff.
func TestCoreReportsEveryWhenFailure(t *testing.T) {
	t.Parallel()
	broken := false
	when := func(context.Context, *IncidentView) (bool, error) {
		if broken {
			return false, errors.New("boom")
		}
		return false, nil
	}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "bridge", When: when, Do: []Action{fakeAction{"bridge"}}, Cooldown: time.Minute})
	r := newCoreRun(t, pol)
	r.results(0, res("api", false)) // the walk: bridge skipped (false), ladder exhausted
	broken = true
	var fails []string
	for s := 10; s <= 300; s += 10 {
		st := r.results(time.Duration(s)*time.Second, res("api", false))
		for _, e := range st.Events {
			if e.Type == "rung_skip" && strings.HasPrefix(e.Reason, "when= failed: boom; retry at ") {
				fails = append(fails, e.At.Sub(t0).String())
			}
		}
	}
	if want := []string{"10s", "40s", "1m40s", "3m40s"}; !reflect.DeepEqual(fails, want) {
		t.Fatalf("when= failures reported at %v, want %v", fails, want)
	}
}

func TestFakeClockFiresTimersInOrder(t *testing.T) {
	t.Parallel()
	c := NewFakeClock(t0)
	a, b := c.NewTimer(time.Minute), c.NewTimer(30*time.Second)
	if !c.Next().Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("next %v", c.Next())
	}
	c.Advance(45 * time.Second)
	select {
	case at := <-b.C():
		if !at.Equal(t0.Add(30 * time.Second)) {
			t.Fatalf("b fired at %v", at)
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	a.Reset(5 * time.Second) // from now: t0+50s
	c.Advance(5 * time.Second)
	if at := <-a.C(); !at.Equal(t0.Add(50 * time.Second)) {
		t.Fatalf("a fired at %v", at)
	}
}

// run is the first rung a step starts, or nil.
func (s Step) run() *RungRun {
	if len(s.Runs) == 0 {
		return nil
	}
	return s.Runs[0]
}

// A rung that acts and pages, in an incident of non-critical probes: its
// actions run in their turn on the ladder, and only its page stays out
// (only critical probes page).
func TestNonCriticalIncidentRunsActionsOfARungThatAlsoPages(t *testing.T) {
	t.Parallel()
	healAndPage := &Rung{Name: "heal-and-page", Do: []Action{fakeAction{"exec heal.sh"}, fakePager{fakeAction{"telegram:42"}}}}
	agent := &Rung{Name: "agent", Do: []Action{fakeAction{"agent"}}}
	pol := testPolicy([]*Probe{{Name: "cache", After: 1}}, healAndPage, agent)
	r := newCoreRun(t, pol)
	st := r.results(0, res("cache", false))
	run := st.run()
	if run == nil || run.Rung.Name != "heal-and-page" {
		t.Fatalf("first rung of a non-critical incident: %+v, want heal-and-page's actions (runs %v)", run, r.runs)
	}
	if len(run.Actions) != 1 || len(run.Pagers) != 0 {
		t.Fatalf("heal-and-page runs %d actions and %d pagers; want its action alone: only critical probes page", len(run.Actions), len(run.Pagers))
	}
	for _, e := range st.Events {
		if e.Type == "rung_skip" && e.Rung == "heal-and-page" {
			t.Errorf("heal-and-page skipped (%s) although its actions run", e.Reason)
		}
	}
	r.step(Fact{Kind: FactRungEnd, At: t0.Add(time.Minute), End: &RungEnd{Incident: r.c.State().Incident.ID, Rung: "heal-and-page", OK: true}})
	r.results(2*time.Minute, res("cache", false))
	if want := []string{"heal-and-page@0s", "agent@1m0s"}; !reflect.DeepEqual(r.runs, want) {
		t.Errorf("runs %v, want %v: the agent comes after the heal, in ladder order", r.runs, want)
	}
}

// A rung that acts and pages and has no cooldown runs its actions once per
// incident: a retry of its page after a failed delivery goes out alone.
func TestPageRetryOfARungThatAlsoActsDoesNotActAgain(t *testing.T) {
	t.Parallel()
	mixed := &Rung{Name: "heal-page", Do: []Action{fakeAction{"heal"}, pager("tg")}}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, mixed)
	a := newCoreRun(t, pol)
	st := a.resultsAt(0, resAt("api", false, 0))
	if st.run() == nil || len(st.run().Actions) != 1 || len(st.run().Pagers) != 1 {
		t.Fatalf("first run: %+v", st.run())
	}
	a.end(time.Second, "heal-page", false, []Delivery{{Channel: "tg", OK: false}})
	st = a.resultsAt(time.Minute, resAt("api", false, time.Minute))
	if st.run() == nil || len(st.run().Pagers) != 1 {
		t.Fatalf("the page's retry: %+v", st.run())
	}
	if n := len(st.run().Actions); n != 0 {
		t.Errorf("the page's retry runs the heal again (%d actions): a rung without a cooldown acts once per incident", n)
	}
}

// A rung that acts and pages runs its actions alone once they are due again;
// a restart under that run closes it as an attempt of its actions, not as a
// second page to the channels that accepted the first (found by the ladder
// soak once it generated such rungs).
func TestRestartUnderActionsAloneIsNoPage(t *testing.T) {
	t.Parallel()
	mixed := &Rung{Name: "heal-page", Do: []Action{fakeAction{"heal"}, pager("tg")}, Cooldown: 10 * time.Minute, Repeat: time.Hour}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, mixed)
	a := newCoreRun(t, pol)
	a.resultsAt(0, resAt("api", false, 0))
	a.end(time.Second, "heal-page", false, []Delivery{{Channel: "tg", OK: true}})
	st := a.resultsAt(11*time.Minute, resAt("api", false, 11*time.Minute))
	if st.run() == nil || len(st.run().Actions) != 1 || len(st.run().Pagers) != 0 {
		t.Fatalf("11 min in, the heal is due again and the page is not: %+v", st.run())
	}
	st = a.step(Fact{Kind: FactStart, At: at(12 * time.Minute), Policy: pol})
	done := events(st, "rung_done")
	if len(done) != 1 || len(done[0].Channels) != 0 || done[0].Reason != "failed: interrupted by a restart" {
		t.Fatalf("the restart closes the heal's run as %+v; want one failed attempt that paged no one", done)
	}
	if got := a.c.State().Incident.Rungs["heal-page"].LastSent; !got.Equal(at(time.Second)) {
		t.Errorf("the page's repeat counts from %v, want its delivery at %v", got, at(time.Second))
	}
}

// The same at the very instant its page was delivered: the run of its
// actions that starts as the page's run ends is no page either (the state
// says which run is in flight; the times alone cannot tell them apart).
func TestRestartUnderActionsAloneStartedAsThePageLandedIsNoPage(t *testing.T) {
	t.Parallel()
	mixed := &Rung{Name: "heal-page", Do: []Action{fakeAction{"heal"}, pager("tg")}, Cooldown: 10 * time.Minute, Repeat: time.Hour}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, mixed)
	a := newCoreRun(t, pol)
	a.resultsAt(0, resAt("api", false, 0))
	a.end(time.Second, "heal-page", false, []Delivery{{Channel: "tg", OK: false}})
	st := a.resultsAt(time.Minute, resAt("api", false, time.Minute))
	if st.run() == nil || len(st.run().Actions) != 0 || len(st.run().Pagers) != 1 {
		t.Fatalf("the page's retry, the heal cooling down: %+v", st.run())
	}
	// The retry's page lands as the heal's cooldown ends: the heal runs
	// again at once, alone.
	st = a.end(10*time.Minute, "heal-page", true, []Delivery{{Channel: "tg", OK: true}})
	if st.run() == nil || len(st.run().Actions) != 1 || len(st.run().Pagers) != 0 {
		t.Fatalf("at the page's delivery, the heal due again: %+v", st.run())
	}
	st = a.step(Fact{Kind: FactStart, At: at(11 * time.Minute), Policy: pol})
	done := events(st, "rung_done")
	if len(done) != 1 || len(done[0].Channels) != 0 {
		t.Fatalf("the restart closes the heal's run as %+v; want one attempt that paged no one", done)
	}
}
