package engine

import (
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
// own rules (when=, after, cooldown, repeat, page backoff). A new rule (a
// pause, a settle window, fresh-evidence checks) is one more fact kind and
// one more line in hold or Decide, seen by all three drivers at once.

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
	// FactRungEnd: the running rung ended with End.
	FactRungEnd FactKind = "rung_end"
	// FactReload: Policy replaced the policy in force.
	FactReload FactKind = "reload"
	// FactWake: time passed; nothing else happened. The core asks for it
	// through Step.Wake so that held rungs run on time.
	FactWake FactKind = "wake"
	// FactStop: the process stops; a rung still running is interrupted.
	FactStop FactKind = "stop"
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
	// Run, when set, is a rung to start now. The core has already recorded
	// it as started: persist the state before running it, so that a crash
	// counts as an attempt.
	Run *RungRun
	// Notify are messages to send now ("resolved").
	Notify []Notice
	// Wake is when the core wants a FactWake even if nothing else happens
	// (a rung's after, cooldown, repeat or page retry comes due, the
	// incident turns critical); zero when it needs none.
	Wake time.Time
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

// Notice is the command to send a message that is not a rung's page: the
// "resolved" message to the channels that were paged during an incident.
type Notice struct {
	Kind     string // "resolved"
	Incident string
	Reason   string
	// Channels are the channels to tell; Pagers are those of them the
	// policy in force still has (a channel the policy no longer names
	// cannot be reached).
	Channels []string
	Pagers   []Pager
}

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
	// running is the rung started and not yet ended, whatever became of
	// its incident meanwhile.
	running *running
}

type launch struct {
	at     time.Time
	digest string
}

type running struct {
	incident, rung string
	since          time.Time
}

// NewCore builds a core with an empty policy and a fresh state; the first
// FactStart gives it both.
func NewCore(opts CoreOptions) *Core {
	if opts.WhenBudget <= 0 {
		opts.WhenBudget = DefaultWhenBudget
	}
	return &Core{opts: opts, pol: &Policy{Thresholds: DefaultThresholds()}, st: NewState(time.Time{}), inflight: map[string]launch{}}
}

// State is the core's state, to persist and publish. The caller must not
// change it.
func (c *Core) State() *State { return c.st }

// Policy is the policy in force.
func (c *Core) Policy() *Policy { return c.pol }

// Running names the rung started and not yet ended, or "".
func (c *Core) Running() string {
	if c.running == nil {
		return ""
	}
	return c.running.rung
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
	switch f.Kind {
	case FactStart:
		c.started, c.inflight, c.running = now, map[string]launch{}, nil
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
		// A rung that was running when the last process died counts as
		// an attempt that failed: no heal inside its cooldown, no re-page.
		c.emit(&out, Interrupted(c.st, c.pol, now))
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
		c.decide(ctx, &out, now)
	case FactRungEnd:
		c.rungEnd(ctx, &out, f.End, now)
	case FactReload:
		old := c.pol
		c.pol = f.Policy
		c.st.Incident.Relocate(old.Ladder, c.pol.Ladder)
		// An incident whose probes the reload removed resolves.
		c.emit(&out, c.st.settle(c.pol, now))
		c.st.Reconcile(c.pol)
	case FactWake:
		if c.st.Incident != nil {
			// critical_after counts from the opening, not from the next result.
			c.emit(&out, c.st.setPhase(c.pol, now))
		}
		c.decide(ctx, &out, now)
	case FactStop:
		c.emit(&out, interruptedBy(c.st, c.pol, now, "interrupted by a shutdown"))
		c.running = nil
	default:
		panic(fmt.Sprintf("engine: unknown fact %q", f.Kind))
	}
	out.Wake = c.nextWake()
	return out
}

// emit adds events to the step, and a "resolved" notice for every incident
// that resolved after paging someone.
func (c *Core) emit(out *Step, ev []Event) {
	for _, e := range ev {
		out.Events = append(out.Events, e)
		if e.Type == "incident_resolved" && len(e.Channels) > 0 {
			out.Notify = append(out.Notify, c.notice(e.Incident, e.Reason, e.Channels))
		}
	}
}

func (c *Core) notice(incident, reason string, channels []string) Notice {
	n := Notice{Kind: "resolved", Incident: incident, Reason: reason, Channels: append([]string(nil), channels...)}
	want := map[string]bool{}
	for _, ch := range channels {
		want[ch] = true
	}
	for _, r := range c.pol.Ladder {
		for _, a := range r.Do {
			if p, ok := a.(Pager); ok && want[p.Channel()] {
				n.Pagers = append(n.Pagers, p)
				delete(want, p.Channel())
			}
		}
	}
	return n
}

