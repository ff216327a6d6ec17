package engine

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Defects found by the audit (issues 8 and 11), one test each, against the
// core; the daemon's are in audit_daemon_test.go.

// A reload to a policy whose ladder is empty, while a heal runs: the
// heal's end must not crash the core, the incident stays open, and the
// journal says that nothing can act for it.
func TestReloadToAnEmptyLadderWhileARungRuns(t *testing.T) {
	t.Parallel()
	probes := []*Probe{{Name: "api", Critical: true, After: 1}}
	pol := testPolicy(probes, heal(), sos(time.Minute, time.Hour))
	r := newCoreRun(t, pol)
	if st := r.resultsAt(0, resAt("api", false, 0)); st.run() == nil || st.run().Rung.Name != "heal" {
		t.Fatalf("no heal: %+v", st.Events)
	}
	empty := testPolicy(probes)
	empty.Hash = "h2"
	st := r.step(Fact{Kind: FactReload, At: at(time.Second), Policy: empty})
	if len(events(st, "ladder_empty")) != 1 {
		t.Fatalf("the reload did not say that nothing can act: %+v", st.Events)
	}
	st = r.end(2*time.Second, "heal", true, nil, resAt("api", false, 2*time.Second))
	if r.c.State().Incident == nil || st.run() != nil {
		t.Fatalf("incident %+v runs %+v", r.c.State().Incident, st.Runs)
	}
	// Cycles go on; nothing runs, nothing crashes; the incident is visible.
	for m := 1; m <= 3; m++ {
		if st := r.resultsAt(time.Duration(m)*time.Minute, resAt("api", false, time.Duration(m)*time.Minute)); st.run() != nil {
			t.Fatalf("started %s with an empty ladder", st.run().Rung.Name)
		}
	}
	if r.c.State().Incident == nil {
		t.Fatal("the incident vanished")
	}
}

// A restart under a policy with an empty ladder, with a rung recorded as
// running in the state file: the start must not crash (it would at every
// start: a crash loop).
func TestStartWithAnEmptyLadderAndARungRecordedAsRunning(t *testing.T) {
	t.Parallel()
	probes := []*Probe{{Name: "api", Critical: true, After: 1}}
	pol := testPolicy(probes, heal())
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	if r.c.State().Incident.Running != "heal" {
		t.Fatalf("heal not running: %+v", r.c.State().Incident)
	}
	st := r.c.State()
	r2 := NewCore(CoreOptions{})
	out := r2.Step(t.Context(), Fact{Kind: FactStart, At: at(time.Minute), Policy: testPolicy(probes), State: st})
	if inc := r2.State().Incident; inc == nil || inc.Running != "" {
		t.Fatalf("incident after the start: %+v", inc)
	}
	found := false
	for _, e := range out.Events {
		found = found || e.Type == "ladder_empty" && strings.Contains(e.Reason, "nothing")
	}
	if !found {
		t.Fatalf("the start did not say that nothing can act: %+v", out.Events)
	}
}

// A reload that removes the rung the incident is on (a heal, running)
// leaves the page that remains page-able on time.
func TestReloadRemovesTheRungTheIncidentIsOn(t *testing.T) {
	t.Parallel()
	probes := []*Probe{{Name: "api", Critical: true, After: 1}}
	r := newCoreRun(t, testPolicy(probes, heal(), sos(time.Minute, time.Hour)))
	r.resultsAt(0, resAt("api", false, 0))
	next := testPolicy(probes, sos(time.Minute, time.Hour))
	next.Hash = "h2"
	r.step(Fact{Kind: FactReload, At: at(time.Second), Policy: next})
	r.end(2*time.Second, "heal", true, nil, resAt("api", false, 2*time.Second))
	st := r.wake(time.Minute)
	if st.run() == nil || st.run().Rung.Name != "sos" {
		t.Fatalf("no page at the page's after: %+v", st.Events)
	}
}

