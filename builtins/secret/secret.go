// Package secret is Talon's opaque secret value. A policy names a secret and
// where it comes from; the value is fetched only at the moment an action needs
// it and is never kept, printed, journaled or passed in a process's arguments.
//
// The loader predeclares Builtin as the top-level `secret` and may set the
// default lease command of a load with SetLeaseCommand:
//
//	thread := &starlark.Thread{Name: "load"}
//	secret.SetLeaseCommand(thread, cfg.Secrets.LeaseCommand) // nil keeps DefaultLeaseCommand
//	predeclared := starlark.StringDict{"secret": secret.Builtin, ...}
package secret

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm"
)

// Doc is the reference entry of the `secret` builtin.
const Doc = `def secret(name, *, env=None, file=None, command=None):
A secret fetched only when an action needs it. It prints as <secret NAME> everywhere
(logs, journal, repr, errors) and cannot be turned into a string; "Bearer " + secret(...)
is again a secret. Without env, file or command it is leased through the configured lease
command ([secrets] lease_command, default ["secrets", "lease", "{name}", "--ttl", "30m"]).
name: the secret's name, substituted for {name} in the lease command
env: read it from this environment variable of the daemon
file: read it from this file (absolute or ~/ path), surrounding whitespace trimmed; like every file talon reads, it must be owned by talon's user or root and not writable by group or others, along its whole path (config strict_modes)
command: lease it with this argv ({name} substituted); the first non-empty stdout line not starting with WARNING: is the value`

// DefaultLeaseCommand leases a secret for 30 minutes; "{name}" is replaced
// by the secret's name.
var DefaultLeaseCommand = []string{"secrets", "lease", "{name}", "--ttl", "30m"}

// LeaseTimeout bounds one run of a lease command.
const LeaseTimeout = 10 * time.Second

const (
	leaseKey = "talon.secret.lease_command"
	filesKey = "talon.secret.files"
)

// SetFiles sets the strict modes (package fsperm) of the secrets declared on
// thread: a secret(file=...) that exists when the policy loads is checked
// then, and refused or warned about as files decides; when it is read, it is
// checked again, strictly unless files is relaxed. Without SetFiles the
// check happens only when the secret is read, strictly.
func SetFiles(thread *starlark.Thread, files *fsperm.Checker) {
	thread.SetLocal(filesKey, files)
}

// SetLeaseCommand sets the lease command that secret() calls on thread use
// when they name no source of their own (config `[secrets] lease_command`).
// An empty argv keeps DefaultLeaseCommand. The command is captured when
// secret() is called, so set it before the policy executes.
func SetLeaseCommand(thread *starlark.Thread, argv []string) {
	thread.SetLocal(leaseKey, append([]string(nil), argv...))
}

func leaseCommand(thread *starlark.Thread) []string {
	if argv, ok := thread.Local(leaseKey).([]string); ok && len(argv) > 0 {
		return argv
	}
	return DefaultLeaseCommand
}

// Placeholder may be implemented by effects that perform nothing (shadow
// mode, replay). Resolve then asks it for a stand-in value instead of reading
// the environment or a file or running the lease command, so that a dry run
// neither leases a secret nor fails for want of one. It is called with the
// secret's name only.
type Placeholder interface {
	SecretPlaceholder(ctx context.Context, name string) string
}

type source int

const (
	fromCommand source = iota
	fromEnv
	fromFile
	fromLiteral
)

// Secret is a named secret and where its value comes from. It holds no value
// (except a Literal, which the policy itself spelled out). Every way of
// printing it — String, fmt verbs, JSON, text, slog — gives <secret NAME>.
type Secret struct {
	name    string
	src     source
	where   string        // env var name or file path
	argv    []string      // lease command, {name} not yet substituted
	literal func() string // a func, so that no reflection-based printer can show it
	// relaxed reads a file secret that others could change, with
	// strict_modes = false (the load warned about it).
	relaxed bool
	prefix  string // "Bearer " + secret
	suffix  string
}

