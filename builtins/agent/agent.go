// Package agent holds agent.run, the action that hands an incident to an AI
// agent CLI, and agent.prompt, the builder of Talon's default recovery prompt.
//
// Wiring for the loader:
//
//   - Import the package for its init side effect: it registers "agent.run"
//     and "agent.prompt" (probe.Register), which make the `agent` module.
//   - agent.run(prompt=f) with a Starlark function f needs a Caller on the
//     load thread (SetCaller): the loader's run-phase machinery that calls a
//     policy function with the incident, the same one `rung(when=...)` uses.
//   - agent.prompt(incident) accepts any Starlark value implementing Viewer,
//     so the loader's incident value needs one method:
//     IncidentView() *engine.IncidentView.
package agent

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/text"
)

func init() {
	probe.Register(probe.Builtin{Name: "agent.run", Fn: runBuiltin, Doc: `def run(command, *, prompt=None, timeout="5m", shell=None):
Runs an AI agent CLI with the incident's recovery prompt on its standard input, in its own
process group under the rung's deadline: at the timeout the group gets SIGTERM, then SIGKILL
5s later. Exit status 0 counts as done; the rung's verify re-probe decides if it worked.
command: a shell command string (run with sh -c) or an argv list (no shell)
prompt: a non-empty string, a function of the incident returning a string (e.g. calling agent.prompt), or None for agent.prompt's default
timeout: deadline of the run, e.g. "5m"; the rung's own timeout also bounds it
shell: how a string command runs: "sh" (sh -c, the default), "bash" (bash -c), "zsh" (zsh -lc, a login shell) or a list such as ["zsh", "-lc"]`})
	probe.Register(probe.Builtin{Name: "agent.prompt", Fn: promptBuiltin, Doc: `def prompt(incident, *, task=None, log_file=None, worker_stderr=None, max_output=800):
Returns Talon's recovery prompt for an incident: the agent's role and goal, one line per
failing probe, what the rungs that already ran printed, the tail of Talon's log and of the
worker's stderr, and the safety rules (no cluster recreation without approval, no deleting
volumes, no killing the SSH control socket, least destructive fix first, stop and report
before anything destructive). Call it from a prompt function while the rung runs.
incident: the incident handed to the prompt function
task: what to restore, in your words, e.g. "the Kubernetes node in Colima and the worker on :3111"
log_file: Talon's log file; its last 120 lines (at most 4000 characters) are included. Like
  worker_stderr, it must be a file no other user can write (strict modes), or the call fails
worker_stderr: the worker's stderr log file, included the same way
max_output: characters kept of each failing probe's output (default 800)`})
}

// Grace is how long an agent gets between SIGTERM and SIGKILL.
const Grace = 5 * time.Second // below the daemon's shutdown wait, so no agent outlives a stop

// DefaultTimeout bounds one agent run.
const DefaultTimeout = 5 * time.Minute

// PromptFunc builds the prompt for an incident at run time.
type PromptFunc interface {
	Prompt(ctx context.Context, inc *engine.IncidentView) (string, error)
}

// Text is a fixed prompt.
type Text string

// Prompt returns the text.
func (t Text) Prompt(context.Context, *engine.IncidentView) (string, error) { return string(t), nil }

// DefaultPrompt is Prompt(inc, Options) for every incident.
type DefaultPrompt struct{ Options PromptOptions }

// Prompt builds Talon's recovery prompt.
func (d DefaultPrompt) Prompt(_ context.Context, inc *engine.IncidentView) (string, error) {
	return Prompt(inc, d.Options), nil
}

// Caller runs a policy function with the incident at run time and returns
// its result. The loader provides it: a fresh thread with the step budget,
// star.SetRun with the rung's environment, cancellation from ctx, and the
// incident converted to the Starlark value policies see.
type Caller func(ctx context.Context, fn starlark.Callable, inc *engine.IncidentView) (starlark.Value, error)

const callerKey = "talon.agent.caller"

// SetCaller makes prompt functions usable in agent.run calls on thread.
func SetCaller(thread *starlark.Thread, c Caller) { thread.SetLocal(callerKey, c) }

// funcPrompt is a Starlark prompt function run through a Caller.
type funcPrompt struct {
	fn     starlark.Callable
	caller Caller
}

func (f funcPrompt) Prompt(ctx context.Context, inc *engine.IncidentView) (string, error) {
	v, err := f.caller(ctx, f.fn, inc)
	if err != nil {
		return "", err
	}
	s, ok := starlark.AsString(v)
	if !ok {
		return "", fmt.Errorf("prompt function %s returned %s, want a string", f.fn.Name(), v.Type())
	}
	return s, nil
}

// Run is the agent.run action.
type Run struct {
	Argv    []string
	Command string // the command as written, for Describe
	Prompt  PromptFunc
	Timeout time.Duration
}

var (
	_ engine.Action  = (*Run)(nil)
	_ starlark.Value = (*Run)(nil)
)

// shells are the shells a string command may run under.
var shells = map[string][]string{
	"sh":   {"sh", "-c"},
	"bash": {"bash", "-c"},
	"zsh":  {"zsh", "-lc"},
}

