package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine"
)

// replayDiffText shows both replays incident by incident, side by side,
// then both summaries and the one-line comparison.
func replayDiffText(path, policyA, policyB string, d engine.ReplayDiff) string {
	var b strings.Builder
	replayHeader(&b, path, d.A)
	fmt.Fprintf(&b, "A: policy %s (%s)\n", policyA, shortHash(d.A.Policy))
	fmt.Fprintf(&b, "B: policy %s (%s)\n", policyB, shortHash(d.B.Policy))
	modeText(&b, "A ", d.A)
	modeText(&b, "B ", d.B)
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
	divergences(&b, d.A)
	divergences(&b, d.B)
	b.WriteString("\n")
	if d.Same {
		b.WriteString("no differences: both policies take the same decisions at the same times\n\n")
	}
	for i, p := range d.Incidents {
		incidentPair(&b, i+1, p, d.A.To)
	}
	fmt.Fprintf(&b, "A: %s\n", summaryText(d.A.Summary))
	fmt.Fprintf(&b, "B: %s\n", summaryText(d.B.Summary))
	fmt.Fprintf(&b, "%s\n", d.Comparison)
	return b.String()
}

// incidentPair is one incident as a table: a row per fact about it, a
// column per policy.
func incidentPair(b *strings.Builder, n int, p engine.IncidentPair, end time.Time) {
	var probes []string
	for _, inc := range []*engine.ReplayIncident{p.A, p.B} {
		if inc != nil {
			probes = unionStrings(probes, inc.Probes)
		}
	}
	fmt.Fprintf(b, "incident %d: %s\n", n, strings.Join(probes, ", "))
	rows := [][3]string{}
	add := func(label string, f func(inc *engine.ReplayIncident) string) {
		row := [3]string{label, "—", "—"}
		for i, inc := range []*engine.ReplayIncident{p.A, p.B} {
			if inc != nil {
				row[i+1] = f(inc)
			}
		}
		rows = append(rows, row)
	}
	add("opened", func(inc *engine.ReplayIncident) string {
		s := inc.Opened.UTC().Format("15:04:05")
		if p.A != nil && p.B != nil && inc == p.B {
			if dt := p.B.Opened.Sub(p.A.Opened); dt > 0 {
				s += " (" + engine.HumanDuration(dt) + " later)"
			} else if dt < 0 {
				s += " (" + engine.HumanDuration(-dt) + " earlier)"
			}
		}
		return s
	})
	add("detected after", func(inc *engine.ReplayIncident) string { return engine.HumanSeconds(inc.DetectSecs) })
	// One row per rung run: the n-th run of a rung in A beside the n-th of
	// the same rung in B, in the order they first happen.
	type key struct {
		rung string
		nth  int
	}
	var keys []key
	runs := [2]map[key]engine.ReplayRun{{}, {}}
	for side, inc := range []*engine.ReplayIncident{p.A, p.B} {
		if inc == nil {
			continue
		}
		seen := map[string]int{}
		for _, r := range inc.Runs {
			k := key{r.Rung, seen[r.Rung]}
			seen[r.Rung]++
			runs[side][k] = r
		}
	}
	seenKey := map[key]bool{}
	for i := 0; ; i++ {
		more := false
		for side, inc := range []*engine.ReplayIncident{p.A, p.B} {
			if inc == nil || i >= len(inc.Runs) {
				continue
			}
			more = true
			nth := 0
			for _, r := range inc.Runs[:i] {
				if r.Rung == inc.Runs[i].Rung {
					nth++
				}
			}
			k := key{inc.Runs[i].Rung, nth}
			_ = side
			if !seenKey[k] {
				seenKey[k] = true
				keys = append(keys, k)
			}
		}
		if !more {
			break
		}
	}
	for _, k := range keys {
		row := [3]string{"rung " + k.rung, "—", "—"}
		for side, inc := range []*engine.ReplayIncident{p.A, p.B} {
			if r, ok := runs[side][k]; ok && inc != nil {
				row[side+1] = "+" + engine.HumanDuration(r.At.Sub(inc.Opened))
				if len(r.Paged) > 0 {
					row[side+1] += ", paged " + strings.Join(r.Paged, ", ")
				}
			}
		}
		rows = append(rows, row)
	}
	add("first page", func(inc *engine.ReplayIncident) string {
		if inc.FirstPageSecs == nil {
			return "never"
		}
		return "after " + engine.HumanSeconds(*inc.FirstPageSecs)
	})
	add("pages", func(inc *engine.ReplayIncident) string { return fmt.Sprint(inc.Pages) })
	add("reached", func(inc *engine.ReplayIncident) string { return string(inc.Peak) })
	add("resolved", func(inc *engine.ReplayIncident) string {
		if inc.Resolved == nil {
			return "still open (" + engine.HumanDuration(end.Sub(inc.Opened)) + ")"
		}
		return "after " + engine.HumanDuration(inc.Resolved.Sub(inc.Opened))
	})
	w := [3]int{len(""), len("A"), len("B")}
	for _, r := range rows {
		for i := range r {
			w[i] = max(w[i], len([]rune(r[i])))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-len([]rune(s))) }
	fmt.Fprintf(b, "  %s  %s  %s\n", pad("", w[0]), pad("A", w[1]), "B")
	for _, r := range rows {
		fmt.Fprintf(b, "  %s  %s  %s\n", pad(r[0], w[0]), pad(r[1], w[1]), r[2])
	}
	b.WriteString("\n")
}

func unionStrings(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
