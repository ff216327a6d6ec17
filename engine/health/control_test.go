package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
)

// fakeControl records the commands it is given.
type fakeControl struct {
	calls []string
	err   error
	by    string // the last command's By
}

func (f *fakeControl) Pause(_ context.Context, c engine.Control, d time.Duration) (engine.Pause, error) {
	f.calls = append(f.calls, "pause "+c.Scope+" "+c.Name+" "+d.String()+" "+c.Reason)
	f.by = c.By
	return engine.Pause{ID: "p1", Scope: c.Scope, Name: c.Name, Reason: c.Reason}, f.err
}

func (f *fakeControl) Resume(_ context.Context, c engine.Control) ([]engine.Pause, error) {
	f.calls = append(f.calls, "resume "+c.Scope+" "+c.Name)
	return []engine.Pause{{ID: "p1"}}, f.err
}

func (f *fakeControl) Ack(_ context.Context, c engine.Control) (string, error) {
	f.calls = append(f.calls, "ack "+c.Incident+" "+c.Reason)
	f.by = c.By
	return "inc-1", f.err
}

func post(t *testing.T, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	withToken(req, hdr)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestControlRoutes(t *testing.T) {
	t.Parallel()
	ctl := &fakeControl{}
	_, base := start(t, Options{Control: ctl, AllowedHosts: []string{"gateway.local"}})
	cases := []struct {
		path, body string
		code       int
		answer     string
		call       string
	}{
		{"/pause", `{"probe":"redis","for":"30m","reason":"upgrade"}`, 200, `{"ok":true,"pause":{"id":"p1","scope":"probe","name":"redis","since":"0001-01-01T00:00:00Z","reason":"upgrade"}}`, "pause probe redis 30m0s upgrade"},
		{"/pause", ``, 200, `{"ok":true,"pause":{"id":"p1","since":"0001-01-01T00:00:00Z"}}`, "pause   0s "},
		{"/resume", `{"rung":"heal"}`, 200, `{"ok":true,"resumed":[{"id":"p1","since":"0001-01-01T00:00:00Z"}]}`, "resume rung heal"},
		{"/ack", `{"incident":"inc-1","reason":"on it"}`, 200, `{"ok":true,"incident":"inc-1"}`, "ack inc-1 on it"},
		{"/pause", `{"probe":"a","tag":"b"}`, 400, `{"ok":false,"error":"name at most one of probe, tag and rung"}`, ""},
		{"/pause", `{"for":"soon"}`, 400, `{"ok":false,"error":"for \"soon\": want a positive duration such as 30m"}`, ""},
		{"/pause", `{"for":"24h1m"}`, 400, `{"ok":false,"error":"for \"24h1m\": a pause lasts at most 24h0m0s; pause again when it ends"}`, ""},
		{"/pause", `{"by":"` + strings.Repeat("x", 201) + `"}`, 400, `{"ok":false,"error":"by: at most 200 characters"}`, ""},
		{"/pause", `{"for":"-5m"}`, 400, `{"ok":false,"error":"for \"-5m\": want a positive duration such as 30m"}`, ""},
		{"/pause", `{"incident":"x"}`, 400, `{"ok":false,"error":"pause takes no incident"}`, ""},
		{"/resume", `{"for":"5m"}`, 400, `{"ok":false,"error":"resume takes no duration"}`, ""},
		{"/ack", `{"probe":"redis"}`, 400, `{"ok":false,"error":"ack takes an incident and a reason only"}`, ""},
		{"/pause", `{"probes":"redis"}`, 400, `{"ok":false,"error":"bad request body: json: unknown field \"probes\""}`, ""},
		{"/pause", `{"probe":`, 400, `{"ok":false,"error":"bad request body: unexpected EOF"}`, ""},
	}
	for _, tc := range cases {
		ctl.calls = nil
		code, body := post(t, base+tc.path, tc.body)
		if code != tc.code || body != tc.answer+"\n" {
			t.Errorf("POST %s %s: %d %s\nwant %d %s", tc.path, tc.body, code, body, tc.code, tc.answer)
		}
		if got := strings.Join(ctl.calls, "|"); got != tc.call {
			t.Errorf("POST %s %s: calls %q, want %q", tc.path, tc.body, got, tc.call)
		}
	}
	// Who asked reaches the daemon.
	if code, _ := post(t, base+"/ack", `{"by":"joel (uid 501)"}`); code != 200 || ctl.by != "joel (uid 501)" {
		t.Errorf("ack by: %d %q", code, ctl.by)
	}
	// Only from this machine, by a loopback name: not through an allowed
	// host, and not from a browser page on another origin.
	ctl.calls = nil
	for _, hdr := range [][]string{{"Host", "gateway.local"}, {"Host", "evil.example"}, {"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}} {
		if code, body := post(t, base+"/pause", `{}`, hdr...); code != 403 {
			t.Errorf("POST /pause with %v: %d %s", hdr, code, body)
		}
	}
	if len(ctl.calls) != 0 {
		t.Fatalf("a refused request reached the daemon: %v", ctl.calls)
	}
	// GET is not a command.
	if code, _ := post(t, base+"/ack", ""); code != 200 {
		t.Fatalf("ack: %d", code)
	}
	resp, _ := get(t, http.MethodGet, base+"/pause")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /pause: %s allow %q", resp.Status, resp.Header.Get("Allow"))
	}
	// A refusal of the daemon's is a 409 with its reason, and the client
	// helper returns it as a *ControlError.
	ctl.err = errors.New("no incident is open")
	bind := strings.TrimPrefix(base, "http://")
	_, err := PostControl(context.Background(), bind, testToken, "/ack", ControlRequest{})
	var ce *ControlError
	if !errors.As(err, &ce) || ce.Status != 409 || ce.Message != "no incident is open" {
		t.Fatalf("PostControl on a refusal: %#v", err)
	}
	ctl.err = nil
	ans, err := PostControl(context.Background(), bind, testToken, "/pause", ControlRequest{Tag: "k8s", For: "1h"})
	if err != nil || ans.Pause == nil || ans.Pause.ID != "p1" || ctl.calls[len(ctl.calls)-1] != "pause tag k8s 1h0m0s " {
		t.Fatalf("PostControl pause: %+v %v %v", ans, err, ctl.calls)
	}
	// Without a controller the routes say so.
	_, none := start(t, Options{})
	if code, body := post(t, none+"/pause", `{}`); code != 501 || body != `{"ok":false,"error":"pause is not available"}`+"\n" {
		t.Errorf("no controller: %d %s", code, body)
	}
}

// On a bind that is not loopback (allow_non_loopback), the control routes
// still answer only to this machine.
func TestControlRefusesRemotePeers(t *testing.T) {
	t.Parallel()
	if loopbackRemote("192.0.2.7:4444") || loopbackRemote("garbage") || !loopbackRemote("127.0.0.1:4444") || !loopbackRemote("[::1]:80") {
		t.Fatal("loopbackRemote")
	}
	ctl := &fakeControl{}
	s := New(Options{Bind: "0.0.0.0:0", Snapshot: sampleSnapshot, Control: ctl, Token: testToken})
	req, _ := http.NewRequest(http.MethodPost, "http://198.51.100.1:9999/pause", strings.NewReader(`{}`))
	req.Host = "127.0.0.1:9999"            // a Host header lies easily
	req.Header.Set(TokenHeader, testToken) // even with the token
	req.RemoteAddr = net.JoinHostPort("198.51.100.20", "5555")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 403 || rec.Body.String() != `{"ok":false,"error":"control_needs_loopback"}`+"\n" || len(ctl.calls) != 0 {
		t.Fatalf("a remote peer paused: %d %s %v", rec.Code, rec.Body, ctl.calls)
	}
	// A reload, which only rereads the daemon's own files, still answers
	// there as it did before the token, but only with the token.
	reloads := 0
	s = New(Options{Bind: "0.0.0.0:0", Snapshot: sampleSnapshot, Token: testToken, Reload: func(context.Context) (string, error) { reloads++; return "h", nil }})
	for _, tok := range []string{"", testToken} {
		req, _ := http.NewRequest(http.MethodPost, "http://192.0.2.1:9999/reload", nil)
		req.RemoteAddr = net.JoinHostPort("192.0.2.1", "5555")
		req.Header.Set(TokenHeader, tok)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if want := map[string]int{"": 403, testToken: 200}[tok]; rec.Code != want {
			t.Errorf("reload from a remote peer with token %q: %d %s", tok, rec.Code, rec.Body)
		}
	}
	if reloads != 1 {
		t.Fatalf("%d reloads", reloads)
	}
}

// Pauses, the acknowledgement and flapping probes show in /metrics.
func TestMetricsShowPausesAcksAndFlapping(t *testing.T) {
	t.Parallel()
	snap := sampleSnapshot()
	snap.Paused = []engine.PauseInfo{{Pause: engine.Pause{ID: "p1"}}, {Pause: engine.Pause{ID: "p2", Scope: engine.ScopeProbe, Name: "redis"}}}
	snap.Flapping = []string{"redis"}
	snap.Incident.Acked = &engine.Ack{Reason: "on it"}
	var b bytes.Buffer
	if err := WriteMetrics(&b, snap); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`talon_pauses{scope="all"} 1`, `talon_pauses{scope="probe"} 1`, `talon_pauses{scope="tag"} 0`, `talon_pauses{scope="rung"} 0`,
		"talon_incident_acknowledged 1",
		`talon_probe_flapping{probe="redis"} 1`, `talon_probe_flapping{probe="vm:redis"} 0`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, b.String())
		}
	}
}

