package engine

import (
	"github.com/talon-dev/talon/internal/text"

	"context"
	"fmt"
	"time"
)

// The decision core.
//
// Talon decides in one place: Core. It is a pure state machine in the
// functional-core / imperative-shell sense: it is fed recorded facts (the
// process started, probes were launched, probe results came in, a rung ended
// with this outcome, the policy was reloaded, time passed) and answers with
// events (what it decided, for the journal and the log) and commands (start
// this rung with these verify probes, send "resolved" to these channels, wake
// me at this time). It performs no I/O, reads no clock and starts no
// goroutine; its only calls out are the policy's own pure `when=` predicates.
//
// Three thin drivers feed it: the daemon (engine.Daemon, which schedules
// probes, runs rungs and pages, journals the facts and persists the state),
// replay (which reads the facts back from a journal) and `talon test` (which
// scripts them over a fake clock). Because all three feed the same facts to
// the same core, replaying a daemon's journal through its own policy decides
// exactly what the daemon decided.
//
// Every gate lives here, in Core.hold and Decide: a rung is already running;
// a parent (depends_on) of an escalating probe was launched and has not
// reported; a probe of the incident has no result since this process
// started; the incident's probes pass again and only wait for recovery
// hysteresis; every down probe waits on a failing parent; then the ladder's
// own rules (when=, after, cooldown, repeat, page backoff, settle windows,
// fresh evidence, flapping, pauses and acknowledgements). A new rule is one
// more fact kind and one more line in hold or Decide, seen by all three
// drivers at once.

// FactKind names a kind of fact.
type FactKind string

// The facts the core is fed. Each is journaled as a record of the same name
// (docs/journal.md), except FactResults, which is a "cycle" record.
const (
	// FactStart: this process started. State (the state loaded from disk)
	// and Policy (the policy it runs) replace the core's when set.
	// Results from before the start do not count for the ladder.
	FactStart FactKind = "start"
	// FactLaunch: Probes were launched; each is "in flight" until its
	// result arrives.
	FactLaunch FactKind = "launch"
	// FactResults: probe results arrived (a "cycle" record).
	FactResults FactKind = "results"
	// FactRungEnd: a running rung ended with End.
	FactRungEnd FactKind = "rung_end"
	// FactReload: Policy replaced the policy in force.
	FactReload FactKind = "reload"
	// FactWake: time passed; nothing else happened. The core asks for it
	// through Step.Wake so that held rungs run on time.
	FactWake FactKind = "wake"
	// FactStop: the process stops; a rung still running is interrupted.
	FactStop FactKind = "stop"
	// FactPause, FactResume, FactAck: an operator's command (Control):
	// talon pause, resume and ack, or their POST routes.
	FactPause  FactKind = "pause"
	FactResume FactKind = "resume"
	FactAck    FactKind = "ack"
	// FactDelivery: one channel answered a message (Answer): a rung's page
	// or a "resolved" message. The shell feeds it the moment the channel
	// answers and persists the state at once (Step.Persist), so that a
	// crash re-sends only to the channels without a recorded answer.
	FactDelivery FactKind = "delivery"
	// FactCheckpoint: the core's state at this point of a running process
	// (State, the probes in flight in Probes, the process start in
	// Started), journaled where a journal file begins after a rotation, so
	// that a journal whose earlier files were rotated away replays from
	// the right state. It restores a core that has not started; a core
	// that has ignores it.
	FactCheckpoint FactKind = "checkpoint"
)

// Fact is one thing that happened, at At. Kind says which fields are set.
type Fact struct {
	Kind FactKind
	At   time.Time
	// Probes are the probes launched (FactLaunch).
	Probes []string
	// Results are probe results (FactResults).
	Results []Result
	// End is the rung's outcome (FactRungEnd).
	End *RungEnd
	// Policy is the policy in force (FactStart, FactReload).
	Policy *Policy
	// PolicyError, at a start, says the policy did not load: Policy is a
	// stand-in without probes, and the probes' state is kept as it was
	// until a good policy loads.
	PolicyError string
	// State is the state loaded at a start; nil keeps the core's.
	State *State
	// Control is the operator's command (FactPause, FactResume, FactAck).
	Control *Control
	// Answer is a channel's answer to a message (FactDelivery).
	Answer *Answer
	// Started is when the process started (FactCheckpoint).
	Started time.Time
}

