package builtins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/starlarktest"

	"github.com/talon-dev/talon/builtins/agent"
	"github.com/talon-dev/talon/builtins/bound"
	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// TestStarFiles runs every testdata/*.star file: each asserts on the
// builtins itself with load("assert.star", "assert"). A file runs like a
// policy (load phase, the policy builtins predeclared) plus a `testing`
// module to look at what it declared and to run things as the engine would.
func TestStarFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.star")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.star (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			runStarFile(t, file)
		})
	}
}

func runStarFile(t *testing.T, file string) {
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := fspermtest.Copy(t, "testdata") // services files are read under strict modes
	cfg := config.Default()
	cfg.ServicesFile = filepath.Join(t.TempDir(), "services.toml")
	rt := &runner{maxSteps: DefaultRunSteps, maxBytes: DefaultRunBytes}
	c := newCollector(cfg, dir, rt)
	thread := &starlark.Thread{Name: file, Load: func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
		if module == "assert.star" {
			return starlarktest.LoadAssertModule()
		}
		return nil, fmt.Errorf("no module %s in tests", module)
	}}
	starlarktest.SetReporter(thread, t)
	star.SetCollector(thread, c)
	agent.SetCaller(thread, rt.callWithIncident)
	pre := starlark.StringDict{}
	for k, v := range c.predeclared() {
		pre[k] = v
	}
	pre["testing"] = testingModule(t, c)
	lim := bound.Limits{Steps: DefaultLoadSteps, Bytes: DefaultLoadBytes, Time: time.Minute}
	if err := bound.Run(context.Background(), thread, lim, func() error {
		_, err := bound.ExecFile(FileOptions(), thread, filepath.Base(file), src, pre)
		return err
	}); err != nil {
		if ee, ok := err.(*starlark.EvalError); ok {
			t.Fatal(ee.Backtrace())
		}
		t.Fatal(err)
	}
}

func builtin(name string, fn func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)) *starlark.Builtin {
	return starlark.NewBuiltin("testing."+name, fn)
}

func structOf(d starlark.StringDict) *starlarkstruct.Struct {
	return starlarkstruct.FromStringDict(starlarkstruct.Default, d)
}

func stringList(ss []string) *starlark.List {
	var out []starlark.Value
	for _, s := range ss {
		out = append(out, starlark.String(s))
	}
	return starlark.NewList(out)
}

// logLine is one log call as "msg k=v k=v"; a key without a value shows as
// !BADKEY=key, as slog shows it.
func logLine(msg string, kv []any) string {
	parts := []string{msg}
	for i := 0; i < len(kv); i += 2 {
		if i+1 == len(kv) {
			parts = append(parts, fmt.Sprintf("!BADKEY=%v", kv[i]))
			break
		}
		parts = append(parts, fmt.Sprintf("%v=%v", kv[i], kv[i+1]))
	}
	return strings.Join(parts, " ")
}

