package probe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "ssh.probe", Fn: sshProbe, Doc: `def probe(name, host, command, *, config=None, port=None, user=None, identity=None, **common):
Runs command on host with the system ssh (so ssh config, keys, agents and
ControlMaster work as they do for the user); exit status 0 passes. ssh runs
with BatchMode=yes (never a password prompt) and a ConnectTimeout taken from
the probe's deadline. A string command is handed to the remote shell exactly
as written, as one argument, so its quoting survives: "python3 -c 'import socket; ...'".
A list is quoted word by word, so the remote program gets exactly those arguments.
Exit status 255 is ssh's own failure (connection, host key, authentication).
name: unique probe name
host: host name or ssh config Host alias, e.g. "lima-colima"
command: remote shell command (string) or argv (list of strings)
config: ssh config file (-F), "~" allowed, e.g. "~/.colima/_lima/colima/ssh.config"; like
  every program a policy runs, it must be a file no other user can write (strict modes)
port: TCP port (-p)
user: remote user (-l)
identity: private key file (-i); only this key is offered (IdentitiesOnly=yes)`})
	Register(Builtin{Name: "ssh.run", Fn: sshRun, Doc: `def run(host, command, *, config=None, port=None, user=None, identity=None, timeout="60s"):
Run phase only (probe.func, rung functions): runs command on host like
ssh.probe and returns struct(code, stdout, stderr, ok, timed_out). The call is
bounded by timeout and by the deadline of the probe or rung it runs in.`})
}

// sshTarget is what ssh.probe and ssh.run share.
type sshTarget struct {
	host     string
	cmdArg   starlark.Value // the command argument as given: string or list
	command  []string
	list     bool // command was given as a list of words
	config   string
	port     int
	user     string
	identity string
}

func (s *sshTarget) params() []any {
	return []any{"host", &s.host, "command", &s.cmdArg, "config?", &s.config, "port?", &s.port, "user?", &s.user, "identity?", &s.identity}
}

// check validates the arguments and settles the command.
func (s *sshTarget) check() error {
	if str, ok := s.cmdArg.(starlark.String); ok {
		s.command = []string{string(str)}
	} else {
		var l star.StringList
		if err := l.Unpack(s.cmdArg); err != nil {
			return fmt.Errorf("command: want a string or a list of strings, got %s", s.cmdArg.Type())
		}
		s.command, s.list = l, true
	}
	switch {
	case s.host == "":
		return fmt.Errorf("host must not be empty")
	case flagLike(s.host) || strings.ContainsAny(s.host, " \t\n"):
		return fmt.Errorf("host %q is not a host name", s.host)
	case len(s.command) == 0 || strings.TrimSpace(strings.Join(s.command, "")) == "":
		return fmt.Errorf("command must not be empty")
	case s.port < 0 || s.port > 65535:
		return fmt.Errorf("port %d is out of range", s.port)
	case s.user != "" && (flagLike(s.user) || strings.ContainsAny(s.user, " \t\n")):
		return fmt.Errorf("user %q is not a user name", s.user)
	}
	return nil
}

// remote is the one argument handed to ssh as the remote command.
func (s *sshTarget) remote() string {
	if s.list {
		return shellJoin(s.command)
	}
	return s.command[0]
}

// argv builds the ssh command line for a run whose deadline is ctx's.
func (s *sshTarget) argv(ctx context.Context, env []string) []string {
	argv := []string{"ssh",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=" + strconv.Itoa(secondsLeft(ctx, 10*time.Second)),
	}
	if s.config != "" {
		argv = append(argv, "-F", userPath(s.config, env))
	}
	if s.port != 0 {
		argv = append(argv, "-p", strconv.Itoa(s.port))
	}
	if s.user != "" {
		argv = append(argv, "-l", s.user)
	}
	if s.identity != "" {
		argv = append(argv, "-i", userPath(s.identity, env), "-o", "IdentitiesOnly=yes")
	}
	// "--" ends ssh's options: without it ssh would parse a command that
	// starts with "-" as more options.
	return append(argv, "--", s.host, s.remote())
}

func (s *sshTarget) key() []string {
	return []string{s.host, s.remote(), s.config, strconv.Itoa(s.port), s.user, s.identity}
}

func sshProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c    Common
		name string
		s    sshTarget
	)
	if err := c.Unpack(b, args, kwargs, append([]any{"name", &name}, s.params()...)...); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %s: %v", b.Name(), name, err)
	}
	p, err := c.Spec(thread, b, name, "ssh", sshCheck(s), s.key()...)
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"ssh"}
	if s.config != "" {
		p.Reads = []string{s.config}
	}
	return Declare(thread, b, p)
}

func sshCheck(s sshTarget) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		r := env.Effects.Exec(ctx, env.Command(s.argv(ctx, env.Env)...))
		o := engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
		if r.Err == nil && !r.TimedOut && r.ExitCode == 255 {
			// 255 is ssh's own failure; say so rather than blame the command.
			msg := engine.CombineOutput(r.Stdout, r.Stderr)
			if msg == "" {
				msg = "no message"
			}
			o.Output = fmt.Sprintf("ssh to %s failed (exit 255): %s", s.host, msg)
		}
		return o
	}
}

func sshRun(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		s       sshTarget
		timeout star.Duration
	)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, append(s.params(), "timeout?", &timeout)...); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return runCommand(thread, b, timeout.D, []string{s.config}, func(ctx context.Context, env []string) ([]string, []string) {
		return s.argv(ctx, env), nil
	})
}
