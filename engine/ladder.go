package engine

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/talon-dev/talon/internal/text"
)

// Page delivery retries back off from PageRetryMin, doubling up to PageRetryMax.
const (
	PageRetryMin = 30 * time.Second
	PageRetryMax = 30 * time.Minute
)

// pageBackoff is the wait after the n-th consecutive failed delivery.
func pageBackoff(n int) time.Duration {
	d := PageRetryMin
	for i := 1; i < n && d < PageRetryMax; i++ {
		d *= 2
	}
	return min(d, PageRetryMax)
}

// WhenFunc evaluates a rung's `when` predicate against the current incident.
type WhenFunc func(r *Rung) (bool, error)

// Decision is what the ladder wants next.
type Decision struct {
	Run    int    // index of the rung to run, -1 for none
	Wait   string // why nothing runs now, when something is pending
	Events []Event
}

// Decide walks the ladder for the open incident. The first walk goes rung by
// rung: a rung whose `when` is false is skipped, one that is held (`after`),
// cooling down or backing off after a failed page makes the ladder wait.
// Once every rung had its turn the incident is exhausted (critical) and a
// rung runs again only when it is due: a cooldown elapsed (heal, agent) or a
// `repeat` elapsed since the last page. No rung ever runs every cycle.
func Decide(s *State, pol *Policy, now time.Time, when WhenFunc) Decision {
	d := Decision{Run: -1}
	inc := s.Incident
	if inc == nil || inc.Running != "" {
		return d
	}
	skip := func(r *Rung, reason string) {
		d.Events = append(d.Events, Event{Type: "rung_skip", Rung: r.Name, Incident: inc.ID, Reason: reason, At: now})
	}
	if inc.Position < 0 {
		inc.Position = 0
	}
	if s.recovering(pol) {
		d.Wait = "the failing probes pass again; waiting for them to recover"
		return d
	}
	if names, _ := s.Escalating(pol); len(names) == 0 {
		d.Wait = "every down probe waits on a failing parent (depends_on)"
		return d
	}
	for inc.Position < len(pol.Ladder) {
		r := pol.Ladder[inc.Position]
		if r.Pages() && !inc.Critical {
			skip(r, "only critical probes page")
			inc.Position++
			continue
		}
		if ok, reason := evalWhen(r, when); !ok {
			skip(r, reason)
			inc.Position++
			continue
		}
		if wait := s.held(r, now); wait != "" {
			d.Wait = r.Name + ": " + wait
			return d
		}
		d.Run = inc.Position
		return d
	}
	if !inc.Exhausted {
		inc.Exhausted = true
		d.Events = append(d.Events, s.setPhase(pol, now)...)
	}
	for i, r := range pol.Ladder {
		if r.Pages() && !inc.Critical || !s.due(r, now) {
			continue
		}
		if ok, reason := evalWhen(r, when); !ok {
			if failed := strings.HasPrefix(reason, whenFailed); failed {
				// A predicate that errors is never skipped quietly: each
				// failure is an event (logged at error, journaled), and the
				// rung is tried again with backoff rather than every cycle.
				rs := inc.rung(r.Name)
				rs.WhenFailures++
				rs.WhenRetry = now.Add(pageBackoff(rs.WhenFailures))
				skip(r, fmt.Sprintf("%s; retry at %s", reason, rs.WhenRetry.UTC().Format(time.RFC3339)))
			}
			continue
		}
		if rs := inc.Rungs[r.Name]; rs != nil {
			rs.WhenFailures, rs.WhenRetry = 0, time.Time{}
		}
		d.Run = i
		return d
	}
	return d
}

// rung is the incident's record of rung name, created when missing.
func (inc *Incident) rung(name string) *RungState {
	rs := inc.Rungs[name]
	if rs == nil {
		rs = &RungState{}
		inc.Rungs[name] = rs
	}
	return rs
}

// recovering reports whether every escalating probe of the incident passed
// its last run: it is still down only by recovery hysteresis, and nothing
// should run (or page) on a green result.
func (s *State) recovering(pol *Policy) bool {
	if len(s.Incident.Probes) == 0 {
		return false
	}
	for _, name := range s.Incident.Probes {
		if ps := s.Probes[name]; ps == nil || ps.Last == nil || !ps.Last.Passed {
			return false
		}
	}
	return true
}

func (r *Rung) onlyPages() bool {
	for _, a := range r.Do {
		if _, ok := a.(Pager); !ok {
			return false
		}
	}
	return true
}

// whenFailed starts the reason of a rung skipped because its predicate failed.
const whenFailed = "when= failed: "

