package health

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

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
