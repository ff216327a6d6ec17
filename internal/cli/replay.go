package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
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
// through a second one) and prints what it decided.
func (a *app) replay(args []string) error {
	var asJSON, asRecorded bool
	var other, since, until string
	var with stringsFlag
	rest, err := a.flags("replay", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "JSON output")
		fs.StringVar(&other, "diff", "", "a second policy directory to compare with")
		fs.StringVar(&since, "since", "", "report from this time on")
		fs.StringVar(&until, "until", "", "report up to this time")
		fs.BoolVar(&asRecorded, "as-recorded", false, "switch policy where the journal records a reload, among the policies given")
		fs.Var(&with, "with", "another version of the policy that --as-recorded may switch to (repeatable)")
	})
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fail(2, "replay takes one journal (journal.jsonl or the directory holding it), got %d arguments; see talon help replay", len(rest))
	}
	now := time.Now()
	var opts engine.ReplayOptions
	if opts.Since, err = whenFlag("--since", since, now); err != nil {
		return err
	}
	if opts.Until, err = whenFlag("--until", until, now); err != nil {
		return err
	}
	path := journalPath(rest[0])
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	polA, err := loadReplayPolicy(e)
	if err != nil {
		return err
	}
	var polB *engine.Policy
	eb := *e
	if other != "" {
		eb.policyDir = config.ExpandHome(other, homeDir())
		if _, err := os.Stat(filepath.Join(eb.policyDir, "talon.star")); err != nil {
			return fail(1, "replay --diff: policy %s has no talon.star: %v", eb.policyDir, errors.Unwrap(err))
		}
		if polB, err = loadReplayPolicy(&eb); err != nil {
			return err
		}
	}
	if asRecorded {
		opts.AsRecorded = true
		opts.Versions = map[string]*engine.Policy{polA.Hash: polA}
		if polB != nil {
			opts.Versions[polB.Hash] = polB
		}
		for _, dir := range with {
			ew := *e
			ew.policyDir = config.ExpandHome(dir, homeDir())
			p, err := loadReplayPolicy(&ew)
			if err != nil {
				return err
			}
			opts.Versions[p.Hash] = p
		}
	} else if len(with) > 0 {
		return fail(2, "replay: --with names policy versions for --as-recorded; add --as-recorded")
	}
	// Replay keeps little (one fact in hand) and allocates much (every
	// decoded record): a less eager collector is a third faster.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	ra := engine.NewReplayer(polA, opts)
	var rb *engine.Replayer
	if polB != nil {
		rb = engine.NewReplayer(polB, opts)
	}
	warnings, bad, err := readJournal("replay", path, opts.Until, func(rec engine.Record, where string) {
		ra.Feed(rec, where)
		if rb != nil {
			rb.Feed(rec, where)
		}
	})
	if err != nil {
		return err
	}
	resA := ra.Result()
	resA.Warnings = append(append([]string(nil), warnings...), resA.Warnings...)
	text := !a.wantJSON(asJSON)
	if rb == nil {
		if !text {
			err = a.json(replayOutput{Journal: path, PolicyDir: e.policyName(), ReplayResult: resA})
		} else {
			_, err = io.WriteString(a.stdout, replayText(path, e.policyName(), resA))
		}
		return withCode(err, max(divergenceCode(resA), badCode(bad)))
	}
	resB := rb.Result()
	resB.Warnings = append(append([]string(nil), warnings...), resB.Warnings...)
	d := engine.CompareReplays(resA, resB)
	if !text {
		err = a.json(replayDiffOutput{Journal: path, PolicyDirA: e.policyName(), PolicyDirB: eb.policyName(), ReplayDiff: d})
	} else {
		_, err = io.WriteString(a.stdout, replayDiffText(path, e.policyName(), eb.policyName(), d))
	}
	return withCode(err, max(divergenceCode(resA), divergenceCode(resB), badCode(bad)))
}

// badCode is the exit status for a journal with bad lines: they were
// skipped and reported, and the replay is not a clean verdict.
func badCode(bad int) int {
	if bad > 0 {
		return 1
	}
	return 0
}

