package builtins

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// HeartbeatDoc documents heartbeat().
const HeartbeatDoc = `def heartbeat(url, *, every="1m", method="GET", timeout="10s", fail_url=None):
A dead-man switch: the daemon pings url every interval (healthchecks.io, Uptime Kuma push
monitors, Cronitor and the like), so that an outside service raises the alarm when the pings
stop: the host slept, panicked, lost power or its network. While the watchdog is not healthy
(any phase but healthy, a policy that failed to load, a stuck loop) it pings fail_url
instead, by default url with "/fail" appended. One attempt per interval, never retried
sooner; a failed ping is logged, never paged. Logs name only the URL's scheme and host.
Not sent in shadow mode (talon run --dry-run). Declare it once, at the top level.
url: the ping URL, http or https; a secret keeps it out of the policy, e.g. secret("hc_ping", env = "HC_PING_URL")
every: the interval, at least 10s, e.g. "1m"
method: GET, HEAD or POST; a POST carries a one-line summary of the state as its body
timeout: how long one ping may take, at most every (default 10s)
fail_url: the URL pinged while not healthy (a string or a secret; default url + "/fail")`

// heartbeat bounds.
const (
	minHeartbeatEvery       = 10 * time.Second
	maxHeartbeatEvery       = 24 * time.Hour
	defaultHeartbeatEvery   = time.Minute
	defaultHeartbeatTimeout = 10 * time.Second
)

func heartbeatBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	u := secret.Arg{Name: "heartbeat_url"}
	fu := secret.Arg{Name: "heartbeat_fail_url"}
	every := star.Duration{D: defaultHeartbeatEvery}
	timeout := star.Duration{D: defaultHeartbeatTimeout}
	method := "GET"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "url", &u, "every?", &every, "method?", &method,
		"timeout?", &timeout, "fail_url?", &fu); err != nil {
		return nil, err
	}
	pos := star.Pos(thread)
	if c.heartbeat != nil {
		return nil, fmt.Errorf("%s: already declared at %s; declare one heartbeat", b.Name(), c.heartbeat.Pos)
	}
	method = strings.ToUpper(method)
	switch method {
	case "GET", "HEAD", "POST":
	default:
		return nil, fmt.Errorf("%s: method %q: want GET, HEAD or POST", b.Name(), method)
	}
	if every.D < minHeartbeatEvery || every.D > maxHeartbeatEvery {
		return nil, fmt.Errorf("%s: every %s: want between %s and %s", b.Name(), every.D, minHeartbeatEvery, maxHeartbeatEvery)
	}
	if timeout.D <= 0 || timeout.D > every.D {
		return nil, fmt.Errorf("%s: timeout %s: want more than 0 and at most every (%s)", b.Name(), timeout.D, every.D)
	}
	target, err := checkPingURL(u.Secret)
	if err != nil {
		return nil, fmt.Errorf("%s: url %v", b.Name(), err)
	}
	hb := &engine.Heartbeat{URL: resolver(u.Secret), Every: every.D, Method: method, Timeout: timeout.D, Target: target, Pos: pos}
	if fu.Secret != nil {
		if _, err := checkPingURL(fu.Secret); err != nil {
			return nil, fmt.Errorf("%s: fail_url %v", b.Name(), err)
		}
		hb.FailURL = resolver(fu.Secret)
	}
	c.heartbeat = hb
	return starlark.None, nil
}

func resolver(s *secret.Secret) func(ctx context.Context, eff effect.Effects, env []string) (string, error) {
	return func(ctx context.Context, eff effect.Effects, env []string) (string, error) {
		v, err := s.Resolve(ctx, eff, env)
		if err != nil {
			return "", err
		}
		if _, err := checkPingURL(secret.Literal(s.Name(), v)); err != nil {
			return "", fmt.Errorf("%s: %w", s, err)
		}
		return v, nil
	}
}

// checkPingURL validates a plain URL where it is written, and returns what
// logs may show of it: scheme and host, or the secret's name.
func checkPingURL(s *secret.Secret) (string, error) {
	v, plain := s.Plain()
	if !plain {
		return s.String(), nil
	}
	p, err := url.Parse(v)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return "", fmt.Errorf("%q: want an http or https URL with a host", redactURL(v))
	}
	return p.Scheme + "://" + p.Host, nil
}

// redactURL keeps a bad URL's shape for the error without its path,
// query or user info, which may be the secret.
func redactURL(v string) string {
	if p, err := url.Parse(v); err == nil && p.Host != "" {
		return p.Scheme + "://" + p.Host + "/…"
	}
	if len(v) > 12 {
		return v[:8] + "…"
	}
	return v
}
