package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

func init() {
	probe.Register(probe.Builtin{Name: "notify.imessage", Fn: imessageBuiltin, Doc: `def imessage(recipient, *, timeout="20s"):
Pages by iMessage on macOS: "imsg send --to RECIPIENT --text MESSAGE", and when that fails,
osascript driving Messages with the message passed as a script argument (never pasted into
AppleScript source). Where neither program exists (Linux) the page fails with
"notify.imessage: iMessage needs macOS (imsg or osascript)".
recipient: phone number or Apple ID e-mail address
timeout: deadline of each attempt, e.g. "20s"`})
}

// ErrNoIMessage is the one-line failure where neither imsg nor osascript can run.
var ErrNoIMessage = errors.New("notify.imessage: iMessage needs macOS (imsg or osascript)")

// imessageScript sends argv's second item to the participant named by its
// first. The message is data, so no quoting of it can break the script.
var imessageScript = []string{
	"on run argv",
	"tell application \"Messages\"",
	"set svc to 1st account whose service type = iMessage",
	"send (item 2 of argv) to participant (item 1 of argv) of svc",
	"end tell",
	"end run",
}

// IMessage pages one recipient by iMessage.
type IMessage struct {
	value
	Recipient string
	Timeout   time.Duration
}

var (
	_ engine.Pager   = (*IMessage)(nil)
	_ starlark.Value = (*IMessage)(nil)
)

// NewIMessage validates and builds an iMessage channel.
func NewIMessage(recipient string, timeout time.Duration) (*IMessage, error) {
	switch {
	case recipient == "":
		return nil, errors.New("recipient is empty")
	case strings.HasPrefix(recipient, "-"):
		return nil, fmt.Errorf("recipient %q must not start with -", recipient)
	case strings.IndexFunc(recipient, unicode.IsSpace) >= 0:
		return nil, fmt.Errorf("recipient %q has whitespace in it", recipient)
	}
	if err := checkTimeout(timeout, "20s"); err != nil {
		return nil, err
	}
	return &IMessage{value: value{kind: "notify.imessage"}, Recipient: recipient, Timeout: timeout}, nil
}

func (m *IMessage) String() string { return m.Describe() }

// GoString is Describe too, so %#v shows no URL or credential.
func (m *IMessage) GoString() string { return m.Describe() }

// Describe names the recipient.
func (m *IMessage) Describe() string { return "notify.imessage " + m.Recipient }

// Channel is "imessage:RECIPIENT".
func (m *IMessage) Channel() string { return "imessage:" + m.Recipient }

// Destination is the recipient.
func (m *IMessage) Destination() string { return m.Recipient }

// Programs are imsg and its fallback osascript.
func (m *IMessage) Programs() []string { return []string{"imsg", "osascript"} }

// Run sends env.Message.
func (m *IMessage) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	return run(ctx, m, env)
}

// Send tries imsg, then osascript, each under the channel's timeout.
func (m *IMessage) Send(ctx context.Context, env *engine.ActionEnv, msg engine.Message) error {
	attempt := func(argv []string) effect.ExecResult {
		ctx, cancel := context.WithTimeout(ctx, m.Timeout)
		defer cancel()
		return env.Effects.Exec(ctx, effect.Command{Argv: argv, Env: env.Env, Grace: commandGrace})
	}
	r1 := attempt([]string{"imsg", "send", "--to", m.Recipient, "--text", msg.Text})
	if r1.OK() {
		return nil
	}
	argv := []string{"osascript"}
	for _, line := range imessageScript {
		argv = append(argv, "-e", line)
	}
	r2 := attempt(append(argv, m.Recipient, msg.Text))
	if r2.OK() {
		return nil
	}
	if r1.Err != nil && r2.Err != nil {
		// Neither program could start: not a Mac.
		return ErrNoIMessage
	}
	return fmt.Errorf("notify.imessage %s: imsg: %v; osascript: %v", m.Recipient, execError(r1, m.Timeout), execError(r2, m.Timeout))
}

func imessageBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		recipient string
		timeout   = star.Duration{D: 20 * time.Second}
	)
	if err := checkPositional(b, args, 1); err != nil {
		return nil, err
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "recipient", &recipient, "timeout?", &timeout); err != nil {
		return nil, err
	}
	m, err := NewIMessage(recipient, timeout.D)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return m, nil
}
