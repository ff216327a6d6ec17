package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// script builds a journal of one cycle a minute from t0: pattern has one
// character per cycle for each probe, '.' passed, 'x' failed, ' ' not run.
func script(patterns map[string]string) []Record {
	n := 0
	for _, p := range patterns {
		n = max(n, len(p))
	}
	names := make([]string, 0, len(patterns))
	for name := range patterns {
		names = append(names, name)
	}
	// A fixed order keeps the journal itself deterministic.
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	recs := []Record{{Time: t0, Type: "start", Policy: "h0", Phase: Healthy}}
	for c := 0; c < n; c++ {
		at := t0.Add(time.Duration(c) * time.Minute)
		rec := Record{Time: at, Type: "cycle", Policy: "h0"}
		for _, name := range names {
			if c < len(patterns[name]) && patterns[name][c] != ' ' {
				r := res(name, patterns[name][c] == '.')
				r.At = at
				rec.Results = append(rec.Results, r)
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

// brief renders a timeline compactly for comparison: "+2m kind details".
func brief(tl []ReplayStep) []string {
	var out []string
	for _, st := range tl {
		s := fmt.Sprintf("+%s %s", st.At.Sub(t0), st.Kind)
		switch st.Kind {
		case "transition":
			s += " " + string(st.From) + ">" + string(st.To)
		case "probe_down", "probe_up":
			s += " " + st.Probe
		case "incident_open":
			s += " " + strings.Join(st.Probes, ",")
		case "rung", "rung_skip", "rung_end":
			s += " " + st.Rung
			for _, v := range st.Verify {
				s += fmt.Sprintf(" verify %s=%t", v.Probe, v.Passed)
			}
			if st.Reason != "" {
				s += ": " + st.Reason
			}
		case "mode":
			s += ": " + strings.SplitN(st.Reason, ":", 2)[0]
		case "page", "resolved":
			s += " " + st.Rung + " " + strings.Join(st.Channels, ",")
		case "incident_resolved":
			s += ": " + st.Reason
		}
		out = append(out, s)
	}
	return out
}

func heal() *Rung {
	return &Rung{Name: "heal", Do: []Action{fakeAction{"exec heal.sh"}}, Cooldown: 10 * time.Minute, Verify: true}
}

func sos(after, repeat time.Duration) *Rung {
	return &Rung{Name: "sos", Do: []Action{fakePager{fakeAction{"telegram:42"}}}, After: after, Repeat: repeat, State: "sos"}
}

func whenFunc(ok bool, err error) Predicate {
	return func(context.Context, *IncidentView) (bool, error) { return ok, err }
}

func TestReplay(t *testing.T) {
	t.Parallel()
	api := func(after int) []*Probe { return []*Probe{{Name: "api", Critical: true, After: after}} }
	cases := []struct {
		name      string
		pol       *Policy
		journal   map[string]string
		want      []string
		incidents int
		pages     int
		detect    float64 // median time to detect, seconds
		final     Phase
	}{
		{
			name:    "outage: heal verifies red, sos pages, recovery resolves",
			pol:     testPolicy(api(2), heal(), sos(0, 0)),
			journal: map[string]string{"api": ".xxx.."},
			want: []string{
				"+0s journal",
				"+0s mode: what-if from here",
				"+1m0s transition healthy>degraded",
				"+2m0s probe_down api",
				"+2m0s incident_open api",
				"+2m0s transition degraded>failed",
				"+2m0s rung heal",
				// The verification is api's first result recorded after the
				// heal (red); it is not observed a second time.
				"+3m0s rung_end heal verify api=false",
				"+3m0s rung sos",
				"+3m0s rung_end sos",
				"+3m0s page sos telegram:42",
				"+3m0s transition failed>sos",
				"+4m0s probe_up api",
				"+4m0s incident_resolved: probes recovered",
				"+4m0s transition sos>healthy",
				"+4m0s resolved  telegram:42",
			},
			incidents: 1, pages: 1, detect: 60, final: Healthy,
		},
		{
			name:    "a green verification resolves at once",
			pol:     testPolicy(api(2), heal(), sos(0, 0)),
			journal: map[string]string{"api": ".xx..."},
			want: []string{
				"+0s journal",
				"+0s mode: what-if from here",
				"+1m0s transition healthy>degraded",
				"+2m0s probe_down api",
				"+2m0s incident_open api",
				"+2m0s transition degraded>failed",
				"+2m0s rung heal",
				"+3m0s rung_end heal verify api=true",
				"+3m0s probe_up api",
				"+3m0s incident_resolved: probes recovered",
				"+3m0s transition failed>healthy",
			},
			incidents: 1, detect: 60, final: Healthy,
		},
		{
			name:    "a witness-only failure never opens an incident",
			pol:     testPolicy([]*Probe{{Name: "vm:redis", Witness: true}}, heal(), sos(0, 0)),
			journal: map[string]string{"vm:redis": ".xxxx."},
			want: []string{
				"+0s journal",
				"+0s mode: what-if from here",
				"+1m0s transition healthy>degraded",
				"+2m0s probe_down vm:redis",
				"+5m0s probe_up vm:redis",
				"+5m0s transition degraded>healthy",
			},
			final: Healthy,
		},
		{
			name: "when= false and a failing when= skip their rungs",
			pol: testPolicy(api(1),
				&Rung{Name: "bridge", When: whenFunc(false, nil), Do: []Action{fakeAction{"bridge"}}},
				&Rung{Name: "broken", When: whenFunc(true, errors.New("boom")), Do: []Action{fakeAction{"broken"}}},
				sos(0, 0)),
			journal: map[string]string{"api": ".xx"},
			want: []string{
				"+0s journal",
				"+0s mode: what-if from here",
				"+1m0s probe_down api",
				"+1m0s incident_open api",
				"+1m0s transition healthy>failed",
				"+1m0s rung_skip bridge: when= is false",
				"+1m0s rung_skip broken: when= failed: boom",
				"+1m0s rung sos",
				"+1m0s rung_end sos",
				"+1m0s page sos telegram:42",
				"+1m0s transition failed>sos",
				// Once the walk is done, a predicate that errors is reported
				// every time it is evaluated, with backoff.
				"+1m0s rung_skip broken: when= failed: boom; retry at 2026-11-23T03:01:30Z",
			},
			incidents: 1, pages: 1, detect: 0, final: SOS,
		},
		{
			name:    "a non-critical outage never pages",
			pol:     testPolicy([]*Probe{{Name: "web", After: 1}}, sos(0, 0)),
			journal: map[string]string{"web": "xx."},
			want: []string{
				"+0s journal",
				"+0s mode: what-if from here",
				"+0s probe_down web",
				"+0s incident_open web",
				"+0s transition healthy>failed",
				"+0s rung_skip sos: only critical probes page",
				// Only a critical probe makes an incident critical.
				"+2m0s probe_up web",
				"+2m0s incident_resolved: probes recovered",
				"+2m0s transition failed>healthy",
			},
			incidents: 1, detect: 0, final: Healthy,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Replay(tc.pol, script(tc.journal), ReplayOptions{})
			if got := brief(r.Timeline); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			s := r.Summary
			if s.Incidents != tc.incidents || s.Pages != tc.pages || s.FinalPhase != tc.final {
				t.Fatalf("summary %+v", s)
			}
			if tc.incidents > 0 && (s.MedianDetectSecs == nil || *s.MedianDetectSecs != tc.detect) {
				t.Fatalf("median time to detect %v, want %v", s.MedianDetectSecs, tc.detect)
			}
			if len(r.Warnings) != 0 {
				t.Fatalf("warnings %q", r.Warnings)
			}
		})
	}
}

func TestReplayIncidentReport(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true}}, heal(), sos(0, 0))
	r := Replay(pol, script(map[string]string{"api": ".xxx.."}), ReplayOptions{})
	if len(r.Incidents) != 1 {
		t.Fatalf("incidents %+v", r.Incidents)
	}
	inc := r.Incidents[0]
	resolved := t0.Add(4 * time.Minute)
	if inc.ID != "20261123T030200Z-1" || !reflect.DeepEqual(inc.Probes, []string{"api"}) || !inc.Opened.Equal(t0.Add(2*time.Minute)) ||
		inc.Resolved == nil || !inc.Resolved.Equal(resolved) || inc.DetectSecs != 60 || inc.FirstPageSecs == nil ||
		*inc.FirstPageSecs != 60 || inc.Peak != SOS || len(inc.Runs) != 2 || inc.Pages != 1 {
		t.Fatalf("incident %+v", inc)
	}
	want := []ReplayRungCount{{"heal", 1}, {"sos", 1}}
	if !reflect.DeepEqual(r.Summary.RungRuns, want) || r.Summary.Resolved != 1 || r.Cycles != 6 || r.Records != 7 {
		t.Fatalf("summary %+v, %d cycles of %d records", r.Summary, r.Cycles, r.Records)
	}
}

