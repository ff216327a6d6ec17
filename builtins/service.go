package builtins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/worker"
)

// Service is the service module: restarting a service the host's service
// manager runs, as the predecessor's service heal did.
//
//	def restart(unit, *, manager=None, scope=None, if_failing=None, port=None, stale=None, timeout="20s"):
//	    An action that restarts a service: with launchd, launchctl kickstart -k DOMAIN/LABEL, in the
//	    domain the job is loaded in (gui/UID, else system, unless scope says which); with systemd,
//	    systemctl --user restart UNIT (systemctl restart UNIT for scope "system"). It succeeds when
//	    the restart command does. Before restarting it can clear the service's port of stale copies
//	    of the service that still listen there (an old instance the manager lost track of): only
//	    listeners whose command line matches stale are stopped (SIGTERM to their group, SIGKILL 5s
//	    later); clients connected to the port and any other program listening on it are left alone
//	    (and said so in the output, and the restart goes ahead).
//	    unit: the launchd label ("com.joel.gateway") or the systemd unit ("gateway.service")
//	    manager: "launchd" or "systemd" (default: launchd on macOS, systemd elsewhere)
//	    scope: launchd "gui", "user" or "system" (default: where the job is loaded); systemd "user"
//	        (the default) or "system"
//	    if_failing: probe names; the service is restarted only when one of them is failing in the
//	        incident, otherwise the action does nothing and succeeds. A rung can so list one restart
//	        per service and restart only the failing ones
//	    port: a TCP port to clear of stale copies first; needs stale
//	    stale: the command line of a copy of the service, as argv: a listener matches when one of
//	        its words has the base name of argv[0] followed by exactly the other arguments, e.g.
//	        ["python3", "main.py", "start"]; or a list of such argvs
//	    timeout: deadline of the restart command
var Service = &starlarkstruct.Module{Name: "service", Members: starlark.StringDict{
	"restart": starlark.NewBuiltin("service.restart", serviceRestart),
}}

// Managers.
const (
	managerLaunchd = "launchd"
	managerSystemd = "systemd"
)

// serviceDrain is how long a stale copy gets between SIGTERM and SIGKILL.
const serviceDrain = 5 * time.Second

// ServiceAction is the action of service.restart.
type ServiceAction struct {
	Unit      string
	Manager   string // managerLaunchd or managerSystemd
	Scope     string // launchd: "", "gui", "user", "system"; systemd: "user", "system"
	IfFailing []string
	Port      int
	Stale     [][]string
	Timeout   time.Duration
	Pos       string
}

var (
	_ engine.Action  = (*ServiceAction)(nil)
	_ starlark.Value = (*ServiceAction)(nil)
)

func (a *ServiceAction) String() string        { return "<action " + a.Describe() + ">" }
func (a *ServiceAction) Type() string          { return "action" }
func (a *ServiceAction) Freeze()               {}
func (a *ServiceAction) Truth() starlark.Bool  { return starlark.True }
func (a *ServiceAction) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: action") }

// Describe implements engine.Action.
func (a *ServiceAction) Describe() string {
	var b strings.Builder
	switch a.Manager {
	case managerLaunchd:
		domain := a.Scope
		if domain == "" {
			domain = "(its domain)"
		}
		fmt.Fprintf(&b, "launchctl kickstart -k %s/%s", domain, a.Unit)
	default:
		if a.Scope == "system" {
			fmt.Fprintf(&b, "systemctl restart %s", a.Unit)
		} else {
			fmt.Fprintf(&b, "systemctl --user restart %s", a.Unit)
		}
	}
	if a.Port > 0 {
		fmt.Fprintf(&b, ", after clearing port %d of stale copies", a.Port)
	}
	if len(a.IfFailing) > 0 {
		fmt.Fprintf(&b, ", if %s fails", strings.Join(a.IfFailing, " or "))
	}
	return b.String()
}

// Programs implements engine.Action.
func (a *ServiceAction) Programs() []string {
	progs := []string{"systemctl"}
	if a.Manager == managerLaunchd {
		progs = []string{"launchctl"}
	}
	if a.Port > 0 {
		progs = append(progs, "kill")
		if runtime.GOOS != "linux" {
			progs = append(progs, "lsof", "ps")
		}
	}
	return progs
}

