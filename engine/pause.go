package engine

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Pause and acknowledge: the operator's say in what the ladder does.
//
// A pause (talon pause, POST /pause) covers everything, one probe, the
// probes of a tag, or one rung, until it expires or is resumed. Probes keep
// running and recording under it; what it covers does not drive the
// ladder: a paused rung is passed over, paused probes do not escalate (an
// incident of paused probes only holds), and a pause of everything holds
// the whole ladder, pages included. A pause that expires while the
// incident is open lets the ladder go on from where it was.
//
// An acknowledgement (talon ack) of the open incident says "someone is on
// it": the incident runs no further rung and sends no page, repeats
// included, until it resolves or gets worse (a probe that was up when it
// was acknowledged goes down); "resolved" still goes to whoever was paged.
//
// These, and nothing else, are the exceptions to "a critical outage pages".

// Every pause ends: DefaultPause is the length of one that names none,
// MaxPause the longest there is (a longer one is cut there; one kept from
// before the cap, without an end, ends MaxPause after it began). A pause
// nobody remembers must not silence the watchdog for good.
const (
	DefaultPause = time.Hour
	MaxPause     = 24 * time.Hour
)

// Pause scopes.
const (
	ScopeAll   = ""
	ScopeProbe = "probe"
	ScopeTag   = "tag"
	ScopeRung  = "rung"
)

