package health

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/talon-dev/talon/engine"
)

// refCollector is the reference for WriteMetrics: the same series built
// with the Prometheus client library (the daemon used it until its
// protobuf dependency cost 1.8 MiB of the idle memory budget).
// TestMetricsMatchClientLibrary holds the two byte for byte.
type refCollector struct {
	Snapshot func() engine.Snapshot
}

var _ prometheus.Collector = refCollector{}

// desc is f's descriptor in the client library.
func (f *metricFamily) desc() *prometheus.Desc {
	var labels []string
	if f.label != "" {
		labels = []string{f.label}
	}
	return prometheus.NewDesc(f.name, f.help, labels, nil)
}

// Describe implements prometheus.Collector.
func (c refCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range metricFamilies {
		ch <- f.desc()
	}
}

// Collect implements prometheus.Collector.
func (c refCollector) Collect(ch chan<- prometheus.Metric) {
	collectMetrics(c.Snapshot(), func(f *metricFamily, v float64, label string) {
		kind := prometheus.GaugeValue
		if f.counter {
			kind = prometheus.CounterValue
		}
		var labels []string
		if f.label != "" {
			labels = []string{label}
		}
		ch <- prometheus.MustNewConstMetric(f.desc(), kind, v, labels...)
	})
}

// refWriteMetrics writes snap's metrics through the client library.
func refWriteMetrics(w io.Writer, snap engine.Snapshot) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(refCollector{Snapshot: func() engine.Snapshot { return snap }}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return refWriteGathered(w, reg)
}

func refWriteGathered(w io.Writer, g prometheus.Gatherer) error {
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

// TestMetricsMatchClientLibrary holds WriteMetrics to what the Prometheus
// client library writes for the same series: families in name order, HELP
// and TYPE lines, series in label order, escaping and number formatting.
func TestMetricsMatchClientLibrary(t *testing.T) {
	t.Parallel()
	rich := sampleSnapshot()
	rich.Paused = []engine.PauseInfo{{Pause: engine.Pause{Scope: "probe", Name: "redis"}}, {Pause: engine.Pause{}},
		{Pause: engine.Pause{Scope: "tag", Name: "db"}}, {Pause: engine.Pause{Scope: "probe", Name: "vm:redis"}}}
	rich.Flapping = []string{"redis"}
	rich.RungRuns = map[string]int{"sos": 1, "heal": 7, "agent": 2, "a\\b\"c\nd": 3}
	rich.Pages = 9
	rich.Stale = true
	rich.Fallback = &engine.Fallback{Source: engine.FallbackLastGood, Since: tCycle}
	rich.WriteError = &engine.WriteError{Journal: "no space left on device", Since: tCycle}
	rich.LastCycle = time.Unix(1796199459, 123456789)
	rich.Incident.Acked = &engine.Ack{}
	rich.Probes = append(rich.Probes, engine.Result{Name: "slow", DurationMS: 1<<53 + 1}, engine.Result{Name: "redis", Passed: true})
	for _, tc := range []struct {
		name string
		snap engine.Snapshot
	}{
		{"empty", engine.Snapshot{}},
		{"sample", sampleSnapshot()},
		{"rich", rich},
		{"default fallback", engine.Snapshot{State: engine.Healthy, Fallback: &engine.Fallback{Source: engine.FallbackDefault}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, want bytes.Buffer
			if err := WriteMetrics(&got, tc.snap); err != nil {
				t.Fatal(err)
			}
			if err := refWriteMetrics(&want, tc.snap); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("WriteMetrics differs from the client library:\n--- got\n%s\n--- want\n%s", got.String(), want.String())
			}
		})
	}
}

func TestSampleValueFormat(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{0: "0", 1: "1", -1: "-1", 0.012: "0.012", 1.5: "1.5",
		1796199459.123456: "1.796199459123456e+09", math.Inf(1): "+Inf", math.Inf(-1): "-Inf", math.NaN(): "NaN"} {
		if got := string(appendSampleValue(nil, v)); got != want {
			t.Errorf("%v: got %q, want %q", v, got, want)
		}
	}
}
