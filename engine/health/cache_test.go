package health

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// /health and /metrics are encoded once per published snapshot (Seq) and
// served from a cache until the next one; what Snapshot adds on each call
// (ok and stale as of now, the worker's live status) is never served stale.
func TestBodiesEncodedOncePerSnapshot(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	snap := sampleSnapshot()
	snap.Seq = 1
	set := func(f func(*engine.Snapshot)) { mu.Lock(); f(&snap); mu.Unlock() }
	srv := New(Options{Snapshot: func() engine.Snapshot { mu.Lock(); defer mu.Unlock(); return snap }})
	h := srv.Handler()
	get := func(path string) string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Host = "127.0.0.1:9999"
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		if path == "/health" && rec.Header().Get("Content-Length") != fmt.Sprint(rec.Body.Len()) {
			t.Fatalf("Content-Length %s for %d bytes", rec.Header().Get("Content-Length"), rec.Body.Len())
		}
		return rec.Body.String()
	}
	health := func() map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(get("/health")), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	first, firstMetrics := get("/health"), get("/metrics")
	// The same Seq is the same snapshot: the cached bodies are served,
	// byte for byte, without encoding what changed behind the cache's back.
	set(func(s *engine.Snapshot) { s.PolicyHash = "changed-without-a-new-seq" })
	if get("/health") != first || get("/metrics") != firstMetrics {
		t.Fatal("the same snapshot was encoded again")
	}
	// A new snapshot is encoded.
	set(func(s *engine.Snapshot) { s.Seq = 2 })
	if m := health(); m["policy_hash"] != "changed-without-a-new-seq" {
		t.Fatalf("a new snapshot served the old body: %v", m["policy_hash"])
	}
	if !strings.Contains(get("/metrics"), `talon_policy_info{policy_hash="changed-without-a-new-seq"} 1`) {
		t.Fatal("a new snapshot served the old metrics")
	}
	// Stale and ok are decided on each call; the worker is live.
	set(func(s *engine.Snapshot) { s.Stale, s.OK = true, false })
	if m := health(); m["stale"] != true {
		t.Fatalf("stale not shown: %v", m["stale"])
	}
	if !strings.Contains(get("/metrics"), "talon_stale 1") {
		t.Fatal("stale not in the metrics")
	}
	set(func(s *engine.Snapshot) { s.Worker = map[string]any{"pid": 41} })
	if w, _ := health()["worker"].(map[string]any); w["pid"] != float64(41) {
		t.Fatalf("worker %v", w)
	}
	set(func(s *engine.Snapshot) { s.Worker = map[string]any{"pid": 42} })
	if w, _ := health()["worker"].(map[string]any); w["pid"] != float64(42) {
		t.Fatalf("the worker's status was served from the cache: %v", w)
	}
	// A snapshot without a Seq (not published by a daemon) is never cached.
	set(func(s *engine.Snapshot) { s.Seq, s.PolicyHash = 0, "a" })
	health()
	set(func(s *engine.Snapshot) { s.PolicyHash = "b" })
	if m := health(); m["policy_hash"] != "b" {
		t.Fatalf("an unnumbered snapshot was cached: %v", m["policy_hash"])
	}
}

// The cost of GET /health at 1,000 probes, served from the cache (a
// snapshot already encoded) and encoded anew each time.
func BenchmarkHealth1000(b *testing.B) {
	snap := engine.Snapshot{State: engine.Healthy, OK: true, ProbeCount: 1000, FailedProbes: []string{}, RungRuns: map[string]int{}}
	for i := range 1000 {
		snap.Probes = append(snap.Probes, engine.Result{Name: fmt.Sprintf("probe_%d", i), Passed: true, Output: "connected to 127.0.0.1:8108", DurationMS: 1})
	}
	for _, bc := range []struct {
		name string
		seq  func(i int) uint64
	}{{"cached", func(int) uint64 { return 1 }}, {"encoded", func(i int) uint64 { return uint64(i + 1) }}} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			h := New(Options{Snapshot: func() engine.Snapshot { s := snap; s.Seq = bc.seq(i); i++; return s }}).Handler()
			req := httptest.NewRequest(http.MethodGet, "/health", nil)
			req.Host = "127.0.0.1:9999"
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			}
		})
	}
}

// A write failure of the state directory shows on /health (write_error,
// null otherwise) and in /metrics (talon_write_failing by file).
func TestWriteErrorOnHealthAndMetrics(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	snap := sampleSnapshot()
	_, base := start(t, Options{Snapshot: func() engine.Snapshot { return snap }})
	_, body := get(t, http.MethodGet, base+"/health")
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["write_error"]; !ok || v != nil {
		t.Fatalf("write_error without a failure: %v (present %v)", v, ok)
	}
	snap.WriteError = &engine.WriteError{State: "save state /s/state.json: write /s/.state.json.tmp-1: no space left on device", Since: since}
	_, body = get(t, http.MethodGet, base+"/health")
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	we, _ := m["write_error"].(map[string]any)
	if !strings.HasSuffix(fmt.Sprint(we["state"]), "no space left on device") || we["since"] != "2026-12-02T06:00:00Z" || we["journal"] != nil {
		t.Fatalf("write_error %v", m["write_error"])
	}
	_, metrics := get(t, http.MethodGet, base+"/metrics")
	for _, line := range []string{`talon_write_failing{file="state"} 1`, `talon_write_failing{file="journal"} 0`} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("no %s in\n%s", line, metrics)
		}
	}
}
