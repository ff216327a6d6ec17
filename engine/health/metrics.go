package health

import (
	"bufio"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/talon-dev/talon/engine"
)

// The /metrics body is written here in the Prometheus text exposition
// format (version 0.0.4) rather than through the Prometheus client library:
// the library brings protobuf, which cost the idle daemon 1.8 MiB of its
// 15 MiB budget for a format of a few lines. TestMetricsMatchClientLibrary
// holds this writer byte for byte to the library's output for the same
// series, and a real Prometheus scrapes it in prometheus_linux_test.go.

// metricFamily is one metric name the daemon exposes. Names follow the
// Prometheus conventions: a _total suffix on counters, base units (seconds).
type metricFamily struct {
	name, help string
	counter    bool
	label      string // the name of its one label, or "" for none
}

var (
	famUp = &metricFamily{name: "talon_up",
		help: "Whether the Talon daemon is running (always 1 when scraped)."}
	famState = &metricFamily{name: "talon_state", label: "state",
		help: "State machine position: 1 for the current state, 0 for the others."}
	famProbes = &metricFamily{name: "talon_probes",
		help: "Number of probes the policy declares."}
	famProbeUp = &metricFamily{name: "talon_probe_up", label: "probe",
		help: "Whether the probe passed on its last run (1) or failed (0)."}
	famProbeDuration = &metricFamily{name: "talon_probe_duration_seconds", label: "probe",
		help: "How long the probe's last run took."}
	famFailed = &metricFamily{name: "talon_failed_probes",
		help: "Number of probes whose last run failed."}
	famConsecutive = &metricFamily{name: "talon_consecutive_failures",
		help: "Consecutive cycles with at least one failing probe."}
	famIncident = &metricFamily{name: "talon_incident_open",
		help: "Whether an incident is open."}
	famReloads = &metricFamily{name: "talon_reloads_total", counter: true,
		help: "Policy reloads that swapped in a new policy since the daemon started."}
	famFallback = &metricFamily{name: "talon_policy_fallback", label: "source",
		help: "Whether the daemon runs a fallback policy (1) because the one asked for failed to load at start: its last known good policy or the embedded default, by source."}
	famFallbackSince = &metricFamily{name: "talon_policy_fallback_since_timestamp_seconds",
		help: "Unix time the last good policy that runs as the fallback was loaded cleanly (0 for the embedded default); absent without a fallback."}
	famPolicyError = &metricFamily{name: "talon_policy_error",
		help: "Whether the last policy load failed (1): the last good policy keeps running."}
	famPolicyInfo = &metricFamily{name: "talon_policy_info", label: "policy_hash",
		help: "The policy in force, by content hash (always 1)."}
	famRungRuns = &metricFamily{name: "talon_rung_runs_total", counter: true, label: "rung",
		help: "Times each ladder rung started since the daemon started."}
	famPages = &metricFamily{name: "talon_pages_total", counter: true,
		help: "Pages a channel accepted since the daemon started (SOS and resolved messages)."}
	famStale = &metricFamily{name: "talon_stale",
		help: "Whether no probe result arrived for several intervals (the loop is stuck)."}
	famWorkerRestarts = &metricFamily{name: "talon_worker_restarts_total", counter: true,
		help: "Times the supervised worker was restarted."}
	famLastCycle = &metricFamily{name: "talon_last_cycle_timestamp_seconds",
		help: "Unix time of the last completed probe cycle (0 before the first)."}
	famPaused = &metricFamily{name: "talon_pauses", label: "scope",
		help: "Operator pauses in force (talon pause), by scope: all, probe, tag or rung."}
	famAcked = &metricFamily{name: "talon_incident_acknowledged",
		help: "Whether the open incident is acknowledged (talon ack)."}
	famFlapping = &metricFamily{name: "talon_probe_flapping", label: "probe",
		help: "Whether the probe flaps: it went down too often within the flap window."}
	famWriteFailing = &metricFamily{name: "talon_write_failing", label: "file",
		help: "Whether writing the state directory fails (full or read-only), by file: state (state.json) or journal."}
)

// metricFamilies lists every family, for describing them all.
var metricFamilies = []*metricFamily{famUp, famState, famProbes, famProbeUp, famProbeDuration,
	famFailed, famConsecutive, famIncident, famReloads, famPolicyError, famPolicyInfo, famFallback, famFallbackSince,
	famWorkerRestarts, famLastCycle, famRungRuns, famPages, famStale, famPaused, famAcked, famFlapping, famWriteFailing}

