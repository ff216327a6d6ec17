package builtins

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

// ProbeFuncDoc documents probe.func, which lives with the loader because it
// calls policy functions at run time.
const ProbeFuncDoc = `def func(name, fn, **common):
A probe written in Starlark. fn runs at every check on its own thread, with its own step and memory
budgets, under the probe's timeout; it may call exec.run. It takes no parameter, or one: the probe,
struct(name, timeout) with timeout in seconds.
fn returns True (pass), False (fail), a string (fail with that message), a (passed, output) pair,
or a struct or dict with passed (or ok) and output (or stdout and stderr, as exec.run returns).
name: unique probe name
fn: the function`

// ProbeNoneDoc documents probe.none.
const ProbeNoneDoc = `def none(reason):
Says that the policy declares no probe on purpose (a host where Talon only supervises the worker,
say). Without it, a policy that declares no probe is an error: an empty or truncated talon.star must
never load as a policy that watches nothing. It cannot be combined with probes.
reason: why the policy watches nothing, shown by talon validate`

func probeNone(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	col, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	var reason string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "reason", &reason); err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%s: say why the policy declares no probe: probe.none(\"the worker is all this host runs\")", b.Name())
	}
	if col.nonePos != "" {
		return nil, fmt.Errorf("%s: already called at %s", b.Name(), col.nonePos)
	}
	col.none, col.nonePos = reason, star.Pos(thread)
	return starlark.None, nil
}

func probeFunc(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		c    probe.Common
		name string
		fn   starlark.Callable
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "fn", &fn); err != nil {
		return nil, err
	}
	col, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	withProbe := accepts(fn, 1)
	if !withProbe && !accepts(fn, 0) {
		return nil, fmt.Errorf("%s: %s: fn %s must take no parameter, or one (the probe)", b.Name(), name, fn.Name())
	}
	key := fn.Name()
	if f, ok := fn.(*starlark.Function); ok {
		key += "@" + f.Position().String()
	}
	p, err := c.Spec(thread, b, name, "func", col.rt.probeCheck(fn, withProbe), key)
	if err != nil {
		return nil, err
	}
	col.freeze = append(col.freeze, fn)
	return probe.Declare(thread, b, p)
}

// probeCheck runs a probe.func function as a check.
func (rt *runner) probeCheck(fn starlark.Callable, withProbe bool) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		var args starlark.Tuple
		if withProbe {
			args = starlark.Tuple{starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
				"name":    starlark.String(env.Probe.Name),
				"timeout": starlark.Float(env.Probe.EffectiveTimeout().Seconds()),
			})}
		}
		v, err := rt.call(ctx, fn, args, &star.RunEnv{Ctx: ctx, Effects: env.Effects, Env: env.Env})
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return engine.Outcome{Output: fmt.Sprintf("timeout after %s", env.Probe.EffectiveTimeout()), TimedOut: true}
			}
			return engine.Outcome{Output: err.Error()}
		}
		ok, out, err := verdict(v)
		if err != nil {
			return engine.Failf("%s %v", fn.Name(), err)
		}
		if !ok && out == "" {
			out = fn.Name() + " returned False"
		}
		return engine.Outcome{Passed: ok, Output: out}
	}
}
