package health

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/talon-dev/talon/engine"
)

var tCycle = time.Date(2026, 11, 23, 3, 12, 0, 500_000_000, time.UTC)

func sampleSnapshot() engine.Snapshot {
	perr := "talon.star:12:5: undefined: prob"
	rung := "heal"
	return engine.Snapshot{
		OK: false, State: engine.Failed, ConsecutiveFailures: 3, ProbeCount: 3,
		FailedProbeCount: 1, FailedProbes: []string{"redis"}, WorkerRestarts: 2,
		UpdatedAtUnix: tCycle.Unix(), PolicyHash: "9f2c0d1e", PolicyError: &perr,
		Incident: &engine.IncidentInfo{ID: "20261123T031200Z-7", Started: tCycle, Probes: []string{"redis"}, Critical: true},
		Rung:     &rung, LastCycle: tCycle, Reloads: 4,
		Probes: []engine.Result{
			{Name: "redis", Passed: false, Output: "refused", DurationMS: 12},
			{Name: "vm:redis", Passed: true, DurationMS: 1500},
			{Name: "weird \"quoted\" \\ back\nslash café", Passed: true, DurationMS: 3},
		},
	}
}

// start runs a server on a loopback port and returns its base URL.
func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	if opts.Bind == "" {
		opts.Bind = "127.0.0.1:0"
	}
	if opts.Snapshot == nil {
		opts.Snapshot = sampleSnapshot
	}
	if opts.Token == "" {
		opts.Token = testToken
	}
	s := New(opts)
	addr, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, "http://" + addr
}

// testToken is the control token of the servers start starts. The request
// helpers send it unless told otherwise (TokenHeader "-": no header).
const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// withToken sets the test token on req unless hdr names TokenHeader.
func withToken(req *http.Request, hdr []string) {
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == TokenHeader {
			if hdr[i+1] == "-" {
				req.Header.Del(TokenHeader)
			}
			return
		}
	}
	req.Header.Set(TokenHeader, testToken)
}

