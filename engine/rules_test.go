package engine

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The rules of issues 10 and 11, one test each, against the core.

func at(d time.Duration) time.Time { return t0.Add(d) }

// resAt is a result of a run that started at d and took 10 ms.
func resAt(name string, passed bool, d time.Duration) Result {
	r := res(name, passed)
	r.At, r.DurationMS = at(d), 10
	return r
}

func (r *coreRun) resultsAt(d time.Duration, rs ...Result) Step {
	return r.step(Fact{Kind: FactResults, At: at(d), Results: rs})
}

func (r *coreRun) wake(d time.Duration) Step { return r.step(Fact{Kind: FactWake, At: at(d)}) }

func (r *coreRun) end(d time.Duration, rung string, ok bool, deliveries []Delivery, verify ...Result) Step {
	return r.step(Fact{Kind: FactRungEnd, At: at(d), End: &RungEnd{Incident: r.incident(), Rung: rung, OK: ok,
		Deliveries: deliveries, Verify: verify}})
}

func (r *coreRun) incident() string {
	if inc := r.c.State().Incident; inc != nil {
		return inc.ID
	}
	return ""
}

func events(st Step, typ string) []Event {
	var out []Event
	for _, e := range st.Events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func pager(ch string) fakePager { return fakePager{fakeAction{ch}} }

// A pause of everything holds every rung and every page; probes are still
// observed; when it expires (a wake the core asks for) the ladder goes on
// from where it was, and the page that came due meanwhile goes out.
func TestPauseHoldsTheLadderUntilItExpires(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, heal(),
		&Rung{Name: "sos", Do: []Action{pager("tg")}, After: 5 * time.Minute, State: "sos"})
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	r.end(10*time.Second, "heal", false, nil, resAt("api", false, 10*time.Second))
	st := r.step(Fact{Kind: FactPause, At: at(time.Minute), Control: &Control{Until: at(11 * time.Minute), Reason: "maintenance"}})
	if len(events(st, "pause")) != 1 || !st.Persist || !st.Wake.Equal(at(5*time.Minute)) {
		t.Fatalf("pause step %+v", st)
	}
	for m := 2; m <= 10; m++ {
		if st := r.resultsAt(time.Duration(m)*time.Minute, resAt("api", false, time.Duration(m)*time.Minute)); len(st.Runs) > 0 {
			t.Fatalf("+%dm: %s ran while paused", m, st.Runs[0].Rung.Name)
		}
	}
	if got := r.c.State().Probes["api"].Fails; got != 11 {
		t.Fatalf("paused probes are still observed: %d fails", got)
	}
	st = r.wake(11 * time.Minute)
	if len(events(st, "pause_expired")) != 1 || st.run() == nil || st.run().Rung.Name != "sos" {
		t.Fatalf("at the expiry: %+v", st)
	}
	if !strings.Contains(st.run().Message.Text, "failing: api") {
		t.Fatalf("page text %q", st.run().Message.Text)
	}
}

// A pause of one probe: its outage alone drives nothing (the incident is
// there, the ladder holds), and the page of what still escalates says
// what is paused.
func TestPauseOfAProbe(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}, {Name: "db", Critical: true, After: 1}},
		&Rung{Name: "sos", Do: []Action{pager("tg")}, State: "sos"})
	r := newCoreRun(t, pol)
	r.step(Fact{Kind: FactPause, At: at(0), Control: &Control{Scope: ScopeProbe, Name: "api", Reason: "upgrading"}})
	if st := r.resultsAt(time.Second, resAt("api", false, time.Second), resAt("db", true, time.Second)); len(st.Runs) > 0 || r.incident() == "" {
		t.Fatalf("a paused probe paged (or opened no incident): %+v", st.Runs)
	}
	st := r.resultsAt(time.Minute, resAt("api", false, time.Minute), resAt("db", false, time.Minute))
	if st.run() == nil || !strings.Contains(st.run().Message.Text, "paused: probe api until "+at(DefaultPause).UTC().Format(time.RFC3339)+" (upgrading)") {
		t.Fatalf("db's page: %+v", st.run())
	}
}

