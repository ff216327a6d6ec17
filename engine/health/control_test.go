package health

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// fakeControl records the commands it is given.
type fakeControl struct {
	calls []string
	err   error
}

func (f *fakeControl) Pause(_ context.Context, c engine.Control, d time.Duration) (engine.Pause, error) {
	f.calls = append(f.calls, "pause "+c.Scope+" "+c.Name+" "+d.String()+" "+c.Reason)
	return engine.Pause{ID: "p1", Scope: c.Scope, Name: c.Name, Reason: c.Reason}, f.err
}

func (f *fakeControl) Resume(_ context.Context, c engine.Control) ([]engine.Pause, error) {
	f.calls = append(f.calls, "resume "+c.Scope+" "+c.Name)
	return []engine.Pause{{ID: "p1"}}, f.err
}

func (f *fakeControl) Ack(_ context.Context, c engine.Control) (string, error) {
	f.calls = append(f.calls, "ack "+c.Incident+" "+c.Reason)
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
	_, err := PostControl(context.Background(), bind, "/ack", ControlRequest{})
	var ce *ControlError
	if !errors.As(err, &ce) || ce.Status != 409 || ce.Message != "no incident is open" {
		t.Fatalf("PostControl on a refusal: %#v", err)
	}
	ctl.err = nil
	ans, err := PostControl(context.Background(), bind, "/pause", ControlRequest{Tag: "k8s", For: "1h"})
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
	s := New(Options{Bind: "0.0.0.0:0", Snapshot: sampleSnapshot, Control: ctl})
	req, _ := http.NewRequest(http.MethodPost, "http://198.51.100.1:9999/pause", strings.NewReader(`{}`))
	req.Host = "127.0.0.1:9999" // a Host header lies easily
	req.RemoteAddr = net.JoinHostPort("198.51.100.20", "5555")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 403 || rec.Body.String() != `{"ok":false,"error":"control_needs_loopback"}`+"\n" || len(ctl.calls) != 0 {
		t.Fatalf("a remote peer paused: %d %s %v", rec.Code, rec.Body, ctl.calls)
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