// B waits for more failures: it detects later and pages less.
func TestReplayCompareHigherAfter(t *testing.T) {
	t.Parallel()
	journal := script(map[string]string{"api": "." + strings.Repeat("x", 30) + "."})
	a := Replay(testPolicy([]*Probe{{Name: "api", Critical: true, After: 2}}, sos(5*time.Minute, 10*time.Minute)), journal, ReplayOptions{})
	b := Replay(testPolicy([]*Probe{{Name: "api", Critical: true, After: 8}}, sos(5*time.Minute, 10*time.Minute)), journal, ReplayOptions{})
	pageTimes := func(r ReplayResult) (out []string) {
		for _, st := range r.Timeline {
			if st.Kind == "page" {
				out = append(out, st.At.Sub(t0).String())
			}
		}
		return out
	}
	if got := pageTimes(a); !reflect.DeepEqual(got, []string{"7m0s", "17m0s", "27m0s"}) {
		t.Fatalf("A pages at %v", got)
	}
	if got := pageTimes(b); !reflect.DeepEqual(got, []string{"13m0s", "23m0s"}) {
		t.Fatalf("B pages at %v", got)
	}
	if *a.Summary.MedianDetectSecs != 60 || *b.Summary.MedianDetectSecs != 420 {
		t.Fatalf("detect A %v B %v", *a.Summary.MedianDetectSecs, *b.Summary.MedianDetectSecs)
	}
	d := CompareReplays(a, b)
	want := "B pages 1 fewer time but reaches sos 6 min later; first page 6 min later; median time to detect 1 min → 7 min; rung runs sos 3 → 2"
	if d.Comparison != want {
		t.Fatalf("comparison\n%s\nwant\n%s", d.Comparison, want)
	}
	// One incident each, paired.
	if len(d.Incidents) != 1 || d.Incidents[0].A == nil || d.Incidents[0].B == nil || d.Same {
		t.Fatalf("pairs %+v same %v", d.Incidents, d.Same)
	}
	if same := CompareReplays(a, a); !same.Same || same.Comparison != "A and B decide the same: 3 pages, 3 rung runs" {
		t.Fatalf("a vs a: %+v %q", same.Same, same.Comparison)
	}
}

