package engine

import (
	"github.com/talon-dev/talon/internal/text"

	"context"
	"fmt"
	"strings"
	"time"
)

// startRung runs a rung the core started, outside the loop: probes keep
// running and /health stays fresh while a five-minute heal is in flight.
// Its outcome comes back to the loop as a RungEnd. Callers hold d.mu.
func (d *Daemon) startRung(ctx context.Context, run *RungRun) {
	rctx, cancel := context.WithCancel(ctx)
	d.rungStop = cancel
	runner, childEnv := d.runner(), d.env()
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		defer cancel()
		var end RungEnd
		func() {
			defer func() {
				if v := recover(); v != nil {
					end = RungEnd{Output: fmt.Sprintf("internal error in rung %s: %v", run.Rung.Name, v)}
				}
			}()
			end = d.runRung(rctx, runner, childEnv, run)
		}()
		end.Incident, end.Rung = run.Incident, run.Rung.Name
		end.Cut = rctx.Err() != nil
		d.rungDone <- end
	}()
}

// runRung performs the rung: its actions in order, stopping at the first
// failure; its page on every channel at once, whatever the actions did;
// then, under the daemon's context rather than the rung's timeout (a heal
// that used its whole budget still gets checked), the verification.
func (d *Daemon) runRung(ctx context.Context, runner *Runner, childEnv []string, run *RungRun) RungEnd {
	r := run.Rung
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, run.Timeout)
	defer cancel()
	msg := run.Message
	msg.Text = d.pageHeader("SOS") + msg.Text
	env := &ActionEnv{Effects: d.opts.Actions, Env: childEnv, Incident: run.View, Rung: r.Name, Message: msg,
		Log: func(m string, kv ...any) { d.log.Info(m, append([]any{"rung", r.Name}, kv...)...) }}
	end := RungEnd{OK: true}
	var outputs []string
	for _, a := range run.Actions {
		res := a.Run(ctx, env)
		ok := res.OK
		d.mu.Lock()
		d.journal(Record{Type: "action", Rung: r.Name, Action: a.Describe(), OK: &ok, Output: text.Cap(res.Output, 2000)})
		d.mu.Unlock()
		outputs = append(outputs, res.Output)
		if !res.OK {
			end.OK = false
			break
		}
	}
	if len(run.Pagers) > 0 {
		end.Deliveries = d.deliver(ctx, env, run.Pagers, msg)
		end.OK = end.OK && len(Accepted(end.Deliveries)) > 0
	}
	end.Output = strings.Join(outputs, "\n")
	if len(run.Verify) > 0 && parent.Err() == nil {
		end.Verify = runner.Run(parent, run.Verify)
		if parent.Err() != nil {
			end.Verify = nil // cut by the shutdown: "context canceled" is not a result
		}
	}
	return end
}

// deliver sends msg through the delivery primitive, journaling and logging
// each channel's fate as it is known.
func (d *Daemon) deliver(ctx context.Context, env *ActionEnv, pagers []Pager, msg Message) []Delivery {
	return Deliver(ctx, env, pagers, msg, func(dl Delivery) {
		ok := dl.OK
		rec := Record{Type: "action", Rung: env.Rung, Action: "page " + msg.Kind + " via " + dl.Channel, OK: &ok, Output: dl.Error}
		if ok {
			d.pages.Add(1)
			d.log.Info("page sent", "rung", env.Rung, "channel", dl.Channel, "kind", msg.Kind)
		} else {
			d.log.Error("page channel failed", "rung", env.Rung, "channel", dl.Channel, "err", dl.Error)
		}
		d.mu.Lock()
		d.journal(rec)
		d.mu.Unlock()
	})
}

// pageHeader starts every message Talon sends.
func (d *Daemon) pageHeader(kind string) string {
	mark := "🚨"
	if kind == "resolved" {
		mark = "✅"
	}
	dry := ""
	if d.opts.DryRun {
		dry = " (dry run)"
	}
	return fmt.Sprintf("%s TALON %s%s on %s: ", mark, kind, dry, d.opts.Host)
}

// notify sends a notice the core decided on ("resolved"); callers hold d.mu.
func (d *Daemon) notify(n Notice) {
	msg := Message{Kind: n.Kind, Incident: n.Incident,
		Text: d.pageHeader(n.Kind) + fmt.Sprintf("incident %s is over (%s)", n.Incident, n.Reason)}
	env := &ActionEnv{Effects: d.opts.Actions, Env: d.env(), Rung: n.Kind, Message: msg,
		Log: func(m string, kv ...any) { d.log.Info(m, kv...) }}
	if missing := len(n.Channels) - len(n.Pagers); missing > 0 {
		d.log.Warn("some paged channels are no longer in the policy and will not hear that the incident is over", "incident", n.Incident, "channels", n.Channels)
	}
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.deliver(ctx, env, n.Pagers, msg)
	}()
}