// Run implements engine.Action.
func (a *ServiceAction) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	if len(a.IfFailing) > 0 && env.Incident != nil && !anyFailing(env.Incident, a.IfFailing) {
		return engine.ActionResult{OK: true, Output: fmt.Sprintf("%s: not restarted: %s is not failing", a.Unit, strings.Join(a.IfFailing, " nor "))}
	}
	var out []string
	if a.Port > 0 {
		out = append(out, a.clearPort(ctx, env))
	}
	argv, err := a.command(ctx, env)
	if err != nil {
		return engine.ActionResult{Output: strings.Join(append(out, err.Error()), "\n")}
	}
	rctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	r := env.Effects.Exec(rctx, effect.Command{Argv: argv, Env: env.Env})
	line := strings.Join(argv, " ")
	switch {
	case r.Err != nil:
		line += ": " + r.Err.Error()
	case r.TimedOut:
		line += fmt.Sprintf(": timed out after %s", a.Timeout)
	case r.ExitCode != 0:
		line += fmt.Sprintf(": exit status %d", r.ExitCode)
	default:
		line += ": ok"
	}
	if o := engine.CombineOutput(r.Stdout, r.Stderr); o != "" {
		line += "\n" + o
	}
	out = append(out, line)
	return engine.ActionResult{OK: r.OK(), Output: strings.Join(out, "\n")}
}

func anyFailing(inc *engine.IncidentView, names []string) bool {
	for _, r := range inc.Failing {
		for _, n := range names {
			if r.Name == n {
				return true
			}
		}
	}
	return false
}

// command is the restart command line. A launchd job without a scope is
// restarted in the domain it is loaded in: the user's gui domain, else the
// system domain (a LaunchDaemon; the predecessor always used gui/UID and so
// never restarted its system gateway).
func (a *ServiceAction) command(ctx context.Context, env *engine.ActionEnv) ([]string, error) {
	if a.Manager == managerSystemd {
		if a.Scope == "system" {
			return []string{"systemctl", "restart", a.Unit}, nil
		}
		return []string{"systemctl", "--user", "restart", a.Unit}, nil
	}
	uid := strconv.Itoa(os.Getuid())
	domain := map[string]string{"gui": "gui/" + uid, "user": "user/" + uid, "system": "system"}[a.Scope]
	if domain == "" {
		var tried []string
		for _, d := range []string{"gui/" + uid, "system"} {
			pctx, cancel := context.WithTimeout(ctx, a.Timeout)
			r := env.Effects.Exec(pctx, effect.Command{Argv: []string{"launchctl", "print", d + "/" + a.Unit}, Env: env.Env})
			cancel()
			if r.OK() {
				domain = d
				break
			}
			if r.Err != nil {
				return nil, fmt.Errorf("launchctl print %s/%s: %v", d, a.Unit, r.Err)
			}
			tried = append(tried, d)
		}
		if domain == "" {
			return nil, fmt.Errorf("launchd job %s is not loaded in %s; load it (launchctl bootstrap) or set scope", a.Unit, strings.Join(tried, " or "))
		}
	}
	return []string{"launchctl", "kickstart", "-k", domain + "/" + a.Unit}, nil
}

