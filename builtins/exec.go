package builtins

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// Exec is the exec module: actions that run programs, and exec.run for
// functions that need a command's output while they run.
//
//	def cmd(argv, *, env=None, dir=None):
//	    An action running argv (no shell) in its own process group under the rung's
//	    deadline; at the deadline the group gets SIGTERM, then SIGKILL 5s later. Processes
//	    it starts in the background survive it (heal scripts that start daemons).
//	    argv: program and arguments, e.g. [config.heal_script]
//	    env: dict of extra environment variables
//	    dir: working directory
//	def shell(command):
//	    The same action running command with "sh -c".
//	    command: shell command line, e.g. "colima stop --force; colima start"
//	def run(argv, *, timeout=None, env=None, dir=None, optional=False):
//	    Run phase only (probe.func and do= functions): runs argv and returns
//	    struct(code, stdout, stderr, ok, timed_out). A program that cannot start gives
//	    code -1 and the reason in stderr. The process group is killed at the timeout.
//	    talon validate warns about a program of a literal argv that is not on the child
//	    PATH; one that is not found at run time is logged the first time.
//	    argv: program and arguments
//	    timeout: deadline, e.g. "5s" (default: the caller's own deadline)
//	    env: dict of extra environment variables
//	    dir: working directory
//	    optional: the program may be missing on this host (a fallback for another system,
//	        such as macOS's memory_pressure): neither validate nor the log mention it
var Exec = &starlarkstruct.Module{Name: "exec", Members: starlark.StringDict{
	"cmd":   starlark.NewBuiltin("exec.cmd", execCmd),
	"shell": starlark.NewBuiltin("exec.shell", execShell),
	"run":   starlark.NewBuiltin("exec.run", execRun),
}}

// ActionGrace is how long an action's process group gets between SIGTERM
// and SIGKILL when its rung's deadline passes.
const ActionGrace = 5 * time.Second

// CmdAction is the action of exec.cmd and exec.shell.
type CmdAction struct {
	Argv  []string
	Env   map[string]string
	Dir   string
	Shell string // the command line of exec.shell; "" for exec.cmd
}

var (
	_ engine.Action  = (*CmdAction)(nil)
	_ starlark.Value = (*CmdAction)(nil)
)

func (a *CmdAction) String() string        { return "<action " + a.Describe() + ">" }
func (a *CmdAction) Type() string          { return "action" }
func (a *CmdAction) Freeze()               {}
func (a *CmdAction) Truth() starlark.Bool  { return starlark.True }
func (a *CmdAction) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: action") }

// Describe implements engine.Action.
func (a *CmdAction) Describe() string {
	if a.Shell != "" {
		return "sh -c " + strconv.Quote(a.Shell)
	}
	return strings.Join(a.Argv, " ")
}

// Programs implements engine.Action.
func (a *CmdAction) Programs() []string {
	if a.Shell != "" {
		return probe.ShellPrograms(a.Shell)
	}
	return []string{a.Argv[0]}
}

// Run implements engine.Action.
func (a *CmdAction) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	cmd := effect.Command{Argv: a.Argv, Dir: a.Dir, Env: withEnv(env.Env, a.Env), KeepGroup: true, Grace: ActionGrace}
	r := env.Effects.Exec(ctx, cmd)
	out := engine.CombineOutput(r.Stdout, r.Stderr)
	switch {
	case r.Err != nil:
		out = r.Err.Error()
	case r.TimedOut:
		out = strings.TrimSpace("timed out, process group killed\n" + out)
	case r.ExitCode != 0:
		out = strings.TrimSpace(fmt.Sprintf("exit status %d\n%s", r.ExitCode, out))
	}
	return engine.ActionResult{OK: r.OK(), Output: out}
}

func withEnv(base []string, extra map[string]string) []string {
	out := append([]string(nil), base...)
	for _, k := range star.Keys(extra) {
		out = append(out, k+"="+extra[k])
	}
	return out
}

func execCmd(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		argv star.StringList
		env  star.StringMap
		dir  string
	)
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: pass env= and dir= by name", b.Name())
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "argv", &argv, "env??", &env, "dir??", &dir); err != nil {
		return nil, err
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%s: argv must start with a program (is the config key it comes from set?)", b.Name())
	}
	return &CmdAction{Argv: argv, Env: env, Dir: dir}, nil
}

func execShell(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var command string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "command", &command); err != nil {
		return nil, err
	}
	if strings.TrimSpace(command) == "" {
		return nil, fmt.Errorf("%s: command must not be empty", b.Name())
	}
	return &CmdAction{Argv: []string{"sh", "-c", command}, Shell: command}, nil
}

func execRun(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	run, err := star.Effects(thread, b)
	if err != nil {
		return nil, err
	}
	var (
		argv     star.StringList
		timeout  star.Duration
		env      star.StringMap
		dir      string
		optional bool
	)
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: pass timeout=, env=, dir= and optional= by name", b.Name())
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "argv", &argv, "timeout??", &timeout, "env??", &env, "dir??", &dir, "optional??", &optional); err != nil {
		return nil, err
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%s: argv must start with a program", b.Name())
	}
	ctx := run.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if timeout.D > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout.D)
		defer cancel()
	}
	// An argv computed at run time escapes talon validate's strict modes
	// (collector.finish): its program is checked here, before it runs.
	if prog, err := effect.LookPath(argv[0], pathOf(withEnv(run.Env, env))); err == nil {
		if err := run.Files.CheckPath(prog); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: runs %s: %v", b.Name(), argv[0], err)
		}
	}
	r := run.Effects.Exec(ctx, effect.Command{Argv: argv, Dir: dir, Env: withEnv(run.Env, env)})
	stderr := r.Stderr
	if r.Err != nil {
		stderr = r.Err.Error()
		if !optional && run.NotFound != nil {
			if _, err := effect.LookPath(argv[0], pathOf(run.Env)); err != nil {
				run.NotFound(argv[0], star.Pos(thread))
			}
		}
	} else if r.TimedOut {
		stderr = strings.TrimSpace(stderr + "\ntimed out")
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"code":      starlark.MakeInt(r.ExitCode),
		"stdout":    starlark.String(r.Stdout),
		"stderr":    starlark.String(stderr),
		"ok":        starlark.Bool(r.OK()),
		"timed_out": starlark.Bool(r.TimedOut),
	}), nil
}

// pathOf is the PATH of an environment.
func pathOf(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return ""
}
