package health

import (
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/talon-dev/talon/engine"
)

// Metric descriptors derived from a Snapshot. Names follow the Prometheus
// conventions: a _total suffix on counters, base units (seconds).
var (
	descUp = prometheus.NewDesc("talon_up",
		"Whether the Talon daemon is running (always 1 when scraped).", nil, nil)
	descState = prometheus.NewDesc("talon_state",
		"State machine position: 1 for the current state, 0 for the others.", []string{"state"}, nil)
	descProbes = prometheus.NewDesc("talon_probes",
		"Number of probes the policy declares.", nil, nil)
	descProbeUp = prometheus.NewDesc("talon_probe_up",
		"Whether the probe passed on its last run (1) or failed (0).", []string{"probe"}, nil)
	descProbeDuration = prometheus.NewDesc("talon_probe_duration_seconds",
		"How long the probe's last run took.", []string{"probe"}, nil)
	descFailed = prometheus.NewDesc("talon_failed_probes",
		"Number of probes whose last run failed.", nil, nil)
	descConsecutive = prometheus.NewDesc("talon_consecutive_failures",
		"Consecutive cycles with at least one failing probe.", nil, nil)
	descIncident = prometheus.NewDesc("talon_incident_open",
		"Whether an incident is open.", nil, nil)
	descReloads = prometheus.NewDesc("talon_reloads_total",
		"Policy reloads that swapped in a new policy since the daemon started.", nil, nil)
	descFallback = prometheus.NewDesc("talon_policy_fallback",
		"Whether the daemon runs a fallback policy (1) because the one asked for failed to load at start: its last known good policy or the embedded default, by source.", []string{"source"}, nil)
	descFallbackSince = prometheus.NewDesc("talon_policy_fallback_since_timestamp_seconds",
		"Unix time the last good policy that runs as the fallback was loaded cleanly (0 for the embedded default); absent without a fallback.", nil, nil)
	descPolicyError = prometheus.NewDesc("talon_policy_error",
		"Whether the last policy load failed (1): the last good policy keeps running.", nil, nil)
	descPolicyInfo = prometheus.NewDesc("talon_policy_info",
		"The policy in force, by content hash (always 1).", []string{"policy_hash"}, nil)
	descRungRuns = prometheus.NewDesc("talon_rung_runs_total",
		"Times each ladder rung started since the daemon started.", []string{"rung"}, nil)
	descPages = prometheus.NewDesc("talon_pages_total",
		"Pages a channel accepted since the daemon started (SOS and resolved messages).", nil, nil)
	descStale = prometheus.NewDesc("talon_stale",
		"Whether no probe result arrived for several intervals (the loop is stuck).", nil, nil)
	descWorkerRestarts = prometheus.NewDesc("talon_worker_restarts_total",
		"Times the supervised worker was restarted.", nil, nil)
	descLastCycle = prometheus.NewDesc("talon_last_cycle_timestamp_seconds",
		"Unix time of the last completed probe cycle (0 before the first).", nil, nil)
	descPaused = prometheus.NewDesc("talon_pauses",
		"Operator pauses in force (talon pause), by scope: all, probe, tag or rung.", []string{"scope"}, nil)
	descAcked = prometheus.NewDesc("talon_incident_acknowledged",
		"Whether the open incident is acknowledged (talon ack).", nil, nil)
	descFlapping = prometheus.NewDesc("talon_probe_flapping",
		"Whether the probe flaps: it went down too often within the flap window.", []string{"probe"}, nil)
	descWriteFailing = prometheus.NewDesc("talon_write_failing",
		"Whether writing the state directory fails (full or read-only), by file: state (state.json) or journal.", []string{"file"}, nil)
)

// SnapshotCollector exposes a Snapshot as Prometheus metrics. Register it in
// a registry of your own to serve these series beside other metrics (rung
// runs, pages) through Options.Metrics.
type SnapshotCollector struct {
	Snapshot func() engine.Snapshot
}

var _ prometheus.Collector = SnapshotCollector{}

// Describe implements prometheus.Collector.
func (c SnapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descProbes, descProbeUp, descProbeDuration,
		descFailed, descConsecutive, descIncident, descReloads, descPolicyError, descPolicyInfo, descFallback, descFallbackSince,
		descWorkerRestarts, descLastCycle, descRungRuns, descPages, descStale, descPaused, descAcked, descFlapping, descWriteFailing} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c SnapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descUp, 1)
	for _, p := range engine.Phases {
		gauge(descState, b2f(s.State == p), string(p))
	}
	gauge(descProbes, float64(s.ProbeCount))
	seen := map[string]bool{}
	for _, r := range s.Probes {
		if seen[r.Name] {
			continue // a duplicate series would make the whole scrape fail
		}
		seen[r.Name] = true
		gauge(descProbeUp, b2f(r.Passed), r.Name)
		gauge(descProbeDuration, float64(r.DurationMS)/1000, r.Name)
		gauge(descFlapping, b2f(slices.Contains(s.Flapping, r.Name)), r.Name)
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
		gauge(descPaused, float64(scopes[scope]), scope)
	}
	gauge(descAcked, b2f(s.Incident != nil && s.Incident.Acked != nil))
	gauge(descFailed, float64(s.FailedProbeCount))
	gauge(descConsecutive, float64(s.ConsecutiveFailures))
	gauge(descIncident, b2f(s.Incident != nil))
	counter(descReloads, float64(s.Reloads))
	gauge(descPolicyError, b2f(s.PolicyError != nil))
	for _, src := range []string{engine.FallbackLastGood, engine.FallbackDefault} {
		gauge(descFallback, b2f(s.Fallback != nil && s.Fallback.Source == src), src)
	}
	if fb := s.Fallback; fb != nil {
		var since float64
		if !fb.Since.IsZero() {
			since = float64(fb.Since.Unix())
		}
		gauge(descFallbackSince, since)
	}
	if s.PolicyHash != "" {
		gauge(descPolicyInfo, 1, s.PolicyHash)
	}
	counter(descWorkerRestarts, float64(s.WorkerRestarts))
	rungs := make([]string, 0, len(s.RungRuns))
	for r := range s.RungRuns {
		rungs = append(rungs, r)
	}
	sort.Strings(rungs)
	for _, r := range rungs {
		counter(descRungRuns, float64(s.RungRuns[r]), r)
	}
	counter(descPages, float64(s.Pages))
	gauge(descStale, b2f(s.Stale))
	we := s.WriteError
	gauge(descWriteFailing, b2f(we != nil && we.State != ""), "state")
	gauge(descWriteFailing, b2f(we != nil && we.Journal != ""), "journal")
	var last float64
	if !s.LastCycle.IsZero() {
		last = float64(s.LastCycle.UnixNano()) / 1e9
	}
	gauge(descLastCycle, last)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteMetrics writes the metrics derived from snap in the Prometheus text
// exposition format (version 0.0.4), with HELP and TYPE lines, families
// sorted by name and label values escaped.
func WriteMetrics(w io.Writer, snap engine.Snapshot) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(SnapshotCollector{Snapshot: func() engine.Snapshot { return snap }}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return WriteGathered(w, reg)
}

// WriteGathered writes everything g gathers in the text exposition format;
// Options.Metrics can be built on it with a registry of your own.
func WriteGathered(w io.Writer, g prometheus.Gatherer) error {
	families, err := g.Gather()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}