func evalWhen(r *Rung, when WhenFunc) (bool, string) {
	if r.When == nil || when == nil {
		return true, ""
	}
	ok, err := when(r)
	if err != nil {
		return false, whenFailed + err.Error()
	}
	if !ok {
		return false, "when= is false"
	}
	return true, ""
}

// held says why r cannot run yet on the first walk, or "".
func (s *State) held(r *Rung, now time.Time) string {
	inc := s.Incident
	if age := now.Sub(inc.Started); r.After > 0 && age < r.After {
		return fmt.Sprintf("held until the incident is %s old", r.After)
	}
	if last, ok := s.cooldownFrom(r); ok && r.Cooldown > 0 && now.Sub(last) < r.Cooldown {
		return fmt.Sprintf("cooling down until %s", last.Add(r.Cooldown).UTC().Format(time.RFC3339))
	}
	if rs := inc.Rungs[r.Name]; rs != nil && now.Before(rs.NextTry) {
		return fmt.Sprintf("retrying page after %s", rs.NextTry.UTC().Format(time.RFC3339))
	}
	return ""
}

// due reports whether r should run again after the first walk. Cooldowns
// apply to every rung, pages included; a page also waits for its repeat
// once delivered, or for its backoff after a failed delivery.
func (s *State) due(r *Rung, now time.Time) bool {
	inc := s.Incident
	if r.After > 0 && now.Sub(inc.Started) < r.After {
		return false
	}
	rs := inc.Rungs[r.Name]
	if rs != nil && (now.Before(rs.NextTry) || now.Before(rs.WhenRetry)) {
		return false
	}
	if last, ok := s.cooldownFrom(r); ok && r.Cooldown > 0 && now.Sub(last) < r.Cooldown {
		return false
	}
	if r.Pages() {
		switch {
		case rs == nil || !rs.LastOK:
			return true // never delivered in this incident: keep trying, with backoff
		case r.Repeat > 0:
			return now.Sub(rs.LastSent) >= r.Repeat
		}
		return false
	}
	if r.Cooldown <= 0 {
		return rs == nil // once per incident
	}
	return true
}

// cooldownFrom is when r's cooldown started: its last delivered page for a
// rung that only pages (so a failed delivery is retried with backoff), its
// last start for any rung that runs something (heal storms stay impossible).
func (s *State) cooldownFrom(r *Rung) (time.Time, bool) {
	if r.Pages() && r.onlyPages() {
		t, ok := s.LastSent[r.Name]
		return t, ok
	}
	t, ok := s.LastRun[r.Name]
	return t, ok
}

// BeginRung records that rung idx starts now. The caller persists the state
// before running it, so a crash mid-rung is remembered as an attempt.
func BeginRung(s *State, pol *Policy, idx int, now time.Time) []Event {
	inc, r := s.Incident, pol.Ladder[idx]
	rs := inc.Rungs[r.Name]
	if rs == nil {
		rs = &RungState{}
		inc.Rungs[r.Name] = rs
	}
	rs.Attempts++
	rs.LastRun = now
	s.LastRun[r.Name] = now
	inc.Running, inc.RunningSince = r.Name, now
	ev := []Event{{Type: "rung_start", Rung: r.Name, Incident: inc.ID, At: now}}
	if r.State != "" && r.State != string(SOS) {
		ev = append(ev, s.raise(Phase(r.State), now)...)
	}
	return ev
}

// RungOutcome is what running a rung produced.
type RungOutcome struct {
	OK     bool
	Output string
	// Paged lists the channels that accepted a page; Pages tells whether the
	// rung tried to page at all.
	Pages bool
	Paged []string
	// Verify holds the re-probe of the failing probes, when the rung verifies.
	Verify []Result
}