// Answer is what one channel said to one message: a rung's page (Kind
// "sos", Rung set) or a "resolved" message.
type Answer struct {
	Kind     string `json:"kind"`
	Incident string `json:"incident"`
	Rung     string `json:"rung,omitempty"`
	Delivery
}

// RungEnd is what became of a rung the core started (a "rung_end" record).
type RungEnd struct {
	Incident string `json:"incident"`
	Rung     string `json:"rung"`
	// OK says the rung's actions all succeeded.
	OK     bool   `json:"ok"`
	Output string `json:"output,omitempty"`
	// Deliveries is the page's fate on each channel, one per channel the
	// rung pages through; empty when the rung does not page (or was cut
	// before its page went out).
	Deliveries []Delivery `json:"deliveries,omitempty"`
	// Verify is the verification batch: the re-probe of the verify probes
	// after the rung's actions.
	Verify []Result `json:"verify,omitempty"`
	// Cut says a shutdown cut the rung short.
	Cut bool `json:"cut,omitempty"`
	// Stopping says the daemon is shutting down: the outcome is recorded,
	// and nothing new starts.
	Stopping bool `json:"stopping,omitempty"`
}

// Step is what the core decided on one fact.
type Step struct {
	// Events are the decisions, in order, for the journal and the log.
	Events []Event
	// Runs are rungs to start now: at most one that acts, and any that
	// page. The core has already recorded them as started.
	Runs []*RungRun
	// Notify are messages to send now: "resolved" messages from the
	// outbox, and pages re-sent after a restart to the channels that had
	// not answered. Each channel's answer comes back as a FactDelivery.
	Notify []Notice
	// Reprobe are probes to launch now (a settle window's re-probe), like
	// scheduled ones: with a FactLaunch, skipping any already in flight.
	Reprobe []*Probe
	// Wake is when the core wants a FactWake even if nothing else happens
	// (a rung's after, cooldown, repeat or page retry comes due, a settle
	// window re-probes or ends, a pause expires, a message is retried, the
	// incident turns critical); zero when it needs none.
	Wake time.Time
	// Persist says the state must be saved before the shell does anything
	// else, whatever its saving schedule: a rung starts (a crash from here
	// on is an attempt), a channel accepted a page, an operator paused or
	// acknowledged. A crash after the fact must not lose it.
	Persist bool
}

// RungRun is the command to run one rung of the ladder.
type RungRun struct {
	At       time.Time
	Incident string
	Rung     *Rung
	// Actions are the rung's actions that are not pages, in order; they
	// stop at the first failure.
	Actions []Action
	// Pagers are the channels the rung pages through; the page goes out
	// whatever the actions did.
	Pagers []Pager
	// Message is the page (kind "sos") when the rung pages.
	Message Message
	// View is the incident as of the start, for actions and page texts.
	View *IncidentView
	// Verify are the probes to re-probe after the actions: the probes
	// failing at the start, when the rung verifies and runs something
	// besides pages; empty otherwise.
	Verify []*Probe
	// Timeout bounds the whole rung (DefaultRungTimeout when the rung sets
	// none); the verification runs after it, under its probes' deadlines.
	Timeout time.Duration
}

// Notice is the command to send a message that is not a rung's own page:
// the "resolved" message to the channels that were paged during an
// incident, or a page re-sent after a restart to the channels that had not
// answered it.
type Notice struct {
	Kind     string // "resolved" or "sos"
	Incident string
	Rung     string // "sos": the rung whose page it is
	Reason   string
	// Text is the message (without the shell's header).
	Text string
	// Channels are the channels to send it to, and Pagers how to reach
	// them (the policy in force, or one this process ran earlier).
	Channels []string
	Pagers   []Pager
	// Attempt counts the tries of a "resolved" message, 1 for the first.
	Attempt int
}

// OutboxMaxAttempts bounds the tries of a "resolved" message.
const OutboxMaxAttempts = 8

// CoreOptions tune a Core.
type CoreOptions struct {
	// WhenBudget bounds one evaluation of a `when=` predicate (default 2s).
	WhenBudget time.Duration
}

// DefaultWhenBudget bounds a `when=` predicate when CoreOptions sets none.
const DefaultWhenBudget = 2 * time.Second

