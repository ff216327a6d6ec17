package builtins

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/bound"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm"
	"github.com/talon-dev/talon/internal/text"
)

// runner calls policy functions at run time: each call gets a fresh thread
// with the run-phase locals and its budgets (steps, memory, and its
// context's deadline; see package bound). It is shared by every function of
// one loaded policy.
type runner struct {
	maxSteps uint64
	maxBytes int64
	// probes names the declared probes once the load has finished, so that
	// incident.failing("typo") is an error rather than a silent False.
	probes map[string]bool
	// missing reports programs not found at run time (notfound.go).
	missing missingPrograms
	// perms are the load's strict modes, handed to run-phase builtins.
	perms *fsperm.Checker
	// stuck holds the functions a call of which did not stop at its
	// deadline (*starlark.Function → error): they are not called again, so
	// a policy can leave at most one abandoned call per function behind.
	stuck sync.Map
}

// call runs fn(args...) on a run-phase thread. Errors are *engine.PosError
// at the innermost policy frame. It never panics and returns at the latest
// bound.Grace after ctx's deadline, whatever fn does.
func (rt *runner) call(ctx context.Context, fn starlark.Callable, args starlark.Tuple, run *star.RunEnv) (starlark.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s not called: %w", fn.Name(), err)
	}
	if err, ok := rt.stuck.Load(fn); ok {
		return nil, err.(error)
	}
	thread := &starlark.Thread{Name: "run " + fn.Name()}
	thread.Print = func(_ *starlark.Thread, msg string) {
		if run.Log != nil {
			run.Log("policy print: "+msg, "func", fn.Name())
		}
	}
	if run.NotFound == nil {
		run.NotFound = rt.missing.report(run.Log)
	}
	if run.Files == nil {
		run.Files = rt.perms
	}
	star.SetRun(thread, run)
	var v starlark.Value
	err := bound.Run(ctx, thread, bound.Limits{Steps: rt.maxSteps, Bytes: rt.maxBytes}, func() error {
		var err error
		v, err = starlark.Call(thread, fn, args, nil)
		return err
	})
	if err == nil {
		return v, nil
	}
	pos := ""
	if f, ok := fn.(*starlark.Function); ok {
		pos = f.Position().String()
	}
	var stuck *bound.Stuck
	var panicked *bound.Panic
	var ee *starlark.EvalError
	switch {
	case errors.As(err, &stuck):
		// v belongs to the abandoned goroutine now; never read it.
		e := errorAt(pos, "%s %v; it is not called again until the policy is reloaded", fn.Name(), err)
		rt.stuck.Store(fn, e)
		return nil, e
	case errors.As(err, &panicked):
		if run.Log != nil {
			run.Log("policy function panicked", "func", fn.Name(), "err", panicked.Value, "stack", text.Cap(panicked.Stack, 4000))
		}
		return nil, errorAt(pos, "%s: %v", fn.Name(), err)
	case errors.As(err, &ee):
		return nil, evalPosError(err, ee, runAdvice)
	}
	return nil, err
}

// callWithIncident is the agent.Caller: prompt functions get the incident
// and, like when= predicates, no effects.
func (rt *runner) callWithIncident(ctx context.Context, fn starlark.Callable, inc *engine.IncidentView) (starlark.Value, error) {
	return rt.call(ctx, fn, starlark.Tuple{rt.incident(inc)}, &star.RunEnv{Ctx: ctx, Incident: inc})
}

func (rt *runner) incident(inc *engine.IncidentView) starlark.Value {
	if inc == nil {
		return starlark.None
	}
	return newIncident(inc, rt.probes)
}

// predicate wraps a when= function. It runs without effects: predicates
// read the incident, never the world.
func (rt *runner) predicate(fn starlark.Callable, pos string) engine.Predicate {
	return func(ctx context.Context, inc *engine.IncidentView) (bool, error) {
		v, err := rt.call(ctx, fn, starlark.Tuple{rt.incident(inc)}, &star.RunEnv{Ctx: ctx, Incident: inc})
		if err != nil {
			return false, err
		}
		b, ok := v.(starlark.Bool)
		if !ok {
			return false, errorAt(pos, "when= function %s returned %s; return True or False", fn.Name(), v.Type())
		}
		return bool(b), nil
	}
}

