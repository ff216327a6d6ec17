package engine

import (
	"fmt"
	"sort"
	"time"

	"github.com/talon-dev/talon/internal/text"
)

// Phase is the position of the health state machine.
type Phase string

// The phases, in escalation order.
const (
	Healthy       Phase = "healthy"
	Degraded      Phase = "degraded"
	Failed        Phase = "failed"
	Investigating Phase = "investigating"
	Critical      Phase = "critical"
	SOS           Phase = "sos"
)

// Phases lists every phase in escalation order.
var Phases = []Phase{Healthy, Degraded, Failed, Investigating, Critical, SOS}

// ValidPhase reports whether p is one of the six phases.
func ValidPhase(p Phase) bool {
	for _, q := range Phases {
		if p == q {
			return true
		}
	}
	return false
}

// StateVersion is the version of the persisted state format.
const StateVersion = 1

// State is everything the watchdog must remember across a restart. It is
// changed only by the functions in this file and ladder.go, which are pure:
// they take the time as an argument and perform no I/O.
type State struct {
	Version    int                    `json:"version"`
	Phase      Phase                  `json:"phase"`
	PhaseSince time.Time              `json:"phase_since"`
	Probes     map[string]*ProbeState `json:"probes"`
	// ConsecutiveFailures is the longest current run of failures of any probe.
	ConsecutiveFailures int       `json:"consecutive_failures"`
	Incident            *Incident `json:"incident"`
	// LastRun is when each rung last started, across incidents: cooldowns
	// outlive an incident and a restart.
	LastRun map[string]time.Time `json:"last_run"`
	// LastSent is when each paging rung last delivered a page, across
	// incidents: a page rung's cooldown counts from here, so a failed
	// delivery is retried with backoff, not held for the whole cooldown.
	LastSent       map[string]time.Time `json:"last_sent,omitempty"`
	LastPage       time.Time            `json:"last_page"`
	Incidents      int                  `json:"incidents"`
	WorkerRestarts int                  `json:"worker_restarts"`
	PolicyHash     string               `json:"policy_hash"`
	UpdatedAt      time.Time            `json:"updated_at"`
	// Pauses are the operator's pauses in force (talon pause); PauseSeq
	// numbers them.
	Pauses   []Pause `json:"pauses,omitempty"`
	PauseSeq int     `json:"pause_seq,omitempty"`
	// Outbox holds the messages that are not a rung's page ("resolved")
	// until a channel accepts them or they are given up: they survive a
	// restart and are retried with backoff.
	Outbox []*Outgoing `json:"outbox,omitempty"`
}

// Pause is an operator's pause (talon pause, POST /pause): while it lasts,
// probes keep running and recording, and the ladder does not act for what
// it covers: everything (Scope ""), a probe, the probes of a tag, or a rung.
type Pause struct {
	ID     string    `json:"id"`              // "p1", "p2", ...
	Scope  string    `json:"scope,omitempty"` // "", "probe", "tag" or "rung"
	Name   string    `json:"name,omitempty"`  // the probe, tag or rung
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitzero"` // zero only in a state file from before MaxPause
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"` // who asked: "joel (uid 501)"
}

// Ack is an operator's acknowledgement of the open incident (talon ack).
type Ack struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"` // who asked: "joel (uid 501)"
	// Probes are the probes that were down when it was acknowledged: one
	// more going down clears the acknowledgement (the incident got worse).
	Probes []string `json:"probes"`
}

// Outgoing is a message in the outbox, for one channel.
type Outgoing struct {
	Kind     string    `json:"kind"` // "resolved"
	Incident string    `json:"incident"`
	Channel  string    `json:"channel"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since"`
	Attempts int       `json:"attempts,omitempty"`
	NextTry  time.Time `json:"next_try,omitzero"`
	// Sending says it was handed to the channel and no answer is recorded
	// yet; after a restart it is sent again.
	Sending bool `json:"sending,omitempty"`
}