// Core is the decision core; see the comment at the top of this file. The
// zero value is not usable: build it with NewCore and feed it a FactStart
// first. It is not safe for concurrent use; the drivers serialise facts.
type Core struct {
	pol  *Policy
	st   *State
	opts CoreOptions
	// started is when this process started: the ladder acts only on
	// results taken since.
	started time.Time
	// now is the time of the last fact.
	now time.Time
	// inflight are the probes launched and not yet reported, with the
	// definition they were launched with.
	inflight map[string]launch
	// acting and paging are the rungs started and not yet ended, whatever
	// became of their incident meanwhile: one that acts, any that page.
	acting *running
	paging []*running
	// pagers are the channels of every policy this process ran, by name:
	// a channel paged under a policy since edited still hears "resolved".
	pagers map[string]Pager
	// freshWake is when a rung waiting for fresh results stops waiting.
	freshWake time.Time
	// emptyNoted is the incident and policy for which the journal last
	// said that the ladder is empty.
	emptyNoted string
}

type launch struct {
	at     time.Time
	digest string
}

type running struct {
	incident string
	// rung is its name when it started (its end says that name); name is
	// its name now (a reload may have renamed it).
	rung, name string
	since      time.Time
	// accepted are the channels that accepted its page so far.
	accepted []string
	// pageOnly: a rung that acts and pages runs only its page; pages:
	// the run pages.
	pageOnly, pages bool
}

// NewCore builds a core with an empty policy and a fresh state; the first
// FactStart gives it both.
func NewCore(opts CoreOptions) *Core {
	if opts.WhenBudget <= 0 {
		opts.WhenBudget = DefaultWhenBudget
	}
	return &Core{opts: opts, pol: &Policy{Thresholds: DefaultThresholds()}, st: NewState(time.Time{}),
		inflight: map[string]launch{}, pagers: map[string]Pager{}}
}

// State is the core's state, to persist and publish. The caller must not
// change it.
func (c *Core) State() *State { return c.st }

// Policy is the policy in force.
func (c *Core) Policy() *Policy { return c.pol }

// Running names the rung started and not yet ended (the acting one first),
// or "".
func (c *Core) Running() string {
	switch {
	case c.acting != nil:
		return c.acting.name
	case len(c.paging) > 0:
		return c.paging[0].name
	}
	return ""
}

// RunningRungs names every rung started and not yet ended.
func (c *Core) RunningRungs() []string {
	var out []string
	for _, r := range append([]*running{c.acting}, c.paging...) {
		if r != nil {
			out = append(out, r.name)
		}
	}
	return out
}

// InFlight reports whether probe name was launched and has not reported.
func (c *Core) InFlight(name string) bool {
	_, ok := c.inflight[name]
	return ok
}

// Now is the time of the last fact.
func (c *Core) Now() time.Time { return c.now }