// testingModule is what .star tests use beyond the policy builtins.
func testingModule(t *testing.T, c *collector) *starlarkstruct.Module {
	probeByName := func(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (*engine.Probe, error) {
		var name string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &name); err != nil {
			return nil, err
		}
		p := c.byName[name]
		if p == nil {
			return nil, fmt.Errorf("%s: no probe %q", b.Name(), name)
		}
		return p, nil
	}
	runEnv := func(effects effect.Effects) (*star.RunEnv, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		return &star.RunEnv{Ctx: ctx, Effects: effects, Env: probetest.Env()}, cancel
	}
	call := func(pure bool) func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s: want a function", b.Name())
			}
			fn, ok := args[0].(starlark.Callable)
			if !ok {
				return nil, fmt.Errorf("%s: want a function, got %s", b.Name(), args[0].Type())
			}
			var effects effect.Effects = effect.NewLive()
			if pure {
				effects = nil
			}
			run, cancel := runEnv(effects)
			defer cancel()
			return c.rt.call(run.Ctx, fn, args[1:], run)
		}
	}
	return &starlarkstruct.Module{Name: "testing", Members: starlark.StringDict{
		// probe(name): the declared probe as a struct.
		"probe": builtin("probe", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			p, err := probeByName(b, args, kwargs)
			if err != nil {
				return nil, err
			}
			expect := starlark.Value(starlark.None)
			if p.Expect != nil {
				expect = starlark.String(p.Expect.String())
			}
			return structOf(starlark.StringDict{
				"name": starlark.String(p.Name), "kind": starlark.String(p.Kind),
				"critical": starlark.Bool(p.Critical), "witness": starlark.Bool(p.Witness),
				"after": starlark.MakeInt(p.After), "recover_after": starlark.MakeInt(p.RecoverAfter),
				"timeout": starlark.Float(p.Timeout.Seconds()), "every": starlark.Float(p.Every.Seconds()),
				"depends_on": stringList(p.DependsOn), "tags": stringList(p.Tags), "programs": stringList(p.Programs),
				"os": starlark.String(p.OS), "pos": starlark.String(p.Pos), "expect": expect,
				"digest": starlark.String(p.Digest), "on_failure": starlark.String(p.OnFailure()),
			}), nil
		}),
		// check(name): runs the declared probe for real, as the runner does.
		"check": builtin("check", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			p, err := probeByName(b, args, kwargs)
			if err != nil {
				return nil, err
			}
			res, _ := probetest.Run(t, p)
			return structOf(starlark.StringDict{
				"passed": starlark.Bool(res.Passed), "output": starlark.String(res.Output),
				"timed_out": starlark.Bool(res.TimedOut),
			}), nil
		}),
		// run(fn, *args): calls fn on a run-phase thread with live effects.
		"run": builtin("run", call(false)),
		// pure(fn, *args): calls fn on a run-phase thread without effects, as when= runs.
		"pure": builtin("pure", call(true)),
		// act(action, incident=None): runs an action (or a do= function) with live
		// effects; returns struct(ok, output, logs).
		"act": builtin("act", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var v, inc starlark.Value = nil, starlark.None
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "action", &v, "incident?", &inc); err != nil {
				return nil, err
			}
			var a engine.Action
			switch x := v.(type) {
			case engine.Action:
				a = x
			case starlark.Callable:
				a = newFuncAction(c.rt, x)
			default:
				return nil, fmt.Errorf("%s: want an action, got %s", b.Name(), v.Type())
			}
			var logs []string
			env := &engine.ActionEnv{Effects: effect.NewLive(), Env: probetest.Env(), Rung: "test",
				Log: func(msg string, kv ...any) { logs = append(logs, logLine(msg, kv)) }}
			if i, ok := inc.(*incident); ok {
				env.Incident = i.view
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := a.Run(ctx, env)
			return structOf(starlark.StringDict{"ok": starlark.Bool(r.OK), "output": starlark.String(r.Output), "logs": stringList(logs)}), nil
		}),
		// incident(...): builds an incident value.
		"incident": builtin("incident", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var (
				id              = "i-1"
				state           = "failed"
				age             int
				failing         starlark.Value = starlark.NewList(nil)
				passing         starlark.Value = starlark.NewList(nil)
				rungs                          = starlark.NewDict(0)
				known           starlark.Value = starlark.None
				critical        bool
				failRes, passRs []engine.Result
			)
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "id?", &id, "state?", &state, "age?", &age,
				"failing?", &failing, "passing?", &passing, "rungs?", &rungs, "known?", &known, "critical?", &critical); err != nil {
				return nil, err
			}
			results := func(v starlark.Value, passed bool) ([]engine.Result, error) {
				var out []engine.Result
				iter := starlark.Iterate(v)
				defer iter.Done()
				var x starlark.Value
				for iter.Next(&x) {
					r := engine.Result{Passed: passed}
					switch y := x.(type) {
					case starlark.String:
						r.Name = string(y)
					case *starlark.Dict:
						for _, kv := range y.Items() {
							k, _ := starlark.AsString(kv[0])
							switch k {
							case "name":
								r.Name, _ = starlark.AsString(kv[1])
							case "output":
								r.Output, _ = starlark.AsString(kv[1])
							case "critical":
								r.Critical = bool(kv[1].Truth())
							}
						}
					default:
						return nil, fmt.Errorf("%s: want probe names or dicts, got %s", b.Name(), x.Type())
					}
					out = append(out, r)
				}
				return out, nil
			}
			var err error
			if failRes, err = results(failing, false); err != nil {
				return nil, err
			}
			if passRs, err = results(passing, true); err != nil {
				return nil, err
			}
			now := time.Unix(1_800_000_000, 0)
			view := &engine.IncidentView{ID: id, State: state, Started: now.Add(-time.Duration(age) * time.Second), Now: now,
				Failing: failRes, Passing: passRs, Rungs: map[string]engine.RungRecord{}, Critical: critical}
			for _, kv := range rungs.Items() {
				name, _ := starlark.AsString(kv[0])
				d, ok := kv[1].(*starlark.Dict)
				if !ok {
					return nil, fmt.Errorf("%s: rungs values must be dicts", b.Name())
				}
				var rr engine.RungRecord
				for _, f := range d.Items() {
					k, _ := starlark.AsString(f[0])
					switch k {
					case "attempts":
						n, _ := starlark.AsInt32(f[1])
						rr.Attempts = n
					case "last_ok":
						rr.LastOK = bool(f[1].Truth())
					case "last_output":
						rr.LastOutput, _ = starlark.AsString(f[1])
					}
				}
				view.Rungs[name] = rr
			}
			var knownSet map[string]bool
			if known != starlark.None {
				var names star.StringList
				if err := names.Unpack(known); err != nil {
					return nil, fmt.Errorf("%s: known: %v", b.Name(), err)
				}
				knownSet = map[string]bool{}
				for _, n := range names {
					knownSet[n] = true
				}
			}
			return newIncident(view, knownSet), nil
		}),
		// when(rung_name, incident): evaluates a declared rung's when= as the engine does.
		"when": builtin("when", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var rv *rungValue
			var inc *incident
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &rv, &inc); err != nil {
				return nil, err
			}
			if rv.r.When == nil {
				return starlark.True, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ok, err := rv.r.When(ctx, inc.view)
			if err != nil {
				return nil, err
			}
			return starlark.Bool(ok), nil
		}),
		// ladder(): the declared ladder as rung values.
		"ladder": builtin("ladder", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			var out []starlark.Value
			for _, r := range c.ladder {
				out = append(out, &rungValue{r: r})
			}
			return starlark.NewList(out), nil
		}),
		// thresholds(): the thresholds in effect.
		"thresholds": builtin("thresholds", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			th := c.thresholds
			return structOf(starlark.StringDict{
				"failed_after": starlark.MakeInt(th.FailedAfter), "recover_after": starlark.MakeInt(th.RecoverAfter),
				"critical_after": starlark.Float(th.CriticalAfter.Seconds()),
				"flap_window":    starlark.Float(th.FlapWindow.Seconds()), "flap_start": starlark.MakeInt(th.FlapStart),
				"flap_stop": starlark.MakeInt(th.FlapStop),
			}), nil
		}),
		// warnings(): the warnings so far.
		"warnings": builtin("warnings", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			return stringList(c.warnings), nil
		}),
		// policy(files, goos=None, steps=0): loads a policy made of files (name →
		// source) with Load; returns struct(errors, warnings, probes, rungs, hash).
		"policy": builtin("policy", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var (
				files *starlark.Dict
				goos  string
				steps int
			)
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "files", &files, "goos?", &goos, "steps?", &steps); err != nil {
				return nil, err
			}
			fsys := fstest.MapFS{}
			for _, kv := range files.Items() {
				k, _ := starlark.AsString(kv[0])
				v, _ := starlark.AsString(kv[1])
				fsys[k] = &fstest.MapFile{Data: []byte(v)}
			}
			cfg := config.Default()
			cfg.ServicesFile = c.cfg.ServicesFile
			res := Load("/policy", Options{Config: cfg, FS: fsys, GOOS: goos, MaxSteps: uint64(steps)})
			var errs, probes, rungs []string
			for _, e := range res.Errors {
				errs = append(errs, e.Error())
			}
			if res.Policy != nil {
				for _, p := range res.Policy.Probes {
					probes = append(probes, p.Name)
				}
				for _, r := range res.Policy.Ladder {
					rungs = append(rungs, r.Name)
				}
			}
			return structOf(starlark.StringDict{
				"errors": stringList(errs), "warnings": stringList(res.Warnings), "probes": stringList(probes),
				"rungs": stringList(rungs), "hash": starlark.String(res.Hash), "ok": starlark.Bool(res.Policy != nil),
			}), nil
		}),
	}}
}
