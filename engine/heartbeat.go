package engine

import (
	"context"
	"time"

	"github.com/talon-dev/talon/engine/effect"
)

// Heartbeat is the policy's dead-man ping (the heartbeat() builtin): an
// outside service (healthchecks.io and the like) expects a request every
// Every and raises the alarm when one does not come, so a host that sleeps,
// panics or loses power is noticed by someone. The daemon decides nothing
// from it; it is driven from its published Snapshot.
type Heartbeat struct {
	// URL resolves the ping URL. Its path is often the secret (a check's
	// UUID), so it may come from a secret, resolved only when pinging.
	URL func(ctx context.Context, eff effect.Effects, env []string) (string, error)
	// FailURL resolves the URL pinged when the watchdog is not healthy; nil
	// means URL with "/fail" appended (healthchecks.io's convention).
	FailURL func(ctx context.Context, eff effect.Effects, env []string) (string, error)
	Every   time.Duration
	Method  string // GET, HEAD or POST
	Timeout time.Duration
	// Target names the URL in logs without its secret part: scheme and host.
	Target string
	Pos    string
}
