package probe

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/engine"
)

func init() {
	Register(Builtin{Name: "probe.systemd", Fn: systemdProbe, Doc: `def systemd(name, unit, *, user=False, **common):
Linux only. Reads the unit's state with
systemctl [--user] show UNIT --property=ActiveState,SubState,MainPID,NRestarts,ExecMainStatus,LoadState
and passes when ActiveState is active (or reloading). The output reads like
"active (running) pid 123 restarts 0"; the detail carries the six properties.
A unit systemd does not know (LoadState=not-found) fails saying so.
On macOS it fails with a one-line explanation; use probe.launchd there.
name: unique probe name
unit: unit name, e.g. "talon-worker.service" (".service" may be left out)
user: ask the user's service manager (systemctl --user) instead of the system's;
  XDG_RUNTIME_DIR defaults to /run/user/UID when the environment has none`})
}

// systemdProps are the properties the probe reads, in the order it reports them.
var systemdProps = []string{"ActiveState", "SubState", "MainPID", "NRestarts", "ExecMainStatus", "LoadState"}

func systemdProbe(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	kwargs = withoutNone(kwargs)
	var (
		c    Common
		name string
		unit string
		user bool
	)
	if err := c.Unpack(b, args, kwargs, "name", &name, "unit", &unit, "user?", &user); err != nil {
		return nil, err
	}
	if unit == "" || flagLike(unit) || strings.ContainsAny(unit, " \t\n/") {
		return nil, fmt.Errorf("%s: %s: unit %q is not a unit name", b.Name(), name, unit)
	}
	p, err := c.Spec(thread, b, name, "systemd", systemdCheck(unit, user), unit, strconv.FormatBool(user))
	if err != nil {
		return nil, err
	}
	p.Programs = []string{"systemctl"}
	p.OS = "linux"
	return Declare(thread, b, p)
}

func systemdCheck(unit string, user bool) engine.Check {
	return func(ctx context.Context, env *engine.ProbeEnv) engine.Outcome {
		if runtime.GOOS != "linux" {
			return engine.Failf("probe.systemd: systemd exists only on Linux; use probe.launchd")
		}
		argv := []string{"systemctl"}
		if user {
			argv = append(argv, "--user")
		}
		argv = append(argv, "show", "--no-pager", "--property="+strings.Join(systemdProps, ","), "--", unit)
		cmd := env.Command(argv...)
		if user && childEnvValue(cmd.Env, "XDG_RUNTIME_DIR") == "" {
			cmd.Env = append(slices.Clip(cmd.Env), fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", os.Getuid())) // copy: env.Env is shared
		}
		r := env.Effects.Exec(ctx, cmd)
		if !r.OK() {
			return engine.ExecOutcome(r, env.Probe.EffectiveTimeout())
		}
		return systemdOutcome(unit, parseSystemctlShow(r.Stdout))
	}
}

// parseSystemctlShow reads the KEY=VALUE lines of `systemctl show`.
func parseSystemctlShow(out string) map[string]string {
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), "="); ok && k != "" {
			props[k] = v
		}
	}
	return props
}

// systemdOutcome judges the properties of unit.
func systemdOutcome(unit string, props map[string]string) engine.Outcome {
	detail := map[string]string{}
	for _, k := range systemdProps {
		if v, ok := props[k]; ok {
			detail[k] = v
		}
	}
	load, active := props["LoadState"], props["ActiveState"]
	switch {
	case active == "":
		return engine.Outcome{Output: fmt.Sprintf("unit %s: systemctl printed no ActiveState", unit), Detail: detail}
	case load == "not-found":
		return engine.Outcome{Output: fmt.Sprintf("unit %s not found (LoadState=not-found)", unit), Detail: detail}
	case load == "masked":
		return engine.Outcome{Output: fmt.Sprintf("unit %s is masked", unit), Detail: detail}
	case load != "" && load != "loaded":
		return engine.Outcome{Output: fmt.Sprintf("unit %s did not load (LoadState=%s)", unit, load), Detail: detail}
	}
	var b strings.Builder
	b.WriteString(active)
	if sub := props["SubState"]; sub != "" {
		fmt.Fprintf(&b, " (%s)", sub)
	}
	if pid := props["MainPID"]; pid != "" && pid != "0" {
		fmt.Fprintf(&b, " pid %s", pid)
	}
	if st := props["ExecMainStatus"]; st != "" && st != "0" {
		fmt.Fprintf(&b, " exit status %s", st)
	}
	if n := props["NRestarts"]; n != "" {
		fmt.Fprintf(&b, " restarts %s", n)
	}
	return engine.Outcome{Passed: active == "active" || active == "reloading", Output: b.String(), Detail: detail}
}
