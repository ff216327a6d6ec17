package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine/health"
	"github.com/talon-dev/talon/internal/service"
)

// serviceRunTimeout bounds one launchctl or systemctl call.
const serviceRunTimeout = 60 * time.Second

// service is `talon service install|uninstall|status|print`.
func (a *app) service(args []string) error {
	var useLaunchd, useSystemd, userScope, systemScope, force, replace, asJSON bool
	var label, binary string
	rest, err := a.flags("service", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&useLaunchd, "launchd", false, "a launchd plist (the default on macOS)")
		fs.BoolVar(&useSystemd, "systemd", false, "a systemd unit (the default elsewhere)")
		fs.BoolVar(&userScope, "user", false, "for the current user: a LaunchAgent, a systemd --user unit (the default)")
		fs.BoolVar(&systemScope, "system", false, "for the whole machine: a LaunchDaemon, a system unit (needs root)")
		fs.BoolVar(&force, "force", false, "install: overwrite a file talon did not write or that was edited")
		fs.BoolVar(&replace, "replace-predecessor", false, "install: unload the predecessor's LaunchAgent "+service.PredecessorLabel+" and set its plist aside")
		fs.StringVar(&label, "label", "", "the launchd label or systemd unit name (default "+service.DefaultLabel+" / "+service.DefaultUnit+")")
		fs.StringVar(&binary, "binary", "", "the talon binary the service runs (default: this one)")
		fs.BoolVar(&asJSON, "json", false, "status: JSON output")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fail(2, "service takes one of install, uninstall, status, print; see talon help service")
	}
	verb := rest[0]
	switch verb {
	case "install", "uninstall", "status", "print":
	default:
		return fail(2, "service %s: want install, uninstall, status or print; see talon help service", verb)
	}
	if useLaunchd && useSystemd {
		return fail(2, "service: --launchd and --systemd exclude each other")
	}
	if userScope && systemScope {
		return fail(2, "service: --user and --system exclude each other")
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	spec := service.Spec{Manager: service.Systemd, System: systemScope, Name: label, Path: e.cfg.Path,
		Home: homeDir(), ConfigHome: os.Getenv("XDG_CONFIG_HOME"), UID: os.Getuid()}
	if useLaunchd || (!useSystemd && runtime.GOOS == "darwin") {
		spec.Manager = service.Launchd
	}
	if spec.Name == "" {
		spec.Name = service.DefaultUnit
		if spec.Manager == service.Launchd {
			spec.Name = service.DefaultLabel
		}
	}
	if spec.StateDir, err = filepath.Abs(e.stateDir); err != nil {
		return err
	}
	if systemScope {
		spec.RunAs = serviceUser()
	}
	bin, err := serviceBinary(binary, verb == "install")
	if err != nil {
		return err
	}
	spec.Argv = []string{bin}
	// The service runs with none of this shell's environment: whatever
	// chose the config, policy and state directory here is spelled out.
	if a.g.config != "" || e.cfg.Found {
		p, _ := filepath.Abs(e.cfgPath)
		spec.Argv = append(spec.Argv, "--config", p)
	}
	if a.g.policy != "" {
		p, _ := filepath.Abs(e.policyDir)
		spec.Argv = append(spec.Argv, "--policy", p)
	}
	if a.g.stateDir != "" {
		spec.Argv = append(spec.Argv, "--state-dir", spec.StateDir)
	}
	spec.Argv = append(spec.Argv, "run")

	host := service.Host{
		Run: runCommand,
		Say: func(format string, args ...any) { fmt.Fprintf(a.stdout, format+"\n", args...) },
		Warn: func(format string, args ...any) {
			fmt.Fprintf(a.stderr, "talon: warning: "+format+"\n", args...)
		},
	}
	ctx := context.Background()
	var refusal *service.Refusal
	switch verb {
	case "print":
		b, err := spec.Render(service.Manifest{})
		if err != nil {
			return fail(1, "service print: %v", err)
		}
		_, err = a.stdout.Write(b)
		return err
	case "install":
		err = service.Install(ctx, host, spec, service.InstallOptions{Force: force, ReplacePredecessor: replace})
	case "uninstall":
		err = service.Uninstall(ctx, host, spec)
	case "status":
		return a.serviceStatus(ctx, host, spec, e.cfg.Health.Bind, e.cfg.Health.Enabled, asJSON)
	}
	if errors.As(err, &refusal) {
		return fail(1, "service %s: %s", verb, refusal.Msg)
	}
	if err != nil {
		return fail(1, "service %s: %s", verb, oneLine(err.Error()))
	}
	return nil
}

