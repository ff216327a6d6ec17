package notify_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// recorder is a loopback server that keeps what it was sent and answers status.
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	status  int
	reqs    []*http.Request
	bodies  [][]byte
	answers string
}

func newRecorder(t *testing.T, status int, answer string) *recorder {
	r := &recorder{status: status, answers: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		w.WriteHeader(r.status)
		io.WriteString(w, r.answers)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("server got no request")
	}
	return r.reqs[len(r.reqs)-1], r.bodies[len(r.bodies)-1]
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, http.StatusAccepted, "")
	host := strings.TrimPrefix(srv.URL, "http://")
	p := pager(t, fmt.Sprintf(`notify.webhook(%q, headers = {"Authorization": "Bearer " + secret("hook", env = "HOOK_TOKEN"), "X-Team": "infra"})`, srv.URL+"/hooks/T0/s3cr3t-path"))
	env := actionEnv(effect.NewLive(), "HOOK_TOKEN="+token)
	if r := p.Run(t.Context(), env); !r.OK || r.Output != "delivered via webhook:"+host {
		t.Fatalf("run: %+v", r)
	}
	req, body := srv.last(t)
	if req.Method != "POST" || req.URL.Path != "/hooks/T0/s3cr3t-path" || req.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %q", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
	}
	if got := req.Header.Get("Authorization"); got != "Bearer "+token {
		t.Fatalf("Authorization %q", got)
	}
	if got := req.Header.Get("X-Team"); got != "infra" {
		t.Fatalf("X-Team %q", got)
	}
	want := `{"kind":"sos","text":"🚨 TALON SOS: node_ready, colima down","incident":"inc-20260302-0300","state":"critical","failing":["colima","node_ready"],"time":"2026-03-02T03:17:00Z"}`
	if string(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	printed := fmt.Sprintf("%v %+v %#v %s", p, p, p, p)
	noToken(t, "describe", p.Describe(), p.Channel(), printed)
	if j, _ := json.Marshal(p); strings.Contains(printed+string(j), "s3cr3t-path") {
		t.Fatalf("the URL path shows: %s", p.Describe())
	}

	// Without an incident (a drill from the command line) failing is [], not null.
	env.Incident = nil
	if err := p.Send(t.Context(), env, engine.Message{Kind: "drill", Text: "DRILL"}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_, body = srv.last(t)
	json.Unmarshal(body, &m)
	if fmt.Sprint(m["failing"]) != "[]" || m["kind"] != "drill" || m["incident"] != "" {
		t.Fatalf("drill body %s", body)
	}
}

func TestWebhookFailures(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, http.StatusInternalServerError, "boom: token "+token+" rejected")
	host := strings.TrimPrefix(srv.URL, "http://")
	p := pager(t, fmt.Sprintf(`notify.webhook(%q, headers = {"X-Key": secret("hook", env = "HOOK_TOKEN")})`, srv.URL+"/s3cr3t-path"))
	err := p.Send(t.Context(), actionEnv(effect.NewLive(), "HOOK_TOKEN="+token), engine.Message{Kind: "sos", Text: "x"})
	want := "notify.webhook " + host + ": HTTP 500 Internal Server Error: boom: token <secret> rejected"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	err = p.Send(t.Context(), actionEnv(effect.NewLive()), engine.Message{Kind: "sos", Text: "x"})
	want = "notify.webhook " + host + ": header X-Key: secret hook: environment variable HOOK_TOKEN is not set"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	// Shadow mode records the host, not the path.
	rec := &effect.Recorder{}
	if r := p.Run(t.Context(), actionEnv(rec, "HOOK_TOKEN="+token)); !r.OK {
		t.Fatalf("dry run: %+v", r)
	}
	// The secret's resolution is an intent too, by name only.
	if in := rec.Intents(); len(in) != 2 || in[0].Detail != "resolve secret hook" || in[1].Detail != "webhook POST "+host {
		t.Fatalf("intents %+v", in)
	}
}