func TestReplayWarnsAboutProbeMismatch(t *testing.T) {
	t.Parallel()
	pol := testPolicy([]*Probe{{Name: "api", Critical: true}, {Name: "cache"}, {Name: "db"}})
	r := Replay(pol, script(map[string]string{"api": "..", "legacy": "xx", "old": "x"}), ReplayOptions{})
	want := []string{
		"probes of the policy with no result in the journal (never observed): cache, db",
		"results of probes the policy does not have (ignored): legacy, old",
	}
	if !reflect.DeepEqual(r.Warnings, want) {
		t.Fatalf("warnings %q", r.Warnings)
	}
	// The ignored failures change nothing.
	if len(brief(r.Timeline)) != 2 || r.Summary.FinalPhase != Healthy {
		t.Fatalf("timeline %q", brief(r.Timeline))
	}
	if e := Replay(pol, nil, ReplayOptions{}); !reflect.DeepEqual(e.Warnings, []string{"the journal has no records"}) || len(e.Timeline) != 0 {
		t.Fatalf("empty journal: %+v", e)
	}
}

func TestReplayDeterministic(t *testing.T) {
	t.Parallel()
	journal := script(map[string]string{"api": ".xxxxxxxxxxxxxxxxxxxxxxxxx..", "db": "..xx..xx..xxxxx...", "vm:redis": "x.x.x.x"})
	mk := func() *Policy {
		return testPolicy([]*Probe{{Name: "api", Critical: true}, {Name: "db", Critical: true}, {Name: "vm:redis", Witness: true}},
			heal(), sos(5*time.Minute, 10*time.Minute))
	}
	var outs [][]byte
	for _, recs := range [][]Record{journal, journal} {
		b, err := json.Marshal(Replay(mk(), recs, ReplayOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b)
	}
	if string(outs[0]) != string(outs[1]) {
		t.Fatalf("replays differ:\n%s\n%s", outs[0], outs[1])
	}
}