// ProbeState is the debounce and hysteresis of one probe.
type ProbeState struct {
	Fails  int     `json:"fails"`  // consecutive failures
	Passes int     `json:"passes"` // consecutive passes
	Down   bool    `json:"down"`   // debounced: the probe counts as failing
	Digest string  `json:"digest"` // definition the counts belong to
	Last   *Result `json:"last,omitempty"`
	// FailingSince is when the current run of failures was first seen
	// (the time of its first failing result); zero while the probe passes.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Downs are the times the probe went down within the flap window;
	// Flapping says it goes down and up too often (see Thresholds): found
	// at FlappingSince, the first of those downs at FlapFirst.
	Downs         []time.Time `json:"downs,omitempty"`
	Flapping      bool        `json:"flapping,omitempty"`
	FlappingSince time.Time   `json:"flapping_since,omitzero"`
	FlapFirst     time.Time   `json:"flap_first,omitzero"`
}

// Incident is one open escalation.
type Incident struct {
	ID            string    `json:"id"`
	Started       time.Time `json:"started"`
	Critical      bool      `json:"critical"` // a critical probe took part: pages allowed
	Probes        []string  `json:"probes"`   // escalating probes currently down
	Position      int       `json:"position"` // next rung of the first walk
	Exhausted     bool      `json:"exhausted"`
	CriticalSince time.Time `json:"critical_since,omitempty"`
	// Paged lists the channels that received a page, for "resolved".
	Paged        []string              `json:"paged"`
	Rungs        map[string]*RungState `json:"rungs"`
	Running      string                `json:"running,omitempty"`
	RunningSince time.Time             `json:"running_since,omitempty"`
	// Paging are the rungs that page and are running beside Running: a
	// page never waits for another rung (see Decide).
	Paging []string `json:"paging,omitempty"`
	// Since is when the incident's failures were first seen: the earliest
	// first failing result of the probes that opened it. Decisions read
	// only results taken after it (fresh evidence).
	Since time.Time `json:"since,omitzero"`
	// RungEnded is when the last rung that ran something ended: results
	// taken before it are disturbed by that rung and not fresh either.
	RungEnded time.Time `json:"rung_ended,omitzero"`
	// Settle is the settle window after a rung, while it lasts.
	Settle *Settle `json:"settle,omitempty"`
	// Ack is the operator's acknowledgement, while it holds.
	Ack *Ack `json:"ack,omitempty"`
}

// Settle is the window after a rung ran something in which its effect may
// still show: the ladder does not move on, the incident's failing probes
// are re-probed, and a green re-probe resolves the incident.
type Settle struct {
	Rung  string    `json:"rung"`
	Until time.Time `json:"until"`
	// Every is the time between re-probes; Next when the next is due.
	Every time.Duration `json:"every"`
	Next  time.Time     `json:"next"`
}

// RungState is what happened to one rung in an incident.
type RungState struct {
	RungRecord
	Failures int       `json:"failures"` // consecutive failed deliveries (pages)
	NextTry  time.Time `json:"next_try,omitempty"`
	LastSent time.Time `json:"last_sent,omitempty"`
	// WhenFailures counts consecutive failures of the rung's when=
	// predicate once the ladder is exhausted; WhenRetry is when it is
	// evaluated again.
	WhenFailures int       `json:"when_failures,omitzero"`
	WhenRetry    time.Time `json:"when_retry,omitzero"`
	// Pending are the channels of the current page that have not answered
	// yet, and Accepted those that accepted it: each channel's answer is
	// recorded as it comes, so a crash re-sends only to the channels
	// without one.
	Pending  []string `json:"pending,omitempty"`
	Accepted []string `json:"accepted,omitempty"`
	// ActsAlone: the run in flight of a rung that acts and pages runs its
	// actions alone (they were due again, its page was not): a restart
	// under it closes an attempt of the actions, never a page.
	ActsAlone bool `json:"acts_alone,omitempty"`
}

