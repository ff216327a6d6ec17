package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/journal"
)

// replayOutput is `talon replay --json`: the replay and what it read.
type replayOutput struct {
	Journal   string `json:"journal"`
	PolicyDir string `json:"policy_dir"`
	engine.ReplayResult
}

// replayDiffOutput is `talon replay --diff --json`.
type replayDiffOutput struct {
	Journal    string `json:"journal"`
	PolicyDirA string `json:"policy_dir_a"`
	PolicyDirB string `json:"policy_dir_b"`
	engine.ReplayDiff
}

// replay feeds a recorded journal through the policy (and, with --diff,
// through a second one) and prints what it would have decided.
func (a *app) replay(args []string) error {
	var asJSON bool
	var other string
	rest, err := a.flags("replay", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
		fs.StringVar(&other, "diff", "", "a second policy directory to compare with")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fail(2, "replay takes one journal (journal.jsonl or the directory holding it), got %d arguments; see talon help replay", len(rest))
	}
	path, records, warnings, err := readJournal(rest[0])
	if err != nil {
		return err
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	polA, err := loadReplayPolicy(e)
	if err != nil {
		return err
	}
	ra := engine.Replay(polA, records, engine.ReplayOptions{})
	ra.Warnings = append(append([]string(nil), warnings...), ra.Warnings...)
	text := !a.wantJSON(asJSON)
	if other == "" {
		if !text {
			return a.json(replayOutput{Journal: path, PolicyDir: e.policyName(), ReplayResult: ra})
		}
		_, err := io.WriteString(a.stdout, replayText(path, e.policyName(), ra))
		return err
	}
	eb := *e
	eb.policyDir = config.ExpandHome(other, homeDir())
	if _, err := os.Stat(filepath.Join(eb.policyDir, "talon.star")); err != nil {
		return fail(1, "replay --diff: policy %s has no talon.star: %v", eb.policyDir, errors.Unwrap(err))
	}
	polB, err := loadReplayPolicy(&eb)
	if err != nil {
		return err
	}
	rb := engine.Replay(polB, records, engine.ReplayOptions{})
	rb.Warnings = append(append([]string(nil), warnings...), rb.Warnings...)
	d := engine.CompareReplays(ra, rb)
	if !text {
		return a.json(replayDiffOutput{Journal: path, PolicyDirA: e.policyName(), PolicyDirB: eb.policyName(), ReplayDiff: d})
	}
	_, err = io.WriteString(a.stdout, replayDiffText(path, e.policyName(), eb.policyName(), d))
	return err
}

func loadReplayPolicy(e *env) (*engine.Policy, error) {
	res := e.load()
	if res.Err() != nil {
		return nil, fail(1, "replay: policy %s: %s", e.policyName(), oneLine(res.ErrorText()))
	}
	return res.Policy, nil
}

// readJournal reads the journal at arg (a file, or a directory holding
// journal.jsonl) with its rotated generations, oldest first. A malformed
// line is an error naming file:line; a partial last line is a warning.
func readJournal(arg string) (string, []engine.Record, []string, error) {
	path := config.ExpandHome(arg, homeDir())
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "journal.jsonl")
	}
	var records []engine.Record
	ws, err := journal.Read(path, func(r engine.Record) error {
		records = append(records, r)
		return nil
	})
	if err != nil {
		return path, nil, nil, fail(1, "replay: %s", oneLine(err.Error()))
	}
	var warnings []string
	for _, w := range ws {
		warnings = append(warnings, w.String())
	}
	return path, records, warnings, nil
}

// replayText is the timeline a person reads: one line per decision, times
// in UTC, a date line whenever the day changes, then the incidents and a
// summary.
func replayText(path, policy string, r engine.ReplayResult) string {
	var b strings.Builder
	replayHeader(&b, path, r)
	fmt.Fprintf(&b, "policy %s (%s)\n", policy, shortHash(r.Policy))
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	b.WriteString("\n")
	day := ""
	for _, st := range r.Timeline {
		day = dayLine(&b, day, st.At)
		fmt.Fprintf(&b, "%s  %s\n", clock(st.At), stepText(st, r))
	}
	if len(r.Timeline) > 0 {
		b.WriteString("\n")
	}
	for _, inc := range r.Incidents {
		fmt.Fprintf(&b, "%s\n", incidentText(inc))
	}
	fmt.Fprintf(&b, "summary: %s\n", summaryText(r.Summary))
	return b.String()
}

