// Package probetest lets probe-kind tests declare probes from Starlark source
// and run them for real, without the full policy loader.
package probetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

type collector struct{ probes []*engine.Probe }

func (c *collector) AddProbe(p *engine.Probe) error {
	for _, q := range c.probes {
		if q.Name == p.Name {
			return fmt.Errorf("probe %q declared twice", p.Name)
		}
	}
	c.probes = append(c.probes, p)
	return nil
}
func (c *collector) SetThresholds(engine.Thresholds, string) error { return nil }
func (c *collector) SetLadder([]*engine.Rung, string) error        { return nil }
func (c *collector) Config() starlark.Value                        { return starlark.None }
func (c *collector) Dir() string                                   { return "." }

// Modules builds every module with registered probe builtins.
func Modules() starlark.StringDict {
	out := starlark.StringDict{}
	for _, m := range probe.Modules() {
		members := starlark.StringDict{}
		for _, b := range probe.Registered(m) {
			members[b.Name[len(m)+1:]] = starlark.NewBuiltin(b.Name, b.Fn)
		}
		out[m] = &starlarkstruct.Module{Name: m, Members: members}
	}
	return out
}

// predeclared is Modules plus the top-level `secret`, as a policy sees them.
func predeclared() starlark.StringDict {
	d := Modules()
	d["secret"] = secret.Builtin
	return d
}

// Declare executes src as the file "talon.star" and returns the probes it declared.
// `secret` is predeclared too. Errors carry "talon.star:LINE:COL" positions.
func Declare(src string) ([]*engine.Probe, error) {
	thread := &starlark.Thread{Name: "probetest"}
	c := &collector{}
	star.SetCollector(thread, c)
	opts := &syntax.FileOptions{}
	_, err := starlark.ExecFileOptions(opts, thread, "talon.star", src, predeclared())
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			return nil, errors.New(ee.Backtrace())
		}
		return nil, err
	}
	return c.probes, nil
}

// MustDeclare is Declare that fails t on error and wants exactly one probe.
func MustDeclare(t testing.TB, src string) *engine.Probe {
	t.Helper()
	ps, err := Declare(src)
	if err != nil {
		t.Fatalf("declare: %v", err)
	}
	if len(ps) != 1 {
		t.Fatalf("want 1 probe, got %d", len(ps))
	}
	return ps[0]
}

// Env is a child environment for tests: this process's PATH plus the sbin and
// plugin directories the peers live in.
func Env() []string {
	return []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin:/usr/lib/nagios/plugins", "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}
}

// Run runs p for real under its own timeout and returns the result and the wall time.
func Run(t testing.TB, p *engine.Probe) (engine.Result, time.Duration) {
	t.Helper()
	r := &engine.Runner{Effects: effect.NewLive(), Env: Env()}
	start := time.Now()
	res := r.RunOne(context.Background(), p)
	return res, time.Since(start)
}

// RunWithEnv is Run with extra child environment entries ("KEY=value"),
// which override Env's (the last value of a key wins).
func RunWithEnv(t testing.TB, p *engine.Probe, extra ...string) (engine.Result, time.Duration) {
	t.Helper()
	r := &engine.Runner{Effects: effect.NewLive(), Env: append(Env(), extra...)}
	start := time.Now()
	res := r.RunOne(context.Background(), p)
	return res, time.Since(start)
}

// Call executes src as "talon.star" on a run-phase thread (the way probe.func
// and rung functions run) with live effects, the child environment Env()
// plus extra, and timeout as the deadline. It returns the file's globals.
func Call(src string, timeout time.Duration, extra ...string) (starlark.StringDict, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	thread := &starlark.Thread{Name: "probetest-run"}
	star.SetRun(thread, &star.RunEnv{Ctx: ctx, Effects: effect.NewLive(), Env: append(Env(), extra...)})
	globals, err := starlark.ExecFileOptions(&syntax.FileOptions{}, thread, "talon.star", src, predeclared())
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			return nil, errors.New(ee.Backtrace())
		}
		return nil, err
	}
	return globals, nil
}
