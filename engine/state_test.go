package engine

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)

type fakeAction struct{ name string }

func (a fakeAction) Describe() string   { return a.name }
func (a fakeAction) Programs() []string { return nil }
func (a fakeAction) Run(context.Context, *ActionEnv) ActionResult {
	return ActionResult{OK: true}
}

type fakePager struct{ fakeAction }

func (p fakePager) Channel() string                                 { return p.name }
func (p fakePager) Send(context.Context, *ActionEnv, Message) error { return nil }

func testPolicy(probes []*Probe, ladder ...*Rung) *Policy {
	for _, p := range probes {
		if p.Digest == "" {
			p.Digest = "d-" + p.Name
		}
	}
	return &Policy{Hash: "h1", Probes: probes, Thresholds: Thresholds{FailedAfter: 2, CriticalAfter: 15 * time.Minute, RecoverAfter: 1}, Ladder: ladder}
}

func res(name string, passed bool) Result {
	return Result{Name: name, Passed: passed, Output: name + " out"}
}

func phases(ev []Event) string {
	var s []string
	for _, e := range ev {
		if e.Type == "transition" {
			s = append(s, string(e.From)+">"+string(e.To))
		}
	}
	return strings.Join(s, ",")
}

func TestObserveTransitions(t *testing.T) {
	t.Parallel()
	type cycle struct {
		results []Result
		phase   Phase
		trans   string // transitions of this cycle
		open    bool   // incident open after it
	}
	crit := func() []*Probe { return []*Probe{{Name: "api", Critical: true}, {Name: "web"}} }
	cases := []struct {
		name   string
		probes []*Probe
		cycles []cycle
	}{
		{"healthy stays healthy", crit(), []cycle{
			{[]Result{res("api", true), res("web", true)}, Healthy, "", false},
		}},
		{"one miss is degraded, not failed (debounce)", crit(), []cycle{
			{[]Result{res("api", false), res("web", true)}, Degraded, "healthy>degraded", false},
			{[]Result{res("api", true), res("web", true)}, Healthy, "degraded>healthy", false},
		}},
		{"two misses open an incident", crit(), []cycle{
			{[]Result{res("api", false), res("web", true)}, Degraded, "healthy>degraded", false},
			{[]Result{res("api", false), res("web", true)}, Failed, "degraded>failed", true},
			{[]Result{res("api", true), res("web", true)}, Healthy, "failed>healthy", false},
		}},
		{"a non-critical probe escalates too (it just never pages)", crit(), []cycle{
			{[]Result{res("api", true), res("web", false)}, Degraded, "healthy>degraded", false},
			{[]Result{res("api", true), res("web", false)}, Failed, "degraded>failed", true},
		}},
		{"a witness never escalates", []*Probe{{Name: "vm:redis", Witness: true}}, []cycle{
			{[]Result{res("vm:redis", false)}, Degraded, "healthy>degraded", false},
			{[]Result{res("vm:redis", false)}, Degraded, "", false},
			{[]Result{res("vm:redis", false)}, Degraded, "", false},
		}},
		{"per-probe after overrides the default", []*Probe{{Name: "slack", Critical: true, After: 3}}, []cycle{
			{[]Result{res("slack", false)}, Degraded, "healthy>degraded", false},
			{[]Result{res("slack", false)}, Degraded, "", false},
			{[]Result{res("slack", false)}, Failed, "degraded>failed", true},
		}},
		{"after=1 fails at once", []*Probe{{Name: "disk", Critical: true, After: 1}}, []cycle{
			{[]Result{res("disk", false)}, Failed, "healthy>failed", true},
		}},
		{"recover_after keeps the incident through one pass", []*Probe{{Name: "api", Critical: true, After: 1, RecoverAfter: 2}}, []cycle{
			{[]Result{res("api", false)}, Failed, "healthy>failed", true},
			{[]Result{res("api", true)}, Failed, "", true},
			{[]Result{res("api", false)}, Failed, "", true},
			{[]Result{res("api", true)}, Failed, "", true},
			{[]Result{res("api", true)}, Healthy, "failed>healthy", false},
		}},
		{"depends_on suppresses the child while the parent is down", []*Probe{{Name: "colima", After: 5}, {Name: "docker", Critical: true, After: 1, DependsOn: []string{"colima"}}}, []cycle{
			{[]Result{res("colima", false), res("docker", false)}, Degraded, "healthy>degraded", false},
			{[]Result{res("colima", false), res("docker", false)}, Degraded, "", false},
			// The parent recovers; the child is now escalating on its own.
			{[]Result{res("colima", true), res("docker", false)}, Failed, "degraded>failed", true},
		}},
		{"depends_on never blocks recovery", []*Probe{{Name: "colima", After: 1}, {Name: "docker", After: 1, DependsOn: []string{"colima"}}}, []cycle{
			{[]Result{res("colima", true), res("docker", false)}, Failed, "healthy>failed", true},
			{[]Result{res("colima", false), res("docker", true)}, Failed, "", true},
			{[]Result{res("colima", true), res("docker", true)}, Healthy, "failed>healthy", false},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pol := testPolicy(tc.probes)
			s := NewState(t0)
			for i, c := range tc.cycles {
				now := t0.Add(time.Duration(i) * time.Minute)
				ev := Observe(s, pol, c.results, now)
				if s.Phase != c.phase || phases(ev) != c.trans || (s.Incident != nil) != c.open {
					t.Fatalf("cycle %d: phase %s transitions %q incident %v; want %s %q %v", i, s.Phase, phases(ev), s.Incident != nil, c.phase, c.trans, c.open)
				}
			}
		})
	}
}