// rungEnd applies a rung's outcome.
func (c *Core) rungEnd(ctx context.Context, out *Step, end *RungEnd, now time.Time) {
	if c.running == nil || c.running.rung != end.Rung || c.running.incident != end.Incident {
		return // not the rung this core started: nothing to apply
	}
	c.running = nil
	o := RungOutcome{OK: end.OK, Output: end.Output, Verify: end.Verify}
	for _, d := range end.Deliveries {
		o.Pages = true
		if d.OK {
			o.Paged = union(o.Paged, []string{d.Channel})
		}
	}
	sortStrings(o.Paged)
	if end.Cut && len(o.Paged) == 0 {
		// Cut short by a shutdown before anyone was paged: an attempt
		// that failed, retried after the restart.
		o = RungOutcome{Output: "interrupted by a shutdown", Pages: c.rungPages(end.Rung)}
	}
	stillOpen := c.st.Incident != nil && c.st.Incident.ID == end.Incident
	c.emit(out, FinishRung(c.st, c.pol, end.Incident, end.Rung, o, now))
	if !stillOpen && len(o.Paged) > 0 {
		// The incident resolved while its page was on the way: whoever
		// got the page also hears that it is over.
		out.Notify = append(out.Notify, c.notice(end.Incident, "resolved while the page was being sent", o.Paged))
	}
	if !end.Stopping {
		c.decide(ctx, out, now)
	}
}

func (c *Core) rungPages(name string) bool {
	for _, r := range c.pol.Ladder {
		if r.Name == name {
			return r.Pages()
		}
	}
	return false
}

// hold says why the ladder may not act now, or "". These are the gates
// that depend on more than the state machine: what is running, what is in
// flight, what this process has seen.
func (c *Core) hold() string {
	if c.running != nil {
		return "rung " + c.running.rung + " is running"
	}
	// A parent still running decides whether its children may escalate:
	// with results streaming in, a child's can arrive first.
	names, _ := c.st.Escalating(c.pol)
	for _, name := range names {
		for _, parent := range c.pol.Probe(name).DependsOn {
			if _, ok := c.inflight[parent]; ok {
				return "parent " + parent + " of " + name + " has not reported yet"
			}
		}
	}
	// After a restart, act only on what this process has seen: every
	// probe of the incident must have run once since the start.
	for _, name := range c.st.Incident.Probes {
		if ps := c.st.Probes[name]; ps == nil || ps.Last == nil || ps.Last.At.Before(c.started) {
			return "probe " + name + " has not run since the start"
		}
	}
	return ""
}

// decide lets the ladder act: it starts the next rung if one is due.
func (c *Core) decide(ctx context.Context, out *Step, now time.Time) {
	if c.st.Incident == nil || c.hold() != "" {
		return
	}
	view := c.st.View(c.pol, now)
	dec := Decide(c.st, c.pol, now, func(r *Rung) (bool, error) {
		wctx, cancel := context.WithTimeout(ctx, c.opts.WhenBudget)
		defer cancel()
		return r.When(wctx, view)
	})
	c.emit(out, dec.Events)
	if dec.Run < 0 {
		return
	}
	r := c.pol.Ladder[dec.Run]
	incID := c.st.Incident.ID
	run := &RungRun{At: now, Incident: incID, Rung: r, Timeout: r.Timeout}
	if run.Timeout <= 0 {
		run.Timeout = DefaultRungTimeout
	}
	for _, a := range r.Do {
		if p, ok := a.(Pager); ok {
			run.Pagers = append(run.Pagers, p)
		} else {
			run.Actions = append(run.Actions, a)
		}
	}
	// Only a rung that runs something verifies: a page changes nothing
	// that a re-probe could see.
	if r.Verify && len(run.Actions) > 0 {
		run.Verify = c.failingProbes()
	}
	c.emit(out, BeginRung(c.st, c.pol, dec.Run, now))
	run.View = c.st.View(c.pol, now)
	run.Message = Message{Kind: "sos", Incident: incID, Text: run.View.Summary()}
	c.running = &running{incident: incID, rung: r.Name, since: now}
	out.Run = run
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

// nextWake is the earliest time after the last fact at which a time gate
// of the open incident opens: critical_after, a rung's after, cooldown,
// repeat, page retry or when= retry. A wake that finds nothing to do is
// harmless; a gate without a wake would act late.
func (c *Core) nextWake() time.Time {
	inc := c.st.Incident
	if inc == nil {
		return time.Time{}
	}
	var next time.Time
	consider := func(t time.Time) {
		if t.After(c.now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if ct := c.pol.Thresholds.CriticalAfter; inc.Critical && ct > 0 && (c.st.Phase == Failed || c.st.Phase == Investigating) {
		consider(inc.Started.Add(ct))
	}
	for _, r := range c.pol.Ladder {
		if r.After > 0 {
			consider(inc.Started.Add(r.After))
		}
		if last, ok := c.st.cooldownFrom(r); ok && r.Cooldown > 0 {
			consider(last.Add(r.Cooldown))
		}
		if rs := inc.Rungs[r.Name]; rs != nil {
			consider(rs.NextTry)
			consider(rs.WhenRetry)
			if r.Repeat > 0 && rs.LastOK {
				consider(rs.LastSent.Add(r.Repeat))
			}
		}
	}
	return next
}