// Step applies one fact and returns what the core decided. ctx bounds the
// `when=` predicates it evaluates (each also gets WhenBudget).
func (c *Core) Step(ctx context.Context, f Fact) Step {
	var out Step
	if f.At.After(c.now) || c.now.IsZero() {
		c.now = f.At
	}
	now := f.At
	if f.Kind != FactStart {
		c.emit(&out, c.st.expire(now))
	}
	switch f.Kind {
	case FactStart:
		c.started, c.inflight, c.acting, c.paging = now, map[string]launch{}, nil, nil
		if f.State != nil {
			c.st = f.State
		}
		if f.Policy != nil {
			c.pol = f.Policy
		}
		if f.PolicyError == "" {
			// With no good policy there is nothing to fit the state to:
			// every probe's state is kept until a good policy loads.
			c.st.Reconcile(c.pol)
		}
		c.remember(c.pol)
		c.emit(&out, c.st.expire(now))
		// A rung that was running when the last process died counts as
		// an attempt that failed: no heal inside its cooldown, no re-page;
		// its page goes again only to the channels that had not answered.
		c.emit(&out, Interrupted(c.st, c.pol, now))
		c.resendPending(&out, now)
		for _, o := range c.st.Outbox {
			if o.Sending {
				o.Sending, o.NextTry = false, now
			}
		}
	case FactLaunch:
		for _, name := range f.Probes {
			l := launch{at: now}
			if p := c.pol.Probe(name); p != nil {
				l.digest = p.Digest
			}
			c.inflight[name] = l
		}
	case FactResults:
		known := f.Results[:0:0]
		for i, r := range f.Results {
			l, launched := c.inflight[r.Name]
			delete(c.inflight, r.Name)
			// A run launched under a definition that a reload has since
			// replaced tested something else: it does not count.
			p := c.pol.Probe(r.Name)
			ok := p != nil && (!launched || l.digest == "" || l.digest == p.Digest)
			switch {
			case ok && len(known) == i:
				known = f.Results[:i+1] // all kept so far: no copy
			case ok:
				known = append(known, r)
			case len(known) == i:
				known = append(make([]Result, 0, len(f.Results)), f.Results[:i]...)
			}
		}
		c.emit(&out, Observe(c.st, c.pol, known, now))
		c.emit(&out, SettleCheck(c.st, c.pol, now))
		c.decide(ctx, &out, now)
	case FactRungEnd:
		c.rungEnd(ctx, &out, f.End, now)
	case FactReload:
		old := c.pol
		c.pol = f.Policy
		renamed := renames(old.Ladder, c.pol.Ladder)
		c.emit(&out, c.st.rename(renamed, now))
		for _, r := range append([]*running{c.acting}, c.paging...) {
			if r != nil && renamed[r.name] != "" {
				r.name = renamed[r.name]
			}
		}
		c.st.Incident.Relocate(old.Ladder, c.pol.Ladder, renamed)
		// An incident whose probes the reload removed resolves.
		c.emit(&out, c.st.settle(c.pol, now))
		c.st.Reconcile(c.pol)
		c.remember(c.pol)
	case FactWake:
		if c.st.Incident != nil {
			// critical_after counts from the opening, not from the next result.
			c.emit(&out, c.st.setPhase(c.pol, now))
			c.emit(&out, SettleCheck(c.st, c.pol, now))
		}
		c.decide(ctx, &out, now)
	case FactStop:
		c.emit(&out, interruptedBy(c.st, c.pol, now, "interrupted by a shutdown"))
		c.acting, c.paging = nil, nil
	case FactPause:
		c.emit(&out, c.st.pause(*f.Control, now))
		out.Persist = true
	case FactResume:
		c.emit(&out, c.st.resume(*f.Control, now))
		out.Persist = true
		c.decide(ctx, &out, now)
	case FactAck:
		c.emit(&out, c.st.ack(c.pol, *f.Control, now))
		out.Persist = true
	case FactDelivery:
		c.delivery(&out, f.Answer, now)
		out.Persist = true
	case FactCheckpoint:
		if c.started.IsZero() && f.State != nil {
			c.restore(f)
		}
	default:
		panic(fmt.Sprintf("engine: unknown fact %q", f.Kind))
	}
	c.noteEmptyLadder(&out, now)
	c.reprobe(&out, now)
	c.flushOutbox(&out, now)
	out.Wake = c.nextWake()
	if len(out.Runs) > 0 {
		out.Persist = true
	}
	return out
}

// noteEmptyLadder says, once per incident and policy, that an open
// incident has no rung to act or page for it: a policy without a ladder,
// or a reload that removed every rung. The incident stays open and
// visible; nobody will be told of it by Talon.
func (c *Core) noteEmptyLadder(out *Step, now time.Time) {
	inc := c.st.Incident
	if inc == nil || len(c.pol.Ladder) > 0 {
		return
	}
	key := inc.ID + "\x00" + c.pol.Hash
	if c.emptyNoted == key {
		return
	}
	c.emptyNoted = key
	c.emit(out, []Event{{Type: "ladder_empty", Incident: inc.ID, At: now,
		Reason: "the policy in force has no rung: nothing will act or page for this incident"}})
}

// Checkpoint is the fact that restores this core's state as of at in a
// core that has not started (see FactCheckpoint). The state is a copy.
func (c *Core) Checkpoint(at time.Time) Fact {
	f := Fact{Kind: FactCheckpoint, At: at, Policy: c.pol, State: cloneState(c.st), Started: c.started}
	for name := range c.inflight {
		f.Probes = append(f.Probes, name)
	}
	sortStrings(f.Probes)
	return f
}