func TestCriticalAfterTime(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}})
	s := NewState(t0)
	Observe(s, pol, []Result{res("api", false)}, t0)
	Observe(s, pol, []Result{res("api", false)}, t0.Add(14*time.Minute))
	if s.Phase != Failed {
		t.Fatalf("phase %s before critical_after", s.Phase)
	}
	ev := Observe(s, pol, []Result{res("api", false)}, t0.Add(15*time.Minute))
	if s.Phase != Critical || phases(ev) != "failed>critical" || !s.Incident.CriticalSince.Equal(t0.Add(15*time.Minute)) {
		t.Fatalf("phase %s %q critical since %v", s.Phase, phases(ev), s.Incident.CriticalSince)
	}
}

// ladderRun drives the ladder like the daemon does, with scripted outcomes.
type ladderRun struct {
	t   *testing.T
	s   *State
	pol *Policy
}

func (l *ladderRun) step(now time.Time, results []Result, outcome func(r *Rung) RungOutcome) (ran string, ev []Event) {
	ev = Observe(l.s, l.pol, results, now)
	d := Decide(l.s, l.pol, now, func(r *Rung) (bool, error) {
		return r.When(context.Background(), l.s.View(l.pol, now))
	})
	ev = append(ev, d.Events...)
	if d.Run < 0 {
		return "", ev
	}
	r := l.pol.Ladder[d.Run]
	id := l.s.Incident.ID
	ev = append(ev, BeginRung(l.s, l.pol, d.Run, now)...)
	out := outcome(r)
	ev = append(ev, FinishRung(l.s, l.pol, id, r.Name, out, now)...)
	return r.Name, ev
}