// A paused rung is passed over; the next runs.
func TestPauseOfARungPassesOverIt(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, heal(),
		&Rung{Name: "agent", Do: []Action{fakeAction{"agent"}}, Verify: true})
	r := newCoreRun(t, pol)
	r.step(Fact{Kind: FactPause, At: at(0), Control: &Control{Scope: ScopeRung, Name: "heal"}})
	st := r.resultsAt(time.Second, resAt("api", false, time.Second))
	if st.run() == nil || st.run().Rung.Name != "agent" || len(events(st, "rung_skip")) != 1 {
		t.Fatalf("runs %v events %+v", r.runs, st.Events)
	}
}

// An acknowledged incident sends no repeat and runs no rung until it gets
// worse: a probe that was up goes down, and the ladder resumes.
func TestAckStopsRepeatsUntilItGetsWorse(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}, {Name: "db", Critical: true, After: 1}},
		&Rung{Name: "sos", Do: []Action{pager("tg")}, Repeat: 10 * time.Minute, State: "sos"})
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0), resAt("db", true, 0))
	r.end(time.Second, "sos", true, []Delivery{{Channel: "tg", OK: true}})
	st := r.step(Fact{Kind: FactAck, At: at(time.Minute), Control: &Control{Incident: r.incident(), Reason: "on it"}})
	if len(events(st, "ack")) != 1 || r.c.State().Incident.Ack == nil {
		t.Fatalf("ack: %+v", st.Events)
	}
	for m := 2; m <= 14; m++ {
		if st := r.resultsAt(time.Duration(m)*time.Minute, resAt("api", false, time.Duration(m)*time.Minute), resAt("db", true, time.Duration(m)*time.Minute)); len(st.Runs) > 0 {
			t.Fatalf("+%dm: the acknowledged incident paged again", m)
		}
	}
	st = r.resultsAt(15*time.Minute, resAt("api", false, 15*time.Minute), resAt("db", false, 15*time.Minute))
	if len(events(st, "ack_cleared")) != 1 || st.run() == nil || st.run().Rung.Name != "sos" {
		t.Fatalf("db went down: %+v", st)
	}
	// An ack of another incident changes nothing.
	if st := r.step(Fact{Kind: FactAck, At: at(16 * time.Minute), Control: &Control{Incident: "nope"}}); len(st.Events) != 0 {
		t.Fatalf("ack of another incident: %+v", st.Events)
	}
}

// splitBrain reads like builtins' incident: passed and failing see fresh
// results only, and each read is noted.
func splitBrain(_ context.Context, v *IncidentView) (bool, error) {
	is := func(name string, passed bool) bool {
		v.Read(name)
		for _, r := range append(append([]Result(nil), v.Failing...), v.Passing...) {
			if r.Name == name {
				return r.Passed == passed && v.IsFresh(r)
			}
		}
		return false
	}
	return is("redis", false) && is("vm:redis", true), nil
}

// Case 2: a plain Redis outage. The witness's last pass was taken before
// the outage: the bridge heal waits for its fresh result, which fails, and
// the heal runs instead.
func TestWhenSeesOnlyFreshResults(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "redis", Critical: true, After: 1}, {Name: "vm:redis", Witness: true, Timeout: 5 * time.Second}},
		&Rung{Name: "bridge-heal", When: splitBrain, Do: []Action{fakeAction{"bridge"}}},
		heal())
	pol.Interval = time.Minute
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("redis", true, 0), resAt("vm:redis", true, 0))
	// Redis goes down; the witness of the same cycle had passed just before.
	st := r.resultsAt(time.Minute+20*time.Millisecond, resAt("redis", false, time.Minute+20*time.Millisecond))
	if len(st.Runs) > 0 || !st.Wake.Equal(at(time.Minute+20*time.Millisecond+time.Minute+5*time.Second)) {
		t.Fatalf("acted on a stale witness: runs %v wake %v", r.runs, st.Wake)
	}
	// The witness of that same cycle: it started at +1m, before redis's
	// failing run, and passed while (or before) redis failed.
	w := resAt("vm:redis", true, time.Minute)
	w.DurationMS = 30
	st = r.resultsAt(time.Minute+30*time.Millisecond, w)
	if len(st.Runs) > 0 {
		t.Fatalf("the witness's run started before the outage was seen: %v", r.runs)
	}
	st = r.resultsAt(2*time.Minute+30*time.Millisecond, resAt("vm:redis", false, 2*time.Minute+30*time.Millisecond))
	if st.run() == nil || st.run().Rung.Name != "heal" || len(events(st, "rung_skip")) != 1 {
		t.Fatalf("on the fresh witness: runs %v events %+v", r.runs, st.Events)
	}
}