// restore takes the state of a checkpoint: the process goes on where it
// was, its rungs still running (their ends follow in the journal).
func (c *Core) restore(f Fact) {
	c.st, c.started = f.State, f.Started
	if f.Policy != nil {
		c.pol = f.Policy
	}
	c.remember(c.pol)
	c.inflight = map[string]launch{}
	for _, name := range f.Probes {
		l := launch{at: f.At}
		if p := c.pol.Probe(name); p != nil {
			l.digest = p.Digest
		}
		c.inflight[name] = l
	}
	c.acting, c.paging = nil, nil
	if inc := c.st.Incident; inc != nil {
		if inc.Running != "" {
			c.acting = &running{incident: inc.ID, rung: inc.Running, name: inc.Running, since: inc.RunningSince}
		}
		for _, name := range inc.Paging {
			rn := &running{incident: inc.ID, rung: name, name: name, pages: true}
			if rs := inc.Rungs[name]; rs != nil {
				rn.since, rn.accepted = rs.LastRun, append([]string(nil), rs.Accepted...)
				// What this run does, as beginRung left it: a run of a
				// rung's actions alone is marked (ActsAlone); a run that
				// pages set the pending channels (those that accepted
				// since it began are no longer pending); one whose actions
				// ran restarted their cooldown (LastRun).
				rn.pages = !rs.ActsAlone && (len(rs.Pending) > 0 || (len(rs.Accepted) > 0 && !rs.LastSent.Before(rs.LastRun)))
				if r := rungAt(c.pol, c.pol.rungIndex(name)); r != nil && !r.onlyPages() {
					rn.pageOnly = !c.st.LastRun[name].Equal(rs.LastRun)
				}
			}
			c.paging = append(c.paging, rn)
		}
	}
}

// rungIndex is the index of rung name in the ladder, or -1.
func (p *Policy) rungIndex(name string) int {
	for i, r := range p.Ladder {
		if r.Name == name {
			return i
		}
	}
	return -1
}

// emit adds events to the step.
func (c *Core) emit(out *Step, ev []Event) {
	out.Events = append(out.Events, ev...)
}

// remember keeps the channels of pol for messages about incidents paged
// under it.
func (c *Core) remember(pol *Policy) {
	for _, r := range pol.Ladder {
		for _, a := range r.Do {
			if p, ok := a.(Pager); ok {
				c.pagers[p.Channel()] = p
			}
		}
	}
}

// pagerFor is how to reach a channel: the policy in force first, then any
// policy this process ran.
func (c *Core) pagerFor(channel string) Pager {
	for _, r := range c.pol.Ladder {
		for _, a := range r.Do {
			if p, ok := a.(Pager); ok && p.Channel() == channel {
				return p
			}
		}
	}
	return c.pagers[channel]
}

// resendPending re-sends, after a restart, the pages whose channels had
// not answered when the last process died.
func (c *Core) resendPending(out *Step, now time.Time) {
	inc := c.st.Incident
	if inc == nil {
		return
	}
	var names []string
	for name, rs := range inc.Rungs {
		if len(rs.Pending) > 0 && !contains(inc.Paging, name) {
			names = append(names, name)
		}
	}
	sortStrings(names)
	for _, name := range names {
		rs := inc.Rungs[name]
		n := Notice{Kind: "sos", Incident: inc.ID, Rung: name, Attempt: 1,
			Text: c.st.View(c.pol, now).Summary() + "\n(sent again: talon restarted while this page was being delivered)"}
		for _, ch := range rs.Pending {
			if p := c.pagerFor(ch); p != nil {
				n.Channels, n.Pagers = append(n.Channels, ch), append(n.Pagers, p)
			} else {
				rs.Pending = without(rs.Pending, ch)
				c.emit(out, []Event{{Type: "unreachable", Incident: inc.ID, Rung: name, Channels: []string{ch},
					Reason: "the page cannot be sent again: no policy this process ran names channel " + ch, At: now}})
			}
		}
		if len(n.Channels) > 0 {
			out.Notify = append(out.Notify, n)
		}
	}
}

// flushOutbox hands the messages that are due to the shell.
func (c *Core) flushOutbox(out *Step, now time.Time) {
	var keep []*Outgoing
	byKey := map[string]int{}
	for _, o := range c.st.Outbox {
		if o.Sending || now.Before(o.NextTry) {
			keep = append(keep, o)
			continue
		}
		p := c.pagerFor(o.Channel)
		if p == nil {
			c.emit(out, []Event{{Type: "unreachable", Incident: o.Incident, Channels: []string{o.Channel},
				Reason: "\"resolved\" cannot be sent: no policy this process ran names channel " + o.Channel, At: now}})
			continue
		}
		o.Sending = true
		o.Attempts++
		keep = append(keep, o)
		key := fmt.Sprint(o.Incident, "\x00", o.Reason, "\x00", o.Attempts)
		i, ok := byKey[key]
		if !ok {
			i = len(out.Notify)
			byKey[key] = i
			out.Notify = append(out.Notify, Notice{Kind: o.Kind, Incident: o.Incident, Reason: o.Reason, Attempt: o.Attempts,
				Text: fmt.Sprintf("incident %s is over (%s)", o.Incident, o.Reason)})
		}
		n := &out.Notify[i]
		n.Channels, n.Pagers = append(n.Channels, o.Channel), append(n.Pagers, p)
	}
	c.st.Outbox = keep
}