// replayDiffText shows the decisions only one policy takes, both
// summaries and the one-line comparison.
func replayDiffText(path, policyA, policyB string, d engine.ReplayDiff) string {
	var b strings.Builder
	replayHeader(&b, path, d.A)
	fmt.Fprintf(&b, "A: policy %s (%s)\n", policyA, shortHash(d.A.Policy))
	fmt.Fprintf(&b, "B: policy %s (%s)\n", policyB, shortHash(d.B.Policy))
	for _, w := range d.A.Warnings {
		if contains(d.B.Warnings, w) {
			fmt.Fprintf(&b, "warning: %s\n", w)
		} else {
			fmt.Fprintf(&b, "warning: A: %s\n", w)
		}
	}
	for _, w := range d.B.Warnings {
		if !contains(d.A.Warnings, w) {
			fmt.Fprintf(&b, "warning: B: %s\n", w)
		}
	}
	b.WriteString("\n")
	if len(d.Differences) == 0 {
		b.WriteString("no differences: both policies take the same decisions at the same times\n")
	} else {
		fmt.Fprintf(&b, "%d decisions differ (A: only policy A takes it, B: only policy B):\n", len(d.Differences))
		day := ""
		for _, x := range d.Differences {
			r := d.A
			if x.Side == "b" {
				r = d.B
			}
			day = dayLine(&b, day, x.Step.At)
			fmt.Fprintf(&b, "%s  %s  %s\n", clock(x.Step.At), strings.ToUpper(x.Side), stepText(x.Step, r))
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "A: %s\n", summaryText(d.A.Summary))
	fmt.Fprintf(&b, "B: %s\n", summaryText(d.B.Summary))
	fmt.Fprintf(&b, "%s\n", d.Comparison)
	return b.String()
}

func replayHeader(b *strings.Builder, path string, r engine.ReplayResult) {
	fmt.Fprintf(b, "replay of %s: %s, %s", path, count(r.Records, "record"), count(r.Cycles, "cycle"))
	if r.Records > 0 {
		fmt.Fprintf(b, ", %s → %s UTC", r.From.UTC().Format("2006-01-02 15:04:05"), r.To.UTC().Format("2006-01-02 15:04:05"))
	}
	b.WriteString("\n")
}

// dayLine writes the date when t is on another day than the last line's.
func dayLine(b *strings.Builder, last string, t time.Time) string {
	if d := t.UTC().Format("2006-01-02"); d != last {
		fmt.Fprintf(b, "%s\n", d)
		return d
	}
	return last
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

// stepText is one timeline step in words; r is the replay it belongs to.
func stepText(st engine.ReplayStep, r engine.ReplayResult) string {
	switch st.Kind {
	case "transition":
		s := fmt.Sprintf("%s → %s", st.From, st.To)
		if st.Incident != "" {
			s += fmt.Sprintf("  (incident %s: %s)", st.Incident, strings.Join(st.Probes, ", "))
		}
		return s
	case "probe_down":
		s := "probe " + st.Probe + " down"
		if out := firstLine(st.Reason, 100); out != "" {
			s += ": " + out
		}
		return s
	case "probe_up":
		return "probe " + st.Probe + " up"
	case "incident_open":
		s := fmt.Sprintf("incident %s opened: %s", st.Incident, strings.Join(st.Probes, ", "))
		if inc := findIncident(r, st.Incident); inc != nil {
			s += fmt.Sprintf(" (detected %s after the first failure)", seconds(inc.DetectSecs))
		}
		return s
	case "incident_resolved":
		s := fmt.Sprintf("incident %s resolved: %s", st.Incident, st.Reason)
		if inc := findIncident(r, st.Incident); inc != nil {
			s += fmt.Sprintf(" (open %s)", st.At.Sub(inc.Opened))
		}
		return s
	case "rung_skip":
		return fmt.Sprintf("rung %s skipped: %s", st.Rung, st.Reason)
	case "rung":
		s := fmt.Sprintf("rung %s would run", st.Rung)
		if len(st.Actions) > 0 {
			s += ": " + strings.Join(st.Actions, "; ")
		}
		if len(st.Verify) > 0 {
			var v []string
			for _, x := range st.Verify {
				verdict := "failing"
				if x.Passed {
					verdict = "passing"
				}
				v = append(v, x.Probe+" "+verdict)
			}
			s += "; verify: " + strings.Join(v, ", ")
		}
		return s
	case "page":
		return fmt.Sprintf("page via %s (%s)", strings.Join(st.Channels, ", "), st.Rung)
	case "resolved":
		return fmt.Sprintf("\"resolved\" message via %s", strings.Join(st.Channels, ", "))
	case "page_failed":
		return fmt.Sprintf("page of rung %s not delivered: %s", st.Rung, st.Reason)
	case "journal":
		return "journal: " + st.Reason
	}
	return st.Kind
}

func findIncident(r engine.ReplayResult, id string) *engine.ReplayIncident {
	for i := range r.Incidents {
		if r.Incidents[i].ID == id {
			return &r.Incidents[i]
		}
	}
	return nil
}

func incidentText(inc engine.ReplayIncident) string {
	s := fmt.Sprintf("incident %s: %s; opened %s", inc.ID, strings.Join(inc.Probes, ", "), inc.Opened.UTC().Format("2006-01-02 15:04:05"))
	if inc.Resolved != nil {
		s += fmt.Sprintf(", resolved after %s", inc.Resolved.Sub(inc.Opened))
	} else {
		s += ", still open at the end of the journal"
	}
	s += fmt.Sprintf("; detected %s after the first failure", seconds(inc.DetectSecs))
	if inc.FirstPageSecs != nil {
		s += fmt.Sprintf("; first page after %s", seconds(*inc.FirstPageSecs))
	}
	return s + fmt.Sprintf("; reached %s; %s, %s", inc.Peak, count(inc.Rungs, "rung run"), count(inc.Pages, "page"))
}

func summaryText(s engine.ReplaySummary) string {
	parts := []string{count(s.Incidents, "incident"), count(s.Pages, "page")}
	total := 0
	var runs []string
	for _, rc := range s.RungRuns {
		total += rc.Runs
		if rc.Runs > 0 {
			runs = append(runs, fmt.Sprintf("%s %d", rc.Rung, rc.Runs))
		}
	}
	rungs := count(total, "rung run")
	if len(runs) > 0 {
		rungs += " (" + strings.Join(runs, ", ") + ")"
	}
	parts = append(parts, rungs)
	if s.MedianDetectSecs != nil {
		parts = append(parts, "median time to detect "+seconds(*s.MedianDetectSecs))
	}
	if s.FirstSOS != nil {
		parts = append(parts, "first sos "+s.FirstSOS.UTC().Format("15:04:05"))
	}
	parts = append(parts, "ends "+string(s.FinalPhase))
	return strings.Join(parts, ", ")
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