// Anyone who can reach the port must not pause, resume, acknowledge or
// reload: every control route wants the token the daemon wrote in its
// state directory, and answers 403 with a one-line reason without it.
func TestControlNeedsTheToken(t *testing.T) {
	t.Parallel()
	ctl := &fakeControl{}
	reloads := 0
	const token = "4f1c0e7a9b2d3c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6"
	_, base := start(t, Options{Control: ctl, Token: token, Reload: func(context.Context) (string, error) { reloads++; return "h", nil }})
	for _, path := range []string{"/pause", "/resume", "/ack", "/reload"} {
		for _, hdr := range [][]string{{TokenHeader, "-"}, {TokenHeader, ""}, {TokenHeader, strings.Repeat("0", 64)}, {TokenHeader, token[:63]}} {
			code, body := post(t, base+path, `{}`, hdr...)
			if code != 403 || strings.Count(body, "\n") != 1 || !strings.Contains(body, "control.token") {
				t.Errorf("POST %s with %q: %d %s", path, hdr, code, body)
			}
		}
	}
	if len(ctl.calls) != 0 || reloads != 0 {
		t.Fatalf("a request without the token reached the daemon: %v, %d reloads", ctl.calls, reloads)
	}
	for _, path := range []string{"/pause", "/resume", "/ack", "/reload"} {
		if code, body := post(t, base+path, `{}`, TokenHeader, token); code != 200 {
			t.Errorf("POST %s with the token: %d %s", path, code, body)
		}
	}
	if len(ctl.calls) != 3 || reloads != 1 {
		t.Fatalf("the token's requests: %v, %d reloads", ctl.calls, reloads)
	}
	// A daemon without a token (it could not write one) takes no command.
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9999/pause", strings.NewReader(`{}`))
	req.RemoteAddr = "127.0.0.1:5555"
	rec := httptest.NewRecorder()
	New(Options{Snapshot: sampleSnapshot, Control: ctl}).Handler().ServeHTTP(rec, req)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "no control token") || len(ctl.calls) != 3 {
		t.Errorf("a daemon without a token: %d %s", rec.Code, rec.Body)
	}
}