func client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func get(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	withToken(req, hdr)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// The predecessor served one connection at a time: one idle client took the
// endpoint down. Here an idle connection, a client stuck halfway through its
// request line and one stuck before its body must not slow anyone down.
func TestIdleAndSlowClientsDoNotBlock(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{})
	addr := strings.TrimPrefix(base, "http://")

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("GET /hea")); err != nil {
		t.Fatal(err)
	}
	noBody, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer noBody.Close()
	fmt.Fprintf(noBody, "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // let the server accept all three

	var lat []time.Duration
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		resp, body := get(t, http.MethodGet, base+"/health")
		d := time.Since(t0)
		lat = append(lat, d)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"state":"failed"`) {
			t.Fatalf("GET /health: %s %s", resp.Status, body)
		}
	}
	slices.Sort(lat)
	t.Logf("GET /health with an idle, a half-request and a body-less client connected: min %v, median %v, max %v (20 requests, new connection each)",
		lat[0], lat[len(lat)/2], lat[len(lat)-1])
	// A server that served one connection at a time would hold every
	// request until the stuck clients' ReadHeaderTimeout: no request may
	// come near it. (How fast it answers is for the benchmarks.)
	if slowest := lat[len(lat)-1]; slowest >= ReadHeaderTimeout/2 {
		t.Fatalf("slowest GET /health took %v: it waited on the stuck clients (ReadHeaderTimeout %v)", slowest, ReadHeaderTimeout)
	}
}

// A client that never finishes its request line is cut off by
// ReadHeaderTimeout rather than holding a connection forever.
func TestSlowClientIsDisconnected(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /hea"))
	t0 := time.Now()
	c.SetReadDeadline(time.Now().Add(ReadHeaderTimeout + 3*time.Second))
	_, err = io.ReadAll(c) // the server closes (possibly after a 408)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	if d := time.Since(t0); d < ReadHeaderTimeout-200*time.Millisecond || d > ReadHeaderTimeout+2*time.Second {
		t.Errorf("closed after %v, want about %v", d, ReadHeaderTimeout)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{Reload: func(context.Context) (string, error) { return "h2", nil }})
	tests := []struct {
		method, path string
		code         int
		body         string // substring; "" for none expected
		allow        string
	}{
		{"GET", "/health", 200, `"policy_hash":"9f2c0d1e"`, ""},
		{"GET", "/health?x", 200, `"failed_probes":["redis"]`, ""},
		{"GET", "/health?verbose=1&x=y", 200, `"ok":false`, ""},
		{"GET", "/healthz", 404, `{"ok":false,"error":"not_found"}`, ""},
		{"GET", "/health/", 404, `{"ok":false,"error":"not_found"}`, ""},
		{"GET", "/health/x", 404, `{"ok":false,"error":"not_found"}`, ""},
		{"GET", "/", 404, `{"ok":false,"error":"not_found"}`, ""},
		{"GET", "/metricsz", 404, `{"ok":false,"error":"not_found"}`, ""},
		{"GET", "/reload", 405, `{"ok":false,"error":"method_not_allowed"}`, "POST"},
		{"POST", "/health", 405, `{"ok":false,"error":"method_not_allowed"}`, "GET, HEAD"},
		{"DELETE", "/metrics", 405, `{"ok":false,"error":"method_not_allowed"}`, "GET, HEAD"},
		{"POST", "/reload", 200, `{"ok":true,"policy_hash":"h2"}`, ""},
		{"GET", "/metrics", 200, "talon_up 1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, tc.method, base+tc.path)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.code, body)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body %q does not contain %q", body, tc.body)
			}
			if got := resp.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.path != "/metrics" {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
		})
	}
}

func TestHealthBodyAndHead(t *testing.T) {
	t.Parallel()
	snap := sampleSnapshot()
	snap.FailedProbes = nil // consumers expect an array, never null
	_, base := start(t, Options{Snapshot: func() engine.Snapshot { return snap }})

	resp, body := get(t, http.MethodGet, base+"/health")
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	// The fields the predecessor's consumers read, with their names.
	for _, k := range []string{"ok", "state", "consecutive_failures", "probe_count", "failed_probe_count",
		"failed_probes", "worker_restarts", "updated_at_unix", "policy_hash", "policy_error", "incident", "rung"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, body)
		}
	}
	if fp, ok := m["failed_probes"].([]any); !ok || len(fp) != 0 {
		t.Errorf("failed_probes = %#v, want []", m["failed_probes"])
	}
	if m["policy_error"] != "talon.star:12:5: undefined: prob" {
		t.Errorf("policy_error = %v", m["policy_error"])
	}
	length := resp.Header.Get("Content-Length")

	head, hbody := get(t, http.MethodHead, base+"/health")
	if head.StatusCode != 200 || hbody != "" {
		t.Fatalf("HEAD: %s body %q", head.Status, hbody)
	}
	if head.Header.Get("Content-Type") != "application/json" || head.Header.Get("Content-Length") != length {
		t.Errorf("HEAD headers %v, want the GET's Content-Length %s", head.Header, length)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	fail := errors.New("talon.star:3:7: undefined: prob")
	_, good := start(t, Options{Reload: func(ctx context.Context) (string, error) {
		calls.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("reload context has no deadline")
		}
		return "abc123", nil
	}})
	_, bad := start(t, Options{Reload: func(context.Context) (string, error) { return "", fail }})
	_, none := start(t, Options{})

	resp, body := get(t, http.MethodPost, good+"/reload")
	if resp.StatusCode != 200 || body != `{"ok":true,"policy_hash":"abc123"}`+"\n" || calls.Load() != 1 {
		t.Errorf("good: %s %q calls %d", resp.Status, body, calls.Load())
	}
	resp, body = get(t, http.MethodPost, bad+"/reload")
	if resp.StatusCode != 500 || body != `{"ok":false,"error":"talon.star:3:7: undefined: prob"}`+"\n" {
		t.Errorf("bad: %s %q", resp.Status, body)
	}
	resp, body = get(t, http.MethodPost, none+"/reload")
	if resp.StatusCode != 501 || !strings.Contains(body, `"ok":false`) {
		t.Errorf("none: %s %q", resp.Status, body)
	}
	// A web page in a browser must not be able to trigger a reload.
	resp, body = get(t, http.MethodPost, good+"/reload", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if resp.StatusCode != 403 || body != `{"ok":false,"error":"cross_origin_request_refused"}`+"\n" || calls.Load() != 1 {
		t.Errorf("cross-site: %s %q calls %d", resp.Status, body, calls.Load())
	}

	// The client helper.
	bind := strings.TrimPrefix(good, "http://")
	if h, err := PostReload(context.Background(), bind, testToken); err != nil || h != "abc123" {
		t.Errorf("PostReload = %q, %v", h, err)
	}
	_, err := PostReload(context.Background(), strings.TrimPrefix(bad, "http://"), testToken)
	var re *ReloadError
	if !errors.As(err, &re) || err.Error() != fail.Error() {
		t.Errorf("PostReload on a bad policy: %#v", err)
	}
}

func TestReloadThatHangsStillGetsAnAnswer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	_, base := start(t, Options{Reload: func(context.Context) (string, error) {
		<-release // ignores ctx
		return "late", nil
	}})
	t0 := time.Now()
	resp, body := get(t, http.MethodPost, base+"/reload")
	if resp.StatusCode != 500 || !strings.Contains(body, "did not finish within 4s") {
		t.Errorf("%s %q", resp.Status, body)
	}
	if d := time.Since(t0); d > ReloadTimeout+time.Second {
		t.Errorf("answered after %v", d)
	}
}

func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf := fams[name]
	if mf == nil {
		t.Fatalf("no family %s", name)
	}
	for _, m := range mf.Metric {
		if matchLabels(m, labels) {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			default:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func matchLabels(m *dto.Metric, kv []string) bool {
	if len(m.Label) != len(kv)/2 {
		return false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestMetricsFromSnapshot(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{})
	resp, body := get(t, http.MethodGet, base+"/metrics")
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" || params["version"] != "0.0.4" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	fams := parseMetrics(t, body)

	want := []struct {
		name   string
		typ    dto.MetricType
		labels []string
		v      float64
	}{
		{"talon_up", dto.MetricType_GAUGE, nil, 1},
		{"talon_state", dto.MetricType_GAUGE, []string{"state", "failed"}, 1},
		{"talon_state", dto.MetricType_GAUGE, []string{"state", "healthy"}, 0},
		{"talon_state", dto.MetricType_GAUGE, []string{"state", "sos"}, 0},
		{"talon_probe_up", dto.MetricType_GAUGE, []string{"probe", "redis"}, 0},
		{"talon_probe_up", dto.MetricType_GAUGE, []string{"probe", "vm:redis"}, 1},
		{"talon_probe_up", dto.MetricType_GAUGE, []string{"probe", "weird \"quoted\" \\ back\nslash café"}, 1},
		{"talon_probe_duration_seconds", dto.MetricType_GAUGE, []string{"probe", "vm:redis"}, 1.5},
		{"talon_probe_duration_seconds", dto.MetricType_GAUGE, []string{"probe", "redis"}, 0.012},
		{"talon_failed_probes", dto.MetricType_GAUGE, nil, 1},
		{"talon_consecutive_failures", dto.MetricType_GAUGE, nil, 3},
		{"talon_reloads_total", dto.MetricType_COUNTER, nil, 4},
		{"talon_policy_error", dto.MetricType_GAUGE, nil, 1},
		{"talon_policy_info", dto.MetricType_GAUGE, []string{"policy_hash", "9f2c0d1e"}, 1},
		{"talon_incident_open", dto.MetricType_GAUGE, nil, 1},
		{"talon_probes", dto.MetricType_GAUGE, nil, 3},
		{"talon_worker_restarts_total", dto.MetricType_COUNTER, nil, 2},
		{"talon_last_cycle_timestamp_seconds", dto.MetricType_GAUGE, nil, 1795403520.5},
	}
	for _, w := range want {
		if got := fams[w.name].GetType(); got != w.typ {
			t.Errorf("%s TYPE %v, want %v", w.name, got, w.typ)
		}
		if fams[w.name].GetHelp() == "" {
			t.Errorf("%s has no HELP", w.name)
		}
		if got := value(t, fams, w.name, w.labels...); got != w.v {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.v)
		}
	}
	if n := len(fams["talon_state"].Metric); n != len(engine.Phases) {
		t.Errorf("%d talon_state series, want one per phase (%d)", n, len(engine.Phases))
	}
	// Label escaping as the text format specifies it.
	if !strings.Contains(body, `talon_probe_up{probe="weird \"quoted\" \\ back\nslash café"} 1`) {
		t.Errorf("escaped series missing:\n%s", body)
	}
	for _, line := range []string{"# HELP talon_up ", "# TYPE talon_up gauge", "# TYPE talon_reloads_total counter"} {
		if !strings.Contains(body, line) {
			t.Errorf("missing %q", line)
		}
	}
}

func TestMetricsEdgeCases(t *testing.T) {
	t.Parallel()
	snap := engine.Snapshot{State: engine.Healthy, Probes: []engine.Result{
		{Name: "dup", Passed: true}, {Name: "dup", Passed: false},
	}}
	var b bytes.Buffer
	if err := WriteMetrics(&b, snap); err != nil {
		t.Fatal(err)
	}
	fams := parseMetrics(t, b.String())
	if v := value(t, fams, "talon_last_cycle_timestamp_seconds"); v != 0 {
		t.Errorf("last cycle before any cycle = %v, want 0", v)
	}
	if v := value(t, fams, "talon_probe_up", "probe", "dup"); v != 1 {
		t.Errorf("duplicate probe: first result should win, got %v", v)
	}
	if _, ok := fams["talon_policy_info"]; ok {
		t.Error("talon_policy_info without a policy hash")
	}
	if v := value(t, fams, "talon_policy_error"); v != 0 {
		t.Errorf("policy_error = %v", v)
	}
}

func TestMetricsOverride(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{Metrics: func(w io.Writer) { io.WriteString(w, "# TYPE custom_metric gauge\ncustom_metric 7\n") }})
	resp, body := get(t, http.MethodGet, base+"/metrics")
	if body != "# TYPE custom_metric gauge\ncustom_metric 7\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("%q %q", resp.Header.Get("Content-Type"), body)
	}
}

func TestRefuseNonLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		bind  string
		allow bool
		err   string
	}{
		{"127.0.0.1:9999", false, ""},
		{"127.3.4.5:9999", false, ""},
		{"[::1]:9999", false, ""},
		{"localhost:9999", false, ""},
		{"LOCALHOST:0", false, ""},
		{"0.0.0.0:9999", false, "health bind 0.0.0.0:9999 is not a loopback address; set [health] allow_non_loopback = true to expose it"},
		{":9999", false, "health bind :9999 is not a loopback address; set [health] allow_non_loopback = true to expose it"},
		{"[::]:9999", false, "health bind [::]:9999 is not a loopback address; set [health] allow_non_loopback = true to expose it"},
		{"192.168.1.10:9999", false, "health bind 192.168.1.10:9999 is not a loopback address; set [health] allow_non_loopback = true to expose it"},
		{"talon.example:9999", false, "health bind talon.example:9999 is not a loopback address; set [health] allow_non_loopback = true to expose it"},
		{"0.0.0.0:9999", true, ""},
		{"127.0.0.1", false, `health bind "127.0.0.1": address 127.0.0.1: missing port in address`},
		{"127.0.0.1", true, `health bind "127.0.0.1": address 127.0.0.1: missing port in address`},
	}
	for _, tc := range tests {
		err := RefuseNonLoopback(tc.bind, tc.allow)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.err {
			t.Errorf("RefuseNonLoopback(%q, %v) = %q, want %q", tc.bind, tc.allow, got, tc.err)
		}
	}
}

func TestClientGet(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{})
	bind := strings.TrimPrefix(base, "http://")
	snap, err := Get(context.Background(), bind)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleSnapshot()
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(snap)
	if !bytes.Equal(wj, gj) {
		t.Errorf("Get:\n got %s\nwant %s", gj, wj)
	}
	// An unspecified host is reached on loopback.
	_, port, _ := net.SplitHostPort(bind)
	if _, err := Get(context.Background(), "0.0.0.0:"+port); err != nil {
		t.Errorf("Get via 0.0.0.0: %v", err)
	}
	if _, err := Get(context.Background(), ":"+port); err != nil {
		t.Errorf("Get via :port: %v", err)
	}
}

func TestClientNotRunning(t *testing.T) {
	t.Parallel()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	bind := ln.Addr().String()
	ln.Close()
	if _, err := Get(context.Background(), bind); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Get: %v", err)
	}
	if _, err := PostReload(context.Background(), bind, testToken); !errors.Is(err, ErrNotRunning) {
		t.Errorf("PostReload: %v", err)
	}
}

// A client must not hang on a server that accepts and never answers.
func TestClientTimesOut(t *testing.T) {
	t.Parallel()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			bufio.NewReader(c).ReadString('\n')
		}
	}()
	t0 := time.Now()
	_, err := Get(context.Background(), ln.Addr().String())
	if err == nil || time.Since(t0) > GetTimeout+time.Second {
		t.Errorf("Get returned %v after %v", err, time.Since(t0))
	}
}

// Something else on the port (not Talon) is reported as such.
func TestClientWrongServer(t *testing.T) {
	t.Parallel()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>hello</html>")
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	_, err := Get(context.Background(), ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "is something else listening there?") {
		t.Errorf("err = %v", err)
	}
}

func TestShutdownWithIdleConnection(t *testing.T) {
	t.Parallel()
	s, base := start(t, Options{})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.Shutdown(ctx)
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Errorf("Shutdown took %v with an idle client", d)
	}
	if _, err := client().Get(base + "/health"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	s, base := start(t, Options{})
	if _, err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	taken := strings.TrimPrefix(base, "http://")
	_, err := New(Options{Bind: taken, Snapshot: sampleSnapshot}).Start()
	if err == nil || !strings.HasPrefix(err.Error(), "health endpoint: listen tcp "+taken) {
		t.Errorf("bind on a taken port: %v", err)
	}
	if _, err := New(Options{Bind: "127.0.0.1:0"}).Start(); err == nil {
		t.Error("Start without Snapshot succeeded")
	}
	// Shutdown of a server never started is a no-op.
	if err := New(Options{}).Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestConcurrentScrapes(t *testing.T) {
	t.Parallel()
	_, base := start(t, Options{})
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		go func() {
			path := []string{"/health", "/metrics"}[i%2]
			resp, err := client().Get(base + path)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("%s: %s", path, resp.Status)
				}
			}
			errs <- err
		}()
	}
	var failed []string
	for i := 0; i < 40; i++ {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		t.Fatal(failed)
	}
}

// DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends
// Host: evil.example. A loopback-bound endpoint answers loopback names only.
func TestForeignHostRefused(t *testing.T) {
	t.Parallel()
	srv := New(Options{Bind: "127.0.0.1:0", Snapshot: func() engine.Snapshot { return engine.Snapshot{OK: true} }})
	addr, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{
		"evil.example:" + port: http.StatusForbidden,
		"evil.example":         http.StatusForbidden,
		"127.0.0.1:" + port:    http.StatusOK,
		"localhost:" + port:    http.StatusOK,
		"[::1]:" + port:        http.StatusOK,
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/health", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: status %d, want %d", host, resp.StatusCode, want)
		}
	}
}