// When the witness never reports, the rung decides once the wait is over:
// a stale pass is no pass.
func TestFreshWaitIsBounded(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "redis", Critical: true, After: 1}, {Name: "vm:redis", Witness: true, Timeout: 5 * time.Second}},
		&Rung{Name: "bridge-heal", When: splitBrain, Do: []Action{fakeAction{"bridge"}}}, heal())
	pol.Interval = time.Minute
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("redis", true, 0), resAt("vm:redis", true, 0))
	st := r.resultsAt(time.Minute, resAt("redis", false, time.Minute))
	deadline := at(2*time.Minute + 5*time.Second)
	if len(st.Runs) > 0 || !st.Wake.Equal(deadline) {
		t.Fatalf("runs %v wake %v, want a wake at %v", r.runs, st.Wake, deadline)
	}
	st = r.step(Fact{Kind: FactWake, At: deadline})
	if st.run() == nil || st.run().Rung.Name != "heal" {
		t.Fatalf("after the wait: %v %+v", r.runs, st.Events)
	}
}

// Case 3: after a rung acted, its settle window holds the next rung and
// re-probes; a green re-probe resolves the incident at once.
func TestSettleWindowHoldsTheNextRung(t *testing.T) {
	t.Parallel()
	bridge := &Rung{Name: "bridge-heal", Do: []Action{fakeAction{"bridge"}}, Verify: true, Settle: 30 * time.Second}
	pol := testPolicy([]*Probe{{Name: "redis", Critical: true, After: 1, RecoverAfter: 3}}, bridge, heal())
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("redis", false, 0))
	st := r.end(10*time.Second, "bridge-heal", true, nil, resAt("redis", false, 10*time.Second))
	if len(events(st, "settle_start")) != 1 || len(st.Runs) > 0 || !st.Wake.Equal(at(15*time.Second)) {
		t.Fatalf("end of the bridge heal: %+v", st)
	}
	// A result the rung disturbed (taken while it ran) moves nothing.
	if st := r.resultsAt(10*time.Second+5*time.Millisecond, resAt("redis", false, 10*time.Second+5*time.Millisecond)); len(st.Runs) > 0 {
		t.Fatal("the heal ran 5 ms after the bridge heal")
	}
	st = r.wake(15 * time.Second)
	if len(st.Reprobe) != 1 || st.Reprobe[0].Name != "redis" {
		t.Fatalf("no re-probe in the window: %+v", st)
	}
	r.launch(15*time.Second, "redis")
	st = r.resultsAt(15*time.Second+10*time.Millisecond, resAt("redis", true, 15*time.Second+10*time.Millisecond))
	if r.incident() != "" || len(events(st, "incident_resolved")) != 1 || !reflect.DeepEqual(r.runs, []string{"bridge-heal@0s"}) {
		t.Fatalf("a green re-probe in the window: incident %q runs %v", r.incident(), r.runs)
	}
	// Without a green result the window ends and the ladder moves on.
	r2 := newCoreRun(t, pol)
	r2.resultsAt(0, resAt("redis", false, 0))
	r2.end(10*time.Second, "bridge-heal", true, nil, resAt("redis", false, 10*time.Second))
	if st := r2.wake(40 * time.Second); len(events(st, "settle_end")) != 1 || st.run() == nil || st.run().Rung.Name != "heal" {
		t.Fatalf("end of the window: %+v", st)
	}
}

// Liveness: a page with after= goes out on time while a heal is running.
func TestPageOnTimeWhileAHealRuns(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, heal(),
		&Rung{Name: "sos", Do: []Action{pager("tg")}, After: 5 * time.Minute, State: "sos"})
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	st := r.wake(5 * time.Minute)
	if st.run() == nil || st.run().Rung.Name != "sos" || !reflect.DeepEqual(r.c.RunningRungs(), []string{"heal", "sos"}) {
		t.Fatalf("at +5m with the heal running: runs %v running %v", r.runs, r.c.RunningRungs())
	}
}

