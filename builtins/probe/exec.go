package probe

import (
	"context"
	"fmt"
	"strings"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.exec", Fn: execProbe, Doc: `def exec(name, argv, *, env=None, dir=None, **common):
Runs argv (no shell) in its own process group; exit status 0 passes.
name: unique probe name
argv: program and arguments, e.g. ["colima", "status"]
env: dict of extra environment variables
dir: working directory`})
}

func execProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		c    Common
		name string
		argv star.StringList
		env  star.StringMap
		dir  string
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "argv", &argv, "env?", &env, "dir?", &dir); err != nil {
		return nil, err
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%s: %s: argv must name a program", b.Name(), name)
	}
	p, err := c.Spec(thread, b, name, "exec", CommandCheck(argv, env, dir), append([]string{dir}, append(argv, envKey(env)...)...)...)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{argv[0]}
	return Declare(thread, b, p)
}

// CommandCheck runs argv with extra env in dir; exit 0 passes.
func CommandCheck(argv []string, extra map[string]string, dir string) engine.Check {
	argv = append([]string(nil), argv...)
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		cmd := env.Command(argv...)
		cmd.Dir = dir
		for _, k := range star.Keys(extra) {
			cmd.Env = append(cmd.Env, k+"="+extra[k])
		}
		r := env.Effects.Exec(ctx, cmd)
		return engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
	}
}

func envKey(env map[string]string) []string {
	var out []string
	for _, k := range star.Keys(env) {
		out = append(out, k+"="+env[k])
	}
	return []string{strings.Join(out, "\x00")}
}
