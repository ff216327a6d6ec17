package engine

import (
	"fmt"
	"strings"
	"time"
)

// ReplayDiff compares two policies replayed over the same journal,
// incident by incident.
type ReplayDiff struct {
	A ReplayResult `json:"a"`
	B ReplayResult `json:"b"`
	// Incidents pairs the incidents of A and B that overlap in time, in
	// time order; an incident only one policy opens has the other side nil.
	Incidents []IncidentPair `json:"incidents"`
	// Same says both take the same decisions at the same times.
	Same bool `json:"same"`
	// Comparison is one line: "B pages 7 fewer times but reaches sos 4
	// minutes later; …".
	Comparison string `json:"comparison"`
}

// IncidentPair is one incident as A and B saw it.
type IncidentPair struct {
	A *ReplayIncident `json:"a"`
	B *ReplayIncident `json:"b"`
}

// CompareReplays pairs the incidents of a and b (the first of b that
// overlaps each of a, in time order) and sums the difference up in a line.
func CompareReplays(a, b ReplayResult) ReplayDiff {
	d := ReplayDiff{A: a, B: b, Incidents: []IncidentPair{}}
	end := func(r ReplayResult, inc ReplayIncident) time.Time {
		if inc.Resolved != nil {
			return *inc.Resolved
		}
		return r.To
	}
	used := make([]bool, len(b.Incidents))
	j := 0
	for i := range a.Incidents {
		x := &a.Incidents[i]
		match := -1
		for k := range b.Incidents {
			y := b.Incidents[k]
			if !used[k] && !y.Opened.After(end(a, *x)) && !x.Opened.After(end(b, y)) {
				match = k
				break
			}
		}
		// Incidents only B has, before this one, come first.
		for ; j < len(b.Incidents) && (match < 0 || j < match) && b.Incidents[j].Opened.Before(x.Opened); j++ {
			if !used[j] {
				used[j] = true
				d.Incidents = append(d.Incidents, IncidentPair{B: &b.Incidents[j]})
			}
		}
		p := IncidentPair{A: x}
		if match >= 0 {
			used[match] = true
			p.B = &b.Incidents[match]
		}
		d.Incidents = append(d.Incidents, p)
	}
	for k := range b.Incidents {
		if !used[k] {
			d.Incidents = append(d.Incidents, IncidentPair{B: &b.Incidents[k]})
		}
	}
	d.Same = sameDecisions(a.Timeline, b.Timeline)
	d.Comparison = comparison(a.Summary, b.Summary, d.Same)
	return d
}

// sameDecisions compares two timelines, journal and mode notes and
// incident ids (which embed the opening time) aside.
func sameDecisions(a, b []ReplayStep) bool {
	da, db := decisions(a), decisions(b)
	if len(da) != len(db) {
		return false
	}
	for i := range da {
		if !da[i].At.Equal(db[i].At) || stepKey(da[i]) != stepKey(db[i]) {
			return false
		}
	}
	return true
}

func decisions(tl []ReplayStep) []ReplayStep {
	var out []ReplayStep
	for _, st := range tl {
		if st.Kind != "journal" && st.Kind != "mode" {
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
			sos, sign = "reaches sos "+HumanDuration(dt)+" later", 1
		case dt < 0:
			sos, sign = "reaches sos "+HumanDuration(-dt)+" earlier", -1
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
			extra = append(extra, "first page "+HumanDuration(dt)+" later")
		case dt < 0:
			extra = append(extra, "first page "+HumanDuration(-dt)+" earlier")
		}
	}
	if a.Incidents != b.Incidents {
		extra = append(extra, fmt.Sprintf("incidents %d → %d", a.Incidents, b.Incidents))
	}
	if da, db := a.MedianDetectSecs, b.MedianDetectSecs; da != nil && db != nil && *da != *db {
		extra = append(extra, fmt.Sprintf("median time to detect %s → %s", HumanSeconds(*da), HumanSeconds(*db)))
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

// HumanDuration says d the way a person reads it: "45 s", "1.5 s", "12 min",
// "12 min 30 s", "2 h", "2 h 5 min", "3 d 4 h".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		return "-" + HumanDuration(-d)
	}
	switch {
	case d == 0:
		return "0 s"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d/time.Millisecond)
	case d < time.Minute:
		if d%time.Second == 0 {
			return fmt.Sprintf("%d s", d/time.Second)
		}
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		m, s := d/time.Minute, (d%time.Minute)/time.Second
		if s == 0 {
			return fmt.Sprintf("%d min", m)
		}
		return fmt.Sprintf("%d min %d s", m, s)
	case d < 24*time.Hour:
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	days, h := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	if h == 0 {
		return fmt.Sprintf("%d d", days)
	}
	return fmt.Sprintf("%d d %d h", days, h)
}

// HumanSeconds is HumanDuration of a number of seconds.
func HumanSeconds(s float64) string {
	return HumanDuration(time.Duration(s * float64(time.Second)).Round(time.Millisecond))
}