// delivery applies a channel's answer.
func (c *Core) delivery(out *Step, a *Answer, now time.Time) {
	switch a.Kind {
	case "sos":
		rung := a.Rung
		for _, r := range c.paging {
			if r.incident == a.Incident && r.rung == a.Rung {
				rung = r.name
				if a.OK {
					r.accepted = union(r.accepted, []string{a.Channel})
				}
			}
		}
		if !a.OK {
			NotDelivered(c.st, a.Incident, rung, a.Channel)
			return
		}
		c.emit(out, Delivered(c.st, c.pol, a.Incident, rung, a.Channel, now))
		if inc := c.st.Incident; inc == nil || inc.ID != a.Incident {
			// The incident resolved while its page was on the way: whoever
			// got the page also hears that it is over.
			c.queueResolved(a.Incident, "resolved while the page was being sent", []string{a.Channel}, now)
		}
	case "resolved":
		var keep []*Outgoing
		for _, o := range c.st.Outbox {
			if o.Incident != a.Incident || o.Channel != a.Channel || o.Kind != a.Kind || !o.Sending {
				keep = append(keep, o)
				continue
			}
			if a.OK {
				continue
			}
			o.Sending = false
			if o.Attempts >= OutboxMaxAttempts {
				c.emit(out, []Event{{Type: "unreachable", Incident: o.Incident, Channels: []string{o.Channel},
					Reason: fmt.Sprintf("\"resolved\" given up after %d attempts: %s", o.Attempts, text.FirstLines(a.Error, 1)), At: now}})
				continue
			}
			o.NextTry = now.Add(pageBackoff(o.Attempts))
			keep = append(keep, o)
		}
		c.st.Outbox = keep
	}
}

// queueResolved puts a "resolved" message for channels in the outbox.
func (c *Core) queueResolved(incident, reason string, channels []string, now time.Time) {
	for _, ch := range channels {
		c.st.Outbox = append(c.st.Outbox, &Outgoing{Kind: "resolved", Incident: incident, Channel: ch, Reason: reason, Since: now, NextTry: now})
	}
}

// rungEnd applies a rung's outcome.
func (c *Core) rungEnd(ctx context.Context, out *Step, end *RungEnd, now time.Time) {
	var r *running
	if c.acting != nil && c.acting.rung == end.Rung && c.acting.incident == end.Incident {
		r, c.acting = c.acting, nil
	}
	for i, p := range c.paging {
		if r == nil && p.rung == end.Rung && p.incident == end.Incident {
			r = p
			c.paging = append(c.paging[:i:i], c.paging[i+1:]...)
		}
	}
	if r == nil {
		return // not a rung this core started: nothing to apply
	}
	o := RungOutcome{OK: end.OK, Output: end.Output, Verify: end.Verify, PageOnly: r.pageOnly}
	for _, d := range end.Deliveries {
		o.Pages = true
		if d.OK {
			o.Paged = union(o.Paged, []string{d.Channel})
		}
	}
	sortStrings(o.Paged)
	switch {
	case end.Cut && len(o.Paged) == 0 && len(r.accepted) == 0:
		// Cut short by a shutdown before anyone was paged: an attempt
		// that failed, retried after the restart.
		o = RungOutcome{Output: "interrupted by a shutdown", Pages: r.pages, PageOnly: r.pageOnly}
	case end.Cut:
		// Some channels accepted the page; those the shutdown cut short
		// have not answered and are still owed it (sent again at the
		// next start).
		o.Interrupted = true
	}
	stillOpen := c.st.Incident != nil && c.st.Incident.ID == end.Incident
	c.emit(out, FinishRung(c.st, c.pol, end.Incident, r.name, o, now))
	if !stillOpen {
		// The incident resolved while its page was on the way: whoever got
		// the page hears that it is over (those whose acceptance was
		// recorded as it came already do).
		var late []string
		for _, ch := range o.Paged {
			if !contains(r.accepted, ch) {
				late = append(late, ch)
			}
		}
		c.queueResolved(end.Incident, "resolved while the page was being sent", late, now)
	}
	if !end.Stopping {
		c.decide(ctx, out, now)
	}
}