func TestLadderWalk(t *testing.T) {
	t.Parallel()
	probes := []*Probe{{Name: "api", Critical: true, After: 1}}
	pol := testPolicy(probes,
		&Rung{Name: "heal", Do: []Action{fakeAction{"heal"}}, Cooldown: 10 * time.Minute, Verify: true},
		&Rung{Name: "agent", Do: []Action{fakeAction{"agent"}}, Cooldown: 10 * time.Minute, State: "investigating", Verify: true},
		&Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"telegram"}}}, After: 15 * time.Minute, Repeat: 4 * time.Hour, State: "sos"},
	)
	l := &ladderRun{t: t, s: NewState(t0), pol: pol}
	down := []Result{res("api", false)}
	failOutcome := func(r *Rung) RungOutcome {
		if r.Pages() {
			return RungOutcome{Pages: true, Paged: []string{"telegram"}}
		}
		return RungOutcome{OK: true, Verify: []Result{res("api", false)}}
	}
	var ran []string
	var trans []string
	for i := 0; i <= 40; i++ { // one cycle a minute for 40 minutes
		now := t0.Add(time.Duration(i) * time.Minute)
		r, ev := l.step(now, down, failOutcome)
		if r != "" {
			ran = append(ran, r+"@"+now.Sub(t0).String())
		}
		if p := phases(ev); p != "" {
			trans = append(trans, p)
		}
	}
	// The first walk goes in order: heal, agent, then SOS held until the
	// incident is 15 minutes old. After that heal and agent run again only
	// when their cooldown has passed, and SOS is not re-sent inside its repeat.
	want := []string{"heal@0s", "agent@1m0s", "sos@15m0s", "heal@16m0s", "agent@17m0s", "heal@26m0s", "agent@27m0s", "heal@36m0s", "agent@37m0s"}
	if !reflect.DeepEqual(ran, want) {
		t.Fatalf("rungs ran %v\nwant       %v", ran, want)
	}
	if got := strings.Join(trans, " "); got != "healthy>failed failed>investigating investigating>critical,critical>sos" {
		t.Fatalf("transitions %s", got)
	}
	// Recovery resolves and names the paged channel for a "resolved" message.
	ev := Observe(l.s, pol, []Result{res("api", true)}, t0.Add(41*time.Minute))
	var resolved *Event
	for i := range ev {
		if ev[i].Type == "incident_resolved" {
			resolved = &ev[i]
		}
	}
	if resolved == nil || !reflect.DeepEqual(resolved.Channels, []string{"telegram"}) || l.s.Phase != Healthy {
		t.Fatalf("resolution %+v phase %s", resolved, l.s.Phase)
	}
}

func TestLadderSkipsAndVerification(t *testing.T) {
	t.Parallel()
	falseWhen := func(context.Context, *IncidentView) (bool, error) { return false, nil }
	pol := testPolicy([]*Probe{{Name: "web", After: 1}},
		&Rung{Name: "bridge", When: falseWhen, Do: []Action{fakeAction{"bridge"}}},
		&Rung{Name: "heal", Do: []Action{fakeAction{"heal"}}, Verify: true},
		&Rung{Name: "page", Do: []Action{fakePager{fakeAction{"tg"}}}},
	)
	l := &ladderRun{t: t, s: NewState(t0), pol: pol}
	ran, ev := l.step(t0, []Result{res("web", false)}, func(r *Rung) RungOutcome {
		return RungOutcome{OK: true, Verify: []Result{res("web", true)}}
	})
	if ran != "heal" || l.s.Incident != nil || l.s.Phase != Healthy {
		t.Fatalf("ran %q incident %+v phase %s", ran, l.s.Incident, l.s.Phase)
	}
	var skips []string
	for _, e := range ev {
		if e.Type == "rung_skip" {
			skips = append(skips, e.Rung+": "+e.Reason)
		}
	}
	if !reflect.DeepEqual(skips, []string{"bridge: when= is false"}) {
		t.Fatalf("skips %v", skips)
	}
	// A non-critical incident walks past the page rung without paging.
	l2 := &ladderRun{t: t, s: NewState(t0), pol: pol}
	var pagesTried int
	for i := 0; i < 5; i++ {
		l2.step(t0.Add(time.Duration(i)*time.Minute), []Result{res("web", false)}, func(r *Rung) RungOutcome {
			if r.Pages() {
				pagesTried++
			}
			return RungOutcome{OK: false, Output: "no luck", Verify: []Result{res("web", false)}}
		})
	}
	// ... and, without a critical probe, never turns critical either.
	if pagesTried != 0 || l2.s.Phase != Failed {
		t.Fatalf("non-critical incident paged %d times; phase %s", pagesTried, l2.s.Phase)
	}
}

