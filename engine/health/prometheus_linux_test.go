//go:build linux

package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/internal/testpeer"
)

// A real Prometheus scrapes the endpoint: the exposition is not only
// parseable by the library but accepted by the server that consumes it.
func TestPrometheusScrapes(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "prometheus")
	_, base := start(t, Options{})
	target := strings.TrimPrefix(base, "http://")
	prom := testpeer.StartPrometheus(t, target)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last string
	for {
		samples, err := prom.Query(ctx, "talon_up")
		if err == nil && len(samples) == 1 && samples[0].Value == 1 {
			if samples[0].Labels["instance"] != target || samples[0].Labels["job"] != "talon" {
				t.Errorf("labels %v", samples[0].Labels)
			}
			break
		}
		last = "query: " + errString(err)
		if tg, terr := prom.Targets(ctx); terr == nil {
			last += "; targets: " + strings.TrimSpace(strings.ReplaceAll(strings.Join(values(tg), "|"), "\n", " "))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("talon_up never reached 1 in Prometheus: %s", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
	// The labelled series arrive intact, escaping included.
	samples, err := prom.Query(ctx, `talon_probe_up{probe="weird \"quoted\" \\ back\nslash café"}`)
	if err != nil || len(samples) != 1 || samples[0].Value != 1 {
		t.Errorf("escaped probe series: %v %v", samples, err)
	}
	samples, err = prom.Query(ctx, `talon_state == 1`)
	if err != nil || len(samples) != 1 || samples[0].Labels["state"] != "failed" {
		t.Errorf("current state: %v %v", samples, err)
	}
}

func errString(err error) string {
	if err == nil {
		return "no sample yet"
	}
	return err.Error()
}

func values(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+" "+v)
	}
	return out
}
