package probe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine/effect"
)

// Helpers shared by the kinds that drive a command-line client (ssh,
// kubectl, docker, systemctl, launchctl) and by their run-phase twins.

// childEnvValue is the value of key in a child environment (the last one
// wins, as it does for the child), or "".
func childEnvValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// userPath expands a leading "~" with HOME from the child environment (the
// one the command will see), falling back to this process's HOME.
func userPath(p string, env []string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home := childEnvValue(env, "HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home == "" {
		return p
	}
	return home + p[1:]
}

// secondsLeft is the whole seconds before ctx's deadline, rounded up and at
// least 1; fallback when ctx has no deadline.
func secondsLeft(ctx context.Context, fallback time.Duration) int {
	left := fallback
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	return max(1, int(math.Ceil(left.Seconds())))
}

// timeLeft is the time before ctx's deadline, or fallback without one.
func timeLeft(ctx context.Context, fallback time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return fallback
}

// safeWord matches arguments a POSIX shell reads literally.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes each word so a remote shell splits them back exactly.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// flagLike reports whether s would be read as an option by a CLI.
func flagLike(s string) bool { return strings.HasPrefix(s, "-") }

// commandResult is the value run-phase builtins (ssh.run, kubectl.run)
// return: struct(code, stdout, stderr, ok, timed_out).
func commandResult(r effect.ExecResult) starlark.Value {
	stderr := r.Stderr
	switch {
	case r.TimedOut:
		stderr = strings.TrimSpace(fmt.Sprintf("timeout after %s\n%s", r.Duration.Round(100*time.Millisecond), stderr))
	case r.Err != nil:
		stderr = r.Err.Error()
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"code":      starlark.MakeInt(r.ExitCode),
		"stdout":    starlark.String(r.Stdout),
		"stderr":    starlark.String(stderr),
		"ok":        starlark.Bool(r.OK()),
		"timed_out": starlark.Bool(r.TimedOut),
	})
}

// runCommand is the body of a run-phase builtin: it runs argv (plus extra
// environment entries) under the call's context, bounded further by
// timeout when it is set, and returns commandResult.
func runCommand(thread *starlark.Thread, b *starlark.Builtin, timeout time.Duration, reads []string, build func(ctx context.Context, env []string) (argv, extraEnv []string)) (starlark.Value, error) {
	re, err := star.Effects(thread, b)
	if err != nil {
		return nil, err
	}
	ctx := re.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if timeout <= 0 {
		timeout = defaultRunTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv, extra := build(ctx, re.Env)
	// Strict modes at run time, as talon validate applies them to the
	// probes: the program and the configuration files it is handed.
	if prog, err := effect.LookPath(argv[0], childEnvValue(re.Env, "PATH")); err == nil {
		if err := re.Files.CheckPath(prog); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: runs %s: %v", b.Name(), argv[0], err)
		}
	}
	for _, f := range ConfigFiles(reads, re.Env) {
		if err := re.Files.CheckPath(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %s reads %s: %v", b.Name(), argv[0], f, err)
		}
	}
	cmd := effect.Command{Argv: argv, Env: append(append([]string(nil), re.Env...), extra...)}
	r := re.Effects.Exec(ctx, cmd)
	return commandResult(r), nil
}

// defaultRunTimeout bounds run-phase commands whose caller set no timeout
// (the rung's own timeout still applies through its context).
const defaultRunTimeout = 60 * time.Second

// withoutNone drops keyword arguments whose value is None, so that
// `config=None` means the same as leaving config out, as the documented
// signatures say.
func withoutNone(kwargs []starlark.Tuple) []starlark.Tuple {
	out := kwargs[:0:0]
	for _, kv := range kwargs {
		if kv[1] != starlark.None {
			out = append(out, kv)
		}
	}
	return out
}

// optString is a string argument that may also be None (meaning "").
type optString string

var _ starlark.Unpacker = (*optString)(nil)

// Unpack implements starlark.Unpacker.
func (s *optString) Unpack(v starlark.Value) error {
	if v == starlark.None {
		*s = ""
		return nil
	}
	str, ok := v.(starlark.String)
	if !ok {
		return fmt.Errorf("want a string or None, got %s", v.Type())
	}
	*s = optString(str)
	return nil
}

// ConfigFiles are the files a probe's Reads name, in the child environment
// env: "~/" expanded, DefaultKubeconfig as each file of $KUBECONFIG, else
// ~/.kube/config.
func ConfigFiles(reads []string, env []string) []string {
	var out []string
	for _, r := range reads {
		switch {
		case r == "":
		case r == DefaultKubeconfig:
			if kc := childEnvValue(env, "KUBECONFIG"); kc != "" {
				for _, f := range filepath.SplitList(kc) {
					if f != "" {
						out = append(out, f)
					}
				}
			} else {
				out = append(out, userPath("~/.kube/config", env))
			}
		default:
			out = append(out, userPath(r, env))
		}
	}
	return out
}
