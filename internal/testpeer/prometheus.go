//go:build linux

package testpeer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server on loopback that scrapes the
// targets it was started with every second.
type Prometheus struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Dir holds the config, the TSDB and prometheus.log.
	Dir string
}

const prometheusReadyTimeout = 30 * time.Second

// StartPrometheus starts the `prometheus` program (see Need) on a free
// loopback port with a temporary TSDB, scraping each target (host:port,
// path /metrics) every second, and waits until it is ready. It is stopped by
// t.Cleanup.
func StartPrometheus(t testing.TB, targets ...string) *Prometheus {
	t.Helper()
	bin := Need(t, "prometheus")["prometheus"]
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		dir := t.TempDir()
		quoted := make([]string, len(targets))
		for i, tg := range targets {
			quoted[i] = strconv.Quote(tg)
		}
		cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: talon
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
		cfgPath := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatalf("testpeer: %v", err)
		}
		port := FreePort(t)
		p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir}
		proc, err := startProc(dir, "prometheus", bin,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port),
			"--log.level=info",
		)
		if err != nil {
			t.Fatalf("testpeer: start prometheus: %v", err)
		}
		c := &http.Client{Timeout: 2 * time.Second}
		err = waitFor(proc, prometheusReadyTimeout, func() error {
			resp, err := c.Get(p.URL + "/-/ready")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/-/ready: %s", resp.Status)
			}
			return nil
		})
		if err == nil {
			t.Cleanup(proc.stop)
			return p
		}
		proc.stop()
		lastErr = fmt.Errorf("%v\n--- prometheus.log ---\n%s", err, tail(proc.logPath, 40))
		if !portTaken(proc) {
			break
		}
	}
	t.Fatalf("testpeer: prometheus did not become ready: %v", lastErr)
	return nil
}

// Sample is one element of an instant query's result vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query runs an instant PromQL query and returns the result vector.
func (p *Prometheus) Query(ctx context.Context, query string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		p.URL+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("query %q: %s: %s", query, resp.Status, body)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, out.Error)
	}
	if out.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s, want vector", query, out.Data.ResultType)
	}
	samples := make([]Sample, 0, len(out.Data.Result))
	for _, r := range out.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", query, r.Value[1], err)
		}
		samples = append(samples, Sample{Labels: r.Metric, Value: v})
	}
	return samples, nil
}

// Targets returns the health ("up", "down", "unknown") and last scrape
// error of each active target, by scrape URL.
func (p *Prometheus) Targets(ctx context.Context) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/targets?state=active", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, tg := range out.Data.ActiveTargets {
		m[tg.ScrapeURL] = strings.TrimSpace(tg.Health + " " + tg.LastError)
	}
	return m, nil
}