// Result.At is when the probe started (the runner sets it so): Fresh must
// not take the run's duration off it again. A witness that started after
// the failures began, and took 5 s, is fresh evidence; one that started
// before is not, however short it was.
func TestFreshReadsAtAsTheStart(t *testing.T) {
	t.Parallel()
	since := at(time.Minute)
	slow := Result{Name: "w", Passed: true, At: since.Add(time.Second), DurationMS: 5000}
	early := Result{Name: "w", Passed: true, At: since.Add(-time.Millisecond), DurationMS: 1}
	if !Fresh(slow, since, time.Time{}) {
		t.Error("a pass that started 1s after the failures began is not fresh")
	}
	if Fresh(early, since, time.Time{}) {
		t.Error("a pass that started before the failures began is fresh")
	}
	// The same against quiet (the end of the last rung that acted).
	if !Fresh(slow, time.Time{}, since) || Fresh(early, time.Time{}, since) {
		t.Error("quiet: freshness not counted from the start")
	}
	// Through the core: the split-brain heal runs on the slow witness's
	// pass at once instead of waiting out the fresh-evidence window.
	pol := testPolicy([]*Probe{{Name: "redis", Critical: true, After: 1}, {Name: "vm:redis", Witness: true, Timeout: 10 * time.Second}},
		&Rung{Name: "bridge-heal", When: splitBrain, Do: []Action{fakeAction{"bridge"}}}, heal())
	pol.Interval = time.Minute
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("redis", true, 0), resAt("vm:redis", true, 0))
	r.resultsAt(time.Minute, resAt("redis", false, time.Minute))
	w := resAt("vm:redis", true, time.Minute+time.Second)
	w.DurationMS = 5000
	st := r.resultsAt(time.Minute+6*time.Second, w)
	if st.run() == nil || st.run().Rung.Name != "bridge-heal" {
		t.Fatalf("the bridge heal did not run on a fresh witness: runs %v events %+v", r.runs, st.Events)
	}
}

// A relapse 3 s after an incident that paged: the new incident's first
// page goes out at its after, not when the page rung's cooldown (from the
// earlier incident's page) ends.
func TestNewIncidentPagesDespiteACooldownFromTheLastOne(t *testing.T) {
	t.Parallel()
	page := &Rung{Name: "sos", Do: []Action{pager("tg")}, After: time.Minute, Cooldown: time.Hour, State: "sos"}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, page)
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	st := r.wake(time.Minute)
	if st.run() == nil {
		t.Fatalf("the first incident did not page: %+v", st.Events)
	}
	r.step(Fact{Kind: FactDelivery, At: at(time.Minute), Answer: &Answer{Kind: "sos", Incident: r.incident(), Rung: "sos", Delivery: Delivery{Channel: "tg", OK: true}}})
	r.end(time.Minute, "sos", true, []Delivery{{Channel: "tg", OK: true}})
	r.resultsAt(2*time.Minute, resAt("api", true, 2*time.Minute))
	if r.incident() != "" {
		t.Fatal("the first incident did not resolve")
	}
	relapse := 2*time.Minute + 3*time.Second
	st = r.resultsAt(relapse, resAt("api", false, relapse))
	if r.incident() == "" || !st.Wake.Equal(at(relapse+time.Minute)) {
		t.Fatalf("incident %q, wake %v; want a wake at the page's after", r.incident(), st.Wake)
	}
	st = r.wake(relapse + time.Minute)
	if st.run() == nil || st.run().Rung.Name != "sos" {
		t.Fatalf("the relapse's first page was held by the earlier incident's cooldown: %+v", st.Events)
	}
}

// The page names and quotes only results taken since the incident's
// failures began: a probe whose last failure is older (it runs hourly, say)
// is not reported as failing in this incident, only said to have no result
// since.
func TestPageIsBuiltFromFreshResults(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}, {Name: "backup", After: 5}},
		&Rung{Name: "sos", Do: []Action{pager("tg")}, State: "sos"})
	r := newCoreRun(t, pol)
	old := resAt("backup", false, 0)
	old.Output = "backup check: disk full (an hour ago)"
	r.resultsAt(0, old)
	st := r.resultsAt(10*time.Minute, resAt("api", false, 10*time.Minute))
	if st.run() == nil {
		t.Fatalf("no page: %+v", st.Events)
	}
	text := st.run().Message.Text
	if strings.Contains(text, "disk full") || !strings.Contains(text, "failing: api\n") || !strings.Contains(text, "no result since the incident began: backup") {
		t.Fatalf("page text:\n%s", text)
	}
	if got := st.run().View.FailingNames(); len(got) != 1 || got[0] != "api" {
		t.Fatalf("failing names %v", got)
	}
}

// The same, when the earlier incident's page is delivered only after the
// new incident opened: it is still not this incident's page.
func TestAPageDeliveredLateForAnEarlierIncidentHoldsNothing(t *testing.T) {
	t.Parallel()
	page := &Rung{Name: "sos", Do: []Action{pager("tg")}, After: time.Minute, Cooldown: time.Hour, State: "sos"}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, page)
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	first := r.incident()
	if st := r.wake(time.Minute); st.run() == nil {
		t.Fatal("no page")
	}
	r.resultsAt(2*time.Minute, resAt("api", true, 2*time.Minute))
	r.resultsAt(3*time.Minute, resAt("api", false, 3*time.Minute))
	if r.incident() == "" || r.incident() == first {
		t.Fatal("no new incident")
	}
	// The first incident's page is accepted now, 4 minutes in.
	r.step(Fact{Kind: FactDelivery, At: at(4 * time.Minute), Answer: &Answer{Kind: "sos", Incident: first, Rung: "sos", Delivery: Delivery{Channel: "tg", OK: true}}})
	st := r.step(Fact{Kind: FactRungEnd, At: at(4 * time.Minute), End: &RungEnd{Incident: first, Rung: "sos", OK: true, Deliveries: []Delivery{{Channel: "tg", OK: true}}}})
	if st.run() == nil || st.run().Incident != r.incident() {
		t.Fatalf("the new incident's page was held by the old incident's late delivery: %+v", st.Events)
	}
}