func TestFailedPageBacksOff(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"tg"}}}, State: "sos", Repeat: 4 * time.Hour})
	l := &ladderRun{t: t, s: NewState(t0), pol: pol}
	var tries []string
	delivered := false
	for i := 0; i <= 8*60; i++ { // every 5 s for 40 minutes
		now := t0.Add(time.Duration(i) * 5 * time.Second)
		l.step(now, []Result{res("api", false)}, func(r *Rung) RungOutcome {
			tries = append(tries, now.Sub(t0).String())
			if now.Sub(t0) >= 20*time.Minute {
				delivered = true
				return RungOutcome{Pages: true, Paged: []string{"tg"}}
			}
			return RungOutcome{Pages: true}
		})
	}
	want := []string{"0s", "30s", "1m30s", "3m30s", "7m30s", "15m30s", "31m30s"}
	if !reflect.DeepEqual(tries, want) || !delivered || l.s.Phase != SOS {
		t.Fatalf("page attempts at %v (want %v), phase %s", tries, want, l.s.Phase)
	}
}

func TestInterruptedRungCountsAsAttempt(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "heal", Do: []Action{fakeAction{"heal"}}, Cooldown: 10 * time.Minute})
	s := NewState(t0)
	Observe(s, pol, []Result{res("api", false)}, t0)
	d := Decide(s, pol, t0, nil)
	BeginRung(s, pol, d.Run, t0)
	// The daemon is killed here; a new one starts a minute later.
	Interrupted(s, pol, t0.Add(time.Minute))
	Observe(s, pol, []Result{res("api", false)}, t0.Add(time.Minute))
	if d := Decide(s, pol, t0.Add(2*time.Minute), nil); d.Run != -1 {
		t.Fatalf("heal re-ran inside its cooldown after a restart")
	}
	if d := Decide(s, pol, t0.Add(10*time.Minute), nil); d.Run != 0 {
		t.Fatalf("heal did not run after its cooldown: %+v", d)
	}
}

func TestReconcileByDigest(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "a", After: 3}, {Name: "b", After: 3}, {Name: "c", After: 3}})
	s := NewState(t0)
	Observe(s, pol, []Result{res("a", false), res("b", false), res("c", false)}, t0)
	pol2 := testPolicy([]*Probe{{Name: "a", After: 3}, {Name: "b", After: 3, Digest: "changed"}})
	s.Reconcile(pol2)
	if s.Probes["a"] == nil || s.Probes["a"].Fails != 1 || s.Probes["c"] != nil {
		t.Fatalf("reconcile kept %v", s.Probes)
	}
	if b := s.Probes["b"]; b == nil || b.Fails != 0 || b.Digest != "changed" {
		t.Fatalf("a changed probe must start its counts afresh: %+v", b)
	}
}

// Editing a probe's definition in the middle of an incident (a longer
// timeout, say) keeps it down: no false "resolved", no second page.
func TestReconcileKeepsADownProbeDown(t *testing.T) {
	t.Parallel()
	pager := &Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"tg"}}}, State: "sos"}
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, pager)
	s := NewState(t0)
	Observe(s, pol, []Result{res("api", false)}, t0)
	id := s.Incident.ID
	pol2 := testPolicy([]*Probe{{Name: "api", Critical: true, After: 3, Digest: "edited"}}, pager)
	s.Reconcile(pol2)
	ev := Observe(s, pol2, []Result{res("api", false)}, t0.Add(time.Minute))
	for _, e := range ev {
		if e.Type == "incident_resolved" || e.Type == "incident_open" {
			t.Fatalf("editing the probe caused %s", e.Type)
		}
	}
	if s.Incident == nil || s.Incident.ID != id || !s.Probes["api"].Down {
		t.Fatalf("incident %+v probe %+v", s.Incident, s.Probes["api"])
	}
}

