package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine/health"
)

// pause is `talon pause`: the ladder does not act for what it covers.
func (a *app) pause(args []string) error {
	var req health.ControlRequest
	var dur time.Duration
	if err := a.flagsOnly("pause", args, func(fs *flag.FlagSet) {
		scopeFlags(fs, &req)
		fs.DurationVar(&dur, "for", 0, "how long the pause lasts (default: until talon resume)")
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
	if dur > 0 {
		req.For = dur.String()
	}
	ans, err := a.control("pause", "/pause", req)
	if err != nil {
		return err
	}
	if a.wantJSON(false) {
		return a.json(ans)
	}
	_, err = fmt.Fprintf(a.stdout, "paused %s; probes keep running and recording\n", ans.Pause.Describe())
	return err
}

// resume is `talon resume`: lifts pauses.
func (a *app) resume(args []string) error {
	var req health.ControlRequest
	if err := a.flagsOnly("resume", args, func(fs *flag.FlagSet) { scopeFlags(fs, &req) }); err != nil {
		return err
	}
	if err := oneScope(req); err != nil {
		return err
	}
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
// endpoint, found through --config like `talon reload`.
func (a *app) control(name, path string, req health.ControlRequest) (health.ControlAnswer, error) {
	e, err := a.loadEnv()
	if err != nil {
		return health.ControlAnswer{}, err
	}
	if !e.cfg.Health.Enabled {
		return health.ControlAnswer{}, fail(1, "%s needs the daemon's health endpoint, and %s turns it off ([health] enabled = false)", name, e.cfgPath)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ans, err := health.PostControl(ctx, e.cfg.Health.Bind, path, req)
	var refused *health.ControlError
	switch {
	case errors.As(err, &refused):
		return ans, fail(1, "%s refused: %s", name, oneLine(refused.Message))
	case errors.Is(err, health.ErrNotRunning) && daemonHolds(e.stateDir):
		return ans, fail(1, "%s: the daemon holding %s does not answer on %s: %s", name, e.stateDir, e.cfg.Health.Bind, oneLine(err.Error()))
	case err != nil:
		return ans, fail(1, "%s: %s", name, oneLine(err.Error()))
	}
	if path == "/pause" && ans.Pause == nil {
		return ans, fail(1, "pause: the daemon on %s answered without the pause", e.cfg.Health.Bind)
	}
	return ans, nil
}