// A rung that heals and pages, after it ran in an earlier incident: the new
// incident's page is not held by the heal's cooldown; it goes out alone
// (the heal, cooling down, does not run again), and it does not restart
// the heal's cooldown.
func TestMixedRungPageIsNotHeldByItsActionsCooldown(t *testing.T) {
	t.Parallel()
	mixed := &Rung{Name: "heal-page", Do: []Action{fakeAction{"heal"}, pager("tg")}, After: time.Minute, Cooldown: time.Hour, State: "sos"}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, mixed)
	r := newCoreRun(t, pol)
	r.resultsAt(0, resAt("api", false, 0))
	st := r.wake(time.Minute)
	if st.run() == nil || len(st.run().Actions) != 1 || len(st.run().Pagers) != 1 {
		t.Fatalf("first incident: %+v", st.run())
	}
	r.step(Fact{Kind: FactDelivery, At: at(time.Minute), Answer: &Answer{Kind: "sos", Incident: r.incident(), Rung: "heal-page", Delivery: Delivery{Channel: "tg", OK: true}}})
	r.end(time.Minute+time.Second, "heal-page", true, []Delivery{{Channel: "tg", OK: true}})
	r.resultsAt(2*time.Minute, resAt("api", true, 2*time.Minute))
	r.resultsAt(3*time.Minute, resAt("api", false, 3*time.Minute))
	st = r.wake(4 * time.Minute)
	if st.run() == nil || len(st.run().Actions) != 0 || len(st.run().Pagers) != 1 {
		t.Fatalf("the new incident's page: %+v (events %+v)", st.run(), st.Events)
	}
	if got := r.c.State().LastRun["heal-page"]; !got.Equal(at(time.Minute)) {
		t.Fatalf("a page-only run restarted the heal's cooldown: last run %v", got)
	}
}

// A checkpoint restores a fresh core to where a running one was: fed the
// same facts from there, both decide the same (a heal running across the
// checkpoint, a probe in flight, the process start's gate).
func TestCheckpointRestoresTheCore(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}, {Name: "db", Critical: true, After: 1}},
		heal(), sos(5*time.Minute, time.Hour))
	var facts []Fact
	facts = append(facts, Fact{Kind: FactLaunch, At: at(0), Probes: []string{"api", "db"}},
		Fact{Kind: FactResults, At: at(time.Second), Results: []Result{resAt("api", false, 0), resAt("db", true, 0)}},
		Fact{Kind: FactLaunch, At: at(time.Minute), Probes: []string{"api", "db"}})
	later := []Fact{
		{Kind: FactResults, At: at(time.Minute + time.Second), Results: []Result{resAt("api", false, time.Minute)}},
		{Kind: FactRungEnd, At: at(2 * time.Minute), End: &RungEnd{Rung: "heal", OK: true, Verify: []Result{resAt("api", false, 2*time.Minute)}}},
		{Kind: FactWake, At: at(5*time.Minute + 2*time.Second)},
		{Kind: FactResults, At: at(6 * time.Minute), Results: []Result{resAt("api", true, 6*time.Minute), resAt("db", true, 6*time.Minute)}},
	}
	a := newCoreRun(t, pol)
	for _, f := range facts {
		a.step(f)
	}
	if a.c.State().Incident == nil || a.c.State().Incident.Running != "heal" {
		t.Fatalf("setup: %+v", a.c.State().Incident)
	}
	ck := FactRecord(a.c.Checkpoint(at(time.Minute)))
	ck.Policy = pol.Hash
	f, ok := RecordFact(ck)
	if !ok || f.Kind != FactCheckpoint || len(f.Probes) != 2 {
		t.Fatalf("checkpoint record %+v", ck)
	}
	f.Policy = pol
	b := &coreRun{t: t, c: NewCore(CoreOptions{})}
	b.step(f)
	id := a.c.State().Incident.ID
	for _, f := range later {
		if f.End != nil {
			f.End.Incident = id
		}
		ea, eb := a.step(f).Events, b.step(f).Events
		if !reflect.DeepEqual(ea, eb) {
			t.Fatalf("after %s at %v:\n running: %+v\nrestored: %+v", f.Kind, f.At, ea, eb)
		}
	}
	if len(a.runs) == 0 || !reflect.DeepEqual(a.runs[len(a.runs)-len(b.runs):], b.runs) || len(b.runs) == 0 {
		t.Fatalf("runs: running %v restored %v", a.runs, b.runs)
	}
}

