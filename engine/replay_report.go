package engine

import (
	"fmt"
	"github.com/talon-dev/talon/internal/text"
	"sort"
	"time"
)

// reporter turns what the core decides during a replay into the timeline,
// the incident reports and the summary. `talon test` reads the same report.
type reporter struct {
	core         *Core
	since, until time.Time
	// failSince is when each failing probe's current run of failures began.
	failSince map[string]time.Time
	open      int    // index of the open incident's report, -1 for none
	basis     string // where the next rung end comes from
	runAt     time.Time
	timeline  []ReplayStep
	incidents []ReplayIncident
}

func (p *reporter) step(st ReplayStep) { p.timeline = append(p.timeline, st) }

// track keeps, per probe, the start of its current run of failures.
func (p *reporter) track(results []Result) {
	for _, r := range results {
		if r.Passed {
			delete(p.failSince, r.Name)
		} else if _, ok := p.failSince[r.Name]; !ok {
			p.failSince[r.Name] = r.At
		}
	}
}

// fact reports one fact and what the core decided on it.
func (p *reporter) fact(f Fact, st Step) {
	if f.Kind == FactRungEnd {
		end := f.End
		p.track(end.Verify)
		secs := f.At.Sub(p.runAt).Seconds()
		ok := end.OK
		basis := p.basis
		if basis == "" {
			basis = "recorded"
		}
		p.basis = ""
		rs := ReplayStep{At: f.At, Kind: "rung_end", Incident: end.Incident, Rung: end.Rung, Secs: &secs, OK: &ok, Basis: basis, Reason: text.FirstLines(end.Output, 1)}
		for _, v := range end.Verify {
			rs.Verify = append(rs.Verify, ReplayVerdict{Probe: v.Name, Passed: v.Passed})
		}
		if end.Cut {
			rs.Reason = "cut short by a shutdown"
		}
		p.step(rs)
	}
	p.events(st)
	for _, n := range st.Notify {
		switch {
		case n.Kind == "resolved" && n.Attempt <= 1:
			p.step(ReplayStep{At: f.At, Kind: "resolved", Incident: n.Incident, Channels: n.Channels})
		case n.Kind == "resolved":
			p.step(ReplayStep{At: f.At, Kind: "resent", Incident: n.Incident, Channels: n.Channels,
				Reason: fmt.Sprintf("\"resolved\", attempt %d", n.Attempt)})
		default:
			p.step(ReplayStep{At: f.At, Kind: "resent", Incident: n.Incident, Rung: n.Rung, Channels: n.Channels,
				Reason: "the page, to the channels that had not answered before a restart"})
		}
	}
}