// A mixed rung (an action and a page): its heal runs again each time its
// cooldown ends, whatever its page is doing (alone: the page is not
// re-sent with it), while its page keeps its own clock: a failed page is
// retried with backoff (alone while the heal cools down), and once
// delivered it is not re-sent (no repeat).
func TestMixedRungRespectsCooldown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		delivered    bool
		heals, pages string
	}{{false, "0s,10m0s,20m0s", "0s,1m0s,2m0s,4m0s,8m0s,16m0s"}, {true, "0s,10m0s,20m0s", "0s"}} {
		pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
			&Rung{Name: "heal+page", Do: []Action{fakeAction{"heal"}, fakePager{fakeAction{"tg"}}}, Cooldown: 10 * time.Minute})
		r := newCoreRun(t, pol)
		var heals, pages []string
		for i := 0; i <= 25; i++ {
			d := time.Duration(i) * time.Minute
			for st := r.resultsAt(d, resAt("api", false, d)); st.run() != nil; {
				run := st.run()
				if len(run.Actions) > 0 {
					heals = append(heals, d.String())
				}
				var deliveries []Delivery
				if len(run.Pagers) > 0 {
					pages = append(pages, d.String())
					deliveries = []Delivery{{Channel: "tg", OK: tc.delivered}}
				}
				if deliveries != nil && tc.delivered {
					r.step(Fact{Kind: FactDelivery, At: at(d), Answer: &Answer{Kind: "sos", Incident: run.Incident, Rung: run.Rung.Name, Delivery: Delivery{Channel: "tg", OK: true}}})
				}
				st = r.end(d, run.Rung.Name, false, deliveries)
			}
		}
		if strings.Join(heals, ",") != tc.heals || strings.Join(pages, ",") != tc.pages {
			t.Fatalf("delivered %v: heals at %v (want %s), pages at %v (want %s)", tc.delivered, heals, tc.heals, pages, tc.pages)
		}
	}
}

// Nothing runs while the incident's probes already pass and are only held
// down by recovery hysteresis.
func TestLadderWaitsWhileProbesRecover(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1, RecoverAfter: 3}},
		&Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"tg"}}}, After: 2 * time.Minute})
	s := NewState(t0)
	Observe(s, pol, []Result{res("api", false)}, t0)
	Observe(s, pol, []Result{res("api", true)}, t0.Add(2*time.Minute))
	if d := Decide(s, pol, t0.Add(2*time.Minute), nil); d.Run != -1 || !strings.Contains(d.Wait, "recover") {
		t.Fatalf("paged on a green result: %+v", d)
	}
}

