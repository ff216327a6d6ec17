package engine

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/talon-dev/talon/internal/text"
)

// IncidentView is the read-only picture of an incident handed to `when=`
// predicates, action functions and page texts.
type IncidentView struct {
	ID      string
	Started time.Time
	Now     time.Time
	State   string
	Failing []Result
	Passing []Result
	Rungs   map[string]RungRecord
	// Critical reports whether a critical probe is among the failing ones.
	Critical bool
	// Since is when the incident's failures were first seen and Quiet when
	// the last rung that ran something ended: a result taken before them is
	// stale (see Fresh and IsFresh).
	Since, Quiet time.Time
	// Flapping names the probes that flap; Paused describes the pauses in
	// force; Acked says the incident is acknowledged, and why.
	Flapping []string
	Paused   []string
	Acked    string
	reads    *viewReads
}

// viewReads records which probes a predicate read, so that the ladder can
// wait for fresh results of exactly those.
type viewReads struct {
	names map[string]bool
	all   bool
}

// Read notes that a predicate read probe name's result.
func (v *IncidentView) Read(name string) {
	if v.reads == nil {
		v.reads = &viewReads{}
	}
	if v.reads.names == nil {
		v.reads.names = map[string]bool{}
	}
	v.reads.names[name] = true
}

// ReadAll notes that a predicate read every probe's result (a list of them).
func (v *IncidentView) ReadAll() {
	if v.reads == nil {
		v.reads = &viewReads{}
	}
	v.reads.all = true
}

// Reads reports what was read since the last ResetReads.
func (v *IncidentView) Reads() (names map[string]bool, all bool) {
	if v.reads == nil {
		return nil, false
	}
	return v.reads.names, v.reads.all
}

// ResetReads forgets what was read.
func (v *IncidentView) ResetReads() {
	if v.reads != nil {
		*v.reads = viewReads{}
	}
}

// IsFresh reports whether r counts as evidence for this incident (Fresh).
func (v *IncidentView) IsFresh(r Result) bool { return Fresh(r, v.Since, v.Quiet) }

// RungRecord is what happened to one rung during the incident.
type RungRecord struct {
	Attempts   int       `json:"attempts"`
	LastRun    time.Time `json:"last_run"`
	LastOK     bool      `json:"last_ok"`
	LastOutput string    `json:"last_output"`
}

// Age is how long the incident has been open.
func (v *IncidentView) Age() time.Duration { return v.Now.Sub(v.Started) }

// FailingNames lists, sorted, the probes failing since the incident's
// failures began (see fresh).
func (v *IncidentView) FailingNames() []string {
	var names []string
	for _, r := range v.Failing {
		if v.current(r) {
			names = append(names, r.Name)
		}
	}
	sort.Strings(names)
	return names
}

// current reports whether r was taken since the incident's failures began:
// only those describe this incident in a page (a probe that failed an hour
// earlier and has not run since may be fine by now).
func (v *IncidentView) current(r Result) bool { return Fresh(r, v.Since, time.Time{}) }

// Summary is a short text for prompts and pages, built only from results
// taken since the incident's failures began.
func (v *IncidentView) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "incident %s open for %s, state %s; failing: %s",
		v.ID, v.Age().Round(time.Second), v.State, strings.Join(v.FailingNames(), ", "))
	var stale []string
	for _, r := range v.Failing {
		if !v.current(r) {
			stale = append(stale, r.Name)
			continue
		}
		out := text.Cap(r.Output, 300)
		fmt.Fprintf(&b, "\n- %s: %s", r.Name, strings.ReplaceAll(out, "\n", " "))
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		fmt.Fprintf(&b, "\nno result since the incident began: %s", strings.Join(stale, ", "))
	}
	if len(v.Flapping) > 0 {
		fmt.Fprintf(&b, "\nflapping (down and up repeatedly): %s", strings.Join(v.Flapping, ", "))
	}
	if len(v.Paused) > 0 {
		fmt.Fprintf(&b, "\npaused: %s", strings.Join(v.Paused, "; "))
	}
	if v.Acked != "" {
		fmt.Fprintf(&b, "\n%s", v.Acked)
	}
	return b.String()
}
