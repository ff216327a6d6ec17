package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/notify"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// token is the bot token the fake Bot API accepts; the tests look for it
// everywhere it must not be.
const token = "987654321:AAH-t0k3nSeCrEt_xyz"

// botAPI is a loopback server speaking the Bot API's sendMessage wire format.
type botAPI struct {
	*httptest.Server
	mu     sync.Mutex
	paths  []string
	bodies []map[string]any
	delay  time.Duration
	status int // forced HTTP status with a non-JSON body, for proxies in the way
}

func newBotAPI(t *testing.T) *botAPI {
	b := &botAPI{}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *botAPI) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.paths = append(b.paths, r.URL.Path)
	delay, status := b.delay, b.status
	b.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/bot"+token+"/sendMessage" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"ok":false,"error_code":401,"description":"Unauthorized"}`)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"ok":false,"error_code":400,"description":"Bad Request: unsupported content type %s"}`, ct)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"ok":false,"error_code":400,"description":"Bad Request: can't parse JSON"}`)
		return
	}
	b.mu.Lock()
	b.bodies = append(b.bodies, body)
	b.mu.Unlock()
	if body["chat_id"] != "-100123" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}`)
		return
	}
	fmt.Fprintf(w, `{"ok":true,"result":{"message_id":4711,"from":{"id":987654321,"is_bot":true,"first_name":"Talon","username":"talon_sos_bot"},"chat":{"id":-100123,"title":"ops","type":"supergroup"},"date":%d,"text":%q}}`,
		time.Now().Unix(), body["text"])
}

func (b *botAPI) seen() ([]string, []map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...), append([]map[string]any(nil), b.bodies...)
}

// leaseScript prints the token the way `secrets lease` does, WARNING line first.
func leaseScript(t *testing.T, tok string) string {
	return script(t, "secrets", `echo "WARNING: lease for $2 expires in 30m"
