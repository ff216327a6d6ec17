package secret_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm"
)

// value is what every secret in these tests resolves to; it must never show
// up anywhere but in the resolved string.
const value = "tok-9f8e7d6c5b4a"

func env(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, extra...)
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lease.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// eval evaluates a Starlark expression with `secret` predeclared.
func eval(t *testing.T, expr string, setup func(*starlark.Thread)) (starlark.Value, error) {
	t.Helper()
	thread := &starlark.Thread{Name: "test"}
	if setup != nil {
		setup(thread)
	}
	globals, err := starlark.ExecFile(thread, "talon.star", "x = "+expr, starlark.StringDict{"secret": secret.Builtin})
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			return nil, errors.New(ee.Msg)
		}
		return nil, err
	}
	return globals["x"], nil
}

func mustSecret(t *testing.T, expr string, setup func(*starlark.Thread)) *secret.Secret {
	t.Helper()
	v, err := eval(t, expr, setup)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	s, ok := v.(*secret.Secret)
	if !ok {
		t.Fatalf("%s: got %s, want a secret", expr, v.Type())
	}
	return s
}

func TestSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("\n  "+value+"  \n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "tok"), []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A lease command in the style of the one that broke the predecessor's
	// Telegram page: WARNING lines first, then the value, with {name} in argv.
	lease := script(t, `echo "WARNING: lease for $1 expires in 30m"
echo
echo "WARNING: agent socket not found, using file store"
echo "  tok-9f8e7d6c5b4a  "
echo "a trailing line is ignored"
echo "WARNING: on stderr too" >&2
`)
	named := script(t, `test "$2" = telegram_bot_token && echo "tok-9f8e7d6c5b4a"`)
	cases := []struct {
		name  string
		expr  string
		setup func(*starlark.Thread)
		env   []string
	}{
		{"env", `secret("tg", env = "TALON_TEST_TOKEN")`, nil, env("TALON_TEST_TOKEN=" + value)},
		{"env last wins", `secret("tg", env = "TALON_TEST_TOKEN")`, nil, env("TALON_TEST_TOKEN=old", "TALON_TEST_TOKEN="+value)},
		{"file trimmed", fmt.Sprintf(`secret("tg", file = %q)`, file), nil, env()},
		{"file under home", `secret("tg", file = "~/tok")`, nil, env("HOME=" + home)},
		{"command with WARNING lines", fmt.Sprintf(`secret("tg", command = [%q, "{name}"])`, lease), nil, env()},
		{"default lease command from the loader", `secret("telegram_bot_token")`, func(th *starlark.Thread) {
			secret.SetLeaseCommand(th, []string{named, "lease", "{name}", "--ttl", "30m"})
		}, env()},
		{"prefixed", `"Bearer " + secret("tg", env = "T") + "!"`, nil, env("T=" + value)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := mustSecret(t, tc.expr, tc.setup)
			got, err := s.Resolve(context.Background(), effect.NewLive(), tc.env)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			want := value
			if tc.name == "prefixed" {
				want = "Bearer " + value + "!"
			}
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

func TestEnvFromDaemon(t *testing.T) {
	t.Setenv("TALON_TEST_DAEMON_TOKEN", value)
	s := mustSecret(t, `secret("tg", env = "TALON_TEST_DAEMON_TOKEN")`, nil)
	got, err := s.Resolve(context.Background(), effect.NewLive(), env())
	if err != nil || got != value {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestDefaultLeaseCommand(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, `secret("telegram_bot_token")`, nil)
	want := []string{"secrets", "lease", "telegram_bot_token", "--ttl", "30m"}
	if got := s.LeaseArgv(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("lease argv %q, want %q", got, want)
	}
	if got := s.Programs(); len(got) != 1 || got[0] != "secrets" {
		t.Fatalf("programs %q", got)
	}
	// Without the program the error says so, naming the secret.
	_, err := s.Resolve(context.Background(), effect.NewLive(), []string{"PATH=/nonexistent"})
	want0 := "secret telegram_bot_token: lease command: secrets: not found on PATH /nonexistent"
	if err == nil || err.Error() != want0 {
		t.Fatalf("got %v, want %q", err, want0)
	}
}

// notShown ends the error of a lease command that failed.
const notShown = " (what it printed is not shown: it may hold the secret; run the command by hand to see it)"

// TestRejections checks every refusal: exact messages, none of them
// containing what the source printed.
func TestRejections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n\t\n"), 0o600)
	cases := []struct {
		name, body string // body: lease script
		expr       string // instead of a lease script
		env        []string
		ctxTimeout time.Duration
		want       string
	}{
		{name: "no output", body: "exit 0", want: "secret api: lease command lease.sh printed no value"},
		{name: "only WARNING lines", body: "echo 'WARNING: " + value + "'; echo", want: "secret api: lease command lease.sh printed no value"},
		{name: "ok", body: "echo WARNING: x; echo ok", want: `secret api: lease command lease.sh printed "ok" instead of a value`},
		{name: "whitespace inside", body: "echo '" + value + " " + value + "'", want: "secret api: lease command lease.sh printed a line with whitespace inside, which is not a secret value (a message?); refusing it"},
		{name: "tab inside", body: "printf '" + value + "\\t" + value + "\\n'", want: "secret api: lease command lease.sh printed a line with whitespace inside, which is not a secret value (a message?); refusing it"},
		{name: "exit status", body: "echo " + value + "; echo 'not logged in' >&2; exit 3", want: "secret api: lease command lease.sh exited 3" + notShown},
		{name: "exit status echoing the value", body: "echo " + value + "; echo 'lease " + value + " revoked' >&2; exit 1", want: "secret api: lease command lease.sh exited 1" + notShown},
		{name: "exit status, the value only on stderr", body: "echo 'error: token " + value + " has expired, run secrets login' >&2; exit 1", want: "secret api: lease command lease.sh exited 1" + notShown},
		{name: "exit status, a credential-looking word", body: "echo 'denied: X-Api-Key=sk_live_51HxQ2eZvKYlo2C0a' >&2; exit 1", want: "secret api: lease command lease.sh exited 1" + notShown},
		// A passphrase has no digit and a short value no length that looks
		// like a credential, and a value leased before a restart is known
		// by no hash: stderr is never shown.
		{name: "exit status, a passphrase on stderr", body: "echo 'vault: token correct-horse-battery-staple revoked' >&2; exit 1", want: "secret api: lease command lease.sh exited 1" + notShown},
		{name: "exit status, a short value on stderr", body: "echo 'lease of hunter22 revoked' >&2; exit 1", want: "secret api: lease command lease.sh exited 1" + notShown},
		{name: "deadline", body: "echo " + value + "; sleep 30", ctxTimeout: 300 * time.Millisecond, want: "secret api: lease command lease.sh timed out after 300ms"},
		{name: "env unset", expr: `secret("api", env = "TALON_TEST_UNSET_VAR")`, want: "secret api: environment variable TALON_TEST_UNSET_VAR is not set"},
		{name: "env empty", expr: `secret("api", env = "E")`, env: env("E=  "), want: "secret api: environment variable E is empty"},
		{name: "file empty", expr: fmt.Sprintf(`secret("api", file = %q)`, empty), want: "secret api: file " + empty + " is empty"},
		{name: "file missing", expr: fmt.Sprintf(`secret("api", file = %q)`, dir+"/nope"), want: "secret api: read " + dir + "/nope: no such file or directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expr := tc.expr
			if expr == "" {
				expr = fmt.Sprintf(`secret("api", command = [%q])`, script(t, tc.body))
			}
			e := tc.env
			if e == nil {
				e = env()
			}
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			start := time.Now()
			got, err := mustSecret(t, expr, nil).Resolve(ctx, effect.NewLive(), e)
			if err == nil {
				t.Fatalf("resolved to %q, want error %q", got, tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error %q\nwant     %q", err, tc.want)
			}
			if strings.Contains(err.Error(), value) {
				t.Fatalf("error leaks the value: %q", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
}

// A lease that worked once and then fails, printing the old value (too short
// and plain to look like a credential) in its complaint: the value is
// redacted, known by its hash only.
func TestFailingLeaseNeverShowsAnEarlierValue(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "leased-once")
	lease := script(t, `if [ -e `+state+` ]; then echo "lease of hunter22 revoked" >&2; exit 1; fi
touch `+state+`
echo hunter22`)
	s := mustSecret(t, fmt.Sprintf(`secret("api", command = [%q])`, lease), nil)
	if v, err := s.Resolve(context.Background(), effect.NewLive(), env()); err != nil || v != "hunter22" {
		t.Fatalf("first lease: %q, %v", v, err)
	}
	_, err := s.Resolve(context.Background(), effect.NewLive(), env())
	want := "secret api: lease command lease.sh exited 1" + notShown
	if err == nil || err.Error() != want {
		t.Fatalf("second lease: %v\nwant %s", err, want)
	}
}

type holder struct {
	Name   string
	Token  *secret.Secret
	ByVal  secret.Secret
	hidden *secret.Secret
	Map    map[string]*secret.Secret
}

// TestNeverPrinted resolves a secret and then prints and marshals it every
// way Go and Starlark can.
func TestNeverPrinted(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, `"Bearer " + secret("tg", env = "T")`, nil)
	if v, err := s.Resolve(context.Background(), effect.NewLive(), env("T="+value)); err != nil || v != "Bearer "+value {
		t.Fatalf("resolve: %q %v", v, err)
	}
	lit := secret.Literal("inline", value)
	h := holder{Name: "x", Token: lit, ByVal: *lit, hidden: lit, Map: map[string]*secret.Secret{"a": lit}}
	var outs []string
	for _, v := range []any{s, *s, lit, *lit, h, &h} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(j))
	}
	for _, o := range outs {
		if strings.Contains(o, value) || strings.Contains(o, "tok-") {
			t.Fatalf("printed the value: %s", o)
		}
	}
	if got := fmt.Sprintf("%v|%q|%+v", s, lit, *lit); got != "<secret tg>|<secret inline>|<secret inline>" {
		t.Fatalf("got %s", got)
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(h)
	if got := buf.String(); got != `{"Name":"x","Token":"<secret inline>","ByVal":"<secret inline>","Map":{"a":"<secret inline>"}}`+"\n" {
		t.Fatalf("json %s", got)
	}
	if got := fmt.Sprintf("%+v", h); !strings.HasPrefix(got, "{Name:x Token:<secret inline> ByVal:<secret inline> hidden:0x") {
		t.Fatalf("%%+v %s", got)
	}
}

func TestStarlark(t *testing.T) {
	t.Parallel()
	cases := []struct{ expr, want string }{
		{`str(secret("tg", env = "T"))`, "<secret tg>"},
		{`repr(secret("tg", env = "T"))`, "<secret tg>"},
		{`"%s" % secret("tg", env = "T")`, "<secret tg>"},
		{`type(secret("tg"))`, "secret"},
		{`str(secret("tg", env = None, file = None))`, "<secret tg>"},
		{`str("Bearer " + secret("tg"))`, "<secret tg>"},
		{`bool(secret("tg"))`, "True"},
	}
	for _, tc := range cases {
		v, err := eval(t, tc.expr, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		s, _ := starlark.AsString(v)
		if s == "" {
			s = v.String()
		}
		if s != tc.want {
			t.Fatalf("%s = %s, want %s", tc.expr, s, tc.want)
		}
	}
}

func TestBuiltinErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ expr, want string }{
		{`secret("")`, `secret: name "": use letters, digits and _ . : / @ -`},
		{`secret("a b")`, `secret: name "a b": use letters, digits and _ . : / @ -`},
		{`secret("x", "y")`, "secret: got 2 positional arguments, want 1 (env, file and command are keyword arguments)"},
		{`secret("x", env = "A", file = "/f")`, "secret x: give only one of env, file, command"},
		{`secret("x", env = "A B")`, `secret x: env "A B" is not a variable name`},
		{`secret("x", file = "token.txt")`, `secret x: file "token.txt" must be an absolute path or start with ~/`},
		{`secret("x", command = [])`, "secret x: command must name a program"},
		{`secret("x", command = [""])`, "secret x: command must name a program"},
		{`secret("x", command = "secrets lease x")`, "secret: for parameter \"command\": want a list of strings, got string"},
		{`secret("x", command = ["a", 1])`, "secret: for parameter \"command\": item 1: want string, got int"},
		{`secret("x", bogus = 1)`, "secret: unexpected keyword argument \"bogus\""},
		{`secret("x", env = "")`, `secret x: env "" is not a variable name`},
		{`secret("x", file = "")`, `secret x: file "" must be an absolute path or start with ~/`},
		{`secret("x", env = 1)`, `secret: for parameter "env": got int, want string`},
		{`secret("x") + 1`, "unknown binary op: secret + int"},
		{`{secret("x"): 1}`, "unhashable type: secret"},
	}
	for _, tc := range cases {
		_, err := eval(t, tc.expr, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got error %v\nwant %q", tc.expr, err, tc.want)
		}
	}
}

type placeholderEffects struct{ *effect.Fake }

func (placeholderEffects) SecretPlaceholder(_ context.Context, name string) string {
	return "placeholder-" + name
}

// TestPlaceholder: effects that perform nothing answer for every source, so
// a dry run neither leases nor fails.
func TestPlaceholder(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{`secret("tg")`, `secret("tg", env = "TALON_TEST_UNSET_VAR")`, `secret("tg", file = "/nonexistent")`} {
		got, err := mustSecret(t, expr, nil).Resolve(context.Background(), placeholderEffects{&effect.Fake{}}, nil)
		if err != nil || got != "placeholder-tg" {
			t.Fatalf("%s: got %q, %v", expr, got, err)
		}
	}
}

// Plain gives only what the policy spelled out; Origin never gives a value.
func TestPlainAndOrigin(t *testing.T) {
	t.Parallel()
	lit := secret.Literal("header:X-Key", "v4lue")
	if v, ok := lit.Plain(); !ok || v != "v4lue" {
		t.Fatalf("Plain of a literal: %q %v", v, ok)
	}
	env, err := secret.FromEnv("hook", "HOOK_TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := env.Plain(); ok || v != "" {
		t.Fatalf("Plain of an env secret: %q %v", v, ok)
	}
	cmd, err := secret.FromCommand("tg", []string{"pass", "show", "{name}"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    *secret.Secret
		want string
	}{
		{lit, `header:X-Key (literal) ""+""`},
		{env, `hook (env HOOK_TOKEN) ""+""`},
		{cmd, `tg (command pass show {name}) ""+""`},
	} {
		if got := tc.s.Origin(); got != tc.want {
			t.Errorf("Origin %q, want %q", got, tc.want)
		}
	}
}

// A file secret another user could change is refused (strict modes) where
// it is declared and again when it is read; with strict_modes = false it is
// read, after a warning at the declaration.
func TestFileSecretStrictModes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	unsafe := "unsafe file " + path + " (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w " + path
	s, err := secret.FromFile("tok", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Resolve(context.Background(), effect.NewLive(), env())
	if want := "secret tok: " + unsafe; err == nil || err.Error() != want {
		t.Fatalf("read: got %v\nwant %s", err, want)
	}
	expr := fmt.Sprintf("secret(%q, file = %q)", "tok", path)
	_, err = eval(t, expr, func(th *starlark.Thread) { secret.SetFiles(th, fsperm.New(true, nil)) })
	if want := "secret tok: " + unsafe; err == nil || err.Error() != want {
		t.Fatalf("declared: got %v\nwant %s", err, want)
	}
	var warned []string
	relaxed := mustSecret(t, expr, func(th *starlark.Thread) {
		secret.SetFiles(th, fsperm.New(false, func(e *fsperm.Error) { warned = append(warned, e.Error()) }))
	})
	if len(warned) != 1 || warned[0] != unsafe {
		t.Fatalf("warnings %q, want [%q]", warned, unsafe)
	}
	if v, err := relaxed.Resolve(context.Background(), effect.NewLive(), env()); err != nil || v != value {
		t.Fatalf("relaxed read: %v", err)
	}
}