// collectMetrics derives every series from s and hands each to emit, with
// the value of its family's label ("" for a family without one).
func collectMetrics(s engine.Snapshot, emit func(f *metricFamily, v float64, label string)) {
	emit(famUp, 1, "")
	for _, p := range engine.Phases {
		emit(famState, b2f(s.State == p), string(p))
	}
	emit(famProbes, float64(s.ProbeCount), "")
	seen := make(map[string]bool, len(s.Probes))
	for _, r := range s.Probes {
		if seen[r.Name] {
			continue // a duplicate series would make the whole scrape fail
		}
		seen[r.Name] = true
		emit(famProbeUp, b2f(r.Passed), r.Name)
		emit(famProbeDuration, float64(r.DurationMS)/1000, r.Name)
		emit(famFlapping, b2f(slices.Contains(s.Flapping, r.Name)), r.Name)
	}
	scopes := map[string]int{"all": 0, "probe": 0, "tag": 0, "rung": 0}
	for _, p := range s.Paused {
		scope := p.Scope
		if scope == "" {
			scope = "all"
		}
		scopes[scope]++
	}
	for _, scope := range []string{"all", "probe", "tag", "rung"} {
		emit(famPaused, float64(scopes[scope]), scope)
	}
	emit(famAcked, b2f(s.Incident != nil && s.Incident.Acked != nil), "")
	emit(famFailed, float64(s.FailedProbeCount), "")
	emit(famConsecutive, float64(s.ConsecutiveFailures), "")
	emit(famIncident, b2f(s.Incident != nil), "")
	emit(famReloads, float64(s.Reloads), "")
	emit(famPolicyError, b2f(s.PolicyError != nil), "")
	for _, src := range []string{engine.FallbackLastGood, engine.FallbackDefault} {
		emit(famFallback, b2f(s.Fallback != nil && s.Fallback.Source == src), src)
	}
	if fb := s.Fallback; fb != nil {
		var since float64
		if !fb.Since.IsZero() {
			since = float64(fb.Since.Unix())
		}
		emit(famFallbackSince, since, "")
	}
	if s.PolicyHash != "" {
		emit(famPolicyInfo, 1, s.PolicyHash)
	}
	emit(famWorkerRestarts, float64(s.WorkerRestarts), "")
	for r, n := range s.RungRuns {
		emit(famRungRuns, float64(n), r)
	}
	emit(famPages, float64(s.Pages), "")
	emit(famStale, b2f(s.Stale), "")
	we := s.WriteError
	emit(famWriteFailing, b2f(we != nil && we.State != ""), "state")
	emit(famWriteFailing, b2f(we != nil && we.Journal != ""), "journal")
	var last float64
	if !s.LastCycle.IsZero() {
		last = float64(s.LastCycle.UnixNano()) / 1e9
	}
	emit(famLastCycle, last, "")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sample is one series of a family: its label's value and its value.
type sample struct {
	label string
	v     float64
}

// WriteMetrics writes the metrics derived from snap in the Prometheus text
// exposition format (version 0.0.4): families sorted by name, each with its
// HELP and TYPE lines, series sorted by label value, label values and help
// text escaped. A family with no series (talon_policy_info without a
// policy hash) is left out.
func WriteMetrics(w io.Writer, snap engine.Snapshot) error {
	byFamily := make(map[*metricFamily][]sample, len(metricFamilies))
	collectMetrics(snap, func(f *metricFamily, v float64, label string) {
		byFamily[f] = append(byFamily[f], sample{label, v})
	})
	fams := make([]*metricFamily, 0, len(byFamily))
	for f := range byFamily {
		fams = append(fams, f)
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	bw := bufio.NewWriter(w)
	var num []byte
	for _, f := range fams {
		kind := "gauge"
		if f.counter {
			kind = "counter"
		}
		bw.WriteString("# HELP " + f.name + " " + helpEscaper.Replace(f.help) + "\n")
		bw.WriteString("# TYPE " + f.name + " " + kind + "\n")
		samples := byFamily[f]
		sort.SliceStable(samples, func(i, j int) bool { return samples[i].label < samples[j].label })
		for _, s := range samples {
			bw.WriteString(f.name)
			if f.label != "" {
				bw.WriteString("{" + f.label + `="` + labelEscaper.Replace(s.label) + `"}`)
			}
			bw.WriteByte(' ')
			num = appendSampleValue(num[:0], s.v)
			bw.Write(num)
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// appendSampleValue formats v as the exposition format writes a value:
// the shortest decimal that reads back as v, and +Inf, -Inf, NaN.
func appendSampleValue(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