// funcAction is a do= function: it runs with the rung's effects and the incident.
type funcAction struct {
	rt  *runner
	fn  starlark.Callable
	pos string // where the function is defined
}

var _ engine.Action = (*funcAction)(nil)

func newFuncAction(rt *runner, fn starlark.Callable) *funcAction {
	pos := ""
	if f, ok := fn.(*starlark.Function); ok {
		pos = f.Position().String()
	}
	return &funcAction{rt: rt, fn: fn, pos: pos}
}

func (a *funcAction) Describe() string {
	if a.pos == "" {
		return a.fn.Name() + "(incident)"
	}
	return fmt.Sprintf("%s(incident) at %s", a.fn.Name(), a.pos)
}

func (a *funcAction) Programs() []string { return nil }

func (a *funcAction) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	run := &star.RunEnv{Ctx: ctx, Effects: env.Effects, Env: env.Env, Incident: env.Incident, Log: env.Log}
	v, err := a.rt.call(ctx, a.fn, starlark.Tuple{a.rt.incident(env.Incident)}, run)
	if err != nil {
		return engine.ActionResult{Output: err.Error()}
	}
	if v == starlark.None {
		return engine.ActionResult{OK: true}
	}
	ok, out, err := verdict(v)
	if err != nil {
		return engine.ActionResult{Output: fmt.Sprintf("%s %v", a.fn.Name(), err)}
	}
	return engine.ActionResult{OK: ok, Output: out}
}

// verdict interprets what a probe.func or do= function returned: True or
// False; a string, which is a failure with that message; a (bool, string)
// pair; or a struct or dict with passed (or ok) and output (or stdout and
// stderr, as exec.run returns).
func verdict(v starlark.Value) (ok bool, output string, err error) {
	bad := fmt.Errorf("returned %s; return True, False, a failure message, or struct(passed = ..., output = ...)", v.Type())
	switch x := v.(type) {
	case starlark.Bool:
		return bool(x), "", nil
	case starlark.String:
		return false, string(x), nil
	case starlark.Tuple:
		if len(x) == 2 {
			b, ok1 := x[0].(starlark.Bool)
			s, ok2 := starlark.AsString(x[1])
			if ok1 && ok2 {
				return bool(b), s, nil
			}
		}
		return false, "", bad
	case *starlark.List, starlark.NoneType:
		return false, "", bad
	}
	get := func(name string) starlark.Value {
		switch x := v.(type) {
		case *starlark.Dict:
			if val, found, _ := x.Get(starlark.String(name)); found {
				return val
			}
		case starlark.HasAttrs:
			if val, err := x.Attr(name); err == nil {
				return val
			}
		}
		return nil
	}
	passed := get("passed")
	if passed == nil {
		passed = get("ok")
	}
	b, isBool := passed.(starlark.Bool)
	if !isBool {
		return false, "", bad
	}
	if s, isStr := starlark.AsString(get("output")); isStr {
		return bool(b), s, nil
	}
	stdout, _ := starlark.AsString(get("stdout"))
	stderr, _ := starlark.AsString(get("stderr"))
	return bool(b), engine.CombineOutput(stdout, stderr), nil
}

// accepts reports whether fn can be called with n positional arguments.
// Builtins and other callables are assumed to accept anything.
func accepts(fn starlark.Callable, n int) bool {
	f, ok := fn.(*starlark.Function)
	if !ok {
		return true
	}
	positional := f.NumParams() - f.NumKwonlyParams()
	if f.HasVarargs() {
		positional--
	}
	if f.HasKwargs() {
		positional--
	}
	required := 0
	for i := 0; i < positional; i++ {
		if f.ParamDefault(i) == nil {
			required++
		}
	}
	// Parameters are laid out positional, keyword-only, *args, **kwargs.
	for i := positional; i < positional+f.NumKwonlyParams(); i++ {
		if f.ParamDefault(i) == nil {
			return false
		}
	}
	return n >= required && (n <= positional || f.HasVarargs())
}