// Case 4: an outage that comes back right after the last one resolved,
// while the heal cools down from it: the heal is passed over and the page
// goes out at its after.
func TestRelapseInsideACooldownPages(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, heal(),
		&Rung{Name: "sos", Do: []Action{pager("tg")}, After: 5 * time.Minute, State: "sos"})
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	r.end(10*time.Second, "heal", true, nil, resAt("api", true, 10*time.Second))
	if r.incident() != "" {
		t.Fatal("the heal did not resolve the first outage")
	}
	st := r.resultsAt(13*time.Second, resAt("api", false, 13*time.Second))
	if len(st.Runs) > 0 || len(events(st, "rung_skip")) != 1 {
		t.Fatalf("relapse: %+v", st)
	}
	for s := 73; s < 313; s += 60 {
		r.resultsAt(time.Duration(s)*time.Second, resAt("api", false, time.Duration(s)*time.Second))
	}
	st = r.wake(5*time.Minute + 13*time.Second)
	if st.run() == nil || st.run().Rung.Name != "sos" {
		t.Fatalf("no page at the relapse's after: runs %v", r.runs)
	}
}

// Case 5 at the core: a channel's acceptance is a fact; after a crash only
// the channels without an answer get the page again, and the page rung is
// not re-run.
func TestPageAcceptanceIsRecordedPerChannel(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "sos", Do: []Action{pager("tg"), pager("slow")}, State: "sos", Repeat: time.Hour})
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	id := r.incident()
	st := r.step(Fact{Kind: FactDelivery, At: at(time.Second), Answer: &Answer{Kind: "sos", Incident: id, Rung: "sos", Delivery: Delivery{Channel: "tg", OK: true}}})
	if !st.Persist || r.c.State().Phase != SOS || !reflect.DeepEqual(r.c.State().Incident.Paged, []string{"tg"}) {
		t.Fatalf("after tg accepted: persist %v phase %s paged %v", st.Persist, r.c.State().Phase, r.c.State().Incident.Paged)
	}
	// kill -9 while "slow" is still on its way; the saved state is this one.
	saved := cloneState(r.c.State())
	r.c = NewCore(CoreOptions{})
	st = r.step(Fact{Kind: FactStart, At: at(time.Minute), Policy: pol, State: saved})
	if len(st.Notify) != 1 || st.Notify[0].Kind != "sos" || !reflect.DeepEqual(st.Notify[0].Channels, []string{"slow"}) {
		t.Fatalf("after the restart: notices %+v", st.Notify)
	}
	st = r.resultsAt(time.Minute+time.Second, resAt("api", false, time.Minute+time.Second))
	if len(st.Runs) > 0 {
		t.Fatalf("the page rung ran again after the restart: %v", r.runs)
	}
	r.step(Fact{Kind: FactDelivery, At: at(61 * time.Second), Answer: &Answer{Kind: "sos", Incident: id, Rung: "sos", Delivery: Delivery{Channel: "slow", OK: true}}})
	if got := r.c.State().Incident.Paged; !reflect.DeepEqual(got, []string{"slow", "tg"}) { // sorted: one order whatever order the answers came in
		t.Fatalf("paged %v", got)
	}
	// Both hear that it is over.
	st = r.resultsAt(2*time.Minute, resAt("api", true, 2*time.Minute))
	if len(st.Notify) != 1 || !reflect.DeepEqual(st.Notify[0].Channels, []string{"slow", "tg"}) {
		t.Fatalf("resolved: %+v", st.Notify)
	}
}