// hold says why the ladder may not act now, or "", and when a wait for a
// fresh result ends. These are the gates that depend on more than the
// state: what is in flight and what this process has seen. (A rung already
// running, a settle window, pauses and acknowledgements are the state's,
// in Decide.)
func (c *Core) hold(now time.Time) (string, time.Time) {
	// A parent still running decides whether its children may escalate:
	// with results streaming in, a child's can arrive first. A parent's
	// pass from before the failures began is no evidence that it is fine:
	// wait for a fresh one (at most its interval and timeout).
	names, _ := c.st.Escalating(c.pol)
	inc := c.st.Incident
	for _, name := range names {
		for _, parent := range c.pol.Probe(name).DependsOn {
			if _, ok := c.inflight[parent]; ok {
				return "parent " + parent + " of " + name + " has not reported yet", time.Time{}
			}
			pp, ps := c.pol.Probe(parent), c.st.Probes[parent]
			if pp == nil || ps == nil || ps.Last == nil || !ps.Last.Passed || Fresh(*ps.Last, inc.Since, inc.RungEnded) || inc.Since.IsZero() {
				continue
			}
			horizon := inc.Since
			if inc.RungEnded.After(horizon) {
				horizon = inc.RungEnded
			}
			if deadline := horizon.Add(c.pol.ProbeInterval(pp) + pp.EffectiveTimeout()); now.Before(deadline) {
				return "parent " + parent + " of " + name + " has no fresh result yet", deadline
			}
		}
	}
	// After a restart, act only on what this process has seen: every
	// probe of the incident must have run once since the start.
	for _, name := range c.st.Incident.Probes {
		if ps := c.st.Probes[name]; ps == nil || ps.Last == nil || ps.Last.At.Before(c.started) {
			return "probe " + name + " has not run since the start", time.Time{}
		}
	}
	return "", time.Time{}
}

// decide lets the ladder act: it starts the rungs that are due.
func (c *Core) decide(ctx context.Context, out *Step, now time.Time) {
	c.freshWake = time.Time{}
	if c.st.Incident == nil {
		return
	}
	if why, until := c.hold(now); why != "" {
		c.freshWake = until
		return
	}
	view := c.st.View(c.pol, now)
	when := func(r *Rung) (bool, error) {
		view.ResetReads()
		wctx, cancel := context.WithTimeout(ctx, c.opts.WhenBudget)
		defer cancel()
		ok, err := r.When(wctx, view)
		if err != nil {
			return false, err
		}
		if fw := c.staleReads(view, now); fw != nil {
			return ok, fw
		}
		return ok, nil
	}
	for range len(c.pol.Ladder) + 1 { // one rung that acts, any that page
		var acting string
		var paging []string
		if c.acting != nil {
			acting = c.acting.name
		}
		for _, p := range c.paging {
			paging = append(paging, p.name)
		}
		dec := DecideBusy(c.st, c.pol, now, when, acting, paging)
		c.emit(out, dec.Events)
		if !dec.WakeAt.IsZero() && (c.freshWake.IsZero() || dec.WakeAt.Before(c.freshWake)) {
			c.freshWake = dec.WakeAt
		}
		if dec.Run < 0 || c.st.Incident == nil {
			return
		}
		c.start(out, dec.Run, dec.Pages, now)
		view = c.st.View(c.pol, now)
	}
}

// staleReads is the wait of a predicate that read probes without a fresh
// result, each bounded by its interval and timeout from the horizon (the
// failures began, or the last rung ended); nil when it need not wait.
func (c *Core) staleReads(view *IncidentView, now time.Time) *FreshWait {
	inc := c.st.Incident
	horizon := inc.Since
	if inc.RungEnded.After(horizon) {
		horizon = inc.RungEnded
	}
	if horizon.IsZero() {
		return nil // a state from before fresh evidence was recorded
	}
	names, all := view.Reads()
	var fw *FreshWait
	for _, p := range c.pol.Probes {
		if !all && !names[p.Name] {
			continue
		}
		if ps := c.st.Probes[p.Name]; ps != nil && ps.Last != nil && Fresh(*ps.Last, inc.Since, inc.RungEnded) {
			continue
		}
		deadline := horizon.Add(c.pol.ProbeInterval(p) + p.EffectiveTimeout())
		if !now.Before(deadline) {
			continue // waited long enough: decide on what there is
		}
		if fw == nil {
			fw = &FreshWait{Until: deadline}
		}
		fw.Probes = append(fw.Probes, p.Name)
		if deadline.Before(fw.Until) {
			fw.Until = deadline
		}
	}
	return fw
}

