package builtins

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// Testing is the testing module of `*_test.star` files, which `talon test`
// runs: every top-level function whose name starts with test_ is a test. A
// failed assertion is reported with its file:line and the test goes on; a
// runtime error ends the test. The watchdog it builds drives the same
// decision core as the daemon and replay, over a fake clock.
//
//	def eq(got, want, msg=None):
//	    Asserts got == want.
//	    msg: text added to the failure
//
//	def ne(got, unwanted, msg=None):
//	    Asserts got != unwanted.
//
//	def true(cond, msg=None):
//	    Asserts that cond is true.
//
//	def contains(container, x, msg=None):
//	    Asserts x in container.
//
//	def fail(msg):
//	    Fails the test with msg.
//
//	def fails(fn, pattern):
//	    Calls fn() and asserts that it fails with an error matching the regular expression pattern.
//
//	def watchdog(*, interval="1m"):
//	    A watchdog running this policy from a fresh state at 2026-01-01T00:00:00Z, every probe
//	    passing. Its methods script the world and move the clock: down(*probes, output=None)
//	    makes probes fail from now on; up(*probes) makes them pass; rung(name, duration="0s",
//	    fixes=[], fail=False, delivered=True) says how a rung behaves when it runs (its
//	    verification sees the world once it ends); run(duration) runs a cycle (every probe
//	    reports) every interval for that long; cycle() runs one now; report(probe, passed,
//	    output=None) feeds one result; advance(duration) moves the clock without probes;
//	    restart() restarts the daemon; pause(probe=None, tag=None, rung=None, duration=None,
//	    reason="") pauses everything (or one probe, tag or rung) for duration (default 1h,
//	    at most 24h, as talon pause);
//	    resume(probe=None, tag=None, rung=None) lifts pauses (all of them when none is named);
//	    ack(reason="") acknowledges the open incident. Its attributes say what happened so far: phase, now
//	    (seconds since the start), incident (None or struct(id, probes, critical, paged)),
//	    incidents (struct(id, probes, opened, resolved, peak, pages)), rungs (names of the
//	    rungs started, in order), runs (struct(rung, at)), pages (struct(rung, at, channels)),
//	    resolved (struct(at, channels)), transitions ("healthy>failed", ...), skips
//	    (struct(rung, at, reason)), flapping (the probes flapping now), paused (the pauses in
//	    force, described); times are seconds since the start.
//	    interval: time between cycles (default 1m)
//
//	def replay(path):
//	    Replays a journal excerpt (a file `talon journal cut` wrote, relative to the policy
//	    directory) through this policy and returns a watchdog whose attributes say what it
//	    decided; its world methods are not available.
//	    path: the journal file
//
//	def incident(*, failing=[], passing=[], age="0s", state="failed", critical=True):
//	    An incident value as when= predicates and prompt functions receive it, so they can be
//	    tested on their own.
//	    failing: names of the failing probes, or a dict of probe name to output
//	    passing: names of the passing probes, or a dict of probe name to output
//	    age: how long the incident has been open
//	    state: its state-machine position
//	    critical: whether a critical probe is failing
var Testing = &starlarkstruct.Module{Name: "testing", Members: starlark.StringDict{
	"eq":       starlark.NewBuiltin("testing.eq", testEq),
	"ne":       starlark.NewBuiltin("testing.ne", testNe),
	"true":     starlark.NewBuiltin("testing.true", testTrue),
	"contains": starlark.NewBuiltin("testing.contains", testContains),
	"fail":     starlark.NewBuiltin("testing.fail", testFail),
	"fails":    starlark.NewBuiltin("testing.fails", testFails),
	"watchdog": starlark.NewBuiltin("testing.watchdog", testWatchdog),
	"replay":   starlark.NewBuiltin("testing.replay", testReplay),
	"incident": starlark.NewBuiltin("testing.incident", testIncident),
}}

// TestEpoch is when a testing.watchdog starts.
var TestEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testRun is what a test thread carries: the policy under test and where
// failures go.
type testRun struct {
	pol      *engine.Policy
	dir      string
	rt       *runner
	failures []string
}

const testRunKey = "talon.testrun"

func currentTest(thread *starlark.Thread, b *starlark.Builtin) (*testRun, error) {
	tr, ok := thread.Local(testRunKey).(*testRun)
	if !ok {
		return nil, fmt.Errorf("%s: only works in a *_test.star file run by talon test", b.Name())
	}
	return tr, nil
}