// "resolved" is retried with backoff until a channel accepts it, at most
// OutboxMaxAttempts times, and survives a restart.
func TestResolvedIsRetried(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, &Rung{Name: "sos", Do: []Action{pager("tg")}})
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	r.end(time.Second, "sos", true, []Delivery{{Channel: "tg", OK: true}})
	id := r.incident()
	st := r.resultsAt(time.Minute, resAt("api", true, time.Minute))
	if len(st.Notify) != 1 || st.Notify[0].Attempt != 1 {
		t.Fatalf("resolved: %+v", st.Notify)
	}
	fail := func(d time.Duration) Step {
		return r.step(Fact{Kind: FactDelivery, At: at(d), Answer: &Answer{Kind: "resolved", Incident: id, Delivery: Delivery{Channel: "tg", Error: "502"}}})
	}
	st = fail(time.Minute + time.Second)
	if !st.Wake.Equal(at(time.Minute + 31*time.Second)) {
		t.Fatalf("retry wake %v", st.Wake)
	}
	// A restart in between: the retry still comes.
	saved := cloneState(r.c.State())
	r.c = NewCore(CoreOptions{})
	r.step(Fact{Kind: FactStart, At: at(time.Minute + 10*time.Second), Policy: pol, State: saved})
	var tries []string
	now := time.Minute + 10*time.Second
	for i := 0; i < 20; i++ {
		st := r.step(Fact{Kind: FactWake, At: at(now)})
		for _, n := range st.Notify {
			tries = append(tries, (now - time.Minute).String())
			st = fail(now)
			if len(events(st, "unreachable")) == 1 {
				tries = append(tries, "given up")
			}
			_ = n
		}
		if st.Wake.IsZero() {
			break
		}
		now = st.Wake.Sub(t0)
	}
	want := []string{"31s", "1m31s", "3m31s", "7m31s", "15m31s", "31m31s", "1h1m31s", "given up"}
	if !reflect.DeepEqual(tries, want) || len(r.c.State().Outbox) != 0 {
		t.Fatalf("retries %v (want %v), outbox %+v", tries, want, r.c.State().Outbox)
	}
}

// A policy edit mid-incident renames the page rung and its channel: the
// rung is not paged again, and "resolved" still reaches the old channel.
func TestRenamedPageRungAndChannel(t *testing.T) {
	t.Parallel()
	old := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "sos", Do: []Action{pager("tg:1"), pager("log")}, Repeat: time.Hour})
	r := newCoreRun(t, old)
	r.resultsAt(0, resAt("api", false, 0))
	r.end(time.Second, "sos", true, []Delivery{{Channel: "tg:1", OK: true}, {Channel: "log", OK: true}})
	edited := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "page", Do: []Action{pager("tg:2"), pager("log")}, Repeat: time.Hour})
	edited.Hash = "h2"
	st := r.step(Fact{Kind: FactReload, At: at(time.Minute), Policy: edited})
	if len(events(st, "rung_renamed")) != 1 {
		t.Fatalf("reload: %+v", st.Events)
	}
	if st := r.resultsAt(2*time.Minute, resAt("api", false, 2*time.Minute)); len(st.Runs) > 0 {
		t.Fatalf("the renamed page rung paged again: %v", r.runs)
	}
	st = r.resultsAt(3*time.Minute, resAt("api", true, 3*time.Minute))
	if len(st.Notify) != 1 || !reflect.DeepEqual(st.Notify[0].Channels, []string{"log", "tg:1"}) || len(st.Notify[0].Pagers) != 2 {
		t.Fatalf("resolved: %+v", st.Notify)
	}
}

// Flap detection: three downs within the window; the heal runs once while
// the probe flaps, one page goes out (its after counted from the first of
// the downs), and the verdict ends with hysteresis.
func TestFlapping(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "heal", Do: []Action{fakeAction{"heal"}}},
		&Rung{Name: "sos", Do: []Action{pager("tg")}, After: 5 * time.Minute, Repeat: 10 * time.Minute})
	pol.Thresholds.FlapWindow, pol.Thresholds.FlapStart, pol.Thresholds.FlapStop = time.Hour, 3, 1
	r := newCoreRun(t, pol)
	var flaps []string
	for m := 0; m < 130; m++ {
		down := m < 30 && m%6 < 2 // down for 2 minutes of every 6, for half an hour
		st := r.resultsAt(time.Duration(m)*time.Minute, resAt("api", !down, time.Duration(m)*time.Minute))
		for _, e := range st.Events {
			if e.Type == "flap_start" || e.Type == "flap_stop" {
				flaps = append(flaps, fmt.Sprintf("%s@%dm", e.Type, m))
			}
		}
		for _, run := range st.Runs {
			end := &RungEnd{Incident: run.Incident, Rung: run.Rung.Name, OK: true}
			for _, p := range run.Pagers {
				end.Deliveries = append(end.Deliveries, Delivery{Channel: p.Channel(), OK: true})
				if !strings.Contains(run.Message.Text, "flapping (down and up repeatedly): api") {
					t.Errorf("the page does not say flapping: %q", run.Message.Text)
				}
			}
			r.step(Fact{Kind: FactRungEnd, At: at(time.Duration(m) * time.Minute), End: end})
		}
	}
	// Downs at 0, 6, 12, 18, 24 min: flapping from the third; once at most
	// one down is left within the hour (at 78 min, only the 24 min one is).
	if want := []string{"flap_start@12m", "flap_stop@78m"}; !reflect.DeepEqual(flaps, want) {
		t.Fatalf("flaps %v, want %v", flaps, want)
	}
	// The heal ran in the first two incidents (no cooldown) and not again;
	// the page went out once, when the flapping was found.
	if want := []string{"heal@0s", "heal@6m0s", "sos@12m0s"}; !reflect.DeepEqual(r.runs, want) {
		t.Fatalf("runs %v, want %v", r.runs, want)
	}
}

