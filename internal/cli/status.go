package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/health"
)

// statusReport is `talon status`: the daemon's snapshot when it answers,
// else the persisted state.
type statusReport struct {
	Source string           `json:"source"` // "daemon" or "state_file"
	Health *engine.Snapshot `json:"health,omitempty"`
	State  *engine.State    `json:"state,omitempty"`
}

func (a *app) status(args []string) error {
	var asJSON bool
	if err := a.flagsOnly("status", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
	}); err != nil {
		return err
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	rep := statusReport{}
	if e.cfg.Health.Enabled {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		snap, err := health.Get(ctx, e.cfg.Health.Bind)
		cancel()
		if err == nil {
			rep.Source, rep.Health = "daemon", &snap
		}
	}
	if rep.Health == nil {
		st, err := engine.LoadState(engine.StatePath(e.stateDir))
		switch {
		case errors.Is(err, engine.ErrNoState):
			return fail(1, "no daemon answers on %s and there is no state file in %s yet", e.cfg.Health.Bind, e.stateDir)
		case err != nil:
			return err
		}
		rep.Source, rep.State = "state_file", st
	}
	if a.wantJSON(asJSON) {
		return a.json(rep)
	}
	var b strings.Builder
	if s := rep.Health; s != nil {
		fmt.Fprintf(&b, "state %s (daemon on %s, updated %s)\n", s.State, e.cfg.Health.Bind, time.Unix(s.UpdatedAtUnix, 0).Format(time.RFC3339))
		fmt.Fprintf(&b, "policy %s, %d probes, %d failing %s\n", shortHash(s.PolicyHash), s.ProbeCount, s.FailedProbeCount, strings.Join(s.FailedProbes, " "))
		if s.PolicyError != nil {
			fmt.Fprintf(&b, "policy error (last good policy still running): %s\n", *s.PolicyError)
		}
		if s.Incident != nil {
			fmt.Fprintf(&b, "incident %s since %s: %s\n", s.Incident.ID, s.Incident.Started.Format(time.RFC3339), strings.Join(s.Incident.Probes, " "))
		}
		if s.Rung != nil {
			fmt.Fprintf(&b, "running rung %s\n", *s.Rung)
		}
	} else {
		s := rep.State
		fmt.Fprintf(&b, "state %s since %s (from the state file; no daemon answered)\n", s.Phase, s.PhaseSince.Format(time.RFC3339))
		var failing []string
		for name, ps := range s.Probes {
			if ps.Last != nil && !ps.Last.Passed {
				failing = append(failing, name)
			}
		}
		sort.Strings(failing)
		fmt.Fprintf(&b, "%d probes known, %d failing %s\n", len(s.Probes), len(failing), strings.Join(failing, " "))
		if inc := s.Incident; inc != nil {
			fmt.Fprintf(&b, "incident %s since %s: %s\n", inc.ID, inc.Started.Format(time.RFC3339), strings.Join(inc.Probes, " "))
		}
	}
	_, err = fmt.Fprint(a.stdout, b.String())
	return err
}

func (a *app) reload(args []string) error {
	if err := a.flagsOnly("reload", args, nil); err != nil {
		return err
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hash, err := health.PostReload(ctx, e.cfg.Health.Bind)
	var refused *health.ReloadError
	if errors.As(err, &refused) {
		return fail(1, "reload refused; the last good policy keeps running: %s", oneLine(refused.Message))
	}
	// Only when nothing answers on /health is a signal the way to the daemon.
	if err != nil && errors.Is(err, health.ErrNotRunning) {
		if sent, serr := signalDaemon(e.stateDir); sent {
			_, werr := fmt.Fprintf(a.stdout, "sent SIGHUP to the daemon (its /health did not answer: %v)\n", oneLine(err.Error()))
			return werr
		} else if serr != nil {
			return fail(1, "reload: %v; and %v", oneLine(err.Error()), serr)
		}
		return fail(1, "reload: %s", oneLine(err.Error()))
	}
	if err != nil {
		return fail(1, "reload: %s", oneLine(err.Error()))
	}
	_, err = fmt.Fprintf(a.stdout, "reloaded: policy %s\n", shortHash(hash))
	return err
}
