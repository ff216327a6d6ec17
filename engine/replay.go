package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/talon-dev/talon/internal/text"
)

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// WhenBudget bounds one evaluation of a `when=` predicate (default 2s).
	WhenBudget time.Duration
}

// ReplayResult is what a policy would have decided over a recorded journal.
// It holds no map, so its JSON form is deterministic.
type ReplayResult struct {
	Policy    string           `json:"policy"` // hash of the replayed policy
	From      time.Time        `json:"from"`   // time of the first record
	To        time.Time        `json:"to"`     // time of the last record
	Records   int              `json:"records"`
	Cycles    int              `json:"cycles"`
	Timeline  []ReplayStep     `json:"timeline"`
	Incidents []ReplayIncident `json:"incidents"`
	Summary   ReplaySummary    `json:"summary"`
	Warnings  []string         `json:"warnings"`
}

// ReplayStep is one line of the replay's timeline.
//
// Kind is one of: transition (From → To), probe_down, probe_up,
// incident_open (Probes), incident_resolved, rung_skip (Rung, Reason),
// rung (a rung that would run: Rung, Actions, Verify), page (a page that
// would be sent: Rung, Channels), resolved (the "resolved" message to the
// channels paged during the incident), page_failed, and journal (a start,
// stop or reload record of the journal, noted for orientation: Reason).
type ReplayStep struct {
	At       time.Time       `json:"at"`
	Kind     string          `json:"kind"`
	From     Phase           `json:"from,omitempty"`
	To       Phase           `json:"to,omitempty"`
	Incident string          `json:"incident,omitempty"`
	Probe    string          `json:"probe,omitempty"`
	Probes   []string        `json:"probes,omitempty"`
	Rung     string          `json:"rung,omitempty"`
	Actions  []string        `json:"actions,omitempty"`
	Channels []string        `json:"channels,omitempty"`
	Verify   []ReplayVerdict `json:"verify,omitempty"`
	Reason   string          `json:"reason,omitempty"`
}

// ReplayVerdict is one result of a rung's verification re-probe.
type ReplayVerdict struct {
	Probe  string `json:"probe"`
	Passed bool   `json:"passed"`
}

// ReplayIncident is one incident of the replay.
type ReplayIncident struct {
	ID       string     `json:"id"`
	Probes   []string   `json:"probes"` // every probe that escalated during it, sorted
	Opened   time.Time  `json:"opened"`
	Resolved *time.Time `json:"resolved"` // nil: still open at the end of the journal
	// DetectSecs is the time from the first failing result of its probes
	// (of the run of failures that opened it) to the incident's opening.
	DetectSecs float64 `json:"time_to_detect_secs"`
	// FirstPageSecs is the time from the opening to the first page; nil
	// when it paged no one.
	FirstPageSecs *float64 `json:"time_to_first_page_secs"`
	Peak          Phase    `json:"peak"` // the furthest phase it reached
	Rungs         int      `json:"rungs"`
	Pages         int      `json:"pages"`
}

// ReplaySummary counts the decisions of a replay.
type ReplaySummary struct {
	Incidents int `json:"incidents"`
	// Pages counts the pages rungs would send (one per rung run, whatever
	// the number of channels); Resolved the "resolved" messages.
	Pages    int               `json:"pages"`
	Resolved int               `json:"resolved_messages"`
	RungRuns []ReplayRungCount `json:"rung_runs"` // every rung of the ladder, in ladder order
	// MedianDetectSecs is the median time to detect; nil without incidents.
	MedianDetectSecs *float64   `json:"median_time_to_detect_secs"`
	FirstPage        *time.Time `json:"first_page"`
	FirstSOS         *time.Time `json:"first_sos"` // first transition to sos
	FinalPhase       Phase      `json:"final_phase"`
}

// ReplayRungCount is how many times a rung would have run.
type ReplayRungCount struct {
	Rung string `json:"rung"`
	Runs int    `json:"runs"`
}

