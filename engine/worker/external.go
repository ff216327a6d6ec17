package worker

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine/effect"
)

// verdict is the answer of one external-supervisor check.
type verdict int

const (
	absent verdict = iota // the external supervisor conclusively does not run the worker
	owned                 // it does
	unsure                // the check could not tell (tool missing, timeout, odd answer)
)

func (v verdict) String() string {
	return [...]string{"absent", "owned", "unsure"}[v]
}

// ownerCheck is the outcome of asking every configured external supervisor.
type ownerCheck struct {
	verdict verdict
	owner   string // who owns the worker, when owned: "systemd unit x (system)"
	problem string // why the check was unsure
}

// checkExternal asks launchd and/or systemd whether they run the worker.
// One owner is enough; otherwise one unsure answer makes the whole check
// unsure; only conclusive "no" answers from every scope make it absent.
func (s *Supervisor) checkExternal(ctx context.Context) ownerCheck {
	var problems []string
	if l := s.opts.ExternalLaunchdLabel; l != "" {
		for _, target := range []string{fmt.Sprintf("gui/%d/%s", os.Getuid(), l), "system/" + l} {
			v, why := s.launchdCheck(ctx, target)
			if v == owned {
				return ownerCheck{verdict: owned, owner: "launchd service " + target}
			}
			if v == unsure {
				problems = append(problems, "launchctl print "+target+": "+why)
			}
		}
	}
	if u := s.opts.ExternalSystemdUnit; u != "" {
		for _, user := range []bool{false, true} {
			v, why := s.systemdCheck(ctx, u, user)
			scope := "system"
			if user {
				scope = "user"
			}
			if v == owned {
				return ownerCheck{verdict: owned, owner: fmt.Sprintf("systemd unit %s (%s)", u, scope)}
			}
			if v == unsure {
				problems = append(problems, fmt.Sprintf("systemctl is-active %s (%s): %s", u, scope, why))
			}
		}
	}
	if len(problems) > 0 {
		return ownerCheck{verdict: unsure, problem: strings.Join(problems, "; ")}
	}
	return ownerCheck{verdict: absent}
}

func (s *Supervisor) externalConfigured() bool {
	return s.opts.ExternalLaunchdLabel != "" || s.opts.ExternalSystemdUnit != ""
}

func (s *Supervisor) lookup(ctx context.Context, argv ...string) effect.ExecResult {
	cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	return s.opts.Effects.Exec(cctx, effect.Command{Argv: argv, Env: s.opts.Env})
}

// launchdCheck: `launchctl print TARGET` exits 0 when the service is loaded
// and non-zero (113, "Could not find service") when it is not. Not being
// able to run launchctl, or being killed, tells nothing.
func (s *Supervisor) launchdCheck(ctx context.Context, target string) (verdict, string) {
	r := s.lookup(ctx, "launchctl", "print", target)
	switch {
	case r.Err != nil || r.TimedOut || r.ExitCode < 0:
		return unsure, execProblem(r)
	case r.ExitCode == 0:
		return owned, ""
	}
	return absent, ""
}

// systemdCheck: `systemctl [--user] is-active UNIT` prints the unit's active
// state. Only the documented states count as an answer; anything else (no
// output, "Failed to connect to bus", a timeout) is unsure — except that a
// user scope with no user manager to connect to cannot be running anything.
func (s *Supervisor) systemdCheck(ctx context.Context, unit string, user bool) (verdict, string) {
	argv := []string{"systemctl", "is-active", unit}
	if user {
		argv = []string{"systemctl", "--user", "is-active", unit}
	}
	r := s.lookup(ctx, argv...)
	if r.Err != nil || r.TimedOut || r.ExitCode < 0 {
		return unsure, execProblem(r)
	}
	state := strings.TrimSpace(r.Stdout)
	if i := strings.IndexByte(state, '\n'); i >= 0 {
		state = state[:i]
	}
	switch state {
	case "active", "activating", "reloading", "refreshing", "deactivating":
		return owned, ""
	case "inactive", "failed", "unknown", "dead", "maintenance":
		return absent, ""
	}
	if user && state == "" && noUserBus(r.Stderr) {
		return absent, ""
	}
	return unsure, execProblem(r)
}

func noUserBus(stderr string) bool {
	return strings.Contains(stderr, "Failed to connect to bus") ||
		strings.Contains(stderr, "Failed to connect to user scope bus")
}

// ownerWatcher re-checks the external supervisors every HealthInterval and
// publishes each decision on ch (latest value wins).
//
// The safety rule for checks that cannot tell (unsure): keep the previous
// decision; and when there is no previous decision (the first check after
// Talon starts), assume the external supervisor owns the worker and do not
// spawn. Talon starts its own worker only after a conclusive "not running"
// answer. A broken check therefore keeps the worker down (loudly: a warning
// every interval and Status.LastError) rather than starting a second copy
// that the port cleanup of one supervisor or the other would then kill — the
// predecessor's fail-open rule brought back exactly that dual-supervisor fight.
func (s *Supervisor) ownerWatcher(ctx context.Context, ch chan decision) {
	var prev *decision
	for {
		c := s.checkExternal(ctx)
		if ctx.Err() != nil {
			return
		}
		var d decision
		switch c.verdict {
		case owned:
			d = decision{owner: c.owner}
		case absent:
			d = decision{}
		case unsure:
			if prev != nil {
				d = *prev
				d.problem = c.problem
				if d.owner != "" {
					s.log.Warn("cannot tell whether the external supervisor still runs the worker; still stepping back", "owner", d.owner, "err", c.problem)
				} else {
					s.log.Warn("cannot tell whether an external supervisor runs the worker; keeping our own", "err", c.problem)
				}
			} else {
				d = decision{owner: "unknown (external supervisor check failed)", problem: c.problem}
				s.log.Warn("cannot tell whether an external supervisor runs the worker; not starting ours until a check answers", "err", c.problem)
			}
		}
		if prev == nil || prev.owner != d.owner {
			if d.owner != "" && c.verdict == owned {
				s.log.Info("external supervisor runs the worker; stepping back", "owner", d.owner)
			} else if d.owner == "" && prev != nil {
				s.log.Info("external supervisor no longer runs the worker; supervising it", "was", prev.owner)
			}
		}
		p := d
		prev = &p
		select {
		case <-ch:
		default:
		}
		ch <- d
		if s.sleep(ctx, s.opts.HealthInterval) != nil {
			return
		}
	}
}

// decision is the owner watcher's current view.
type decision struct {
	owner   string // "" when Talon should supervise the worker itself
	problem string // the last check was unsure, and why
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