// start starts rung idx of the ladder; pages says whether with its pages.
func (c *Core) start(out *Step, idx int, pages bool, now time.Time) {
	r := c.pol.Ladder[idx]
	incID := c.st.Incident.ID
	run := &RungRun{At: now, Incident: incID, Rung: r, Timeout: r.Timeout}
	if run.Timeout <= 0 {
		run.Timeout = DefaultRungTimeout
	}
	// A rung that acts and pages pages on its own clock: while its actions
	// cool down (they ran in an earlier incident, say), or once they ran in
	// this incident when they have no cooldown (the retry of a page whose
	// delivery failed), its page goes out alone.
	acts := !r.Pages() || !c.st.actionsCooling(r, now) && !c.st.actionsSpent(r)
	for _, a := range r.Do {
		if p, ok := a.(Pager); ok {
			if pages {
				run.Pagers = append(run.Pagers, p)
			}
		} else if acts {
			run.Actions = append(run.Actions, a)
		}
	}
	// Only a rung that runs something verifies: a page changes nothing
	// that a re-probe could see.
	if r.Verify && len(run.Actions) > 0 {
		run.Verify = c.failingProbes()
	}
	c.emit(out, beginRung(c.st, c.pol, idx, now, acts, pages))
	run.View = c.st.View(c.pol, now)
	run.Message = Message{Kind: "sos", Incident: incID, Text: run.View.Summary()}
	rn := &running{incident: incID, rung: r.Name, name: r.Name, since: now, pageOnly: !acts && !r.onlyPages(), pages: len(run.Pagers) > 0}
	if r.Pages() {
		c.paging = append(c.paging, rn)
	} else {
		c.acting = rn
	}
	out.Runs = append(out.Runs, run)
}

// failingProbes are the probes down or failing their last run, in policy order.
func (c *Core) failingProbes() []*Probe {
	var out []*Probe
	for _, p := range c.pol.Probes {
		if ps := c.st.Probes[p.Name]; ps != nil && (ps.Down || (ps.Last != nil && !ps.Last.Passed)) {
			out = append(out, p)
		}
	}
	return out
}

// reprobe asks for the settle window's re-probe when it is due.
func (c *Core) reprobe(out *Step, now time.Time) {
	inc := c.st.Incident
	if inc == nil || inc.Settle == nil || now.Before(inc.Settle.Next) {
		return
	}
	inc.Settle.Next = now.Add(inc.Settle.Every)
	for _, p := range c.failingProbes() {
		if !c.InFlight(p.Name) {
			out.Reprobe = append(out.Reprobe, p)
		}
	}
}

// nextWake is the earliest time after the last fact at which a time gate
// opens: critical_after, a rung's after, cooldown, repeat, page retry or
// when= retry, a settle window's re-probe or end, a wait for fresh results,
// a pause's end, a message's retry. A wake that finds nothing to do is
// harmless; a gate without a wake would act late.
func (c *Core) nextWake() time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(c.now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, p := range c.st.Pauses {
		consider(p.Until)
	}
	for _, o := range c.st.Outbox {
		if !o.Sending {
			consider(o.NextTry)
		}
	}
	inc := c.st.Incident
	if inc == nil {
		return next
	}
	if ct := c.pol.Thresholds.CriticalAfter; inc.Critical && ct > 0 && (c.st.Phase == Failed || c.st.Phase == Investigating) {
		consider(inc.Started.Add(ct))
	}
	if st := inc.Settle; st != nil {
		consider(st.Next)
		consider(st.Until)
	}
	consider(c.freshWake)
	acting, _ := c.st.acting(c.pol)
	_, flapFirst, flapping := c.st.flapping(acting)
	for _, r := range c.pol.Ladder {
		if r.After > 0 {
			consider(inc.Started.Add(r.After))
			if flapping {
				consider(flapFirst.Add(r.After))
			}
		}
		if last, ok := c.st.cooldownFrom(r); ok && r.Cooldown > 0 {
			consider(last.Add(r.Cooldown))
		}
		if rs := inc.Rungs[r.Name]; rs != nil {
			consider(rs.NextTry)
			consider(rs.WhenRetry)
			if r.Pages() && r.Cooldown > 0 && !rs.LastSent.IsZero() {
				consider(rs.LastSent.Add(r.Cooldown))
			}
			if r.Repeat > 0 && rs.LastOK {
				consider(rs.LastSent.Add(r.Repeat))
			}
		}
	}
	return next
}