// New builds an agent run of argv. A nil prompt means DefaultPrompt{}; a
// Text prompt must not be blank, and timeout must be positive.
func New(argv []string, prompt PromptFunc, timeout time.Duration) (*Run, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("command must name a program")
	}
	if t, ok := prompt.(Text); ok && strings.TrimSpace(string(t)) == "" {
		return nil, errors.New("prompt is empty")
	}
	if prompt == nil {
		prompt = DefaultPrompt{}
	}
	if timeout <= 0 {
		return nil, errors.New("timeout must be more than 0 (leave it out for the default 5m)")
	}
	return &Run{Argv: append([]string(nil), argv...), Command: strings.Join(argv, " "), Prompt: prompt, Timeout: timeout}, nil
}

// NewShell builds an agent run of a shell command line; shell is a key of
// the shells table ("" is "sh") or a full prefix such as ["zsh", "-lc"].
func NewShell(command string, shell []string, prompt PromptFunc, timeout time.Duration) (*Run, error) {
	if strings.TrimSpace(command) == "" {
		return nil, errors.New("command is empty")
	}
	if len(shell) == 0 {
		shell = shells["sh"]
	}
	r, err := New(append(append([]string(nil), shell...), command), prompt, timeout)
	if err != nil {
		return nil, err
	}
	r.Command = command
	return r, nil
}

// Describe shows the command as written.
func (r *Run) Describe() string { return "agent.run " + text.Runes(r.Command, 120) }

var wordRE = regexp.MustCompile(`^[A-Za-z0-9_./~+-]+$`)

// Programs is the program run and, for a shell command, its first word when
// that is plainly a program name, and the programs of the rest of it (the
// members of a pipeline, the commands after ; && ||: probe.ShellPrograms).
func (r *Run) Programs() []string {
	out := []string{r.Argv[0]}
	if r.Command != strings.Join(r.Argv, " ") {
		if f := strings.Fields(r.Command); len(f) > 0 && wordRE.MatchString(f[0]) && !strings.Contains(f[0], "=") {
			out = append(out, f[0])
		}
		for _, p := range probe.ShellPrograms(r.Command) {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// Run builds the prompt and runs the agent with it on stdin. The child's
// group is killed at the timeout (SIGTERM, SIGKILL after Grace) and when the
// leader exits, so nothing it started survives it.
func (r *Run) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	prompt, err := r.Prompt.Prompt(ctx, env.Incident)
	if err != nil {
		return engine.ActionResult{Output: "agent.run: prompt: " + err.Error()}
	}
	limit := r.Timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < limit {
		limit = time.Until(dl).Round(time.Second) // the rung's deadline comes first
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	res := env.Effects.Exec(ctx, effect.Command{
		Argv:  r.Argv,
		Env:   env.Env,
		Stdin: []byte(prompt),
		Grace: Grace,
	})
	out := engine.ExecOutcome(res, limit).Output
	if res.TimedOut && errors.Is(ctx.Err(), context.Canceled) {
		// Shutdown or a reload, not the deadline.
		out = "canceled"
		if partial := engine.CombineOutput(res.Stdout, res.Stderr); partial != "" {
			out += ": " + partial
		}
	}
	return engine.ActionResult{OK: res.OK(), Output: out}
}

// starlark.Value

func (r *Run) String() string        { return r.Describe() }
func (r *Run) Type() string          { return "agent.run" }
func (r *Run) Freeze()               {}
func (r *Run) Truth() starlark.Bool  { return true }
func (r *Run) Hash() (uint32, error) { return 0, errors.New("unhashable type: agent.run") }

func runBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		command starlark.Value
		prompt  starlark.Value
		timeout = star.Duration{D: DefaultTimeout}
		shell   starlark.Value
	)
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: got %d positional arguments, want 1 (the others are keyword arguments)", b.Name(), len(args))
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "command", &command, "prompt??", &prompt,
		"timeout?", &timeout, "shell??", &shell); err != nil {
		return nil, err
	}
	var pf PromptFunc
	switch p := prompt.(type) {
	case nil:
	case starlark.String:
		pf = Text(p)
	case PromptFunc:
		pf = p
	case starlark.Callable:
		c, ok := thread.Local(callerKey).(Caller)
		if !ok {
			return nil, fmt.Errorf("%s: prompt: this host cannot call policy functions at run time (no agent.SetCaller)", b.Name())
		}
		pf = funcPrompt{fn: p, caller: c}
	default:
		return nil, fmt.Errorf("%s: for parameter prompt: want a string or a function of the incident, got %s", b.Name(), prompt.Type())
	}
	var (
		r   *Run
		err error
	)
	switch c := command.(type) {
	case starlark.String:
		var prefix []string
		switch s := shell.(type) {
		case nil:
		case starlark.String:
			prefix = shells[string(s)]
			if prefix == nil {
				return nil, fmt.Errorf("%s: shell %q: want \"sh\", \"bash\", \"zsh\" or a list such as [\"zsh\", \"-lc\"]", b.Name(), string(s))
			}
		default:
			var l star.StringList
			if err := l.Unpack(shell); err != nil || len(l) == 0 || l[0] == "" {
				return nil, fmt.Errorf("%s: shell: want \"sh\", \"bash\", \"zsh\" or a non-empty list of strings", b.Name())
			}
			prefix = l
		}
		r, err = NewShell(string(c), prefix, pf, timeout.D)
	default:
		var argv star.StringList
		if uerr := argv.Unpack(command); uerr != nil {
			return nil, fmt.Errorf("%s: for parameter command: want a string or a list of strings, got %s", b.Name(), command.Type())
		}
		if shell != nil {
			return nil, fmt.Errorf("%s: shell applies only to a string command, not an argv list", b.Name())
		}
		r, err = New(argv, pf, timeout.D)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return r, nil
}