// Replay feeds the probe results of a recorded journal through pol and
// returns what pol would have decided. It is pure and deterministic: no
// I/O, no clock but the records' times, no action run, no page sent.
//
// The records are taken in time order (stably). Every "cycle" record is
// one observation at its time: its results for probes of pol are observed
// (others are ignored), then the ladder decides, `when=` predicates
// evaluated as the daemon does. A rung that would run is taken to finish at
// once: its actions count as done (OK), its pages as delivered on every
// channel of the rung, and, when the rung verifies, the verification is the
// next recorded result of each failing probe within the rung's timeout. A
// result used as a verification is not observed a second time in its own
// cycle. "start", "stop" and "reload" records are noted in the timeline;
// the other records (the recorded decisions) are not read.
func Replay(pol *Policy, records []Record, opts ReplayOptions) ReplayResult {
	if opts.WhenBudget <= 0 {
		opts.WhenBudget = 2 * time.Second
	}
	recs := append([]Record(nil), records...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	rp := &replayer{pol: pol, recs: recs, opts: opts, used: map[[2]int]bool{},
		failSince: map[string]time.Time{}, runs: map[string]int{}, open: -1}
	rp.out = ReplayResult{Policy: pol.Hash, Records: len(recs), Timeline: []ReplayStep{},
		Incidents: []ReplayIncident{}, Warnings: []string{}}
	if len(recs) == 0 {
		rp.out.Warnings = append(rp.out.Warnings, "the journal has no records")
		rp.summarize(Healthy)
		return rp.out
	}
	rp.out.From, rp.out.To = recs[0].Time, recs[len(recs)-1].Time
	rp.s = NewState(recs[0].Time)
	rp.s.Reconcile(pol)
	seen := map[string]bool{}
	var foreign []string
	for i, rec := range recs {
		switch rec.Type {
		case "cycle":
			rp.out.Cycles++
			var known []Result
			for k, r := range rec.Results {
				if pol.Probe(r.Name) == nil {
					if !seen[r.Name] {
						foreign = append(foreign, r.Name)
					}
				} else if !rp.used[[2]int{i, k}] {
					known = append(known, r)
				}
				seen[r.Name] = true
			}
			rp.observe(known, rec.Time)
			rp.escalate(i, rec.Time)
		case "start", "stop", "reload":
			rp.step(ReplayStep{At: rec.Time, Kind: "journal", Reason: journalNote(rec)})
		}
	}
	if rp.out.Cycles == 0 {
		rp.out.Warnings = append(rp.out.Warnings, "the journal has no cycle records: nothing to replay")
	}
	var missing []string
	for _, p := range pol.Probes {
		if !seen[p.Name] {
			missing = append(missing, p.Name)
		}
	}
	if len(missing) > 0 {
		rp.out.Warnings = append(rp.out.Warnings, fmt.Sprintf("probes of the policy with no result in the journal (never observed): %s", strings.Join(missing, ", ")))
	}
	if len(foreign) > 0 {
		sort.Strings(foreign)
		rp.out.Warnings = append(rp.out.Warnings, fmt.Sprintf("results of probes the policy does not have (ignored): %s", strings.Join(foreign, ", ")))
	}
	rp.summarize(rp.s.Phase)
	return rp.out
}

type replayer struct {
	pol  *Policy
	recs []Record
	opts ReplayOptions
	s    *State
	out  ReplayResult
	// used marks results (record index, result index) already observed as
	// a rung's verification.
	used map[[2]int]bool
	// failSince is when each failing probe's current run of failures began.
	failSince map[string]time.Time
	runs      map[string]int
	open      int         // index of the open incident's report, -1 for none
	pending   *ReplayStep // the rung step, written at its rung_start
}

func (rp *replayer) step(st ReplayStep) { rp.out.Timeline = append(rp.out.Timeline, st) }

// observe feeds results at now and records what changed.
func (rp *replayer) observe(results []Result, now time.Time) {
	rp.track(results, now)
	rp.events(Observe(rp.s, rp.pol, results, now))
}

// track keeps, per probe, the start of its current run of failures.
func (rp *replayer) track(results []Result, now time.Time) {
	for _, r := range results {
		if r.Passed {
			delete(rp.failSince, r.Name)
		} else if _, ok := rp.failSince[r.Name]; !ok {
			rp.failSince[r.Name] = now
		}
	}
}

// escalate lets the ladder act after the cycle of record i, as the daemon
// does after every observation.
func (rp *replayer) escalate(i int, now time.Time) {
	s, pol := rp.s, rp.pol
	if s.Incident == nil {
		return
	}
	view := s.View(pol, now)
	dec := Decide(s, pol, now, func(r *Rung) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), rp.opts.WhenBudget)
		defer cancel()
		return r.When(ctx, view)
	})
	rp.events(dec.Events)
	if dec.Run < 0 {
		return
	}
	r := pol.Ladder[dec.Run]
	incID := s.Incident.ID
	out := RungOutcome{OK: true, Output: "replay: not run"}
	var actions []string
	hasActions := false
	for _, a := range r.Do {
		actions = append(actions, a.Describe())
		if p, ok := a.(Pager); ok {
			out.Pages = true
			out.Paged = append(out.Paged, p.Channel())
		} else {
			hasActions = true
		}
	}
	// As in the daemon, only a rung that runs something verifies.
	if r.Verify && hasActions {
		out.Verify = rp.lookahead(i, now, r)
	}
	st := ReplayStep{At: now, Kind: "rung", Rung: r.Name, Incident: incID, Actions: actions}
	for _, v := range out.Verify {
		st.Verify = append(st.Verify, ReplayVerdict{Probe: v.Name, Passed: v.Passed})
	}
	rp.pending = &st
	rp.events(BeginRung(s, pol, dec.Run, now))
	rp.track(out.Verify, now)
	rp.events(FinishRung(s, pol, incID, r.Name, out, now))
}