func (a *app) serviceStatus(ctx context.Context, host service.Host, spec service.Spec, bind string, healthOn, asJSON bool) error {
	rep := struct {
		service.Report
		Health string `json:"health,omitempty"`
	}{Report: service.Status(ctx, host, spec)}
	if healthOn {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if snap, err := health.Get(hctx, bind); err == nil {
			rep.Health = fmt.Sprintf("answering on %s: %s", bind, snap.State)
		} else {
			rep.Health = "not answering on " + bind
		}
		cancel()
	}
	if a.wantJSON(asJSON) {
		return a.json(rep)
	}
	var b strings.Builder
	yesno := func(v bool) string {
		if v {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(&b, "%s %s\n", rep.Manager, rep.Name)
	inst := yesno(rep.Installed)
	switch {
	case rep.Installed && !rep.Ours:
		inst += " (not written by talon service install)"
	case rep.Edited:
		inst += " (edited since install)"
	}
	fmt.Fprintf(&b, "  installed  %s  %s\n", inst, rep.File)
	fmt.Fprintf(&b, "  loaded     %s\n", yesno(rep.Loaded))
	run := yesno(rep.Running)
	if rep.PID > 0 {
		run += fmt.Sprintf(" (pid %d)", rep.PID)
	}
	if rep.State != "" {
		run += "  " + rep.State
	}
	fmt.Fprintf(&b, "  running    %s\n", run)
	if rep.Health != "" {
		fmt.Fprintf(&b, "  health     %s\n", rep.Health)
	}
	if r := rep.Replaced; r != nil {
		fmt.Fprintf(&b, "  replaced   the predecessor %s (plist set aside at %s; uninstall puts it back)\n", r.Label, r.MovedTo)
	}
	if p := rep.Predecessor; p != nil {
		fmt.Fprintf(&b, "  predecessor %s is present (plist %v, loaded %v): install --replace-predecessor replaces it\n", service.PredecessorLabel, p.Exists, p.Loaded)
	}
	_, err := fmt.Fprint(a.stdout, b.String())
	return err
}

// serviceBinary is the talon binary a service runs: --binary, else this
// one. A binary in a build cache (go run, go test) would vanish, so install
// refuses it.
func serviceBinary(flagged string, strict bool) (string, error) {
	p := flagged
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fail(1, "service: cannot tell where this talon binary is (%v); pass --binary", err)
		}
		p = exe
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fail(1, "service: %s is not an executable file; pass --binary with the installed talon (make install puts it in ~/.local/bin)", abs)
	}
	if strict && flagged == "" && (strings.Contains(abs, "/go-build") || strings.HasPrefix(abs, os.TempDir()+"/")) {
		return "", fail(1, "service: this talon runs from a temporary build (%s); install it first (make install) and run that, or pass --binary", abs)
	}
	return abs, nil
}

// serviceUser is the user a system service runs as: the one who ran sudo,
// else the current user; root runs it as root.
func serviceUser() string {
	if os.Geteuid() == 0 {
		return os.Getenv("SUDO_USER")
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// runCommand runs a service manager command; the error carries its exit
// status and the first line of its stderr.
func runCommand(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, serviceRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := firstLine(strings.TrimSpace(stderr.String()), 300)
		if msg == "" {
			return string(out), err
		}
		return string(out), fmt.Errorf("%v: %s", err, msg)
	}
	return string(out), nil
}