// report records a failed assertion at the caller's position.
func report(thread *starlark.Thread, b *starlark.Builtin, msg starlark.Value, format string, args ...any) (starlark.Value, error) {
	tr, err := currentTest(thread, b)
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf(format, args...)
	if s, ok := starlark.AsString(msg); ok && s != "" {
		text += ": " + s
	}
	tr.failures = append(tr.failures, fmt.Sprintf("%s: %s: %s", star.Pos(thread), b.Name(), text))
	return starlark.None, nil
}

func testEq(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var got, want, msg starlark.Value = starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "got", &got, "want", &want, "msg?", &msg); err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(got, want)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	if !eq {
		return report(thread, b, msg, "got %s, want %s", got, want)
	}
	return starlark.None, nil
}

func testNe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var got, unwanted, msg starlark.Value = starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "got", &got, "unwanted", &unwanted, "msg?", &msg); err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(got, unwanted)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	if eq {
		return report(thread, b, msg, "got %s, which it must not be", got)
	}
	return starlark.None, nil
}

func testTrue(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cond, msg starlark.Value = starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cond", &cond, "msg?", &msg); err != nil {
		return nil, err
	}
	if !cond.Truth() {
		return report(thread, b, msg, "%s is not true", cond)
	}
	return starlark.None, nil
}

func testContains(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var container, x, msg starlark.Value = starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "container", &container, "x", &x, "msg?", &msg); err != nil {
		return nil, err
	}
	in, err := starlark.Binary(syntax.IN, x, container)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	if !in.Truth() {
		return report(thread, b, msg, "%s not in %s", x, container)
	}
	return starlark.None, nil
}

func testFail(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "msg", &msg); err != nil {
		return nil, err
	}
	return report(thread, b, starlark.None, "%s", msg)
}

func testFails(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	var pattern string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "pattern", &pattern); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: bad pattern: %v", b.Name(), err)
	}
	_, err = starlark.Call(thread, fn, nil, nil)
	switch {
	case err == nil:
		return report(thread, b, starlark.None, "%s did not fail", fn.Name())
	case !re.MatchString(err.Error()):
		return report(thread, b, starlark.None, "error %q does not match %q", err.Error(), pattern)
	}
	return starlark.None, nil
}

func testIncident(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	tr, err := currentTest(thread, b)
	if err != nil {
		return nil, err
	}
	var failing, passing starlark.Value = starlark.NewList(nil), starlark.NewList(nil)
	age := star.Duration{}
	state := "failed"
	critical := true
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "failing?", &failing, "passing?", &passing, "age?", &age, "state?", &state, "critical?", &critical); err != nil {
		return nil, err
	}
	results := func(v starlark.Value, passed bool) ([]engine.Result, error) {
		var out []engine.Result
		switch x := v.(type) {
		case *starlark.Dict:
			for _, item := range x.Items() {
				name, ok1 := starlark.AsString(item[0])
				output, ok2 := starlark.AsString(item[1])
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("%s: want a dict of probe name to output", b.Name())
				}
				out = append(out, engine.Result{Name: name, Passed: passed, Output: output})
			}
		default:
			var names star.StringList
			if err := names.Unpack(v); err != nil {
				return nil, fmt.Errorf("%s: %v", b.Name(), err)
			}
			for _, n := range names {
				out = append(out, engine.Result{Name: n, Passed: passed})
			}
		}
		for _, r := range out {
			if tr.pol.Probe(r.Name) == nil {
				return nil, fmt.Errorf("%s: the policy has no probe %q", b.Name(), r.Name)
			}
		}
		return out, nil
	}
	f, err := results(failing, false)
	if err != nil {
		return nil, err
	}
	p, err := results(passing, true)
	if err != nil {
		return nil, err
	}
	v := &engine.IncidentView{ID: "test-1", Started: TestEpoch, Now: TestEpoch.Add(age.D), State: state,
		Failing: f, Passing: p, Rungs: map[string]engine.RungRecord{}, Critical: critical}
	return tr.rt.incident(v), nil
}

func testWatchdog(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	tr, err := currentTest(thread, b)
	if err != nil {
		return nil, err
	}
	interval := star.Duration{}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "interval?", &interval); err != nil {
		return nil, err
	}
	sim := engine.NewSim(tr.pol, TestEpoch, interval.D, engine.CoreOptions{})
	return &watchdog{sim: sim}, nil
}