// lookahead finds the verification of a rung run after record i: the next
// result of each failing probe recorded within the rung's timeout. The
// results it takes are marked so that their own cycle skips them.
func (rp *replayer) lookahead(i int, now time.Time, r *Rung) []Result {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultRungTimeout
	}
	var out []Result
	for _, p := range rp.pol.Probes {
		ps := rp.s.Probes[p.Name]
		if ps == nil || !(ps.Down || (ps.Last != nil && !ps.Last.Passed)) {
			continue
		}
	search:
		for j := i + 1; j < len(rp.recs); j++ {
			rec := rp.recs[j]
			if rec.Time.Sub(now) > timeout {
				break
			}
			if rec.Type != "cycle" {
				continue
			}
			for k, res := range rec.Results {
				if res.Name == p.Name && !rp.used[[2]int{j, k}] {
					rp.used[[2]int{j, k}] = true
					out = append(out, res)
					break search
				}
			}
		}
	}
	return out
}

// events turns state machine events into timeline steps and keeps the
// incident reports.
func (rp *replayer) events(ev []Event) {
	for _, e := range ev {
		switch e.Type {
		case "transition":
			st := ReplayStep{At: e.At, Kind: "transition", From: e.From, To: e.To, Incident: e.Incident}
			if inc := rp.s.Incident; inc != nil && inc.ID == e.Incident {
				st.Probes = append([]string(nil), inc.Probes...)
			}
			rp.step(st)
			if inc := rp.report(e.Incident); inc != nil && rank(e.To) > rank(inc.Peak) {
				inc.Peak = e.To
			}
			if e.To == SOS && rp.out.Summary.FirstSOS == nil {
				t := e.At
				rp.out.Summary.FirstSOS = &t
			}
		case "probe_down", "probe_up":
			rp.step(ReplayStep{At: e.At, Kind: e.Type, Probe: e.Probe, Reason: e.Reason})
		case "incident_open":
			st := ReplayStep{At: e.At, Kind: "incident_open", Incident: e.Incident}
			first := e.At
			if inc := rp.s.Incident; inc != nil && inc.ID == e.Incident {
				st.Probes = append([]string(nil), inc.Probes...)
				for _, name := range inc.Probes {
					if t, ok := rp.failSince[name]; ok && t.Before(first) {
						first = t
					}
				}
			}
			rp.step(st)
			rp.out.Incidents = append(rp.out.Incidents, ReplayIncident{ID: e.Incident, Probes: st.Probes,
				Opened: e.At, DetectSecs: e.At.Sub(first).Seconds(), Peak: Failed})
			rp.open = len(rp.out.Incidents) - 1
			rp.out.Summary.Incidents++
		case "incident_resolved":
			rp.step(ReplayStep{At: e.At, Kind: "incident_resolved", Incident: e.Incident, Reason: e.Reason})
			if len(e.Channels) > 0 {
				rp.step(ReplayStep{At: e.At, Kind: "resolved", Incident: e.Incident, Channels: e.Channels})
				rp.out.Summary.Resolved++
			}
			if inc := rp.report(e.Incident); inc != nil {
				t := e.At
				inc.Resolved = &t
				rp.open = -1
			}
		case "rung_skip":
			rp.step(ReplayStep{At: e.At, Kind: "rung_skip", Incident: e.Incident, Rung: e.Rung, Reason: e.Reason})
		case "rung_start":
			if st := rp.pending; st != nil && st.Rung == e.Rung {
				rp.step(*st)
				rp.pending = nil
			}
			rp.runs[e.Rung]++
			if inc := rp.report(e.Incident); inc != nil {
				inc.Rungs++
			}
		case "rung_done":
			if len(e.Channels) == 0 {
				continue
			}
			rp.step(ReplayStep{At: e.At, Kind: "page", Incident: e.Incident, Rung: e.Rung, Channels: e.Channels})
			rp.out.Summary.Pages++
			if rp.out.Summary.FirstPage == nil {
				t := e.At
				rp.out.Summary.FirstPage = &t
			}
			if inc := rp.report(e.Incident); inc != nil {
				inc.Pages++
				if inc.FirstPageSecs == nil {
					secs := e.At.Sub(inc.Opened).Seconds()
					inc.FirstPageSecs = &secs
				}
			}
		case "page_failed":
			rp.step(ReplayStep{At: e.At, Kind: "page_failed", Incident: e.Incident, Rung: e.Rung, Reason: e.Reason})
		}
	}
	if inc := rp.s.Incident; inc != nil {
		if r := rp.report(inc.ID); r != nil {
			r.Probes = union(r.Probes, inc.Probes)
			sort.Strings(r.Probes)
		}
	}
}