var (
	_ starlark.Value     = (*Secret)(nil)
	_ starlark.HasBinary = (*Secret)(nil)
	_ fmt.Formatter      = Secret{}
	_ fmt.GoStringer     = Secret{}
	_ slog.LogValuer     = Secret{}
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:/@-]*$`)

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("secret: name %q: use letters, digits and _ . : / @ -", name)
	}
	return nil
}

// FromEnv is a secret read from the environment variable envVar.
func FromEnv(name, envVar string) (*Secret, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if envVar == "" || strings.ContainsAny(envVar, "= \t\n") {
		return nil, fmt.Errorf("secret %s: env %q is not a variable name", name, envVar)
	}
	return &Secret{name: name, src: fromEnv, where: envVar}, nil
}

// FromFile is a secret read from a file; path must be absolute or start with ~/.
func FromFile(name, path string) (*Secret, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(path) && !strings.HasPrefix(path, "~/") {
		return nil, fmt.Errorf("secret %s: file %q must be an absolute path or start with ~/", name, path)
	}
	return &Secret{name: name, src: fromFile, where: path}, nil
}

// FromCommand is a secret leased by running argv, in which "{name}" is
// replaced by the secret's name. A nil argv means DefaultLeaseCommand.
func FromCommand(name string, argv []string) (*Secret, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if argv == nil {
		argv = DefaultLeaseCommand
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("secret %s: the lease command must name a program", name)
	}
	return &Secret{name: name, src: fromCommand, argv: append([]string(nil), argv...)}, nil
}

// Literal wraps a value the policy or config spelled out (a plain string
// passed where a secret is expected), so it is handled and printed like any
// other secret.
func Literal(name, value string) *Secret {
	return &Secret{name: name, src: fromLiteral, literal: func() string { return value }}
}

// Name is the secret's name.
func (s *Secret) Name() string { return s.name }

// Plain returns the value of a Literal (a plain string the policy spelled
// out where a secret is expected), text around it included, so that a
// builder can check it where it is declared. ok is false for every other
// source: their value is known only when they are resolved, and is checked
// then. Never put the value in an error or a log.
func (s *Secret) Plain() (value string, ok bool) {
	if s.src != fromLiteral {
		return "", false
	}
	return s.prefix + s.literal() + s.suffix, true
}

// Origin describes the secret and where its value comes from, never the
// value itself (a Literal is only "literal"): for digests that must change
// when the source does.
func (s *Secret) Origin() string {
	var where string
	switch s.src {
	case fromEnv:
		where = "env " + s.where
	case fromFile:
		where = "file " + s.where
	case fromLiteral:
		where = "literal"
	default:
		where = "command " + strings.Join(s.argv, " ")
	}
	return fmt.Sprintf("%s (%s) %q+%q", s.name, where, s.prefix, s.suffix)
}

// Programs lists the executable the secret runs to resolve (the lease
// command's), for `talon validate`.
func (s *Secret) Programs() []string {
	if s.src == fromCommand {
		return []string{s.argv[0]}
	}
	return nil
}

// Unavailable says why the secret cannot be had on this host as things
// stand, without fetching it: an environment variable that is not set (in
// env, else the daemon's own environment), a file that does not exist. It
// returns "" when the secret may be had; a secret leased through a command
// is only known when it is leased (its program is checked with Programs).
func (s *Secret) Unavailable(env []string) string {
	switch s.src {
	case fromEnv:
		if v, ok := lookupEnv(env, s.where); !ok || strings.TrimSpace(v) == "" {
			return fmt.Sprintf("secret %s: environment variable %s is not set for talon", s.name, s.where)
		}
	case fromFile:
		path, err := expandHome(s.where, env)
		if err != nil {
			return fmt.Sprintf("secret %s: %v", s.name, err)
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Sprintf("secret %s: file %s does not exist", s.name, path)
		}
	case fromLiteral:
		if s.literal() == "" {
			return fmt.Sprintf("secret %s is empty", s.name)
		}
	}
	return ""
}

// LeaseArgv is the lease command with the name substituted, or nil when the
// secret does not come from a command. It holds no secret value.
func (s *Secret) LeaseArgv() []string {
	if s.src != fromCommand {
		return nil
	}
	out := make([]string, len(s.argv))
	for i, a := range s.argv {
		out[i] = strings.ReplaceAll(a, "{name}", s.name)
	}
	return out
}

// Resolve fetches the value now. env is the environment of the lease command
// (its PATH resolves the program) and the first place an env secret is looked
// up; the daemon's own environment is the second. Errors name the secret and
// never contain its value.
func (s *Secret) Resolve(ctx context.Context, eff effect.Effects, env []string) (string, error) {
	v, err := s.resolve(ctx, eff, env)
	if err != nil {
		return "", err
	}
	return s.prefix + v + s.suffix, nil
}

func (s *Secret) resolve(ctx context.Context, eff effect.Effects, env []string) (string, error) {
	if s.src == fromLiteral {
		v := s.literal()
		if v == "" {
			return "", fmt.Errorf("secret %s is empty", s.name)
		}
		return v, nil
	}
	if p, ok := eff.(Placeholder); ok {
		return p.SecretPlaceholder(ctx, s.name), nil
	}
	switch s.src {
	case fromEnv:
		v, ok := lookupEnv(env, s.where)
		if !ok {
			return "", fmt.Errorf("secret %s: environment variable %s is not set", s.name, s.where)
		}
		v = strings.TrimSpace(v)
		if v == "" {
			return "", fmt.Errorf("secret %s: environment variable %s is empty", s.name, s.where)
		}
		return v, nil
	case fromFile:
		path, err := expandHome(s.where, env)
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", s.name, err)
		}
		b, err := readFile(path, fsperm.New(!s.relaxed, nil))
		if err != nil {
			var unsafe *fsperm.Error
			if errors.As(err, &unsafe) {
				return "", fmt.Errorf("secret %s: %w", s.name, err)
			}
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("secret %s: read %s: %w", s.name, path, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("secret %s: file %s is empty", s.name, path)
		}
		return v, nil
	}
	return s.lease(ctx, eff, env)
}

func (s *Secret) lease(ctx context.Context, eff effect.Effects, env []string) (string, error) {
	limit := LeaseTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < limit {
		limit = time.Until(dl).Round(100 * time.Millisecond) // the caller's deadline comes first
	}
	ctx, cancel := context.WithTimeout(ctx, LeaseTimeout)
	defer cancel()
	argv := s.LeaseArgv()
	ctx = effect.WithDescription(ctx, "lease secret "+s.name+": "+strings.Join(argv, " "))
	r := eff.Exec(ctx, effect.Command{Argv: argv, Env: env, MaxOutput: 16 << 10})
	prog := filepath.Base(argv[0])
	switch {
	case r.TimedOut:
		return "", fmt.Errorf("secret %s: lease command %s timed out after %s", s.name, prog, limit)
	case r.Err != nil:
		return "", fmt.Errorf("secret %s: lease command: %w", s.name, r.Err)
	case r.ExitCode != 0:
		// No value was produced. Stderr would say why (a login prompt, a
		// denied lease), but a tool may also print what it refused or gave
		// before, and no filter can tell a passphrase or a short value
		// from words: nothing it printed leaves here, into the journal,
		// the log, /health or a page.
		return "", fmt.Errorf("secret %s: lease command %s exited %d (what it printed is not shown: it may hold the secret; run the command by hand to see it)", s.name, prog, r.ExitCode)
	}
	v, err := pickValue(r.Stdout)
	if err != nil {
		return "", fmt.Errorf("secret %s: lease command %s %w", s.name, prog, err)
	}
	return v, nil
}

// pickValue takes the first non-empty line of a lease command's output that
// is not a WARNING: line, and refuses what is clearly not a secret. Its
// errors never quote the output.
func pickValue(stdout string) (string, error) {
	for _, line := range strings.Split(stdout, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "WARNING:") {
			continue
		}
		switch {
		case strings.EqualFold(line, "ok"):
			return "", errors.New(`printed "ok" instead of a value`)
		case strings.IndexFunc(line, unicode.IsSpace) >= 0:
			return "", errors.New("printed a line with whitespace inside, which is not a secret value (a message?); refusing it")
		}
		return line, nil
	}
	return "", errors.New("printed no value")
}

// maxSecretFile bounds a file secret: a token, not a document.
const maxSecretFile = 64 << 10

// readFile reads a file secret through the strict-modes check.
func readFile(path string, files *fsperm.Checker) ([]byte, error) {
	f, err := files.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("larger than %d bytes, which is no secret value", maxSecretFile)
	}
	return b, nil
}

func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v, true
		}
	}
	return os.LookupEnv(key)
}

func expandHome(path string, env []string) (string, error) {
	rest, ok := strings.CutPrefix(path, "~/")
	if !ok {
		return path, nil
	}
	home, ok := lookupEnv(env, "HOME")
	if !ok || home == "" {
		return "", fmt.Errorf("cannot expand %s: HOME is not set", path)
	}
	return filepath.Join(home, rest), nil
}

// The printed form.

func (s Secret) String() string   { return "<secret " + s.name + ">" }
func (s Secret) GoString() string { return s.String() }

// Format prints <secret NAME> for every verb, %+v and %#v included.
func (s Secret) Format(f fmt.State, verb rune) { f.Write([]byte(s.String())) }

// MarshalJSON encodes the secret as the string "<secret NAME>".
func (s Secret) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s.String()); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// MarshalText gives <secret NAME>, for encoders that use text (map keys, TOML, logfmt).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue gives <secret NAME> to slog handlers.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// starlark.Value

// Type is "secret".
func (s *Secret) Type() string { return "secret" }

// Freeze does nothing: a Secret is immutable.
func (s *Secret) Freeze() {}

// Truth is always true.
func (s *Secret) Truth() starlark.Bool { return true }

// Hash fails: a secret is not a dict key.
func (s *Secret) Hash() (uint32, error) { return 0, errors.New("unhashable type: secret") }

// Binary implements string + secret and secret + string, which give a secret
// with that text around its value ("Bearer " + secret("api_token")).
func (s *Secret) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	str, ok := y.(starlark.String)
	if op != syntax.PLUS || !ok {
		return nil, nil
	}
	c := *s
	if side == starlark.Left {
		c.suffix += string(str)
	} else {
		c.prefix = string(str) + c.prefix
	}
	return &c, nil
}

// Builtin is the top-level `secret` function; the loader predeclares it.
var Builtin = starlark.NewBuiltin("secret", secretBuiltin)

func secretBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		name               string
		env, file, command starlark.Value // nil when absent or None
	)
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: got %d positional arguments, want 1 (env, file and command are keyword arguments)", b.Name(), len(args))
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "env??", &env, "file??", &file, "command??", &command); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	n := 0
	for _, v := range []starlark.Value{env, file, command} {
		if v != nil {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("secret %s: give only one of env, file, command", name)
	}
	str := func(param string, v starlark.Value) (string, error) {
		s, ok := starlark.AsString(v)
		if !ok {
			return "", fmt.Errorf("%s: for parameter %q: got %s, want string", b.Name(), param, v.Type())
		}
		return s, nil
	}
	switch {
	case env != nil:
		e, err := str("env", env)
		if err != nil {
			return nil, err
		}
		return value(FromEnv(name, e))
	case file != nil:
		f, err := str("file", file)
		if err != nil {
			return nil, err
		}
		s, err := FromFile(name, f)
		if err != nil {
			return nil, err
		}
		if files, ok := thread.Local(filesKey).(*fsperm.Checker); ok {
			s.relaxed = !files.Strict()
			// Refuse it where it is declared, so validate and a reload
			// see it, not only the page that needs it.
			home, _ := os.UserHomeDir()
			path := f
			if rest, ok := strings.CutPrefix(f, "~/"); ok && home != "" {
				path = filepath.Join(home, rest)
			}
			if err := files.CheckPath(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("secret %s: %w", name, err)
			}
		}
		return s, nil
	case command != nil:
		var argv star.StringList
		if err := argv.Unpack(command); err != nil {
			return nil, fmt.Errorf("%s: for parameter \"command\": %v", b.Name(), err)
		}
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("secret %s: command must name a program", name)
		}
		return value(FromCommand(name, argv))
	}
	return value(FromCommand(name, leaseCommand(thread)))
}

// value keeps a nil *Secret from becoming a non-nil starlark.Value.
func value(s *Secret, err error) (starlark.Value, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Arg unpacks a Starlark argument that is a secret or a plain string (which
// becomes a Literal called Name, "literal" by default).
type Arg struct {
	Name   string
	Secret *Secret
}

var _ starlark.Unpacker = (*Arg)(nil)

// Unpack implements starlark.Unpacker.
func (a *Arg) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case *Secret:
		a.Secret = x
	case starlark.String:
		if x == "" {
			return errors.New("must not be empty")
		}
		name := a.Name
		if name == "" {
			name = "literal"
		}
		a.Secret = Literal(name, string(x))
	default:
		return fmt.Errorf("want a secret or a string, got %s", v.Type())
	}
	return nil
}