func testReplay(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	tr, err := currentTest(thread, b)
	if err != nil {
		return nil, err
	}
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &path); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(tr.dir, path)
	}
	r := engine.NewReplayer(tr.pol, engine.ReplayOptions{})
	if _, err := journal.Scan(path, func(rec engine.Record, pos journal.Pos) error {
		r.Feed(rec, pos.String())
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	res := r.Result()
	return &watchdog{result: &res, epoch: res.From}, nil
}

// watchdog is the Starlark value of testing.watchdog and testing.replay.
type watchdog struct {
	sim    *engine.Sim
	result *engine.ReplayResult // replay only
	epoch  time.Time
}

var _ starlark.HasAttrs = (*watchdog)(nil)

func (w *watchdog) String() string        { return "<testing.watchdog>" }
func (w *watchdog) Type() string          { return "testing.watchdog" }
func (w *watchdog) Freeze()               {}
func (w *watchdog) Truth() starlark.Bool  { return true }
func (w *watchdog) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: testing.watchdog") }

var watchdogAttrs = []string{"ack", "advance", "cycle", "down", "flapping", "incident", "incidents", "now", "pages", "pause", "paused",
	"phase", "report", "resolved", "restart", "resume", "rung", "run", "runs", "rungs", "skips", "transitions", "up"}

func (w *watchdog) AttrNames() []string { return watchdogAttrs }

func (w *watchdog) report() engine.ReplayResult {
	if w.sim != nil {
		return w.sim.Result()
	}
	return *w.result
}

func (w *watchdog) start() time.Time {
	if w.sim != nil {
		return w.sim.Epoch
	}
	return w.epoch
}

// secs is t as seconds since the start, an int when whole.
func (w *watchdog) secs(t time.Time) starlark.Value {
	d := t.Sub(w.start())
	if d%time.Second == 0 {
		return starlark.MakeInt64(int64(d / time.Second))
	}
	return starlark.Float(d.Seconds())
}

func strs(s []string) *starlark.List {
	vals := make([]starlark.Value, len(s))
	for i, x := range s {
		vals[i] = starlark.String(x)
	}
	return starlark.NewList(vals)
}

func mkStruct(d starlark.StringDict) starlark.Value {
	return starlarkstruct.FromStringDict(starlarkstruct.Default, d)
}

func (w *watchdog) Attr(name string) (starlark.Value, error) {
	if m := w.method(name); m != nil {
		return m, nil
	}
	r := w.report()
	var list []starlark.Value
	switch name {
	case "phase":
		return starlark.String(r.Summary.FinalPhase), nil
	case "now":
		return w.secs(r.To), nil
	case "incident":
		if w.sim == nil {
			return starlark.None, nil
		}
		inc := w.sim.State().Incident
		if inc == nil {
			return starlark.None, nil
		}
		return mkStruct(starlark.StringDict{"id": starlark.String(inc.ID), "probes": strs(inc.Probes),
			"critical": starlark.Bool(inc.Critical), "paged": strs(inc.Paged)}), nil
	case "flapping", "paused":
		if w.sim == nil {
			return starlark.NewList(nil), nil
		}
		st := w.sim.State()
		var names []string
		if name == "paused" {
			for _, p := range st.Pauses {
				names = append(names, p.Describe())
			}
		} else {
			for _, p := range w.sim.Policy().Probes {
				if ps := st.Probes[p.Name]; ps != nil && ps.Flapping {
					names = append(names, p.Name)
				}
			}
		}
		return strs(names), nil
	case "incidents":
		for _, inc := range r.Incidents {
			var resolved starlark.Value = starlark.None
			if inc.Resolved != nil {
				resolved = w.secs(*inc.Resolved)
			}
			list = append(list, mkStruct(starlark.StringDict{"id": starlark.String(inc.ID), "probes": strs(inc.Probes),
				"opened": w.secs(inc.Opened), "resolved": resolved, "peak": starlark.String(inc.Peak), "pages": starlark.MakeInt(inc.Pages)}))
		}
	case "rungs", "runs", "pages", "resolved", "transitions", "skips":
		for _, st := range r.Timeline {
			switch {
			case name == "rungs" && st.Kind == "rung":
				list = append(list, starlark.String(st.Rung))
			case name == "runs" && st.Kind == "rung":
				list = append(list, mkStruct(starlark.StringDict{"rung": starlark.String(st.Rung), "at": w.secs(st.At)}))
			case name == "pages" && st.Kind == "page":
				list = append(list, mkStruct(starlark.StringDict{"rung": starlark.String(st.Rung), "at": w.secs(st.At), "channels": strs(st.Channels)}))
			case name == "resolved" && st.Kind == "resolved":
				list = append(list, mkStruct(starlark.StringDict{"at": w.secs(st.At), "channels": strs(st.Channels)}))
			case name == "transitions" && st.Kind == "transition":
				list = append(list, starlark.String(string(st.From)+">"+string(st.To)))
			case name == "skips" && st.Kind == "rung_skip":
				list = append(list, mkStruct(starlark.StringDict{"rung": starlark.String(st.Rung), "at": w.secs(st.At), "reason": starlark.String(st.Reason)}))
			}
		}
	default:
		return nil, nil
	}
	return starlark.NewList(list), nil
}

// method returns the bound method name, or nil.
func (w *watchdog) method(name string) starlark.Value {
	var fn func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)
	switch name {
	case "down", "up":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var output string
			if err := starlark.UnpackArgs(b.Name(), nil, kwargs, "output?", &output); err != nil {
				return nil, err
			}
			for _, a := range args {
				n, ok := starlark.AsString(a)
				if !ok {
					return nil, fmt.Errorf("%s: want probe names, got %s", b.Name(), a.Type())
				}
				if err := w.sim.Set(n, name == "down", output); err != nil {
					return nil, fmt.Errorf("%s: %v", b.Name(), err)
				}
			}
			return starlark.None, nil
		}
	case "rung":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var rung string
			d := star.Duration{}
			var fixes star.StringList
			fail, delivered := false, true
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &rung, "duration?", &d, "fixes?", &fixes, "fail?", &fail, "delivered?", &delivered); err != nil {
				return nil, err
			}
			if err := w.sim.Script(rung, engine.SimRung{Duration: d.D, Fixes: fixes, Fail: fail, Undelivered: !delivered}); err != nil {
				return nil, fmt.Errorf("%s: %v", b.Name(), err)
			}
			return starlark.None, nil
		}
	case "run", "advance":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			d := star.Duration{}
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "duration", &d); err != nil {
				return nil, err
			}
			if name == "run" {
				w.sim.Run(d.D)
			} else {
				w.sim.Advance(d.D)
			}
			return starlark.None, nil
		}
	case "cycle", "restart":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
				return nil, err
			}
			if name == "cycle" {
				w.sim.Cycle()
			} else {
				w.sim.Restart()
			}
			return starlark.None, nil
		}
	case "pause", "resume":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var probe, tag, rung, reason string
			d := star.Duration{}
			pairs := []any{"probe?", &probe, "tag?", &tag, "rung?", &rung}
			if name == "pause" {
				pairs = append(pairs, "duration?", &d, "reason?", &reason)
			}
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, pairs...); err != nil {
				return nil, err
			}
			c := engine.Control{Reason: reason}
			for _, x := range []struct{ scope, name string }{{engine.ScopeProbe, probe}, {engine.ScopeTag, tag}, {engine.ScopeRung, rung}} {
				if x.name == "" {
					continue
				}
				if c.Scope != "" {
					return nil, fmt.Errorf("%s: name one of probe=, tag= and rung=", b.Name())
				}
				c.Scope, c.Name = x.scope, x.name
			}
			if name == "resume" {
				w.sim.Resume(c)
				return starlark.None, nil
			}
			if d.D > 0 {
				c.Until = w.sim.Now().Add(d.D)
			}
			if err := w.sim.Pause(c); err != nil {
				return nil, fmt.Errorf("%s: %v", b.Name(), err)
			}
			return starlark.None, nil
		}
	case "ack":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var reason string
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "reason?", &reason); err != nil {
				return nil, err
			}
			if err := w.sim.Ack(reason); err != nil {
				return nil, fmt.Errorf("%s: %v", b.Name(), err)
			}
			return starlark.None, nil
		}
	case "report":
		fn = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var probe, output string
			var passed bool
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "probe", &probe, "passed", &passed, "output?", &output); err != nil {
				return nil, err
			}
			if err := w.sim.Report(probe, passed, output); err != nil {
				return nil, fmt.Errorf("%s: %v", b.Name(), err)
			}
			return starlark.None, nil
		}
	default:
		return nil
	}
	qualified := "watchdog." + name
	return starlark.NewBuiltin(qualified, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if w.sim == nil {
			return nil, fmt.Errorf("%s: a replayed watchdog only reports what it decided", b.Name())
		}
		return fn(thread, b, args, kwargs)
	})
}

// sortedFuncs lists the test_ functions of a test file in source order.
func sortedFuncs(globals starlark.StringDict) []*starlark.Function {
	var out []*starlark.Function
	for name, v := range globals {
		if f, ok := v.(*starlark.Function); ok && len(name) > 5 && name[:5] == "test_" {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Position().Line < out[j].Position().Line })
	return out
}