func TestLoadStateRejectsUnusableShapes(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"version":1,"phase":"failed","probes":{"api":null}}`,
		`{"version":1,"phase":"failed","incident":{"id":"x","position":-1}}`,
		`{"version":1,"phase":"failed","incident":{"id":"x","rungs":{"heal":null}}}`,
		`{"version":1,"phase":"failed","incident":{"position":0}}`,
	} {
		path := filepath.Join(t.TempDir(), "state.json")
		os.WriteFile(path, []byte(body), 0o600)
		if _, err := LoadState(path); err == nil || !strings.Contains(err.Error(), "is corrupt") {
			t.Errorf("%s: got %v", body, err)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}}, &Rung{Name: "heal", Do: []Action{fakeAction{"h"}}})
	s := NewState(t0)
	Observe(s, pol, []Result{{Name: "api", Output: "connection refused", Detail: map[string]string{"status": "503"}, At: t0}}, t0)
	BeginRung(s, pol, 0, t0)
	s.Pauses = []Pause{{ID: "p1", Scope: "probe", Name: "api", Since: t0, Reason: "café ✓ \x01 終"}}
	if err := SaveState(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	// Everything comes back but the probe's output, which is in the
	// journal; the state in memory keeps it.
	want := *s.Probes["api"].Last
	want.Output = ""
	if !reflect.DeepEqual(*got.Probes["api"].Last, want) || s.Probes["api"].Last.Output != "connection refused" {
		t.Fatalf("last result: %+v, want %+v (in memory: %q)", *got.Probes["api"].Last, want, s.Probes["api"].Last.Output)
	}
	got.Probes["api"].Last = s.Probes["api"].Last
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip differs:\n%+v\n%+v", got, s)
	}
	if got.Pauses[0].Reason != "café ✓ \x01 終" {
		t.Fatalf("UTF-8 mangled: %q", got.Pauses[0].Reason)
	}
	b, _ := os.ReadFile(path)
	if strings.Count(string(b), "\n") != 1 || !strings.HasSuffix(string(b), "}\n") || strings.Contains(string(b), "connection refused") {
		t.Fatalf("state.json is not one compact line without outputs:\n%s", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}

// A state file written by an earlier Talon (indented, every probe's last
// output in it) still loads, outputs and all.
func TestLoadStateWithOutputs(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.json")
	old := `{
  "version": 1,
  "phase": "failed",
  "phase_since": "2026-11-23T03:00:00Z",
  "probes": {
    "api": {
      "fails": 3,
      "passes": 0,
      "down": true,
      "digest": "d1",
      "last": {
        "name": "api",
        "passed": false,
        "output": "HTTP 503: upstream unavailable",
        "duration_ms": 12,
        "critical": true,
        "at": "2026-11-23T03:00:00Z"
      },
      "failing_since": "2026-11-23T02:58:00Z"
    }
  },
  "consecutive_failures": 3,
  "incident": {"id": "20261123T030000Z-1", "started": "2026-11-23T03:00:00Z", "critical": true, "probes": ["api"], "position": 0, "exhausted": false, "paged": null, "rungs": {}},
  "last_run": {},
  "last_page": "0001-01-01T00:00:00Z",
  "incidents": 1,
  "worker_restarts": 2,
  "policy_hash": "9f2c",
  "updated_at": "2026-11-23T03:00:01Z"
}
`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := s.Probes["api"]
	if s.Phase != Failed || ps.Fails != 3 || !ps.Down || ps.Last.Output != "HTTP 503: upstream unavailable" || s.Incident.ID != "20261123T030000Z-1" || s.WorkerRestarts != 2 {
		t.Fatalf("loaded %+v, api %+v", s, ps)
	}
	// Saved again, it is compact and loads the same but for the output.
	if err := SaveState(path, s); err != nil {
		t.Fatal(err)
	}
	again, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Probes["api"].Last.Output != "" || again.Probes["api"].Fails != 3 || again.Incident.ID != s.Incident.ID {
		t.Fatalf("saved again: %+v", again.Probes["api"])
	}
}

func TestLoadStateStrict(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, body, err string }{
		{"truncated", `{"version":1,"phase":"hea`, "is corrupt: unexpected EOF"},
		{"unknown field", `{"version":1,"phase":"healthy","current_state":"Healthy"}`, `is corrupt: json: unknown field "current_state"`},
		{"unknown phase", `{"version":1,"phase":"Exploding"}`, `unknown phase "Exploding"`},
		{"version", `{"version":7,"phase":"healthy"}`, "has version 7, this talon reads version 1"},
		{"trailing", `{"version":1,"phase":"healthy"} {}`, "trailing data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.json")
			os.WriteFile(path, []byte(tc.body), 0o600)
			_, err := LoadState(path)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
			aside, err := SetAside(path, t0)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(aside); string(b) != tc.body {
				t.Fatal("set-aside file lost the evidence")
			}
		})
	}
	if _, err := LoadState(filepath.Join(t.TempDir(), "none.json")); err != ErrNoState {
		t.Fatalf("missing file: %v", err)
	}
}