func TestAlertmanagerShape(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, http.StatusOK, "")
	p := pager(t, fmt.Sprintf(`notify.alertmanager(%q, labels = {"team": "infra"})`, srv.URL+"/"))
	env := actionEnv(effect.NewLive())
	if r := p.Run(t.Context(), env); !r.OK {
		t.Fatalf("run: %+v", r)
	}
	req, body := srv.last(t)
	if req.URL.Path != "/api/v2/alerts" || req.Method != "POST" {
		t.Fatalf("%s %s", req.Method, req.URL.Path)
	}
	host, _ := os.Hostname()
	want := fmt.Sprintf(`[{"labels":{"alertname":"TalonSOS","incident":"inc-20260302-0300","instance":%q,"severity":"critical","team":"infra"},"annotations":{"description":"🚨 TALON SOS: node_ready, colima down","summary":"🚨 TALON SOS: node_ready, colima down"},"startsAt":"2026-03-02T03:00:00Z"}]`, host)
	if string(body) != want {
		t.Fatalf("body\n%s\nwant\n%s", body, want)
	}
	if err := p.Send(t.Context(), env, engine.Message{Kind: "resolved", Text: "resolved\nall green", Incident: "inc-20260302-0300"}); err != nil {
		t.Fatal(err)
	}
	_, body = srv.last(t)
	want = fmt.Sprintf(`[{"labels":{"alertname":"TalonSOS","incident":"inc-20260302-0300","instance":%q,"severity":"critical","team":"infra"},"annotations":{"description":"resolved\nall green","summary":"resolved"},"startsAt":"2026-03-02T03:00:00Z","endsAt":"2026-03-02T03:17:00Z"}]`, host)
	if string(body) != want {
		t.Fatalf("resolved body\n%s\nwant\n%s", body, want)
	}

	bad := newRecorder(t, http.StatusBadRequest, `{"code":400,"message":"start time must be before end time"}`)
	p = pager(t, fmt.Sprintf(`notify.alertmanager(%q)`, bad.URL))
	err := p.Send(t.Context(), env, env.Message)
	want = "notify.alertmanager " + strings.TrimPrefix(bad.URL, "http://") + `: HTTP 400 Bad Request: {"code":400,"message":"start time must be before end time"}`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// A plain value is checked where the channel is declared, a secret's when a
// page is sent; neither error quotes the value.
func TestLineBreaksAndBadTokens(t *testing.T) {
	t.Parallel()
	declared := []struct{ expr, want string }{
		{`notify.webhook("http://127.0.0.1/", headers = {"X-Key": "t0k3n\r\nX-Injected: 1"})`, "notify.webhook: headers: X-Key: value has a line break (CR or LF)"},
		{`notify.webhook("http://127.0.0.1/", headers = {"X-Key": "t0k3n\n"})`, "notify.webhook: headers: X-Key: value has a line break (CR or LF)"},
		{`notify.telegram(1, "123456:t0k3n value")`, "notify.telegram: token is not a bot token: it has whitespace, a control character or one of / ? # %"},
		{`notify.telegram(1, "123456:t0k3n/sendMessage?chat_id=2#")`, "notify.telegram: token is not a bot token: it has whitespace, a control character or one of / ? # %"},
	}
	for _, tc := range declared {
		_, err := build(t, tc.expr)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.expr, err, tc.want)
		}
		if err != nil {
			noToken(t, "declaration error", err.Error())
		}
	}

	srv := newRecorder(t, http.StatusOK, "")
	host := strings.TrimPrefix(srv.URL, "http://")
	wh := pager(t, fmt.Sprintf(`notify.webhook(%q, headers = {"X-Key": "Bearer " + secret("hook", env = "HOOK_TOKEN")})`, srv.URL))
	err := wh.Send(t.Context(), actionEnv(effect.NewLive(), "HOOK_TOKEN=t0k3n\r\nX-Injected: 1"), engine.Message{Kind: "sos", Text: "x"})
	want := "notify.webhook " + host + ": header X-Key: value <secret hook> has a line break (CR or LF)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	tg := pager(t, fmt.Sprintf(`notify.telegram(1, secret("tg", env = "TG_TOKEN"), base_url = %q)`, srv.URL))
	err = tg.Send(t.Context(), actionEnv(effect.NewLive(), "TG_TOKEN=123456:t0k3n?x"), engine.Message{Kind: "sos", Text: "x"})
	want = "notify.telegram chat 1: token <secret tg> is not a bot token: it has whitespace, a control character or one of / ? # %"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.reqs) != 0 {
		t.Fatalf("sent %d requests with a bad value", len(srv.reqs))
	}
}