// A parent's pass from before the failures began does not free its child
// to escalate: the ladder waits for the parent's fresh result.
func TestStaleParentPassHoldsTheChild(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "colima", After: 1, Every: 5 * time.Minute, Timeout: 10 * time.Second},
		{Name: "docker", Critical: true, After: 1, DependsOn: []string{"colima"}}}, heal())
	pol.Interval = time.Minute
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("colima", true, 0), resAt("docker", true, 0))
	st := r.resultsAt(time.Minute, resAt("docker", false, time.Minute))
	if len(st.Runs) > 0 || !st.Wake.Equal(at(time.Minute+5*time.Minute+10*time.Second)) {
		t.Fatalf("healed docker on colima's pass from before: runs %v wake %v", r.runs, st.Wake)
	}
	// colima's fresh result fails: docker is only its symptom.
	if st := r.resultsAt(2*time.Minute, resAt("colima", false, 2*time.Minute)); st.run() == nil || st.run().Verify[0].Name != "colima" {
		t.Fatalf("after colima's fresh failure: %v", r.runs)
	}
}

// Every pause ends: one without a length lasts DefaultPause, none lasts
// past MaxPause (a longer one is cut there), and one kept from before the
// cap (no Until in the state file) ends MaxPause after it began. Each says
// who asked for it.
func TestEveryPauseExpires(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, &Rung{Name: "sos", Do: []Action{pager("tg")}, State: "sos"})
	r := newCoreRun(t, pol)
	by := "joel (uid 501)"
	r.step(Fact{Kind: FactPause, At: at(0), Control: &Control{Reason: "upgrade", By: by}})
	r.step(Fact{Kind: FactPause, At: at(0), Control: &Control{Scope: ScopeProbe, Name: "api", Until: at(30 * 24 * time.Hour)}})
	ps := r.c.State().Pauses
	if len(ps) != 2 || !ps[0].Until.Equal(at(DefaultPause)) || !ps[1].Until.Equal(at(MaxPause)) || ps[0].By != by {
		t.Fatalf("pauses %+v", ps)
	}
	if got, want := ps[0].Describe(), "everything until "+at(DefaultPause).UTC().Format(time.RFC3339)+" (upgrade; by joel (uid 501))"; got != want {
		t.Fatalf("Describe = %q, want %q", got, want)
	}
	if st := r.wake(DefaultPause); len(events(st, "pause_expired")) != 1 || !st.Wake.Equal(at(MaxPause)) {
		t.Fatalf("at the default's end: %+v", st)
	}
	if st := r.wake(MaxPause); len(events(st, "pause_expired")) != 1 || len(r.c.State().Pauses) != 0 {
		t.Fatalf("at the cap: %+v", st)
	}
	// A pause "until resumed" kept in a state file from before the cap.
	st := r.c.State()
	st.Pauses = []Pause{{ID: "p9", Since: at(time.Hour)}}
	r2 := newCoreRun(t, pol)
	r2.step(Fact{Kind: FactStart, At: at(2 * time.Hour), State: st, Policy: pol})
	if got := r2.c.State().Pauses; len(got) != 1 || !got[0].Until.Equal(at(time.Hour+MaxPause)) {
		t.Fatalf("a legacy pause: %+v", got)
	}
	if st := r2.wake(time.Hour + MaxPause); len(events(st, "pause_expired")) != 1 {
		t.Fatalf("a legacy pause did not expire: %+v", st)
	}
}