// The token is written 0600 in the state directory with the address the
// daemon bound, fresh at every start, and read back by the CLI; a link
// there is not followed.
func TestControlFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || len(a) != 64 {
		t.Fatalf("tokens %q and %q", a, b)
	}
	remove, err := WriteControlFile(dir, ControlFile{Token: a, Addr: "127.0.0.1:9999", PID: 42})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control file: %v %v", fi, err)
	}
	if cf, err := ReadControlFile(dir); err != nil || cf != (ControlFile{Token: a, Addr: "127.0.0.1:9999", PID: 42}) {
		t.Fatalf("ReadControlFile = %+v, %v", cf, err)
	}
	linked := t.TempDir()
	os.Symlink(filepath.Join(dir, TokenFile), filepath.Join(linked, TokenFile))
	if _, err := ReadControlFile(linked); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("ReadControlFile through a link: %v", err)
	}
	remove()
	if _, err := ReadControlFile(dir); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "no control token in "+dir) {
		t.Fatalf("ReadControlFile without a daemon: %v", err)
	}
	os.WriteFile(filepath.Join(dir, TokenFile), []byte(`{"token":"short"}`), 0o600)
	if _, err := ReadControlFile(dir); err == nil || !strings.Contains(err.Error(), "is not a control token") {
		t.Fatalf("ReadControlFile of garbage: %v", err)
	}
}