// Control is an operator's command as the journal records it: a pause
// (Scope, Name, Until, Reason), a resume (Scope and Name select the pauses
// to lift; both empty: all of them) or an acknowledgement (Incident, empty
// for the open one, and Reason).
type Control struct {
	Scope    string    `json:"scope,omitempty"`
	Name     string    `json:"name,omitempty"`
	Until    time.Time `json:"until,omitzero"`
	Incident string    `json:"incident,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// By is who asked, as the CLI says: "joel (uid 501)".
	By string `json:"by,omitempty"`
}

// Describe is the pause in words, for pages, logs and status.
func (p Pause) Describe() string {
	var b strings.Builder
	switch p.Scope {
	case ScopeAll:
		b.WriteString("everything")
	default:
		fmt.Fprintf(&b, "%s %s", p.Scope, p.Name)
	}
	if p.Until.IsZero() {
		b.WriteString(" until resumed")
	} else {
		fmt.Fprintf(&b, " until %s", p.Until.UTC().Format(time.RFC3339))
	}
	switch {
	case p.Reason != "" && p.By != "":
		fmt.Fprintf(&b, " (%s; by %s)", p.Reason, p.By)
	case p.Reason != "":
		fmt.Fprintf(&b, " (%s)", p.Reason)
	case p.By != "":
		fmt.Fprintf(&b, " (by %s)", p.By)
	}
	return b.String()
}

// covers reports whether the pause covers probe p.
func (p Pause) coversProbe(pr *Probe) bool {
	switch p.Scope {
	case ScopeAll:
		return true
	case ScopeProbe:
		return pr.Name == p.Name
	case ScopeTag:
		return contains(pr.Tags, p.Name)
	}
	return false
}

// CheckControl says what is wrong with a pause or resume for pol, or "".
func CheckControl(pol *Policy, c Control) string {
	switch c.Scope {
	case ScopeAll:
		if c.Name != "" {
			return "a pause of everything names nothing"
		}
	case ScopeProbe:
		if pol.Probe(c.Name) == nil {
			return fmt.Sprintf("the policy has no probe %q", c.Name)
		}
	case ScopeTag:
		for _, p := range pol.Probes {
			if contains(p.Tags, c.Name) {
				return ""
			}
		}
		return fmt.Sprintf("no probe of the policy has the tag %q", c.Name)
	case ScopeRung:
		for _, r := range pol.Ladder {
			if r.Name == c.Name {
				return ""
			}
		}
		return fmt.Sprintf("the ladder has no rung %q", c.Name)
	default:
		return fmt.Sprintf("unknown pause scope %q: want probe, tag or rung", c.Scope)
	}
	return ""
}

// pause adds an operator's pause.
func (s *State) pause(c Control, now time.Time) []Event {
	s.PauseSeq++
	until := c.Until
	if until.IsZero() {
		until = now.Add(DefaultPause)
	}
	if limit := now.Add(MaxPause); until.After(limit) {
		until = limit
	}
	p := Pause{ID: fmt.Sprintf("p%d", s.PauseSeq), Scope: c.Scope, Name: c.Name, Since: now, Until: until, Reason: c.Reason, By: c.By}
	s.Pauses = append(s.Pauses, p)
	e := Event{Type: "pause", Reason: p.Describe(), At: now}
	if s.Incident != nil {
		e.Incident = s.Incident.ID
	}
	return []Event{e}
}

// resume lifts the pauses c selects.
func (s *State) resume(c Control, now time.Time) []Event {
	var ev []Event
	keep := s.Pauses[:0]
	for _, p := range s.Pauses {
		if (c.Scope == "" && c.Name == "") || (p.Scope == c.Scope && p.Name == c.Name) {
			ev = append(ev, Event{Type: "resume", Reason: p.Describe(), At: now})
			continue
		}
		keep = append(keep, p)
	}
	s.Pauses = keep
	if len(s.Pauses) == 0 {
		s.Pauses = nil
	}
	return ev
}

// expire lifts the pauses that have run out by now. A pause without an end
// (kept from before MaxPause) gets one first.
func (s *State) expire(now time.Time) []Event {
	var ev []Event
	keep := s.Pauses[:0]
	for _, p := range s.Pauses {
		if p.Until.IsZero() || p.Until.After(p.Since.Add(MaxPause)) {
			p.Until = p.Since.Add(MaxPause)
		}
		if !now.Before(p.Until) {
			ev = append(ev, Event{Type: "pause_expired", Reason: p.Describe(), At: p.Until})
			continue
		}
		keep = append(keep, p)
	}
	s.Pauses = keep
	if len(s.Pauses) == 0 {
		s.Pauses = nil
	}
	return ev
}

// ack acknowledges the open incident, if it is the one c names.
func (s *State) ack(pol *Policy, c Control, now time.Time) []Event {
	inc := s.Incident
	if inc == nil || (c.Incident != "" && c.Incident != inc.ID) {
		return nil
	}
	inc.Ack = &Ack{At: now, Reason: c.Reason, By: c.By, Probes: append([]string(nil), inc.Probes...)}
	return []Event{{Type: "ack", Incident: inc.ID, Reason: c.Reason, At: now}}
}

// pausedAll is the pause of everything in force, if any.
func (s *State) pausedAll() *Pause {
	for i := range s.Pauses {
		if s.Pauses[i].Scope == ScopeAll {
			return &s.Pauses[i]
		}
	}
	return nil
}

// pausedRung is the pause covering rung r, if any.
func (s *State) pausedRung(r *Rung) *Pause {
	for i := range s.Pauses {
		if p := &s.Pauses[i]; p.Scope == ScopeRung && p.Name == r.Name {
			return p
		}
	}
	return nil
}

// probePaused reports whether a probe-scoped pause (a probe or a tag)
// covers pr.
func (s *State) probePaused(pr *Probe) bool {
	for _, p := range s.Pauses {
		if (p.Scope == ScopeProbe || p.Scope == ScopeTag) && p.coversProbe(pr) {
			return true
		}
	}
	return false
}

// acting lists, sorted, the escalating probes no pause covers, and whether
// one of them is critical: what the ladder acts for.
func (s *State) acting(pol *Policy) (names []string, critical bool) {
	esc, _ := s.Escalating(pol)
	for _, n := range esc {
		p := pol.Probe(n)
		if s.probePaused(p) {
			continue
		}
		names = append(names, n)
		critical = critical || p.Critical
	}
	sort.Strings(names)
	return names, critical
}

// anyProbePause reports whether a probe or tag pause is in force.
func (s *State) anyProbePause() bool {
	for _, p := range s.Pauses {
		if p.Scope == ScopeProbe || p.Scope == ScopeTag {
			return true
		}
	}
	return false
}