echo "`+tok+`"
`)
}

func noToken(t *testing.T, where string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, token) || strings.Contains(s, "t0k3n") {
			t.Fatalf("%s contains the token: %q", where, s)
		}
	}
}

func TestTelegram(t *testing.T) {
	t.Parallel()
	api := newBotAPI(t)
	lease := leaseScript(t, token)
	p := pager(t, fmt.Sprintf(`notify.telegram("-100123", secret("telegram_bot_token", command = [%q, "lease", "{name}"]), base_url = %q, silent = True)`, lease, api.URL))
	env := actionEnv(effect.NewLive())
	r := p.Run(t.Context(), env)
	if !r.OK || r.Output != "delivered via telegram:-100123" {
		t.Fatalf("run: %+v", r)
	}
	paths, bodies := api.seen()
	if len(paths) != 1 || paths[0] != "/bot"+token+"/sendMessage" {
		t.Fatalf("server saw %q", paths)
	}
	want := map[string]any{"chat_id": "-100123", "text": env.Message.Text, "disable_notification": true}
	if fmt.Sprint(bodies[0]) != fmt.Sprint(want) {
		t.Fatalf("body %v, want %v", bodies[0], want)
	}
	noToken(t, "describe", p.Describe(), p.Channel(), fmt.Sprintf("%v %+v %#v %s", p, p, p, p))
	if j, err := json.Marshal(p); err != nil || strings.Contains(string(j), "t0k3n") {
		t.Fatalf("json %s %v", j, err)
	}
}

func TestTelegramFailures(t *testing.T) {
	t.Parallel()
	api := newBotAPI(t)
	slow := newBotAPI(t)
	slow.delay = 2 * time.Second
	proxy := newBotAPI(t)
	proxy.status = http.StatusBadGateway
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	cases := []struct {
		name, tok, chat, url, extra, want string
	}{
		{"wrong token", "111:wrong-t0k3n", "-100123", api.URL, "", "notify.telegram chat -100123: HTTP 401: Unauthorized"},
		{"unknown chat", token, "42", api.URL, "", "notify.telegram chat 42: HTTP 400: Bad Request: chat not found"},
		{"not the Bot API", token, "-100123", proxy.URL, "", "notify.telegram chat -100123: HTTP 502 Bad Gateway: the answer is not Bot API JSON: <html><body><h1>502 Bad Gateway</h1></body></html>"},
		{"timeout", token, "-100123", slow.URL, `, timeout = "300ms"`, "notify.telegram chat -100123: timed out after 300ms"},
		{"server down", token, "-100123", down.URL, "", "notify.telegram chat -100123: dial tcp " + strings.TrimPrefix(down.URL, "http://") + ": connect: connection refused"},
		{"lease refused", "ok", "-100123", api.URL, "", `notify.telegram chat -100123: secret tg: lease command secrets printed "ok" instead of a value`},
		{"not a token", "a/b", "-100123", api.URL, "", "notify.telegram chat -100123: token <secret tg> is not a bot token: it has whitespace, a control character or one of / ? # %"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := pager(t, fmt.Sprintf(`notify.telegram(%q, secret("tg", command = [%q, "lease", "{name}"]), base_url = %q%s)`, tc.chat, leaseScript(t, tc.tok), tc.url, tc.extra))
			start := time.Now()
			err := p.Send(t.Context(), actionEnv(effect.NewLive()), engine.Message{Kind: "sos", Text: "page"})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
			noToken(t, "error", err.Error())
			if strings.Contains(err.Error(), "/bot") {
				t.Fatalf("error names the URL: %v", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
}

// dryRun is Recorder with the secret placeholder the engine's dry-run
// effects are expected to provide (see secret.Placeholder).
type dryRun struct{ *effect.Recorder }

func (dryRun) SecretPlaceholder(_ context.Context, name string) string { return "0:dry-run-" + name }

// TestTelegramDryRun: in shadow mode the intent names the chat and never
// the token, whether the token comes from the environment or a lease.
func TestTelegramDryRun(t *testing.T) {
	t.Parallel()
	api := newBotAPI(t)
	t.Run("env token, plain Recorder", func(t *testing.T) {
		rec := &effect.Recorder{}
		p := pager(t, fmt.Sprintf(`notify.telegram("-100123", secret("tg", env = "TALON_TG"), base_url = %q)`, api.URL))
		r := p.Run(t.Context(), actionEnv(rec, "TALON_TG="+token))
		if !r.OK {
			t.Fatalf("run: %+v", r)
		}
		in := rec.Intents()
		if len(in) != 2 || in[0].Detail != "resolve secret tg" || in[1].Kind != "http" || in[1].Detail != "telegram sendMessage chat -100123" {
			t.Fatalf("intents %+v", in)
		}
	})
	t.Run("leased token, placeholder", func(t *testing.T) {
		rec := &effect.Recorder{}
		p := pager(t, fmt.Sprintf(`notify.telegram("-100123", secret("tg", command = [%q]), base_url = %q)`, leaseScript(t, token), api.URL))
		r := p.Run(t.Context(), actionEnv(dryRun{rec}))
		if !r.OK {
			t.Fatalf("run: %+v", r)
		}
		in := rec.Intents()
		if len(in) != 1 || in[0].Detail != "telegram sendMessage chat -100123" {
			t.Fatalf("intents %+v", in)
		}
	})
	if paths, _ := api.seen(); len(paths) != 0 {
		t.Fatalf("dry run reached the server: %q", paths)
	}
}

func TestTelegramLongText(t *testing.T) {
	t.Parallel()
	api := newBotAPI(t)
	p := pager(t, fmt.Sprintf(`notify.telegram("-100123", %q, base_url = %q)`, token, api.URL))
	if err := p.Send(t.Context(), actionEnv(effect.NewLive()), engine.Message{Kind: "sos", Text: strings.Repeat("é", 5000)}); err != nil {
		t.Fatal(err)
	}
	_, bodies := api.seen()
	if n := len([]rune(bodies[0]["text"].(string))); n != 4096 {
		t.Fatalf("text of %d characters, want Telegram's limit 4096", n)
	}
}

var _ engine.Pager = (*notify.Telegram)(nil)
