package loader

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/health"
)

// TestNonCriticalServiceIsWatchedNotActedOn is the acceptance test of
// "non-critical means watch, don't act": a critical = false services.toml
// http service that answers 503 for ten minutes (the predecessor's idle
// voice agent, on a fake clock) runs no rung and pages no one, and shows as
// failing on /health (what talon status reads), which is not ok.
func TestNonCriticalServiceIsWatchedNotActedOn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "services.toml"), "[http.voice_agent]\nurl = \"http://127.0.0.1:8081/\"\ncritical = false\n")
	write(t, filepath.Join(dir, "config.toml"), "services_file = \"services.toml\"\n")
	write(t, filepath.Join(dir, "policy", "talon.star"), `
probe.func("host", lambda: True, critical = True)
services()
ladder(
    rung("heal", do = exec.cmd(["/usr/local/bin/heal.sh"]), cooldown = "1m"),
    rung("agent", do = agent.run("pi -p"), cooldown = "1m"),
    rung("sos", do = notify.webhook("http://127.0.0.1:9/page"), after = "1m", repeat = "5m"),
)
`)
	res := New(Options{ConfigFile: filepath.Join(dir, "config.toml"), PolicyDir: filepath.Join(dir, "policy")}).Load()
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	if p := res.Policy.Probe("http:voice_agent"); p == nil || p.OnFailure() != engine.OnFailureShow {
		t.Fatalf("the service probe: %+v", p)
	}
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var acted []string
		probes := &effect.Fake{DoFunc: func(req *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{},
				Body: io.NopCloser(strings.NewReader("idle")), Request: req}, nil
		}}
		actions := &effect.Fake{
			ExecFunc: func(_ context.Context, c effect.Command) effect.ExecResult {
				mu.Lock()
				acted = append(acted, strings.Join(c.Argv, " "))
				mu.Unlock()
				return effect.ExecResult{}
			},
			DoFunc: func(req *http.Request) (*http.Response, error) {
				mu.Lock()
				acted = append(acted, req.Method+" "+req.URL.String())
				mu.Unlock()
				return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
			},
		}
		d := engine.New(engine.Options{Load: func() *engine.LoadResult { return res }, Interval: time.Minute,
			Probes: probes, Actions: actions, Logger: log.New(io.Discard)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		for i := 0; i < 10; i++ {
			time.Sleep(time.Minute) // on the bubble's fake clock
			synctest.Wait()
		}
		s := d.Snapshot()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if len(acted) != 0 || len(s.RungRuns) != 0 || s.Pages != 0 || s.Incident != nil {
			t.Fatalf("ten minutes of a non-critical 503 acted: %q, rung runs %v, pages %d, incident %+v", acted, s.RungRuns, s.Pages, s.Incident)
		}
		if s.OK || s.State != engine.Degraded || strings.Join(s.FailedProbes, ",") != "http:voice_agent" {
			t.Fatalf("the failing service does not show: %+v", s)
		}
		// /health, which talon status reads, shows it.
		rec := httptest.NewRecorder()
		health.New(health.Options{Snapshot: func() engine.Snapshot { return s }}).Handler().ServeHTTP(rec,
			httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9999/health", nil))
		var body map[string]any
		if err := json.Unmarshal(bytes.TrimSpace(rec.Body.Bytes()), &body); err != nil {
			t.Fatal(err)
		}
		if body["ok"] != false || body["state"] != "degraded" || body["state_compat"] != "Degraded" ||
			!strings.Contains(rec.Body.String(), `"failed_probes":["http:voice_agent"]`) || !strings.Contains(rec.Body.String(), "HTTP 503") {
			t.Fatalf("/health: %s", rec.Body.String())
		}
	})
}