// clearPort stops stale copies of the service listening on its port, with
// the worker supervisor's rules (engine/worker.PortClearer): only listeners
// whose command line matches stale, never clients. Signals go through the
// action's effects (kill(1)), so a dry run only records them. It says what
// it did; whatever it found, the restart goes ahead.
func (a *ServiceAction) clearPort(ctx context.Context, env *engine.ActionEnv) string {
	logf := func(msg string, kv ...any) {
		if env.Log != nil {
			env.Log(msg, kv...)
		}
	}
	c := &worker.PortClearer{Port: a.Port, What: a.Unit, Drain: serviceDrain, Effects: env.Effects, Env: env.Env, Warn: logf,
		IsCopy: func(cmdline string) bool {
			for _, argv := range a.Stale {
				if worker.IsCopyOf(argv)(cmdline) {
					return true
				}
			}
			return false
		},
		Signal: func(ctx context.Context, pid int, sig syscall.Signal) error {
			name := strings.TrimPrefix(sig.String(), "SIG")
			switch sig {
			case syscall.SIGTERM:
				name = "TERM"
			case syscall.SIGKILL:
				name = "KILL"
			}
			r := env.Effects.Exec(ctx, effect.Command{Argv: []string{"kill", "-s", name, "--", strconv.Itoa(pid)}, Env: env.Env})
			if !r.OK() {
				return errors.New(strings.TrimSpace("kill: " + r.Stderr + " " + errString(r.Err)))
			}
			return nil
		}}
	stopped, err := c.Clear(ctx)
	var unknown *worker.ErrUnknownListeners
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("port %d: %v; restarting anyway", a.Port, err)
	case err != nil:
		return fmt.Sprintf("%v; restarting anyway", err)
	case len(stopped) == 0:
		return fmt.Sprintf("port %d: no stale copy of %s listening", a.Port, a.Unit)
	}
	var pids []string
	for _, l := range stopped {
		pids = append(pids, l.String())
	}
	return fmt.Sprintf("port %d: stopped stale copies of %s: %s", a.Port, a.Unit, strings.Join(pids, ", "))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func serviceRestart(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) > 1 {
		return nil, fmt.Errorf("%s: pass everything after the unit by name", b.Name())
	}
	var (
		unit, manager, scope string
		ifFailing            star.StringOrList
		port                 int
		stale                starlark.Value = starlark.None
		timeout                             = star.Duration{D: 20 * time.Second}
	)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "unit", &unit, "manager??", &manager, "scope??", &scope,
		"if_failing??", &ifFailing, "port??", &port, "stale??", &stale, "timeout??", &timeout); err != nil {
		return nil, err
	}
	if manager == "" {
		manager = managerSystemd
		if runtime.GOOS == "darwin" {
			manager = managerLaunchd
		}
	}
	a := &ServiceAction{Unit: unit, Manager: manager, Scope: scope, IfFailing: ifFailing, Port: port, Timeout: timeout.D, Pos: star.Pos(thread)}
	switch manager {
	case managerLaunchd:
		if scope != "" && scope != "gui" && scope != "user" && scope != "system" {
			return nil, fmt.Errorf("%s: %s: launchd scope must be \"gui\", \"user\" or \"system\", got %q", b.Name(), unit, scope)
		}
		if unit == "" || strings.HasPrefix(unit, "-") || strings.ContainsAny(unit, " \t\n/") {
			return nil, fmt.Errorf("%s: %q is not a launchd label", b.Name(), unit)
		}
	case managerSystemd:
		if scope == "" {
			a.Scope = "user"
		} else if scope != "user" && scope != "system" {
			return nil, fmt.Errorf("%s: %s: systemd scope must be \"user\" or \"system\", got %q", b.Name(), unit, scope)
		}
		if unit == "" || strings.HasPrefix(unit, "-") || strings.ContainsAny(unit, " \t\n/") {
			return nil, fmt.Errorf("%s: %q is not a systemd unit name", b.Name(), unit)
		}
	default:
		return nil, fmt.Errorf("%s: %s: manager must be \"launchd\" or \"systemd\", got %q", b.Name(), unit, manager)
	}
	if a.Timeout <= 0 {
		return nil, fmt.Errorf("%s: %s: timeout must be more than 0", b.Name(), unit)
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("%s: %s: port must be between 1 and 65535, got %d", b.Name(), unit, port)
	}
	var err error
	if a.Stale, err = staleCommands(stale); err != nil {
		return nil, fmt.Errorf("%s: %s: stale: %v", b.Name(), unit, err)
	}
	if port > 0 && len(a.Stale) == 0 {
		return nil, fmt.Errorf("%s: %s: port= needs stale=, the command line of the service's own copies, so that clients and other programs on the port are never stopped", b.Name(), unit)
	}
	if port == 0 && len(a.Stale) > 0 {
		return nil, fmt.Errorf("%s: %s: stale= needs port=, the port its stale copies listen on", b.Name(), unit)
	}
	return a, nil
}

// staleCommands reads stale=: one argv (a list of strings) or a list of argvs.
func staleCommands(v starlark.Value) ([][]string, error) {
	if v == starlark.None {
		return nil, nil
	}
	l, ok := v.(*starlark.List)
	if !ok {
		if t, isTuple := v.(starlark.Tuple); isTuple {
			l = starlark.NewList(t)
		} else {
			return nil, fmt.Errorf("want an argv (a list of strings) or a list of them, got %s", v.Type())
		}
	}
	if l.Len() == 0 {
		return nil, errors.New("want at least one command")
	}
	if _, one := l.Index(0).(starlark.String); one {
		var argv star.StringList
		if err := argv.Unpack(l); err != nil {
			return nil, err
		}
		return checkArgvs([][]string{argv})
	}
	var out [][]string
	for i := 0; i < l.Len(); i++ {
		var argv star.StringList
		if err := argv.Unpack(l.Index(i)); err != nil {
			return nil, fmt.Errorf("item %d: %v", i, err)
		}
		out = append(out, argv)
	}
	return checkArgvs(out)
}

func checkArgvs(argvs [][]string) ([][]string, error) {
	for i, argv := range argvs {
		if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
			return nil, fmt.Errorf("command %d is empty", i)
		}
	}
	return argvs, nil
}
