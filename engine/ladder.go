package engine

import (
	"errors"
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
// It returns a *FreshWait error when the predicate read a probe that has no
// fresh result yet and the rung should wait for one.
type WhenFunc func(r *Rung) (bool, error)

// FreshWait is the answer of a WhenFunc whose predicate read probes without
// a fresh result (see Fresh): the rung waits for them until Until at the
// latest, then decides on what there is (a stale pass is not a pass).
type FreshWait struct {
	Probes []string
	Until  time.Time
}

func (w *FreshWait) Error() string {
	return fmt.Sprintf("waiting for a fresh result of %s (until %s)", strings.Join(w.Probes, ", "), w.Until.UTC().Format(time.RFC3339))
}

// Decision is what the ladder wants next.
type Decision struct {
	Run int // index of the rung to run, -1 for none
	// Pages says the run includes the rung's pages: always for a rung
	// the page slot chose; never for a rung that acts and pages chosen
	// to run its actions again once they are due (its page is not).
	Pages  bool
	Wait   string // why nothing runs now, when something is pending
	Events []Event
	// WakeAt is the earliest time a rung waiting for fresh results stops
	// waiting (zero: none waits).
	WakeAt time.Time
}

// Decide walks the ladder for the open incident and returns at most one
// rung to start; call it again after starting one (a page may start beside
// a running heal).
//
// Rungs that only act (heal, agent) run one at a time; rungs that page run
// beside them, each on its own. The walk goes rung by rung, in order, while no acting
// rung runs or settles (see Settle): a rung whose `when` is false, that is
// paused or cooling down (a cooldown started in an earlier incident, say)
// is passed over, never waited for; a rung held by its `after` makes the
// walk wait, and so does a page rung until it has had its attempt. Pages
// go out through their own slot: a page rung is due once the walk reached
// it, or, when it sets `after`, once the incident is that old, whatever the
// rungs before it are doing; it is not due while it cools down, backs off
// after a failed delivery, or (once delivered) until its `repeat` elapsed.
// Once every rung had its turn the incident is exhausted (critical) and an
// acting rung runs again only when its cooldown elapsed. No rung ever runs
// every cycle: heal storms are impossible by construction.
//
// Nothing runs while everything is paused, the incident is acknowledged,
// its probes pass again and only wait for recovery hysteresis, or every
// escalating probe waits on a failing parent or is paused.
func Decide(s *State, pol *Policy, now time.Time, when WhenFunc) Decision {
	return DecideBusy(s, pol, now, when, "", nil)
}

// DecideBusy is Decide when rungs started for an earlier incident are still
// running: acting names the one that acts ("" for none), paging those that
// page. A new incident does not start a rung that is still running, nor an
// acting rung while another acts.
func DecideBusy(s *State, pol *Policy, now time.Time, when WhenFunc, acting string, paging []string) Decision {
	d := Decision{Run: -1}
	inc := s.Incident
	if inc == nil {
		return d
	}
	if inc.Position < 0 {
		inc.Position = 0
	}
	if p := s.pausedAll(); p != nil {
		d.Wait = "paused: " + p.Describe()
		return d
	}
	if inc.Ack != nil {
		d.Wait = "the incident is acknowledged"
		return d
	}
	if s.recovering(pol) {
		d.Wait = "the failing probes pass again; waiting for them to recover"
		return d
	}
	if names, _ := s.Escalating(pol); len(names) == 0 {
		d.Wait = "every down probe waits on a failing parent (depends_on)"
		return d
	}
	names, actCritical := s.acting(pol)
	if len(names) == 0 {
		d.Wait = "every escalating probe is paused"
		return d
	}
	l := &walker{s: s, pol: pol, inc: inc, now: now, when: when, d: &d,
		critical: inc.Critical && (actCritical || !s.anyProbePause()), acting: acting, paging: paging}
	if l.acting == "" {
		l.acting = inc.Running
	}
	l.paging = union(l.paging, inc.Paging)
	l.flapDetected, l.flapFirst, l.flapping = s.flapping(names)
	act := l.walk()
	if page := l.pages(); page >= 0 {
		d.Run, d.Pages = page, true
		return d
	}
	d.Run = act
	return d
}

// walker is one Decide.
type walker struct {
	s        *State
	pol      *Policy
	inc      *Incident
	now      time.Time
	when     WhenFunc
	d        *Decision
	critical bool // pages are allowed
	// acting is the rung that acts and runs ("" for none); paging are the
	// rungs that page and run.
	acting string
	paging []string
	// flapping: every probe the ladder acts for flaps, detected at
	// flapDetected, the first of its downs at flapFirst.
	flapping                bool
	flapDetected, flapFirst time.Time
}

func (l *walker) skip(r *Rung, reason string) {
	l.d.Events = append(l.d.Events, Event{Type: "rung_skip", Rung: r.Name, Incident: l.inc.ID, Reason: reason, At: l.now})
}

func (l *walker) wait(why string) {
	if l.d.Wait == "" {
		l.d.Wait = why
	}
}

// age is how old the incident is for r's `after`: a flapping incident is as
// old as the flapping.
func (l *walker) age(r *Rung) time.Duration {
	start := l.inc.Started
	if l.flapping && r.Flapping != FlapAlways && l.flapFirst.Before(start) {
		start = l.flapFirst
	}
	return l.now.Sub(start)
}

// flapSkip says why r does not run for a flapping incident, or "".
func (l *walker) flapSkip(r *Rung) string {
	if !l.flapping || r.Flapping == FlapAlways {
		return ""
	}
	if r.Flapping == FlapNever {
		return "its probes are flapping"
	}
	if r.Pages() {
		if t, ok := l.s.LastSent[r.Name]; ok && !t.Before(l.flapDetected) {
			return "its probes are flapping and it paged once already"
		}
		return ""
	}
	if t, ok := l.s.LastRun[r.Name]; ok && !t.Before(l.flapFirst) {
		return "its probes are flapping and it ran once already"
	}
	return ""
}

// evalWhen evaluates r's predicate: ok, the reason of a skip, or a wait
// for fresh evidence (recorded in the decision).
func (l *walker) evalWhen(r *Rung) (ok bool, reason string, wait bool) {
	if r.When == nil || l.when == nil {
		return true, "", false
	}
	yes, err := l.when(r)
	var fw *FreshWait
	if errors.As(err, &fw) {
		if l.d.WakeAt.IsZero() || fw.Until.Before(l.d.WakeAt) {
			l.d.WakeAt = fw.Until
		}
		l.wait(r.Name + ": " + fw.Error())
		return false, "", true
	}
	if err != nil {
		return false, whenFailed + err.Error(), false
	}
	if !yes {
		return false, "when= is false", false
	}
	return true, "", false
}

// cooling says until when r cools down, if it does.
func (l *walker) cooling(r *Rung) (time.Time, bool) {
	last, ok := l.s.cooldownFrom(r)
	if !ok || r.Cooldown <= 0 || l.now.Sub(last) >= r.Cooldown {
		return time.Time{}, false
	}
	return last.Add(r.Cooldown), true
}

// walk is the first walk, then the acting rungs that are due again once the
// ladder is exhausted; it returns the acting rung to run, or -1.
func (l *walker) walk() int {
	inc := l.inc
	if l.acting != "" {
		l.wait("rung " + l.acting + " is running")
		return -1
	}
	if st := inc.Settle; st != nil {
		l.wait(fmt.Sprintf("settling after %s until %s", st.Rung, st.Until.UTC().Format(time.RFC3339)))
		return -1
	}
	for inc.Position < len(l.pol.Ladder) {
		r := l.pol.Ladder[inc.Position]
		rs := inc.Rungs[r.Name]
		if r.onlyPages() && !l.critical {
			l.skip(r, "only critical probes page")
			inc.Position++
			continue
		}
		if r.Pages() && contains(l.paging, r.Name) {
			l.wait(r.Name + " is paging")
			return -1
		}
		if r.Pages() && rs != nil && rs.Attempts > 0 {
			// It had its turn; its retries and repeats are the page slot's.
			inc.Position++
			continue
		}
		if p := l.s.pausedRung(r); p != nil {
			l.skip(r, "paused: "+p.Describe())
			inc.Position++
			continue
		}
		if until, ok := l.cooling(r); ok {
			l.skip(r, "cooling down until "+until.UTC().Format(time.RFC3339))
			inc.Position++
			continue
		}
		if why := l.flapSkip(r); why != "" {
			l.skip(r, why)
			inc.Position++
			continue
		}
		ok, reason, wait := l.evalWhen(r)
		if wait {
			return -1
		}
		if !ok {
			l.skip(r, reason)
			inc.Position++
			continue
		}
		if age := l.age(r); r.After > 0 && age < r.After {
			l.wait(fmt.Sprintf("%s: held until the incident is %s old", r.Name, r.After))
			return -1
		}
		if r.Pages() && l.critical {
			// It goes out through the page slot; the walk waits for it.
			l.wait(r.Name + ": waiting for the page to go out")
			return -1
		}
		// An acting rung, or one that acts and pages in an incident that
		// may not page: its actions run in their turn, its page stays out.
		return inc.Position
	}
	if !inc.Exhausted {
		inc.Exhausted = true
		l.d.Events = append(l.d.Events, l.s.setPhase(l.pol, l.now)...)
	}
	for i, r := range l.pol.Ladder {
		// A rung that acts and pages runs its actions again when they
		// are due, whatever its page is doing (its page is the page
		// slot's).
		if r.onlyPages() || contains(l.paging, r.Name) || l.s.pausedRung(r) != nil || !l.s.due(r, l.now, l.age(r)) || l.flapSkip(r) != "" {
			continue
		}
		if l.eval(r) {
			return i
		}
	}
	return -1
}

// eval evaluates the predicate of a rung that is due again: a predicate
// that errors is never skipped quietly (each failure is an event, logged at
// error, journaled) and is tried again with backoff rather than every cycle.
func (l *walker) eval(r *Rung) bool {
	ok, reason, wait := l.evalWhen(r)
	if wait {
		return false
	}
	if !ok {
		if strings.HasPrefix(reason, whenFailed) {
			rs := l.inc.rung(r.Name)
			rs.WhenFailures++
			rs.WhenRetry = l.now.Add(pageBackoff(rs.WhenFailures))
			l.skip(r, fmt.Sprintf("%s; retry at %s", reason, rs.WhenRetry.UTC().Format(time.RFC3339)))
		}
		return false
	}
	if rs := l.inc.Rungs[r.Name]; rs != nil {
		rs.WhenFailures, rs.WhenRetry = 0, time.Time{}
	}
	return true
}

// pages returns the page rung to start, or -1: the first that is due.
func (l *walker) pages() int {
	inc := l.inc
	if !l.critical {
		return -1
	}
	for i, r := range l.pol.Ladder {
		if !r.Pages() || contains(l.paging, r.Name) || l.s.pausedRung(r) != nil {
			continue
		}
		// Without `after` a page waits for the walk to reach it (the rungs
		// before it had their turn); with `after` it is due on time.
		reached := i < inc.Position || (i == inc.Position && l.acting == "" && inc.Settle == nil)
		if r.After <= 0 && !reached || r.After > 0 && l.age(r) < r.After {
			continue
		}
		if !l.s.pageDue(r, l.now) || l.flapSkip(r) != "" {
			continue
		}
		if l.eval(r) {
			return i
		}
	}
	return -1
}

// pageDue reports whether page rung r may page now, its `after` aside: not
// cooling down, not backing off after a failed delivery; and, once a page
// was delivered in this incident, only when its repeat has elapsed.
func (s *State) pageDue(r *Rung, now time.Time) bool {
	rs := s.Incident.Rungs[r.Name]
	if rs != nil && (now.Before(rs.NextTry) || now.Before(rs.WhenRetry)) {
		return false
	}
	if last, ok := s.pageCooldownFrom(r); ok && r.Cooldown > 0 && now.Sub(last) < r.Cooldown {
		return false
	}
	switch {
	case rs == nil || !rs.LastOK:
		return true // never delivered in this incident: keep trying, with backoff
	case r.Repeat > 0:
		return now.Sub(rs.LastSent) >= r.Repeat
	}
	return false
}

// flapping says whether every probe in names flaps: since when that was
// detected, and the first down of the flapping.
func (s *State) flapping(names []string) (detected, first time.Time, ok bool) {
	for _, n := range names {
		ps := s.Probes[n]
		if ps == nil || !ps.Flapping {
			return time.Time{}, time.Time{}, false
		}
		if ps.FlappingSince.After(detected) {
			detected = ps.FlappingSince
		}
		if ps.FlapFirst.After(first) {
			first = ps.FlapFirst
		}
	}
	return detected, first, len(names) > 0
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

// due reports whether acting rung r should run again after the first walk:
// its after passed, its cooldown elapsed (once per incident without one).
func (s *State) due(r *Rung, now time.Time, age time.Duration) bool {
	inc := s.Incident
	if r.After > 0 && age < r.After {
		return false
	}
	rs := inc.Rungs[r.Name]
	if rs != nil && now.Before(rs.WhenRetry) {
		return false
	}
	if last, ok := s.cooldownFrom(r); ok && r.Cooldown > 0 && now.Sub(last) < r.Cooldown {
		return false
	}
	if r.Cooldown <= 0 {
		return rs == nil || rs.Attempts == 0 // once per incident
	}
	return true
}

// pageCooldownFrom is when the cooldown of r's page started: its last page
// delivered in the open incident. A rung that also acts pages on its own
// clock: its page is never held by its actions' cooldown (see start, which
// leaves the actions out while they cool down).
func (s *State) pageCooldownFrom(r *Rung) (time.Time, bool) {
	if inc := s.Incident; inc != nil {
		if rs := inc.Rungs[r.Name]; rs != nil && !rs.LastSent.IsZero() {
			return rs.LastSent, true
		}
	}
	return time.Time{}, false
}

// actionsCooling reports whether the actions of r, a rung that runs
// something, are inside their cooldown.
func (s *State) actionsCooling(r *Rung, now time.Time) bool {
	last, ok := s.LastRun[r.Name]
	return !r.onlyPages() && ok && r.Cooldown > 0 && now.Sub(last) < r.Cooldown
}

// actionsSpent reports whether the actions of r, a rung without a
// cooldown, already ran in the open incident: they run once per incident.
func (s *State) actionsSpent(r *Rung) bool {
	last, ok := s.LastRun[r.Name]
	return !r.onlyPages() && r.Cooldown <= 0 && ok && s.Incident != nil && !last.Before(s.Incident.Started)
}

// cooldownFrom is when r's cooldown started: its last delivered page for a
// rung that only pages (so a failed delivery is retried with backoff), its
// last start for any rung that runs something (heal storms stay impossible).
//
// A page rung's cooldown counts only pages of the open incident: the first
// page of a new incident (a relapse just after one that paged) is never
// held by a page sent for an earlier one.
func (s *State) cooldownFrom(r *Rung) (time.Time, bool) {
	if r.Pages() && r.onlyPages() {
		if inc := s.Incident; inc != nil {
			// Its pages for this incident only (one for an earlier
			// incident may be delivered after this one opened).
			if rs := inc.Rungs[r.Name]; rs != nil && !rs.LastSent.IsZero() {
				return rs.LastSent, true
			}
			return time.Time{}, false
		}
		t, ok := s.LastSent[r.Name]
		return t, ok
	}
	t, ok := s.LastRun[r.Name]
	return t, ok
}

// BeginRung records that rung idx starts now. The caller persists the state
// before running it, so a crash mid-rung is remembered as an attempt.
func BeginRung(s *State, pol *Policy, idx int, now time.Time) []Event {
	return beginRung(s, pol, idx, now, true, true)
}

// beginRung is BeginRung; acts and pages say whether the rung's actions
// and its pages run (a rung that acts and pages may page alone while its
// actions cool down, which does not restart their cooldown, or run its
// actions alone once they are due again, which does not re-send its page).
func beginRung(s *State, pol *Policy, idx int, now time.Time, acts, pages bool) []Event {
	inc, r := s.Incident, pol.Ladder[idx]
	rs := inc.rung(r.Name)
	rs.Attempts++
	rs.LastRun = now
	if acts || r.onlyPages() {
		s.LastRun[r.Name] = now
	}
	if r.Pages() {
		inc.Paging = append(inc.Paging, r.Name)
		if pages {
			rs.Pending, rs.Accepted = r.Channels(), nil
		}
		rs.ActsAlone = !pages
	} else {
		inc.Running, inc.RunningSince = r.Name, now
	}
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
	// Interrupted: the process stopped under the rung; the channels of its
	// page that had not answered are still pending (re-sent after a restart).
	Interrupted bool
	// PageOnly: a rung that acts and pages ran its page alone (its actions
	// were cooling down): nothing ran that could disturb the probes.
	PageOnly bool
}

// Delivered records that channel accepted rung's page at now: the page
// counts from this moment (its repeat and cooldown, the incident's paged
// channels, the rung's state), whether or not the rung has ended. It is
// how each channel's acceptance is recorded the moment it is known.
func Delivered(s *State, pol *Policy, incidentID, rung, channel string, now time.Time) []Event {
	s.LastPage = now
	if s.LastSent == nil {
		s.LastSent = map[string]time.Time{}
	}
	s.LastSent[rung] = now
	inc := s.Incident
	if inc == nil || inc.ID != incidentID {
		return nil
	}
	rs := inc.rung(rung)
	rs.Pending = without(rs.Pending, channel)
	rs.Accepted = union(rs.Accepted, []string{channel})
	inc.Paged = sortStrings(union(inc.Paged, []string{channel}))
	rs.LastOK, rs.LastSent, rs.Failures, rs.NextTry = true, now, 0, time.Time{}
	for _, r := range pol.Ladder {
		if r.Name == rung && r.State != "" {
			return s.raise(Phase(r.State), now)
		}
	}
	return nil
}

// NotDelivered records that channel refused rung's page (or failed).
func NotDelivered(s *State, incidentID, rung, channel string) {
	if inc := s.Incident; inc != nil && inc.ID == incidentID {
		if rs := inc.Rungs[rung]; rs != nil {
			rs.Pending = without(rs.Pending, channel)
		}
	}
}

// FinishRung applies a rung's outcome. A finish for an incident that is no
// longer open (it resolved meanwhile) only records the event.
func FinishRung(s *State, pol *Policy, incidentID, rung string, out RungOutcome, now time.Time) []Event {
	inc := s.Incident
	idx := -1
	for i, r := range pol.Ladder {
		if r.Name == rung {
			idx = i
		}
	}
	// recorded: the page's acceptance was recorded as each channel
	// answered (Delivered), and its time counts.
	recorded := false
	if inc != nil && inc.ID == incidentID {
		if rs := inc.Rungs[rung]; rs != nil && out.Pages && len(rs.Accepted) > 0 {
			recorded = true
			out.Paged = union(out.Paged, rs.Accepted)
			sortStrings(out.Paged)
		}
	}
	ev := []Event{{Type: "rung_done", Rung: rung, Incident: incidentID, Reason: outcomeText(out), Channels: out.Paged, At: now}}
	if len(out.Paged) > 0 && !recorded {
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
	switch {
	case contains(inc.Paging, rung):
		inc.Paging = without(inc.Paging, rung)
	case inc.Running == rung:
		inc.Running, inc.RunningSince = "", time.Time{}
	}
	rs := inc.rung(rung)
	rs.LastOutput = text.Cap(out.Output, 4096)
	rs.ActsAlone = false
	if r := rungAt(pol, idx); r == nil || !r.Pages() || out.Pages {
		// (A rung that pages ran its actions alone: LastOK stays its
		// page's.)
		rs.LastOK = out.OK
	}
	if !out.Interrupted {
		rs.Pending = nil
	}
	if out.Pages {
		rs.LastOK = len(out.Paged) > 0
		if len(out.Paged) > 0 {
			inc.Paged = sortStrings(union(inc.Paged, out.Paged))
			rs.Accepted = union(rs.Accepted, out.Paged)
			if !recorded {
				rs.LastSent = now
			}
			rs.Failures, rs.NextTry = 0, time.Time{}
			if idx >= 0 && pol.Ladder[idx].State != "" {
				ev = append(ev, s.raise(Phase(pol.Ladder[idx].State), now)...)
			}
		} else {
			// The page is retried with backoff; later rungs (another
			// channel, say) do not wait for it.
			rs.Failures++
			rs.NextTry = now.Add(pageBackoff(rs.Failures))
			ev = append(ev, Event{Type: "page_failed", Rung: rung, Incident: inc.ID,
				Reason: fmt.Sprintf("no channel accepted the page; retry at %s", rs.NextTry.UTC().Format(time.RFC3339)), At: now})
		}
	}
	if idx >= 0 && inc.Position == idx {
		inc.Position = idx + 1
	}
	acted := idx >= 0 && !pol.Ladder[idx].onlyPages() && !out.Interrupted && !out.PageOnly
	if acted {
		// What the probes reported while it ran is disturbed by it.
		inc.RungEnded = now
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
				if ps := s.Probes[r.Name]; ps != nil && ps.Down {
					ps.Down = false
					ev = append(ev, Event{Type: "probe_up", Probe: r.Name, At: now})
				}
			}
			ev = append(ev, s.settle(pol, now)...)
		}
	}
	if s.Incident == nil || s.Incident.ID != incidentID {
		return ev
	}
	// idx is -1 for a rung a reload removed (the ladder may be empty now).
	if r := rungAt(pol, idx); acted && r.Verify && r.Settle > 0 {
		// Its effect may take a while to show (a VM restarting): the
		// ladder waits, re-probing, before it moves on.
		every := min(max(r.Settle/6, time.Second), 10*time.Second)
		inc.Settle = &Settle{Rung: rung, Until: now.Add(r.Settle), Every: every, Next: now.Add(every)}
		ev = append(ev, Event{Type: "settle_start", Rung: rung, Incident: inc.ID,
			Reason: fmt.Sprintf("re-probing until the probes pass or %s have passed", r.Settle), At: now})
	}
	if inc.Position >= len(pol.Ladder) && !inc.Exhausted {
		inc.Exhausted = true
		ev = append(ev, s.setPhase(pol, now)...)
	}
	return ev
}

// SettleCheck ends the settle window: green when every probe of the
// incident passed a run taken since the rung ended (the incident resolves
// at once, like a green verification), or over when the window has passed.
func SettleCheck(s *State, pol *Policy, now time.Time) []Event {
	inc := s.Incident
	if inc == nil || inc.Settle == nil {
		return nil
	}
	green := len(inc.Probes) > 0
	for _, name := range inc.Probes {
		ps := s.Probes[name]
		green = green && ps != nil && ps.Last != nil && ps.Last.Passed && Fresh(*ps.Last, time.Time{}, inc.RungEnded)
	}
	if green {
		var ev []Event
		for _, name := range inc.Probes {
			if ps := s.Probes[name]; ps.Down {
				ps.Down = false
				ev = append(ev, Event{Type: "probe_up", Probe: name, At: now})
			}
		}
		return append(ev, s.settle(pol, now)...)
	}
	if !now.Before(inc.Settle.Until) {
		st := inc.Settle
		inc.Settle = nil
		return []Event{{Type: "settle_end", Rung: st.Rung, Incident: inc.ID,
			Reason: fmt.Sprintf("the probes still fail after %s's settle window", st.Rung), At: now}}
	}
	return nil
}

// Interrupted closes a rung that was running when the daemon stopped: it
// counts as an attempt that failed, so a restart neither repeats a heal
// inside its cooldown nor re-sends a page at once. A page counts as
// delivered on the channels whose acceptance was recorded; the channels
// that had not answered stay pending.
func Interrupted(s *State, pol *Policy, now time.Time) []Event {
	return interruptedBy(s, pol, now, "interrupted by a restart")
}

func interruptedBy(s *State, pol *Policy, now time.Time, why string) []Event {
	inc := s.Incident
	if inc == nil {
		return nil
	}
	var ev []Event
	for _, name := range append([]string{inc.Running}, inc.Paging...) {
		if name == "" {
			continue
		}
		rs := inc.Rungs[name]
		pages := contains(inc.Paging, name) && (rs == nil || !rs.ActsAlone)
		o := RungOutcome{Output: why, Pages: pages, Interrupted: true}
		if rs != nil && pages {
			o.Paged = append([]string(nil), rs.Accepted...)
		}
		ev = append(ev, FinishRung(s, pol, inc.ID, name, o, now)...)
		if s.Incident != inc {
			break
		}
	}
	return ev
}

// rungAt is rung idx of pol's ladder, or nil when there is none.
func rungAt(pol *Policy, idx int) *Rung {
	if idx < 0 || idx >= len(pol.Ladder) {
		return nil
	}
	return pol.Ladder[idx]
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

func without(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
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

// renames finds the rungs a reload renamed, old name to new: a rung only
// the new ladder has that pages through the channels of a rung only the old
// ladder has (the most of them, when several would do; a tie is no rename),
// or does exactly what it did. Its history (attempts, cooldown, the page
// that went out) carries over, so a rename neither skips nor repeats a
// rung, nor pages again.
func renames(old, new []*Rung) map[string]string {
	inOld, inNew := map[string]bool{}, map[string]bool{}
	for _, r := range old {
		inOld[r.Name] = true
	}
	for _, r := range new {
		inNew[r.Name] = true
	}
	type pair struct {
		o, n  *Rung
		score float64
	}
	var pairs []pair
	for _, o := range old {
		if inNew[o.Name] {
			continue
		}
		for _, n := range new {
			if inOld[n.Name] {
				continue
			}
			if sc := likeness(o, n); sc > 0 {
				pairs = append(pairs, pair{o, n, sc})
			}
		}
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].score > pairs[j].score })
	out := map[string]string{}
	taken := map[string]bool{}
	for i, p := range pairs {
		if out[p.o.Name] != "" || taken[p.n.Name] {
			continue
		}
		tie := false
		for j, q := range pairs {
			if j != i && q.score == p.score && (q.o == p.o || q.n == p.n) && out[q.o.Name] == "" && !taken[q.n.Name] {
				tie = true
			}
		}
		if tie {
			continue
		}
		out[p.o.Name] = p.n.Name
		taken[p.n.Name] = true
	}
	return out
}

// likeness is how much b looks like a's successor, 0 for not at all: for
// rungs that page, the share of their channels in common; for the others,
// 1 when they run the same actions.
func likeness(a, b *Rung) float64 {
	if a.Pages() != b.Pages() {
		return 0
	}
	if a.Pages() {
		ac, bc := a.Channels(), b.Channels()
		common := 0
		for _, ch := range ac {
			if contains(bc, ch) {
				common++
			}
		}
		return float64(common) / float64(len(union(ac, bc)))
	}
	if len(a.Do) != len(b.Do) {
		return 0
	}
	for i := range a.Do {
		if a.Do[i].Describe() != b.Do[i].Describe() {
			return 0
		}
	}
	return 1
}

// rename moves the history of renamed rungs to their new names.
func (s *State) rename(m map[string]string, now time.Time) []Event {
	var olds []string
	for o := range m {
		olds = append(olds, o)
	}
	sortStrings(olds)
	var ev []Event
	for _, o := range olds {
		n := m[o]
		move := func(mp map[string]time.Time) {
			if t, ok := mp[o]; ok {
				if _, has := mp[n]; !has {
					mp[n] = t
				}
				delete(mp, o)
			}
		}
		move(s.LastRun)
		if s.LastSent != nil {
			move(s.LastSent)
		}
		e := Event{Type: "rung_renamed", Rung: n, Reason: o + " is now " + n, At: now}
		if inc := s.Incident; inc != nil {
			e.Incident = inc.ID
			if rs, ok := inc.Rungs[o]; ok {
				if _, has := inc.Rungs[n]; !has {
					inc.Rungs[n] = rs
				}
				delete(inc.Rungs, o)
			}
			if inc.Running == o {
				inc.Running = n
			}
			for i, p := range inc.Paging {
				if p == o {
					inc.Paging[i] = n
				}
			}
			if inc.Settle != nil && inc.Settle.Rung == o {
				inc.Settle.Rung = n
			}
		}
		ev = append(ev, e)
	}
	return ev
}

// Relocate keeps the first walk's place when a reload changes the ladder:
// the position follows the rung's name (or its new name, renamed), so no
// rung is skipped or repeated because others were added, removed or
// reordered before it.
func (inc *Incident) Relocate(old, new []*Rung, renamed map[string]string) {
	if inc == nil || inc.Exhausted || inc.Position >= len(old) {
		return
	}
	name := func(r *Rung) string {
		if n := renamed[r.Name]; n != "" {
			return n
		}
		return r.Name
	}
	next := name(old[inc.Position])
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
		passed[name(r)] = true
	}
	inc.Position = 0
	for i, r := range new {
		if passed[r.Name] {
			inc.Position = i + 1
		}
	}
}

// sortStrings sorts s in place and returns it.
func sortStrings(s []string) []string { sort.Strings(s); return s }