// report is the report of the open incident when its id is id, else nil.
func (rp *replayer) report(id string) *ReplayIncident {
	if rp.open < 0 || rp.out.Incidents[rp.open].ID != id {
		return nil
	}
	return &rp.out.Incidents[rp.open]
}

func (rp *replayer) summarize(final Phase) {
	sum := &rp.out.Summary
	sum.FinalPhase = final
	sum.RungRuns = []ReplayRungCount{}
	for _, r := range rp.pol.Ladder {
		sum.RungRuns = append(sum.RungRuns, ReplayRungCount{Rung: r.Name, Runs: rp.runs[r.Name]})
	}
	var detect []float64
	for _, inc := range rp.out.Incidents {
		detect = append(detect, inc.DetectSecs)
	}
	if n := len(detect); n > 0 {
		sort.Float64s(detect)
		m := detect[n/2]
		if n%2 == 0 {
			m = (detect[n/2-1] + detect[n/2]) / 2
		}
		sum.MedianDetectSecs = &m
	}
}

func journalNote(rec Record) string {
	switch rec.Type {
	case "start":
		if rec.Error != "" {
			return fmt.Sprintf("daemon started (phase %s; policy error: %s)", rec.Phase, text.FirstLines(rec.Error, 1))
		}
		return fmt.Sprintf("daemon started (phase %s)", rec.Phase)
	case "stop":
		return fmt.Sprintf("daemon stopped (phase %s)", rec.Phase)
	}
	if rec.Error != "" {
		return "policy reload failed: " + text.FirstLines(rec.Error, 1)
	}
	return fmt.Sprintf("policy reloaded (%s → %s)", hashPrefix(rec.OldHash), hashPrefix(rec.Policy))
}

