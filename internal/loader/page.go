package loader

import (
	"context"
	"fmt"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// Retries of the fallback page back off from pageRetryMin, doubling up to
// pageRetryMax, as the ladder's pages do.
const (
	pageRetryMin = engine.PageRetryMin
	pageRetryMax = engine.PageRetryMax
)

// FallbackPage is the page that says the daemon runs a fallback policy.
func FallbackPage(host string, fb *engine.Fallback) engine.Message {
	return engine.Message{Kind: "fallback", Text: fmt.Sprintf("⚠️ TALON on %s is %s", host, fb.Summary())}
}

// PageFallback sends, once, the page that says the daemon runs a fallback
// policy: through every channel of that policy's ladder (the configured
// channels, which the last good policy or the default's config names),
// with fx (a Recorder in shadow mode). Once a channel accepted it, the
// Store remembers it for this error, so a daemon that restarts again and
// again with the same broken file pages once, not at every start. A page
// no channel accepted is retried with backoff while the fallback lasts.
// It returns when the page is sent (or was already), when the fallback is
// over, or when ctx ends. logf receives one line per channel.
func (l *Loader) PageFallback(ctx context.Context, fx effect.Effects, host string, logf func(msg string, kv ...any)) {
	wait := pageRetryMin
	for {
		res := l.Fallback()
		if res == nil || l.opts.Store == nil {
			return
		}
		fb := res.Fallback
		if l.opts.Store.Paged(fb.Error) {
			logf("the page about the fallback went out at an earlier start; not sending it again", "fallback", fb.Source)
			return
		}
		var pagers []engine.Pager
		seen := map[string]bool{}
		for _, r := range res.Policy.Ladder {
			for _, a := range r.Do {
				if p, ok := a.(engine.Pager); ok && !seen[p.Channel()] {
					seen[p.Channel()] = true
					pagers = append(pagers, p)
				}
			}
		}
		if len(pagers) == 0 {
			logf("nobody can be told about the fallback: its ladder has no channel", "fallback", fb.Source)
			return
		}
		msg := FallbackPage(host, fb)
		env := &engine.ActionEnv{Effects: fx, Env: res.Policy.Env, Rung: "fallback", Message: msg, Log: logf}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		ds := engine.Deliver(pctx, env, pagers, msg, func(d engine.Delivery) {
			if d.OK {
				logf("page sent", "rung", "fallback", "channel", d.Channel, "kind", msg.Kind)
			} else {
				logf("page channel failed", "rung", "fallback", "channel", d.Channel, "err", d.Error)
			}
		})
		cancel()
		if len(engine.Accepted(ds)) > 0 {
			if err := l.opts.Store.MarkPaged(fb.Error, l.now()); err != nil {
				logf("the fallback page is not recorded as sent; a restart may send it again", "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, pageRetryMax)
	}
}