// FinishRung applies a rung's outcome. A finish for an incident that is no
// longer open (it resolved meanwhile) only records the event.
func FinishRung(s *State, pol *Policy, incidentID, rung string, out RungOutcome, now time.Time) []Event {
	inc := s.Incident
	ev := []Event{{Type: "rung_done", Rung: rung, Incident: incidentID, Reason: outcomeText(out), Channels: out.Paged, At: now}}
	if len(out.Paged) > 0 {
		// A delivered page starts its cooldown even if the incident
		// resolved while it was on the way.
		s.LastPage = now
		if s.LastSent == nil {
			s.LastSent = map[string]time.Time{}
		}
		s.LastSent[rung] = now
	}
	if inc == nil || inc.ID != incidentID {
		return ev
	}
	inc.Running, inc.RunningSince = "", time.Time{}
	idx := -1
	for i, r := range pol.Ladder {
		if r.Name == rung {
			idx = i
		}
	}
	rs := inc.Rungs[rung]
	if rs == nil {
		rs = &RungState{}
		inc.Rungs[rung] = rs
	}
	rs.LastOK, rs.LastOutput = out.OK, text.Cap(out.Output, 4096)
	if out.Pages {
		rs.LastOK = len(out.Paged) > 0
	}
	if out.Pages {
		if len(out.Paged) > 0 {
			inc.Paged = union(inc.Paged, out.Paged)
			rs.LastSent, rs.Failures, rs.NextTry = now, 0, time.Time{}
			if idx >= 0 && pol.Ladder[idx].State != "" {
				ev = append(ev, s.raise(Phase(pol.Ladder[idx].State), now)...)
			}
		} else {
			// The page is retried with backoff once the ladder has had its
			// walk; later rungs (another channel, say) do not wait for it.
			rs.Failures++
			rs.NextTry = now.Add(pageBackoff(rs.Failures))
			ev = append(ev, Event{Type: "page_failed", Rung: rung, Incident: inc.ID,
				Reason: fmt.Sprintf("no channel accepted the page; retry at %s", rs.NextTry.UTC().Format(time.RFC3339)), At: now})
		}
	}
	if idx >= 0 && inc.Position == idx {
		inc.Position = idx + 1
	}
	if len(out.Verify) > 0 {
		green := true
		for _, r := range out.Verify {
			green = green && r.Passed
		}
		ev = append(ev, Observe(s, pol, out.Verify, now)...)
		if green && s.Incident != nil && s.Incident.ID == incidentID {
			// A green re-probe after a rung resolves the incident at once,
			// whatever the recovery hysteresis of a regular cycle says.
			for _, r := range out.Verify {
				if ps := s.Probes[r.Name]; ps != nil {
					ps.Down = false
				}
			}
			ev = append(ev, s.settle(pol, now)...)
		}
	}
	if s.Incident != nil && s.Incident.ID == incidentID && inc.Position >= len(pol.Ladder) && !inc.Exhausted {
		inc.Exhausted = true
		ev = append(ev, s.setPhase(pol, now)...)
	}
	return ev
}

// Interrupted closes a rung that was running when the daemon stopped: it
// counts as an attempt that failed, so a restart neither repeats a heal
// inside its cooldown nor re-sends a page at once.
func Interrupted(s *State, pol *Policy, now time.Time) []Event {
	return interruptedBy(s, pol, now, "interrupted by a restart")
}

func interruptedBy(s *State, pol *Policy, now time.Time, why string) []Event {
	inc := s.Incident
	if inc == nil || inc.Running == "" {
		return nil
	}
	name := inc.Running
	var pages bool
	for _, r := range pol.Ladder {
		if r.Name == name {
			pages = r.Pages()
		}
	}
	return FinishRung(s, pol, inc.ID, name, RungOutcome{Output: why, Pages: pages}, now)
}

func outcomeText(o RungOutcome) string {
	switch {
	case o.Pages && len(o.Paged) > 0:
		return fmt.Sprintf("paged %v", o.Paged)
	case o.Pages:
		return "page not delivered"
	case o.OK:
		return "ok"
	}
	return "failed: " + text.FirstLines(o.Output, 1)
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string(nil), a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// raise moves the phase to p only if p is further along the escalation:
// an agent rung that runs again after a page never turns "sos" back into
// "investigating".
func (s *State) raise(p Phase, now time.Time) []Event {
	if rank(p) <= rank(s.Phase) {
		return nil
	}
	return s.transition(p, now)
}

func rank(p Phase) int {
	for i, q := range Phases {
		if p == q {
			return i
		}
	}
	return -1
}

// Relocate keeps the first walk's place when a reload changes the ladder:
// the position follows the rung's name, so no rung is skipped or repeated
// because others were added, removed or reordered before it.
func (inc *Incident) Relocate(old, new []*Rung) {
	if inc == nil || inc.Exhausted || inc.Position >= len(old) {
		return
	}
	next := old[inc.Position].Name
	for i, r := range new {
		if r.Name == next {
			inc.Position = i
			return
		}
	}
	// The next rung is gone: continue with the first rung after the ones
	// already passed that still exist.
	passed := map[string]bool{}
	for _, r := range old[:inc.Position] {
		passed[r.Name] = true
	}
	inc.Position = 0
	for i, r := range new {
		if passed[r.Name] {
			inc.Position = i + 1
		}
	}
}

func sortStrings(s []string) { sort.Strings(s) }
