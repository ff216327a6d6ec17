package engine

import (
	"sort"
	"strings"
	"testing"
	"time"
)

// TestEveryTransition drives the state machine into each transition it can
// make, one case per edge, and checks that the edge happens exactly where
// the case says. The last check makes sure no edge is left untested.
func TestEveryTransition(t *testing.T) {
	t.Parallel()
	page := &Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"tg"}}}, State: "sos"}
	agentRung := &Rung{Name: "agent", Do: []Action{fakeAction{"agent"}}, State: "investigating", Verify: true}
	// A page held for 10 minutes keeps the ladder from being exhausted
	// right after the agent, so "investigating" lasts.
	held := &Rung{Name: "later", Do: []Action{fakePager{fakeAction{"tg2"}}}, After: 10 * time.Minute}
	mk := func(ladder ...*Rung) (*State, *Policy) {
		pol := testPolicy([]*Probe{{Name: "api", Critical: true, After: 2}, {Name: "wit", Witness: true}}, ladder...)
		pol.Thresholds.CriticalAfter = 10 * time.Minute
		return NewState(t0), pol
	}
	down, up := res("api", false), res("api", true)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// run applies the cycles, then (optionally) one ladder step, and returns
	// the transitions of the last step only.
	type step func(s *State, pol *Policy) []Event
	observe := func(m int, rs ...Result) step {
		return func(s *State, pol *Policy) []Event { return Observe(s, pol, rs, at(m)) }
	}
	rung := func(m int, out RungOutcome) step {
		return func(s *State, pol *Policy) []Event {
			d := Decide(s, pol, at(m), nil)
			if d.Run < 0 {
				t.Fatalf("no rung to run at +%dm: %s", m, d.Wait)
			}
			id := s.Incident.ID
			ev := BeginRung(s, pol, d.Run, at(m))
			return append(ev, FinishRung(s, pol, id, pol.Ladder[d.Run].Name, out, at(m))...)
		}
	}
	toFailed := []step{observe(0, down), observe(1, down)}
	cases := []struct {
		edge   string
		ladder []*Rung
		steps  []step
	}{
		{"healthy>degraded", nil, []step{observe(0, down)}},
		{"healthy>degraded", nil, []step{observe(0, res("wit", false))}},
		{"degraded>healthy", nil, []step{observe(0, down), observe(1, up)}},
		{"degraded>failed", nil, toFailed},
		{"failed>healthy", nil, append(toFailed, observe(2, up))},
		{"failed>investigating", []*Rung{agentRung}, append(toFailed, rung(2, RungOutcome{OK: true}))},
		{"failed>critical", nil, append(toFailed, observe(12, down))},
		{"investigating>healthy", []*Rung{agentRung, held}, append(toFailed, rung(2, RungOutcome{OK: true}), observe(3, up))},
		{"investigating>healthy", []*Rung{agentRung, page}, append(toFailed, rung(2, RungOutcome{OK: true, Verify: []Result{up}}))},
		{"investigating>critical", []*Rung{agentRung, held}, append(toFailed, rung(2, RungOutcome{OK: true}), observe(12, down))},
		{"investigating>critical", []*Rung{agentRung}, append(toFailed, rung(2, RungOutcome{OK: true, Verify: []Result{down}}))},
		{"critical>sos", []*Rung{page}, append(toFailed, observe(12, down), rung(12, RungOutcome{Pages: true, Paged: []string{"tg"}}))},
		{"critical>healthy", nil, append(toFailed, observe(12, down), observe(13, up))},
		{"sos>healthy", []*Rung{page}, append(toFailed, observe(12, down), rung(12, RungOutcome{Pages: true, Paged: []string{"tg"}}), observe(13, up))},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		s, pol := mk(tc.ladder...)
		var last []Event
		for _, st := range tc.steps {
			last = st(s, pol)
		}
		got := phases(last)
		if !strings.Contains(","+got+",", ","+tc.edge+",") {
			t.Errorf("%s: last step made transitions %q", tc.edge, got)
		}
		seen[tc.edge] = true
	}
	// Every edge between the phases that the design allows is covered.
	want := []string{"critical>healthy", "critical>sos", "degraded>failed", "degraded>healthy", "failed>critical", "failed>healthy",
		"failed>investigating", "healthy>degraded", "investigating>critical", "investigating>healthy", "sos>healthy"}
	var missing []string
	for _, e := range want {
		if !seen[e] {
			missing = append(missing, e)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("transitions without a case: %v", missing)
	}
}