// divergenceCode is the exit status of a replay: 1 when a faithful replay
// decided otherwise than the daemon had.
func divergenceCode(r engine.ReplayResult) int {
	if len(r.Divergences) > 0 {
		return 1
	}
	return 0
}

func loadReplayPolicy(e *env) (*engine.Policy, error) {
	res := e.load()
	if res.Err() != nil {
		return nil, fail(1, "replay: policy %s: %s", e.policyName(), oneLine(res.ErrorText()))
	}
	return res.Policy, nil
}

// journalPath is the journal an argument names: a file, or a directory
// holding journal.jsonl.
func journalPath(arg string) string {
	path := config.ExpandHome(arg, homeDir())
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, journal.FileName)
	}
	return path
}

var errUntil = errors.New("past --until")

// readJournal streams the journal at path with its rotated generations,
// oldest first, to fn, stopping after until. A malformed line is skipped
// and reported as a warning naming file:line (bad counts them); a partial
// last line is a warning too.
func readJournal(cmd, path string, until time.Time, fn func(engine.Record, string)) (warnings []string, bad int, err error) {
	ws, err := journal.Scan(path, func(r engine.Record, pos journal.Pos) error {
		if !until.IsZero() && r.Time.After(until) {
			return errUntil
		}
		fn(r, pos.String())
		return nil
	})
	var corrupt *journal.CorruptError
	errors.As(err, &corrupt)
	if err != nil && !errors.Is(err, errUntil) && err != error(corrupt) {
		return nil, 0, fail(1, "%s: %s", cmd, oneLine(err.Error()))
	}
	for _, w := range ws {
		warnings = append(warnings, w.String())
	}
	if corrupt != nil {
		for _, le := range corrupt.Lines {
			warnings = append(warnings, oneLine(le.Error())+" (line skipped)")
		}
		bad = len(corrupt.Lines)
	}
	return warnings, bad, nil
}

// whenFlag reads --since or --until for replay and journal cut, whose
// output is in UTC: a time without a zone is UTC (see parseWhen).
func whenFlag(flagName, s string, now time.Time) (time.Time, error) {
	t, err := parseWhen(s, now, time.UTC)
	if err != nil {
		return time.Time{}, fail(2, "%s: %v (times without a zone are UTC)", flagName, err)
	}
	return t, nil
}

// replayText is the timeline a person reads: one line per decision, times
// in UTC, a date line whenever the day changes, then the incidents and a
// summary.
func replayText(path, policy string, r engine.ReplayResult) string {
	var b strings.Builder
	replayHeader(&b, path, r)
	fmt.Fprintf(&b, "policy %s (%s)\n", policy, shortHash(r.Policy))
	modeText(&b, "", r)
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	divergences(&b, r)
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
		fmt.Fprintf(&b, "%s\n", incidentText(inc, r.To))
	}
	fmt.Fprintf(&b, "summary: %s\n", summaryText(r.Summary))
	return b.String()
}

// modeText says which mode replay ran in, and what that guarantees.
func modeText(b *strings.Builder, side string, r engine.ReplayResult) {
	switch r.Mode {
	case engine.ModeFaithful:
		fmt.Fprintf(b, "%smode: faithful (%s): every decision must equal the journal's\n", side, r.ModeReason)
	default:
		fmt.Fprintf(b, "%smode: what-if (%s): the same decision core on the recorded facts; rung durations and\n", side, r.ModeReason)
		fmt.Fprintf(b, "%s      verifications come from the journal where it has them, otherwise rungs succeed (see docs/journal.md)\n", side)
	}
}