// NewState is the state of a watchdog that has seen nothing yet.
func NewState(now time.Time) *State {
	return &State{Version: StateVersion, Phase: Healthy, PhaseSince: now,
		Probes: map[string]*ProbeState{}, LastRun: map[string]time.Time{}, LastSent: map[string]time.Time{}}
}

// Event is something the state machine decided, for the journal and the log.
type Event struct {
	Type     string    `json:"type"` // transition, probe_down, probe_up, incident_open, incident_resolved, rung_skip, rung_start, rung_done, page_failed
	From     Phase     `json:"from,omitempty"`
	To       Phase     `json:"to,omitempty"`
	Probe    string    `json:"probe,omitempty"`
	Incident string    `json:"incident,omitempty"`
	Rung     string    `json:"rung,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Channels []string  `json:"channels,omitempty"`
	At       time.Time `json:"at"`
}

func (t Thresholds) after(p *Probe) int {
	if p.After > 0 {
		return p.After
	}
	return max(t.FailedAfter, 1)
}

func (t Thresholds) recoverAfter(p *Probe) int {
	if p.RecoverAfter > 0 {
		return p.RecoverAfter
	}
	return max(t.RecoverAfter, 1)
}

// Reconcile fits the state to a (new) policy: probes whose definition
// changed start fresh, removed probes drop out. The incident survives.
func (s *State) Reconcile(pol *Policy) {
	keep := map[string]bool{}
	for _, p := range pol.Probes {
		keep[p.Name] = true
		if ps, ok := s.Probes[p.Name]; ok && ps.Digest != p.Digest {
			// A changed definition restarts the counts, but a probe that
			// is down stays down until it recovers: editing a timeout in
			// the middle of an incident must not "resolve" it and page anew.
			ps.Digest, ps.Fails, ps.Passes = p.Digest, 0, 0
		}
	}
	for name := range s.Probes {
		if !keep[name] {
			delete(s.Probes, name)
		}
	}
	s.PolicyHash = pol.Hash
}

// Observe applies one set of probe results (a cycle, or the probes that were
// due) and returns what changed. It is the table-tested core of Talon.
func Observe(s *State, pol *Policy, results []Result, now time.Time) []Event {
	var ev []Event
	th := pol.Thresholds
	for _, r := range results {
		p := pol.Probe(r.Name)
		if p == nil {
			continue
		}
		ps := s.Probes[p.Name]
		if ps == nil {
			ps = &ProbeState{Digest: p.Digest}
			s.Probes[p.Name] = ps
		} else if ps.Digest != p.Digest {
			ps.Digest, ps.Fails, ps.Passes = p.Digest, 0, 0
		}
		if ps.Last != nil && r.At.Before(ps.Last.At) {
			continue // an older run finishing late (e.g. after a verify): not news
		}
		switch {
		case r.Passed:
			ps.FailingSince = time.Time{}
		case ps.Last == nil || ps.Last.Passed || ps.FailingSince.IsZero():
			ps.FailingSince = r.At
		}
		if ps.Last == nil {
			ps.Last = new(Result)
		}
		// Overwritten in place: views and snapshots copy results, so no
		// one holds on to the old one (and a month's replay allocates less).
		*ps.Last = r
		if r.Passed {
			ps.Passes++
			ps.Fails = 0
			if ps.Down && ps.Passes >= th.recoverAfter(p) {
				ps.Down = false
				ev = append(ev, Event{Type: "probe_up", Probe: p.Name, At: now})
			}
		} else {
			ps.Fails++
			ps.Passes = 0
			if !ps.Down && ps.Fails >= th.after(p) {
				ps.Down = true
				ev = append(ev, Event{Type: "probe_down", Probe: p.Name, Reason: text.FirstLines(r.Output, 1), At: now})
				ps.Downs = append(ps.Downs, now)
			}
		}
		ev = append(ev, th.flap(ps, p.Name, now)...)
	}
	// The worst probe's run of failures: unlike "cycles with any failure"
	// it does not depend on how results are grouped as they arrive.
	s.ConsecutiveFailures = 0
	for _, p := range pol.Probes {
		if ps := s.Probes[p.Name]; ps != nil {
			s.ConsecutiveFailures = max(s.ConsecutiveFailures, ps.Fails)
		}
	}
	return append(ev, s.settle(pol, now)...)
}

// anyFailing reports whether a probe's last result failed.
func (s *State) anyFailing(pol *Policy) bool {
	for _, p := range pol.Probes {
		if ps := s.Probes[p.Name]; ps != nil && ps.Last != nil && !ps.Last.Passed {
			return true
		}
	}
	return false
}

// Escalating lists, sorted, the probes that are down and may escalate: not
// witnesses, and not suppressed by a failing parent.
func (s *State) Escalating(pol *Policy) (names []string, critical bool) {
	for _, p := range pol.Probes {
		ps := s.Probes[p.Name]
		if ps == nil || !ps.Down || p.Witness || s.suppressed(pol, p, 0) {
			continue
		}
		names = append(names, p.Name)
		critical = critical || p.Critical
	}
	sort.Strings(names)
	return names, critical
}

// downProbes lists, sorted, the non-witness probes that are down, whether
// or not a parent suppresses them.
func (s *State) downProbes(pol *Policy) []string {
	var names []string
	for _, p := range pol.Probes {
		if ps := s.Probes[p.Name]; ps != nil && ps.Down && !p.Witness {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// suppressed reports whether a parent of p (transitively) is failing.
func (s *State) suppressed(pol *Policy, p *Probe, depth int) bool {
	if depth > len(pol.Probes) {
		return false
	}
	for _, name := range p.DependsOn {
		parent := pol.Probe(name)
		if parent == nil {
			continue
		}
		if ps := s.Probes[name]; ps != nil && (ps.Down || (ps.Last != nil && !ps.Last.Passed)) {
			return true
		}
		if s.suppressed(pol, parent, depth+1) {
			return true
		}
	}
	return false
}

// settle opens or resolves the incident and sets the phase.
func (s *State) settle(pol *Policy, now time.Time) []Event {
	var ev []Event
	names, critical := s.Escalating(pol)
	if s.Incident == nil && len(names) > 0 {
		s.Incidents++
		s.Incident = &Incident{
			ID:      fmt.Sprintf("%s-%d", now.UTC().Format("20060102T150405Z"), s.Incidents),
			Started: now, Rungs: map[string]*RungState{},
		}
		// The failures began when the first of them was seen.
		for _, name := range names {
			if t := s.Probes[name].FailingSince; !t.IsZero() && (s.Incident.Since.IsZero() || t.Before(s.Incident.Since)) {
				s.Incident.Since = t
			}
		}
		ev = append(ev, Event{Type: "incident_open", Incident: s.Incident.ID, Reason: fmt.Sprint(names), At: now})
	}
	if inc := s.Incident; inc != nil {
		// A probe held back by a failing parent is still down: the incident
		// stays open (a parent's single miss must not "resolve" it and open
		// a new one a cycle later).
		down := s.downProbes(pol)
		if len(down) == 0 {
			ev = append(ev, s.resolve(now, "probes recovered"))
		} else {
			inc.Probes = down
			inc.Critical = inc.Critical || critical
			if a := inc.Ack; a != nil {
				// The incident got worse: a probe that was up when it was
				// acknowledged went down. The ladder resumes.
				for _, name := range down {
					if !contains(a.Probes, name) {
						inc.Ack = nil
						ev = append(ev, Event{Type: "ack_cleared", Incident: inc.ID, Probe: name,
							Reason: name + " went down after the acknowledgement", At: now})
						break
					}
				}
			}
		}
	}
	return append(ev, s.setPhase(pol, now)...)
}

func (s *State) resolve(now time.Time, reason string) Event {
	inc := s.Incident
	s.Incident = nil
	// Every channel that was paged hears that it is over, through the
	// outbox: kept across a restart and retried until a channel accepts.
	for _, ch := range inc.Paged {
		s.Outbox = append(s.Outbox, &Outgoing{Kind: "resolved", Incident: inc.ID, Channel: ch, Reason: reason, Since: now, NextTry: now})
	}
	return Event{Type: "incident_resolved", Incident: inc.ID, Reason: reason, Channels: append([]string(nil), inc.Paged...), At: now}
}

// setPhase derives the phase from the probes and the incident.
func (s *State) setPhase(pol *Policy, now time.Time) []Event {
	next := s.Phase
	switch inc := s.Incident; {
	case inc == nil:
		next = Healthy
		if s.anyFailing(pol) {
			next = Degraded
		}
		for _, ps := range s.Probes {
			if ps.Down {
				next = Degraded
			}
		}
	default:
		if next == Healthy || next == Degraded {
			next = Failed
		}
		ct := pol.Thresholds.CriticalAfter
		// Only an incident with a critical probe becomes critical: a
		// non-critical outage is worked by the ladder but never pages.
		if inc.Critical && (next == Failed || next == Investigating) && (inc.Exhausted || (ct > 0 && now.Sub(inc.Started) >= ct)) {
			next = Critical
		}
		if (next == Critical || next == SOS) && inc.CriticalSince.IsZero() {
			inc.CriticalSince = now
		}
	}
	return s.transition(next, now)
}

func (s *State) transition(to Phase, now time.Time) []Event {
	if to == s.Phase {
		return nil
	}
	e := Event{Type: "transition", From: s.Phase, To: to, At: now}
	if s.Incident != nil {
		e.Incident = s.Incident.ID
	}
	s.Phase, s.PhaseSince = to, now
	return []Event{e}
}

// FailingResults returns the last failing and passing results of the policy's probes.
func (s *State) Results(pol *Policy) (failing, passing []Result) {
	for _, p := range pol.Probes {
		ps := s.Probes[p.Name]
		if ps == nil || ps.Last == nil {
			continue
		}
		if ps.Last.Passed {
			passing = append(passing, *ps.Last)
		} else {
			failing = append(failing, *ps.Last)
		}
	}
	return failing, passing
}

// View is the incident as predicates and actions see it; nil without an incident.
func (s *State) View(pol *Policy, now time.Time) *IncidentView {
	inc := s.Incident
	if inc == nil {
		return nil
	}
	failing, passing := s.Results(pol)
	v := &IncidentView{ID: inc.ID, Started: inc.Started, Now: now, State: string(s.Phase),
		Failing: failing, Passing: passing, Rungs: map[string]RungRecord{}, Critical: inc.Critical,
		Since: inc.Since, Quiet: inc.RungEnded, reads: &viewReads{}}
	for name, rs := range inc.Rungs {
		v.Rungs[name] = rs.RungRecord
	}
	for _, p := range pol.Probes {
		if ps := s.Probes[p.Name]; ps != nil && ps.Flapping {
			v.Flapping = append(v.Flapping, p.Name)
		}
	}
	for _, pz := range s.Pauses {
		v.Paused = append(v.Paused, pz.Describe())
	}
	if inc.Ack != nil {
		v.Acked = "acknowledged"
		if inc.Ack.Reason != "" {
			v.Acked += ": " + inc.Ack.Reason
		}
	}
	return v
}

// Fresh reports whether r was taken after the failures began (since) and
// after the last rung's disturbance ended (quiet). r.At is when the run
// started (the runner stamps it so). A pass must have started at or after
// both: one that began before the first failure was seen may predate the
// outage. A failure must have started after quiet; since is the start of
// the first failing run, so every failure of the incident qualifies.
func Fresh(r Result, since, quiet time.Time) bool {
	if !quiet.IsZero() && r.At.Before(quiet) {
		return false
	}
	return since.IsZero() || !r.At.Before(since)
}
