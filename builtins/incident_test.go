package builtins

import (
	"reflect"
	"sort"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/engine"
)

// What a predicate sees of stale results, and what it is noted as reading.
func TestIncidentSeesOnlyFreshResults(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	res := func(name string, passed bool, start, end time.Duration) engine.Result {
		return engine.Result{Name: name, Passed: passed, At: t0.Add(start), DurationMS: int64((end - start) / time.Millisecond)}
	}
	view := &engine.IncidentView{ID: "i-1", Started: t0, Now: t0.Add(time.Minute), State: "failed",
		Since: t0.Add(20 * time.Millisecond), // redis's first failing run started then
		Failing: []engine.Result{
			res("redis", false, 20*time.Millisecond, 40*time.Millisecond), // the failure itself: evidence
			res("docker", false, -time.Minute, -59*time.Second),           // seen before the incident: stale
		},
		Passing: []engine.Result{
			res("vm:redis", true, 0, 50*time.Millisecond),                     // started before the failure was seen: stale
			res("colima", true, time.Second, time.Second+10*time.Millisecond), // taken after: fresh
		},
	}
	view.Paused = []string{"probe redis until resumed"}
	inc := newIncident(view, nil)
	thread := &starlark.Thread{Name: "test"}
	eval := func(expr string) starlark.Value {
		t.Helper()
		v, err := starlark.EvalOptions(&syntax.FileOptions{}, thread, "expr", expr, starlark.StringDict{"incident": inc})
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	for expr, want := range map[string]string{
		`incident.failing("redis")`:                       "True",
		`incident.passed("colima")`:                       "True",
		`incident.passed("vm:redis")`:                     "False",
		`incident.failing("vm:redis")`:                    "False",
		`incident.failing("docker")`:                      "False",
		`[r.name for r in incident.failing_probes]`:       `["redis"]`,
		`[r.name for r in incident.passing_probes]`:       `["colima"]`,
		`sorted([r.name for r in incident.stale_probes])`: `["docker", "vm:redis"]`,
		`incident.paused`:                                 `["probe redis until resumed"]`,
	} {
		if got := eval(expr).String(); got != want {
			t.Errorf("%s = %s, want %s", expr, got, want)
		}
	}
	view.ResetReads()
	eval(`incident.passed("colima") and incident.failing("redis")`)
	names, all := view.Reads()
	var got []string
	for n := range names {
		got = append(got, n)
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, []string{"colima", "redis"}) || all {
		t.Fatalf("reads %v all %v", got, all)
	}
	eval(`len(incident.failing_probes)`)
	if _, all := view.Reads(); !all {
		t.Fatal("reading a list of results is reading every probe")
	}
}
