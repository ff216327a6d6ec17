package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/health"
)

// pause is `talon pause`: the ladder does not act for what it covers.
func (a *app) pause(args []string) error {
	var req health.ControlRequest
	var dur time.Duration
	if err := a.flagsOnly("pause", args, func(fs *flag.FlagSet) {
		scopeFlags(fs, &req)
		fs.DurationVar(&dur, "for", 0, "how long the pause lasts (default 1h, at most 24h)")
		fs.StringVar(&req.Reason, "reason", "", "why, for the journal, /health and the pages")
	}); err != nil {
		return err
	}
	if err := oneScope(req); err != nil {
		return err
	}
	if dur < 0 {
		return fail(2, "pause --for %s: want a positive duration such as 30m", dur)
	}
	if dur > engine.MaxPause {
		return fail(2, "pause --for %s: a pause lasts at most 24h; pause again when it ends", dur)
	}
	if dur > 0 {
		req.For = dur.String()
	}
	req.By = whoAsks()
	ans, err := a.control("pause", "/pause", req)
	if err != nil {
		return err
	}
	if a.wantJSON(false) {
		return a.json(ans)
	}
	how := ""
	if dur == 0 {
		how = fmt.Sprintf(" (for %s, the default: --for sets it, up to 24h)", strings.TrimSuffix(engine.DefaultPause.String(), "0m0s"))
	}
	_, err = fmt.Fprintf(a.stdout, "paused %s%s; probes keep running and recording\n", ans.Pause.Describe(), how)
	return err
}

// whoAsks is the user running the command, for the journal and /health:
// "joel (uid 501)", and who ran sudo when it did.
func whoAsks() string {
	uid := os.Getuid()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil && u.Username != "" {
		name = u.Username
	}
	s := fmt.Sprintf("%s (uid %d)", name, uid)
	if su := os.Getenv("SUDO_USER"); su != "" && uid == 0 {
		s += " via sudo from " + su
	}
	return s
}

// resume is `talon resume`: lifts pauses, recording who asked, as pause
// does.
func (a *app) resume(args []string) error {
	var req health.ControlRequest
	if err := a.flagsOnly("resume", args, func(fs *flag.FlagSet) { scopeFlags(fs, &req) }); err != nil {
		return err
	}
	if err := oneScope(req); err != nil {
		return err
	}
	req.By = whoAsks()
	ans, err := a.control("resume", "/resume", req)
	if err != nil {
		return err
	}
	if a.wantJSON(false) {
		return a.json(ans)
	}
	var b strings.Builder
	for _, p := range ans.Resumed {
		fmt.Fprintf(&b, "resumed %s\n", p.Describe())
	}
	_, err = fmt.Fprint(a.stdout, b.String())
	return err
}

// ack is `talon ack [INCIDENT]`: someone is on it.
func (a *app) ack(args []string) error {
	var req health.ControlRequest
	rest, err := a.flags("ack", args, func(fs *flag.FlagSet) {
		fs.StringVar(&req.Reason, "reason", "", "why, for the journal and /health")
	})
	if err != nil {
		return err
	}
	switch len(rest) {
	case 0:
	case 1:
		req.Incident = rest[0]
	default:
		return fail(2, "ack takes at most one incident, got %q; see talon help ack", rest)
	}
	req.By = whoAsks()
	ans, err := a.control("ack", "/ack", req)
	if err != nil {
		return err
	}
	if a.wantJSON(false) {
		return a.json(ans)
	}
	_, err = fmt.Fprintf(a.stdout, "acknowledged incident %s: no further rungs or pages until it resolves or gets worse\n", ans.Incident)
	return err
}

func scopeFlags(fs *flag.FlagSet, req *health.ControlRequest) {
	fs.StringVar(&req.Probe, "probe", "", "only this probe")
	fs.StringVar(&req.Tag, "tag", "", "only the probes with this tag")
	fs.StringVar(&req.Rung, "rung", "", "only this rung")
}

func oneScope(req health.ControlRequest) error {
	n := 0
	for _, s := range []string{req.Probe, req.Tag, req.Rung} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return fail(2, "name at most one of --probe, --tag and --rung")
	}
	return nil
}

// control sends a command to the running daemon through its health
// endpoint, found through its state directory (reachDaemon).
func (a *app) control(name, path string, req health.ControlRequest) (health.ControlAnswer, error) {
	e, cf, err := a.reachDaemon(name)
	if err != nil {
		return health.ControlAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ans, err := health.PostControl(ctx, cf.Addr, cf.Token, path, req)
	var refused *health.ControlError
	switch {
	case errors.As(err, &refused):
		return ans, fail(1, "%s refused: %s", name, oneLine(refused.Message))
	case errors.Is(err, health.ErrNotRunning):
		return ans, fail(1, "%s: the daemon holding %s does not answer on %s: %s", name, e.stateDir, cf.Addr, oneLine(err.Error()))
	case err != nil:
		return ans, fail(1, "%s: %s", name, oneLine(err.Error()))
	}
	if path == "/pause" && ans.Pause == nil {
		return ans, fail(1, "pause: the daemon on %s answered without the pause", cf.Addr)
	}
	return ans, nil
}

// reachDaemon finds the running daemon for an operator's command: the
// control file in its state directory names the address it bound and the
// token its control routes want. Only the state directory is needed, so a
// broken config.toml or policy (the time one pauses) does not stand in the
// way: the config is read leniently for it, and the error shown. A control
// file is believed only while a daemon holds the state directory's lock,
// and the client still makes the server prove it holds the token before
// sending it (health.PostControl).
func (a *app) reachDaemon(name string) (*env, health.ControlFile, error) {
	var cf health.ControlFile
	e, cfgErr := a.daemonEnv()
	if cfgErr != nil {
		if _, err := os.Stat(e.cfgPath); e.cfgRequired && errors.Is(err, fs.ErrNotExist) {
			return nil, cf, cfgErr // --config names no file: a typo
		}
		fmt.Fprintf(a.stderr, "talon: %s (read leniently: %s finds the daemon through the state directory %s)\n", oneLine(cfgErr.Error()), name, e.stateDir)
	}
	if !e.cfg.Health.Enabled {
		return nil, cf, fail(1, "%s needs the daemon's health endpoint, and %s turns it off ([health] enabled = false)", name, e.cfgPath)
	}
	if !daemonHolds(e.stateDir) {
		return nil, cf, fail(1, "%s: talon is not running: no daemon holds the state directory %s (choose it with --config or --state-dir)", name, e.stateDir)
	}
	cf, err := health.ReadControlFile(e.stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cf, fail(1, "%s: the daemon holding %s wrote no control file: its health endpoint is not listening (see its log)", name, e.stateDir)
	} else if err != nil {
		return nil, cf, fail(1, "%s: %s", name, oneLine(err.Error()))
	}
	return e, cf, nil
}