func divergences(b *strings.Builder, r engine.ReplayResult) {
	for i, d := range r.Divergences {
		if i == 10 {
			fmt.Fprintf(b, "... and %d more divergences (see --json)\n", len(r.Divergences)-10)
			break
		}
		where := d.Where
		if where == "" {
			where = d.At.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(b, "DIVERGENCE after the %s record at %s (%s):\n", d.Fact, where, d.At.UTC().Format("15:04:05"))
		fmt.Fprintf(b, "  the daemon journaled: %s\n", strings.Join(orNothing(d.Journaled), "\n                        "))
		fmt.Fprintf(b, "  replay decided:       %s\n", strings.Join(orNothing(d.Replayed), "\n                        "))
	}
}

func orNothing(s []string) []string {
	if len(s) == 0 {
		return []string{"nothing"}
	}
	return s
}

func replayHeader(b *strings.Builder, path string, r engine.ReplayResult) {
	fmt.Fprintf(b, "replay of %s: %s, %s", path, count(r.Records, "record"), count(r.Cycles, "cycle"))
	if r.Records > 0 {
		fmt.Fprintf(b, ", %s → %s UTC (%s)", r.From.UTC().Format("2006-01-02 15:04:05"), r.To.UTC().Format("2006-01-02 15:04:05"), engine.HumanDuration(r.To.Sub(r.From)))
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
			s += fmt.Sprintf(" (detected %s after the first failure)", engine.HumanSeconds(inc.DetectSecs))
		}
		return s
	case "incident_resolved":
		s := fmt.Sprintf("incident %s resolved: %s", st.Incident, st.Reason)
		if inc := findIncident(r, st.Incident); inc != nil {
			s += fmt.Sprintf(" (open %s)", engine.HumanDuration(st.At.Sub(inc.Opened)))
		}
		return s
	case "rung_skip":
		return fmt.Sprintf("rung %s skipped: %s", st.Rung, st.Reason)
	case "rung":
		s := fmt.Sprintf("rung %s starts", st.Rung)
		if len(st.Actions) > 0 {
			s += ": " + strings.Join(st.Actions, "; ")
		}
		return s
	case "rung_end":
		s := fmt.Sprintf("rung %s ended", st.Rung)
		if st.Secs != nil {
			s += " after " + engine.HumanSeconds(*st.Secs)
		}
		switch {
		case st.OK != nil && *st.OK:
			s += ": ok"
		case st.Reason != "":
			s += ": failed: " + firstLine(st.Reason, 100)
		default:
			s += ": failed"
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
		if st.Basis == "assumed" {
			s += " (assumed: no recorded run)"
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
	case "mode":
		return "replay: " + st.Reason
	case "resent":
		return fmt.Sprintf("sent again via %s: %s", strings.Join(st.Channels, ", "), st.Reason)
	case "pause":
		return "paused: " + st.Reason
	case "resume":
		return "resumed: " + st.Reason
	case "pause_expired":
		return "pause over: " + st.Reason
	case "ack":
		return "incident " + st.Incident + " acknowledged" + map[bool]string{true: ": " + st.Reason}[st.Reason != ""]
	case "ack_cleared":
		return "acknowledgement cleared: " + st.Reason
	case "settle_start":
		return "rung " + st.Rung + " settles: " + st.Reason
	case "settle_end":
		return st.Reason
	case "flap_start":
		return "probe " + st.Probe + " flapping: " + st.Reason
	case "flap_stop":
		return "probe " + st.Probe + " no longer flapping: " + st.Reason
	case "unreachable", "rung_renamed":
		return st.Reason
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

func incidentText(inc engine.ReplayIncident, end time.Time) string {
	s := fmt.Sprintf("incident %s: %s; opened %s", inc.ID, strings.Join(inc.Probes, ", "), inc.Opened.UTC().Format("2006-01-02 15:04:05"))
	if inc.Resolved != nil {
		s += fmt.Sprintf(", resolved after %s", engine.HumanDuration(inc.Resolved.Sub(inc.Opened)))
	} else {
		s += fmt.Sprintf(", still open at the end of the journal (%s)", engine.HumanDuration(end.Sub(inc.Opened)))
	}
	s += fmt.Sprintf("; detected %s after the first failure", engine.HumanSeconds(inc.DetectSecs))
	if inc.FirstPageSecs != nil {
		s += fmt.Sprintf("; first page after %s", engine.HumanSeconds(*inc.FirstPageSecs))
	}
	return s + fmt.Sprintf("; reached %s; %s, %s", inc.Peak, count(len(inc.Runs), "rung run"), count(inc.Pages, "page"))
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
		parts = append(parts, "median time to detect "+engine.HumanSeconds(*s.MedianDetectSecs))
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
