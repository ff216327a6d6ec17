package notify

import (
	"context"
	"errors"
	"fmt"
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
	probe.Register(probe.Builtin{Name: "notify.command", Fn: commandBuiltin, Doc: `def command(argv, *, timeout="20s", name=None):
Pages by running a program with the message on its standard input (never in its arguments).
The child also gets TALON_MESSAGE_KIND ("sos", "resolved", "drill") and TALON_INCIDENT.
Exit status 0 is a delivery.
argv: program and arguments, e.g. ["ntfy", "publish", "--title", "talon", "alerts"]
timeout: deadline of the run, e.g. "20s"; the process group is killed when it passes
name: the channel's identity, "command:NAME" (default "command:PROG"); two commands of one program need one`})
}

// commandGrace is how long a paging command gets between SIGTERM and SIGKILL.
const commandGrace = 2 * time.Second

// Command pages by running argv with the message on stdin.
type Command struct {
	value
	Argv    []string
	Timeout time.Duration
}

var (
	_ engine.Pager   = (*Command)(nil)
	_ starlark.Value = (*Command)(nil)
)

// NewCommand validates and builds a command channel.
func NewCommand(argv []string, timeout time.Duration) (*Command, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("argv must name a program")
	}
	if err := checkTimeout(timeout, "20s"); err != nil {
		return nil, err
	}
	return &Command{value: value{kind: "notify.command"}, Argv: append([]string(nil), argv...), Timeout: timeout}, nil
}

func (c *Command) String() string { return c.Describe() }

// GoString is Describe too, so %#v shows no URL or credential.
func (c *Command) GoString() string { return c.Describe() }

// Describe shows the command line.
func (c *Command) Describe() string {
	return "notify.command " + text.Runes(strings.Join(c.Argv, " "), 120)
}

// Channel is "command:PROG", or "command:NAME" with name=.
func (c *Command) Channel() string { return c.channel("command:", progName(c.Argv[0])) }

// Destination is the whole command line.
func (c *Command) Destination() string { return strings.Join(c.Argv, "\x00") }

// Programs is argv[0].
func (c *Command) Programs() []string { return []string{c.Argv[0]} }

// Run sends env.Message.
func (c *Command) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	return run(ctx, c, env)
}

// Send runs the command with msg.Text on stdin.
func (c *Command) Send(ctx context.Context, env *engine.ActionEnv, msg engine.Message) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	incident := msg.Incident
	if incident == "" && env.Incident != nil {
		incident = env.Incident.ID
	}
	cmdEnv := append(append([]string(nil), env.Env...), "TALON_MESSAGE_KIND="+msg.Kind, "TALON_INCIDENT="+incident)
	r := env.Effects.Exec(ctx, effect.Command{Argv: c.Argv, Env: cmdEnv, Stdin: []byte(msg.Text + "\n"), Grace: commandGrace})
	if err := execError(r, c.Timeout); err != nil {
		return fmt.Errorf("notify.command %s: %v", progName(c.Argv[0]), err)
	}
	return nil
}

// execError explains a failed run in one line, or returns nil when it exited 0.
func execError(r effect.ExecResult, timeout time.Duration) error {
	if r.OK() {
		return nil
	}
	out := engine.ExecOutcome(r, timeout).Output
	return errors.New(text.Runes(strings.Join(strings.Fields(out), " "), 300))
}

func commandBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		argv    star.StringList
		timeout = star.Duration{D: 20 * time.Second}
		name    string
	)
	if err := checkPositional(b, args, 1); err != nil {
		return nil, err
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "argv", &argv, "timeout?", &timeout, "name??", &name); err != nil {
		return nil, err
	}
	c, err := NewCommand(argv, timeout.D)
	if err == nil {
		err = checkName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	c.name = name
	return c, nil
}