// A squatter (another program bound the daemon's port) must never see the
// token: the client asks the server to prove it holds the token first, and
// sends the command only on that same connection.
func TestClientRefusesASquatter(t *testing.T) {
	t.Parallel()
	const token = "4f1c0e7a9b2d3c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6"
	var seen []string
	squatter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get(TokenHeader))
		// It answers whatever it is asked, as a talon daemon would.
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"proof":"`+strings.Repeat("ab", 32)+`","policy_hash":"h","pause":{"id":"p1"}}`)
	}))
	defer squatter.Close()
	bind := strings.TrimPrefix(squatter.URL, "http://")
	_, err := PostControl(context.Background(), bind, token, "/pause", ControlRequest{})
	if !errors.Is(err, ErrNotOurDaemon) || !strings.Contains(err.Error(), bind) {
		t.Fatalf("PostControl to a squatter: %v", err)
	}
	if _, err := PostReload(context.Background(), bind, token); !errors.Is(err, ErrNotOurDaemon) {
		t.Fatalf("PostReload to a squatter: %v", err)
	}
	for _, s := range seen {
		if strings.Contains(s, token) || !strings.HasPrefix(s, "GET /identity") {
			t.Fatalf("the squatter got %q", s)
		}
	}
	// The real daemon proves itself, and takes the command.
	ctl := &fakeControl{}
	_, base := start(t, Options{Control: ctl, Token: token})
	ours := strings.TrimPrefix(base, "http://")
	if _, err := PostControl(context.Background(), ours, token, "/pause", ControlRequest{}); err != nil || len(ctl.calls) != 1 {
		t.Fatalf("PostControl to the daemon: %v %v", err, ctl.calls)
	}
	// The daemon of another state directory (another token) is not ours.
	if _, err := PostControl(context.Background(), ours, strings.Repeat("1", 64), "/pause", ControlRequest{}); !errors.Is(err, ErrNotOurDaemon) || len(ctl.calls) != 1 {
		t.Fatalf("PostControl with another token: %v %v", err, ctl.calls)
	}
}

// A port someone else holds at start: the server tries again with backoff,
// says so on the log each time, and listens once the port is free. The
// clock is the test's: no sleeping.
func TestListenRetriesABusyPort(t *testing.T) {
	t.Parallel()
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bind := squatter.Addr().String()
	var logs syncBuffer
	s := New(Options{Bind: bind, Snapshot: sampleSnapshot, Logger: log.New(&logs)})
	defer s.Shutdown(context.Background())
	waits, tick := make(chan time.Duration), make(chan time.Time)
	after := func(d time.Duration) <-chan time.Time { waits <- d; return tick }
	listening := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Listen(context.Background(), after, func(addr string) { listening <- addr })
	}()
	var got []time.Duration
	for range 8 {
		got = append(got, <-waits)
		tick <- time.Time{}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	<-waits // the ninth failure is logged too
	if n := strings.Count(logs.String(), "health endpoint not listening"); n != 9 || !strings.Contains(logs.String(), "address already in use") {
		t.Fatalf("%d failures logged:\n%s", n, logs.String())
	}
	squatter.Close()
	tick <- time.Time{}
	<-done
	if addr := <-listening; addr != bind {
		t.Fatalf("listening on %s, want %s", addr, bind)
	}
	if _, err := Get(context.Background(), bind); err != nil {
		t.Fatalf("GET /health after the port came free: %v", err)
	}
	if !strings.Contains(logs.String(), "health endpoint listening after all") {
		t.Fatalf("log:\n%s", logs.String())
	}
	// Given up when the daemon stops.
	ctx, cancel := context.WithCancel(context.Background())
	s2 := New(Options{Bind: bind, Snapshot: sampleSnapshot})
	stopped := make(chan struct{})
	go func() { defer close(stopped); s2.Listen(ctx, after, nil) }()
	<-waits
	cancel()
	<-stopped
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