// events turns the core's events into timeline steps and keeps the
// incident reports.
func (p *reporter) events(st Step) {
	s := p.core.State()
	for _, e := range st.Events {
		switch e.Type {
		case "transition":
			step := ReplayStep{At: e.At, Kind: "transition", From: e.From, To: e.To, Incident: e.Incident}
			if inc := s.Incident; inc != nil && inc.ID == e.Incident {
				step.Probes = append([]string(nil), inc.Probes...)
			}
			p.step(step)
			if inc := p.report(e.Incident); inc != nil && rank(e.To) > rank(inc.Peak) {
				inc.Peak = e.To
			}
		case "probe_down", "probe_up":
			p.step(ReplayStep{At: e.At, Kind: e.Type, Probe: e.Probe, Reason: e.Reason})
		case "incident_open":
			step := ReplayStep{At: e.At, Kind: "incident_open", Incident: e.Incident}
			first := e.At
			if inc := s.Incident; inc != nil && inc.ID == e.Incident {
				step.Probes = append([]string(nil), inc.Probes...)
				for _, name := range inc.Probes {
					if t, ok := p.failSince[name]; ok && t.Before(first) {
						first = t
					}
				}
			}
			p.step(step)
			p.incidents = append(p.incidents, ReplayIncident{ID: e.Incident, Probes: step.Probes,
				Opened: e.At, DetectSecs: e.At.Sub(first).Seconds(), Peak: Failed, Runs: []ReplayRun{}})
			p.open = len(p.incidents) - 1
		case "incident_resolved":
			p.step(ReplayStep{At: e.At, Kind: "incident_resolved", Incident: e.Incident, Reason: e.Reason})
			if inc := p.report(e.Incident); inc != nil {
				t := e.At
				inc.Resolved = &t
				p.open = -1
			}
		case "rung_skip":
			p.step(ReplayStep{At: e.At, Kind: "rung_skip", Incident: e.Incident, Rung: e.Rung, Reason: e.Reason})
		case "rung_start":
			step := ReplayStep{At: e.At, Kind: "rung", Incident: e.Incident, Rung: e.Rung}
			for _, run := range st.Runs {
				if run.Rung.Name == e.Rung {
					for _, a := range run.Rung.Do {
						step.Actions = append(step.Actions, a.Describe())
					}
				}
			}
			p.step(step)
			p.runAt = e.At
			if inc := p.report(e.Incident); inc != nil {
				inc.Runs = append(inc.Runs, ReplayRun{Rung: e.Rung, At: e.At})
			}
		case "rung_done":
			if len(e.Channels) == 0 {
				continue
			}
			p.step(ReplayStep{At: e.At, Kind: "page", Incident: e.Incident, Rung: e.Rung, Channels: e.Channels})
			if inc := p.report(e.Incident); inc != nil {
				inc.Pages++
				if inc.FirstPageSecs == nil {
					secs := e.At.Sub(inc.Opened).Seconds()
					inc.FirstPageSecs = &secs
				}
				for i := len(inc.Runs) - 1; i >= 0; i-- {
					if inc.Runs[i].Rung == e.Rung {
						inc.Runs[i].Paged = e.Channels
						break
					}
				}
			}
		case "page_failed":
			p.step(ReplayStep{At: e.At, Kind: "page_failed", Incident: e.Incident, Rung: e.Rung, Reason: e.Reason})
		case "pause", "resume", "pause_expired", "ack", "ack_cleared", "settle_start", "settle_end",
			"flap_start", "flap_stop", "unreachable", "rung_renamed", "ladder_empty":
			p.step(ReplayStep{At: e.At, Kind: e.Type, Incident: e.Incident, Probe: e.Probe, Rung: e.Rung, Channels: e.Channels, Reason: e.Reason})
		}
	}
	if inc := s.Incident; inc != nil {
		if r := p.report(inc.ID); r != nil {
			r.Probes = union(r.Probes, inc.Probes)
			sort.Strings(r.Probes)
		}
	}
}

// report is the report of the open incident when its id is id, else nil.
func (p *reporter) report(id string) *ReplayIncident {
	if p.open < 0 || p.incidents[p.open].ID != id {
		return nil
	}
	return &p.incidents[p.open]
}

// finish puts the report of the window [Since, Until] into out.
func (p *reporter) finish(out *ReplayResult, final Phase, pol *Policy) {
	since, until := p.since, p.until
	in := func(t time.Time) bool {
		return (since.IsZero() || !t.Before(since)) && (until.IsZero() || !t.After(until))
	}
	out.Timeline = []ReplayStep{}
	for _, st := range p.timeline {
		if in(st.At) {
			out.Timeline = append(out.Timeline, st)
		}
	}
	out.Incidents = []ReplayIncident{}
	for _, inc := range p.incidents {
		if (until.IsZero() || !inc.Opened.After(until)) && (since.IsZero() || inc.Resolved == nil || !inc.Resolved.Before(since)) {
			out.Incidents = append(out.Incidents, inc)
		}
	}
	sum := &out.Summary
	sum.FinalPhase = final
	sum.Incidents = len(out.Incidents)
	runs := map[string]int{}
	var names []string
	for _, r := range pol.Ladder {
		names = append(names, r.Name)
	}
	for _, st := range out.Timeline {
		switch st.Kind {
		case "rung":
			if runs[st.Rung] == 0 && !contains(names, st.Rung) {
				names = append(names, st.Rung)
			}
			runs[st.Rung]++
		case "page":
			sum.Pages++
			if sum.FirstPage == nil {
				t := st.At
				sum.FirstPage = &t
			}
		case "resolved":
			sum.Resolved++
		case "transition":
			if st.To == SOS && sum.FirstSOS == nil {
				t := st.At
				sum.FirstSOS = &t
			}
		}
	}
	sum.RungRuns = []ReplayRungCount{}
	for _, n := range names {
		sum.RungRuns = append(sum.RungRuns, ReplayRungCount{Rung: n, Runs: runs[n]})
	}
	var detect []float64
	for _, inc := range out.Incidents {
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

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