// A page rung's cooldown holds only pages of its own incident: a new
// incident's first page goes out (an outage that comes back is news), and a
// service going down and up every few minutes is quieted by flap detection,
// not by a cooldown left from an earlier incident. A failed delivery is
// retried with backoff.
func TestPageCooldownHoldsOnlyItsIncident(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 1}},
		&Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"tg"}}}, State: "sos", Cooldown: 4 * time.Hour, Repeat: 4 * time.Hour})
	pol.Thresholds.FlapWindow, pol.Thresholds.FlapStart, pol.Thresholds.FlapStop = time.Hour, 3, 1
	l := &ladderRun{t: t, s: NewState(t0), pol: pol}
	var pages []string
	deliver := false
	for i := 0; i < 120; i++ { // a minute a cycle for two hours; down 10 min of every 17
		now := t0.Add(time.Duration(i) * time.Minute)
		up := i%17 >= 10
		deliver = i >= 1 // the very first delivery fails
		r, _ := l.step(now, []Result{res("api", up)}, func(*Rung) RungOutcome {
			if !deliver {
				return RungOutcome{Pages: true}
			}
			return RungOutcome{Pages: true, Paged: []string{"tg"}}
		})
		if r != "" {
			pages = append(pages, now.Sub(t0).String())
		}
	}
	// 0s: failed; retried with backoff at 30s → the next cycle, 1m:
	// delivered. 17m: a new incident pages. 34m: the third down within the
	// hour: flapping, and it pages once more (saying so); then quiet.
	if strings.Join(pages, ",") != "0s,1m0s,17m0s,34m0s" {
		t.Fatalf("pages at %v", pages)
	}
}

func TestRelocateFollowsTheRungName(t *testing.T) {
	t.Parallel()
	r := func(names ...string) []*Rung {
		var out []*Rung
		for _, n := range names {
			out = append(out, &Rung{Name: n})
		}
		return out
	}
	cases := []struct {
		old, new []string
		pos      int
		want     int
	}{
		{[]string{"heal", "agent", "sos"}, []string{"bridge", "heal", "agent", "sos"}, 1, 2},
		{[]string{"heal", "agent", "sos"}, []string{"sos", "agent", "heal"}, 2, 0},
		{[]string{"heal", "agent", "sos"}, []string{"heal", "sos"}, 1, 1},
		{[]string{"a", "b", "c"}, []string{"c", "a"}, 1, 2},
	}
	for _, tc := range cases {
		inc := &Incident{Position: tc.pos}
		inc.Relocate(r(tc.old...), r(tc.new...), nil)
		if inc.Position != tc.want {
			t.Errorf("%v@%d → %v: position %d, want %d", tc.old, tc.pos, tc.new, inc.Position, tc.want)
		}
	}
}

// An incident kept open only by probes whose parent fails runs no rung:
// the parent's problem is the one to work on, once it counts as down.
func TestLadderHoldsWhileOnlySuppressedProbesAreDown(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "net", After: 5}, {Name: "api", Critical: true, After: 1, DependsOn: []string{"net"}}},
		&Rung{Name: "heal", Do: []Action{fakeAction{"heal"}}})
	s := NewState(t0)
	Observe(s, pol, []Result{res("api", false)}, t0) // the child's result came first
	Observe(s, pol, []Result{res("net", false)}, t0)
	if d := Decide(s, pol, t0, nil); d.Run != -1 || !strings.Contains(d.Wait, "parent") {
		t.Fatalf("ran a rung for a suppressed child: %+v", d)
	}
}

// A state.json that is a symbolic link is not read through (it could show
// any file the daemon can read), and saving replaces the link, never writes
// through it: the file it named stays as it was.
func TestStateFileLinkIsNotFollowed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "other.json")
	body := `{"version":1,"phase":"healthy"}`
	if err := os.WriteFile(target, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.json")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	_, err := LoadState(path)
	if want := "read state " + path + ": " + path + " is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if err := SaveState(path, NewState(t0)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved state: %v %v, want a regular 0600 file", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != body {
		t.Fatalf("the link's target was changed: %q", b)
	}
}