// An excerpt of a journal (talon journal cut) that begins with replay's
// checkpoint replays faithfully on its own, and decides what the whole
// journal's replay decides from there.
func TestExcerptWithACheckpointReplaysFaithfully(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, heal(), sos(5*time.Minute, time.Hour))
	down := func(i int) []Result { return []Result{res("api", i < 3 || i > 14)} }
	facts := []Fact{{Kind: FactStart, At: t0, Policy: pol, State: NewState(t0)}}
	facts = append(facts, cycleFacts(0, 20, down)...)
	recs := daemonJournal(facts)
	from := t0.Add(6 * time.Minute) // mid-incident, a heal and a page behind it
	r := NewReplayer(pol, ReplayOptions{})
	var excerpt []Record
	for _, rec := range recs {
		if rec.Time.Before(from) {
			r.Feed(rec, "")
			continue
		}
		if _, fact := RecordFact(rec); fact && excerpt == nil {
			ck, ok := r.Checkpoint(rec.Time)
			if !ok {
				t.Fatal("no checkpoint from a faithful replay")
			}
			excerpt = append(excerpt, ck)
		}
		if excerpt != nil {
			excerpt = append(excerpt, rec)
		}
	}
	whole, part := Replay(pol, recs, ReplayOptions{}), Replay(pol, excerpt, ReplayOptions{})
	if part.Mode != ModeFaithful || len(part.Divergences) > 0 {
		t.Fatalf("excerpt: %s (%s) %+v", part.Mode, part.ModeReason, part.Divergences)
	}
	var w, p []string
	for _, st := range whole.Timeline {
		if !st.At.Before(from) && st.Kind != "journal" && st.Kind != "mode" {
			w = append(w, st.At.Sub(t0).String()+" "+st.Kind+" "+st.Rung+" "+st.Probe)
		}
	}
	for _, st := range part.Timeline {
		if st.Kind != "journal" && st.Kind != "mode" {
			p = append(p, st.At.Sub(t0).String()+" "+st.Kind+" "+st.Rung+" "+st.Probe)
		}
	}
	if len(w) == 0 || !reflect.DeepEqual(w, p) {
		t.Fatalf("from +6m:\nwhole   %q\nexcerpt %q", w, p)
	}
	// Without the checkpoint, the excerpt is what-if from a blank state.
	if r := Replay(pol, excerpt[1:], ReplayOptions{}); r.Mode != ModeWhatIf {
		t.Fatalf("without the checkpoint: %s", r.Mode)
	}
}

// A checkpoint taken while a rung that heals and pages runs its page alone
// (its heal cooling down): the restored core knows the run was page-only,
// and its end opens no settle window.
func TestCheckpointKeepsAPageOnlyRun(t *testing.T) {
	t.Parallel()
	mixed := &Rung{Name: "heal-page", Do: []Action{fakeAction{"heal"}, pager("tg")}, Cooldown: time.Hour, Verify: true, Settle: time.Minute}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, mixed)
	a := newCoreRun(t, pol)
	a.resultsAt(0, resAt("api", false, 0))
	a.end(time.Second, "heal-page", false, []Delivery{{Channel: "tg", OK: false}})
	st := a.resultsAt(time.Minute, resAt("api", false, time.Minute)) // the page's retry: the heal cools down
	if st.run() == nil || len(st.run().Actions) != 0 || len(st.run().Pagers) != 1 {
		t.Fatalf("retry: %+v", st.run())
	}
	ck := a.c.Checkpoint(at(time.Minute))
	ck.Policy = pol
	b := &coreRun{t: t, c: NewCore(CoreOptions{})}
	b.step(ck)
	end := Fact{Kind: FactRungEnd, At: at(time.Minute + time.Second), End: &RungEnd{Incident: a.incident(), Rung: "heal-page", OK: true, Deliveries: []Delivery{{Channel: "tg", OK: true}}}}
	ea, eb := a.step(end).Events, b.step(end).Events
	if !reflect.DeepEqual(ea, eb) || len(events(Step{Events: ea}, "settle_start")) != 0 {
		t.Fatalf("running: %+v\nrestored: %+v", ea, eb)
	}
}
