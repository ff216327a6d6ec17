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
	d.rungStops[run.Rung.Name] = cancel
	runner, childEnv, pages := d.runner(), d.env(), d.delivering
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
			end = d.runRung(rctx, pages, runner, childEnv, run)
		}()
		end.Incident, end.Rung = run.Incident, run.Rung.Name
		end.Cut = rctx.Err() != nil
		d.rungDone <- end
	}()
}

// runRung performs the rung: its page on every channel at once, beside
// its actions (a page never waits for a five-minute heal); its actions in
// order, stopping at the first failure; then, under the daemon's context
// rather than the rung's timeout (a heal that used its whole budget still
// gets checked), the verification. The page is delivered under pages, not
// ctx: a stop cuts the actions at once but lets the page finish until the
// stop deadline.
func (d *Daemon) runRung(ctx, pages context.Context, runner *Runner, childEnv []string, run *RungRun) RungEnd {
	r := run.Rung
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, run.Timeout)
	defer cancel()
	msg := run.Message
	msg.Text = d.pageHeader("SOS") + msg.Text
	env := &ActionEnv{Effects: d.opts.Actions, Env: childEnv, Incident: run.View, Rung: r.Name, Message: msg,
		Log: func(m string, kv ...any) { d.log.Info(m, append([]any{"rung", r.Name}, kv...)...) }}
	end := RungEnd{OK: true}
	var deliveries chan []Delivery
	if len(run.Pagers) > 0 {
		deliveries = make(chan []Delivery, 1)
		go func() {
			pctx, cancel := context.WithTimeout(pages, run.Timeout)
			defer cancel()
			deliveries <- d.deliver(pctx, pages, env, run.Pagers, msg, run.Incident, r.Name)
		}()
	}
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
	if deliveries != nil {
		end.Deliveries = <-deliveries
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
// each channel's fate as it is known, and feeding it to the core at once
// (a FactDelivery, saved before the next channel's answer is taken). A
// channel cut short because the daemon stops (pages ended) has not
// answered: nothing is fed, and it stays owed the message (the next start
// sends it again).
func (d *Daemon) deliver(ctx, pages context.Context, env *ActionEnv, pagers []Pager, msg Message, incident, rung string) []Delivery {
	return Deliver(ctx, env, pagers, msg, func(dl Delivery) {
		ok := dl.OK
		if !ok && pages.Err() != nil {
			d.log.Warn("page cut short by the shutdown; it goes again at the next start", "rung", env.Rung, "channel", dl.Channel, "kind", msg.Kind)
			d.mu.Lock()
			d.journal(Record{Type: "action", Rung: env.Rung, Action: "page " + msg.Kind + " via " + dl.Channel, OK: &ok,
				Output: "cut short by the shutdown before the channel answered; sent again at the next start"})
			d.mu.Unlock()
			return
		}
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
		d.answer(Answer{Kind: msg.Kind, Incident: incident, Rung: rung, Delivery: dl})
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

// notify sends a message the core decided on ("resolved", or a page sent
// again after a restart); callers hold d.mu.
func (d *Daemon) notify(n Notice) {
	header := n.Kind
	if n.Kind == "sos" {
		header = "SOS"
	}
	msg := Message{Kind: n.Kind, Incident: n.Incident, Text: d.pageHeader(header) + n.Text}
	rung := n.Rung
	if rung == "" {
		rung = n.Kind
	}
	env := &ActionEnv{Effects: d.opts.Actions, Env: d.env(), Rung: rung, Message: msg,
		Log: func(m string, kv ...any) { d.log.Info(m, kv...) }}
	if n.Attempt > 1 {
		d.log.Info("sending again", "kind", n.Kind, "incident", n.Incident, "attempt", n.Attempt, "channels", n.Channels)
	}
	pages := d.delivering
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		ctx, cancel := context.WithTimeout(pages, time.Minute)
		defer cancel()
		d.deliver(ctx, pages, env, n.Pagers, msg, n.Incident, n.Rung)
	}()
}