func hashPrefix(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// ReplayDiff compares two policies replayed over the same journal.
type ReplayDiff struct {
	A ReplayResult `json:"a"`
	B ReplayResult `json:"b"`
	// Differences are the decisions only one of them takes, in time order;
	// at one instant, A's come before B's.
	Differences []ReplayDifference `json:"differences"`
	// Comparison is one line: "B pages 7 fewer times but reaches sos 4
	// minutes later; …".
	Comparison string `json:"comparison"`
}

// ReplayDifference is a step that only one side of a diff takes.
type ReplayDifference struct {
	Side string     `json:"side"` // "a" or "b"
	Step ReplayStep `json:"step"`
}

// CompareReplays lines up the timelines of a and b by time and lists the
// steps only one of them takes. Steps match when they are the same decision
// at the same time; incident ids (which embed the opening time) are not
// compared, and journal notes are left out.
func CompareReplays(a, b ReplayResult) ReplayDiff {
	d := ReplayDiff{A: a, B: b, Differences: []ReplayDifference{}}
	sa, sb := decisions(a.Timeline), decisions(b.Timeline)
	i, j := 0, 0
	for i < len(sa) || j < len(sb) {
		var at time.Time
		switch {
		case i == len(sa):
			at = sb[j].At
		case j == len(sb):
			at = sa[i].At
		case sb[j].At.Before(sa[i].At):
			at = sb[j].At
		default:
			at = sa[i].At
		}
		i0, j0 := i, j
		for i < len(sa) && sa[i].At.Equal(at) {
			i++
		}
		for j < len(sb) && sb[j].At.Equal(at) {
			j++
		}
		ga, gb := sa[i0:i], sb[j0:j]
		matched := make([]bool, len(gb))
		var onlyA []ReplayStep
		for _, x := range ga {
			found := false
			for k, y := range gb {
				if !matched[k] && stepKey(x) == stepKey(y) {
					matched[k], found = true, true
					break
				}
			}
			if !found {
				onlyA = append(onlyA, x)
			}
		}
		for _, x := range onlyA {
			d.Differences = append(d.Differences, ReplayDifference{Side: "a", Step: x})
		}
		for k, y := range gb {
			if !matched[k] {
				d.Differences = append(d.Differences, ReplayDifference{Side: "b", Step: y})
			}
		}
	}
	d.Comparison = comparison(a.Summary, b.Summary, len(d.Differences) == 0)
	return d
}

func decisions(tl []ReplayStep) []ReplayStep {
	var out []ReplayStep
	for _, st := range tl {
		if st.Kind != "journal" {
			out = append(out, st)
		}
	}
	return out
}

// stepKey is what makes two steps the same decision, time and incident id aside.
func stepKey(st ReplayStep) string {
	var verify []string
	for _, v := range st.Verify {
		verify = append(verify, fmt.Sprintf("%s=%t", v.Probe, v.Passed))
	}
	return strings.Join([]string{st.Kind, string(st.From), string(st.To), st.Probe, strings.Join(st.Probes, ","),
		st.Rung, strings.Join(st.Actions, "\x01"), strings.Join(st.Channels, ","), strings.Join(verify, ","), st.Reason}, "\x00")
}

// comparison is the one-line verdict of a diff, told from B's side.
func comparison(a, b ReplaySummary, same bool) string {
	if same {
		return fmt.Sprintf("A and B decide the same: %s, %s", times(b.Pages, "page"), times(totalRuns(b), "rung run"))
	}
	var pages string
	switch dp := b.Pages - a.Pages; {
	case dp < 0:
		pages = fmt.Sprintf("B pages %d fewer %s", -dp, plural(-dp, "time"))
	case dp > 0:
		pages = fmt.Sprintf("B pages %d more %s", dp, plural(dp, "time"))
	default:
		pages = fmt.Sprintf("B pages as often as A (%s)", times(b.Pages, "time"))
	}
	// The sos clause joins with "but" when it pulls the other way: fewer
	// pages but a later sos, or more pages but an earlier one.
	sos, sign := "", 0
	switch {
	case a.FirstSOS == nil && b.FirstSOS == nil:
	case b.FirstSOS == nil:
		sos, sign = "never reaches sos", 1
	case a.FirstSOS == nil:
		sos, sign = "reaches sos, which A never does", -1
	default:
		switch dt := b.FirstSOS.Sub(*a.FirstSOS); {
		case dt > 0:
			sos, sign = "reaches sos "+humanDuration(dt)+" later", 1
		case dt < 0:
			sos, sign = "reaches sos "+humanDuration(-dt)+" earlier", -1
		default:
			sos = "reaches sos at the same time"
		}
	}
	line := pages
	if sos != "" {
		pagesSign := 0
		switch {
		case b.Pages < a.Pages:
			pagesSign = -1
		case b.Pages > a.Pages:
			pagesSign = 1
		}
		if pagesSign != 0 && sign != 0 && pagesSign != sign {
			line += " but " + sos
		} else {
			line += " and " + sos
		}
	}
	var extra []string
	switch {
	case a.FirstPage == nil && b.FirstPage == nil:
	case b.FirstPage == nil:
		extra = append(extra, "B never pages")
	case a.FirstPage == nil:
		extra = append(extra, "A never pages")
	default:
		switch dt := b.FirstPage.Sub(*a.FirstPage); {
		case dt > 0:
			extra = append(extra, "first page "+humanDuration(dt)+" later")
		case dt < 0:
			extra = append(extra, "first page "+humanDuration(-dt)+" earlier")
		}
	}
	if a.Incidents != b.Incidents {
		extra = append(extra, fmt.Sprintf("incidents %d → %d", a.Incidents, b.Incidents))
	}
	if da, db := a.MedianDetectSecs, b.MedianDetectSecs; da != nil && db != nil && *da != *db {
		extra = append(extra, fmt.Sprintf("median time to detect %s → %s", secs(*da), secs(*db)))
	}
	var runs []string
	for _, name := range rungNames(a, b) {
		na, nb := runsOf(a, name), runsOf(b, name)
		if na != nb {
			runs = append(runs, fmt.Sprintf("%s %d → %d", name, na, nb))
		}
	}
	if len(runs) > 0 {
		extra = append(extra, "rung runs "+strings.Join(runs, ", "))
	}
	if len(extra) > 0 {
		line += "; " + strings.Join(extra, "; ")
	}
	return line
}

// rungNames lists the rungs of a's ladder, then those only b has.
func rungNames(a, b ReplaySummary) []string {
	var names []string
	seen := map[string]bool{}
	for _, s := range []ReplaySummary{a, b} {
		for _, rc := range s.RungRuns {
			if !seen[rc.Rung] {
				seen[rc.Rung] = true
				names = append(names, rc.Rung)
			}
		}
	}
	return names
}

func runsOf(s ReplaySummary, rung string) int {
	for _, rc := range s.RungRuns {
		if rc.Rung == rung {
			return rc.Runs
		}
	}
	return 0
}

func totalRuns(s ReplaySummary) int {
	n := 0
	for _, rc := range s.RungRuns {
		n += rc.Runs
	}
	return n
}

func times(n int, noun string) string { return fmt.Sprintf("%d %s", n, plural(n, noun)) }

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

// humanDuration says d in words when it is whole minutes or seconds
// ("4 minutes", "30 seconds"), else as Go writes it ("4m30s").
func humanDuration(d time.Duration) string {
	switch {
	case d%time.Minute == 0:
		return times(int(d/time.Minute), "minute")
	case d < time.Minute && d%time.Second == 0:
		return times(int(d/time.Second), "second")
	}
	return d.Round(time.Millisecond).String()
}
