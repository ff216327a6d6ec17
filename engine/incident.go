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
}

// RungRecord is what happened to one rung during the incident.
type RungRecord struct {
	Attempts   int       `json:"attempts"`
	LastRun    time.Time `json:"last_run"`
	LastOK     bool      `json:"last_ok"`
	LastOutput string    `json:"last_output"`
}

// Age is how long the incident has been open.
func (v *IncidentView) Age() time.Duration { return v.Now.Sub(v.Started) }

// FailingNames lists the failing probes, sorted.
func (v *IncidentView) FailingNames() []string {
	names := make([]string, len(v.Failing))
	for i, r := range v.Failing {
		names[i] = r.Name
	}
	sort.Strings(names)
	return names
}

// Summary is a short text for prompts and pages.
func (v *IncidentView) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "incident %s open for %s, state %s; failing: %s",
		v.ID, v.Age().Round(time.Second), v.State, strings.Join(v.FailingNames(), ", "))
	for _, r := range v.Failing {
		out := text.Cap(r.Output, 300)
		fmt.Fprintf(&b, "\n- %s: %s", r.Name, strings.ReplaceAll(out, "\n", " "))
	}
	return b.String()
}
