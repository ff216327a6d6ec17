// Package heartbeat runs the policy's dead-man ping (heartbeat() in a
// policy) beside the daemon: every interval it reads the daemon's
// published snapshot and pings the heartbeat URL, or its fail URL while the
// watchdog is not healthy. It decides nothing the daemon decides and touches
// none of its state; it only reads Snapshot, so the daemon can be rebuilt
// around it.
//
// One attempt per interval: a ping that fails is logged (never paged) and
// not retried before the next interval, so a dead endpoint can never cause
// a storm of requests. Logs name the URL by scheme and host only; the path
// of a ping URL (a check's UUID) is what lets anyone ping it.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// DefaultIdle is how often a daemon whose policy declares no heartbeat looks
// again (a reload may add one).
const DefaultIdle = 30 * time.Second

// maxBody is how much of a response is read (and dropped).
const maxBody = 4 << 10

// Options configure Run.
type Options struct {
	// Current is the heartbeat of the policy in force, nil for none.
	Current func() *engine.Heartbeat
	// Snapshot is the daemon's published health.
	Snapshot func() engine.Snapshot
	// Effects sends the requests (and leases a secret URL).
	Effects effect.Effects
	// Env is the environment of a secret's lease command.
	Env []string
	// Host names this machine in a POST's body.
	Host string
	// Version goes into the User-Agent.
	Version string
	Logger  *log.Logger
	// After is the clock: it fires once d has passed. Nil: time.After.
	After func(d time.Duration) <-chan time.Time
	// Idle is how often to look for a heartbeat when the policy has none.
	// Zero: DefaultIdle.
	Idle time.Duration
}

// Run pings until ctx ends. The first ping goes out at once, so the outside
// service learns of a (re)start without waiting an interval.
func Run(ctx context.Context, o Options) {
	if o.After == nil {
		o.After = time.After
	}
	if o.Idle <= 0 {
		o.Idle = DefaultIdle
	}
	if o.Logger == nil {
		o.Logger = log.New(io.Discard)
	}
	p := &pinger{o: o}
	for {
		wait := o.Idle
		if hb := o.Current(); hb != nil {
			p.ping(ctx, hb)
			wait = hb.Every
		} else if p.announced != nil {
			o.Logger.Info("heartbeat: the policy declares none now; no more pings")
			p.announced = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-o.After(wait):
		}
	}
}

type pinger struct {
	o         Options
	announced *engine.Heartbeat // the heartbeat the log last said it pings
	failing   bool              // the last ping reported failure (fail URL)
	failures  int               // consecutive pings that were not delivered
}

func (p *pinger) ping(ctx context.Context, hb *engine.Heartbeat) {
	log := p.o.Logger.With("target", hb.Target)
	if p.announced != hb {
		log.Info("heartbeat: pinging", "every", hb.Every, "method", hb.Method)
		p.announced = hb
	}
	snap := p.o.Snapshot()
	why := unhealthy(snap)
	ctx, cancel := context.WithTimeout(ctx, hb.Timeout)
	defer cancel()
	target, err := p.url(ctx, hb, why != "")
	if err == nil {
		err = p.send(ctx, hb, target, summary(snap, why, p.o.Host))
	}
	if err != nil {
		p.failures++
		log.Warn("heartbeat not delivered; the next try is in one interval", "err", redact(err, target, hb.Target), "failures", p.failures, "next", hb.Every)
		return
	}
	if p.failures > 0 {
		log.Info("heartbeat delivered again", "after_failures", p.failures)
		p.failures = 0
	}
	switch {
	case why != "" && !p.failing:
		log.Warn("heartbeat: reporting failure", "reason", why)
	case why == "" && p.failing:
		log.Info("heartbeat: reporting healthy again")
	}
	p.failing = why != ""
	log.Debug("heartbeat sent", "fail", why != "")
}

// unhealthy says why the watchdog is not healthy, or "".
func unhealthy(s engine.Snapshot) string {
	switch {
	case s.PolicyError != nil:
		return "policy error: " + firstLine(*s.PolicyError)
	case s.Stale:
		return "the probe loop is stuck"
	case s.State != engine.Healthy:
		return "state " + string(s.State)
	case s.WriteError != nil:
		// Watching but not remembering: a restart would forget what it
		// decided meanwhile.
		return "the state directory cannot be written: " + firstLine(s.WriteError.State+" "+s.WriteError.Journal)
	}
	return ""
}

// url is the URL to ping: the heartbeat's, or while failing its fail URL
// (by default the URL with "/fail" appended to its path).
func (p *pinger) url(ctx context.Context, hb *engine.Heartbeat, failing bool) (string, error) {
	if failing && hb.FailURL != nil {
		return hb.FailURL(ctx, p.o.Effects, p.o.Env)
	}
	raw, err := hb.URL(ctx, p.o.Effects, p.o.Env)
	if err != nil || !failing {
		return raw, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("the URL does not parse")
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/fail"
	if u.RawPath != "" {
		u.RawPath = strings.TrimSuffix(u.RawPath, "/") + "/fail"
	}
	return u.String(), nil
}

func (p *pinger) send(ctx context.Context, hb *engine.Heartbeat, target, body string) error {
	var r io.Reader
	if hb.Method == http.MethodPost {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, hb.Method, target, r)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "talon/"+p.o.Version)
	if r != nil {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	resp, err := p.o.Effects.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return nil
}

// summary is a POST's body: one line a person reads in the outside
// service's log of pings.
func summary(s engine.Snapshot, why, host string) string {
	state := "healthy"
	if why != "" {
		state = why
	}
	line := fmt.Sprintf("talon on %s: %s; %d probes, %d failing", host, state, s.ProbeCount, s.FailedProbeCount)
	if len(s.FailedProbes) > 0 {
		line += ": " + strings.Join(s.FailedProbes, ", ")
	}
	if s.Incident != nil {
		line += "; incident " + s.Incident.ID
	}
	return line + "\n"
}

// redact turns an error into text without the URL's secret part: a
// *url.Error names the whole URL, and a server's answer might repeat it.
func redact(err error, raw, shown string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "no answer within the timeout"
	}
	if raw != "" {
		msg = strings.ReplaceAll(msg, raw, shown)
		if u, perr := url.Parse(raw); perr == nil && len(u.Path) > 1 {
			msg = strings.ReplaceAll(msg, u.Path, "/…")
		}
	}
	return msg
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
