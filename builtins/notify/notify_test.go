package notify_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	_ "github.com/talon-dev/talon/builtins/notify" // registers the notify.* builtins
	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// testEnv is a child environment with this process's PATH.
func testEnv(extra ...string) []string {
	return append(probetest.Env(), extra...)
}

// build evaluates one Starlark expression with the registered modules and
// `secret` predeclared, and returns the value or the error message.
func build(t *testing.T, expr string) (starlark.Value, error) {
	t.Helper()
	predeclared := probetest.Modules()
	predeclared["secret"] = secret.Builtin
	thread := &starlark.Thread{Name: "test"}
	globals, err := starlark.ExecFile(thread, "talon.star", "x = "+expr, predeclared)
	if err != nil {
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			return nil, errors.New(ee.Msg)
		}
		return nil, err
	}
	return globals["x"], nil
}

// pager builds expr and wants a Pager.
func pager(t *testing.T, expr string) engine.Pager {
	t.Helper()
	v, err := build(t, expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	p, ok := v.(engine.Pager)
	if !ok {
		t.Fatalf("%s: %s is not a Pager", expr, v.Type())
	}
	return p
}

// script writes an executable shell script called name.
func script(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	started = time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)
	now     = started.Add(17 * time.Minute)
)

func incident() *engine.IncidentView {
	return &engine.IncidentView{
		ID: "inc-20260302-0300", Started: started, Now: now, State: "critical", Critical: true,
		Failing: []engine.Result{
			{Name: "node_ready", Output: "False", DurationMS: 120, Critical: true},
			{Name: "colima", Output: "colima is not running", DurationMS: 40, Critical: true},
		},
		Passing: []engine.Result{{Name: "redis", Passed: true}},
	}
}

func actionEnv(eff effect.Effects, extra ...string) *engine.ActionEnv {
	return &engine.ActionEnv{
		Effects: eff, Env: testEnv(extra...), Incident: incident(), Rung: "sos",
		Message: engine.Message{Kind: "sos", Text: "🚨 TALON SOS: node_ready, colima down", Incident: "inc-20260302-0300"},
	}
}

func TestBuiltinValues(t *testing.T) {
	t.Parallel()
	cases := []struct{ expr, typ, desc, channel string }{
		{`notify.telegram(-100123, secret("telegram_bot_token"))`, "notify.telegram", "notify.telegram chat -100123 (token <secret telegram_bot_token>)", "telegram:-100123"},
		{`notify.telegram("42", "123:literal-token")`, "notify.telegram", "notify.telegram chat 42 (token <secret telegram_token>)", "telegram:42"},
		{`notify.webhook("https://hooks.example.com/services/T0/B0/XYZ", headers = {"X-Key": secret("k", env = "K")})`, "notify.webhook", "notify.webhook POST hooks.example.com", "webhook:hooks.example.com"},
		{`notify.command(["/usr/local/bin/ntfy", "publish", "alerts"])`, "notify.command", "notify.command /usr/local/bin/ntfy publish alerts", "command:ntfy"},
		{`notify.imessage("+15550100")`, "notify.imessage", "notify.imessage +15550100", "imessage:+15550100"},
		{`notify.alertmanager("http://am.example:9093/", labels = {"team": "infra"})`, "notify.alertmanager", "notify.alertmanager am.example:9093", "alertmanager:am.example:9093"},
	}
	for _, tc := range cases {
		v, err := build(t, tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		p := v.(engine.Pager)
		if v.Type() != tc.typ || p.Describe() != tc.desc || v.String() != tc.desc || p.Channel() != tc.channel {
			t.Errorf("%s: type %q describe %q channel %q", tc.expr, v.Type(), p.Describe(), p.Channel())
		}
	}
}

func TestBuiltinErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ expr, want string }{
		{`notify.telegram("", "t")`, "notify.telegram: chat_id is empty"},
		{`notify.telegram("12 3", "t")`, `notify.telegram: chat_id "12 3" has whitespace in it`},
		{`notify.telegram(1.5, "t")`, "notify.telegram: for parameter chat_id: want a string or int, got float"},
		{`notify.telegram("1", 5)`, "notify.telegram: for parameter token: want a secret or a string, got int"},
		{`notify.telegram("1", "")`, "notify.telegram: for parameter token: must not be empty"},
		{`notify.telegram("1")`, "notify.telegram: missing argument for token"},
		{`notify.telegram("1", "t", "https://x")`, "notify.telegram: got 3 positional arguments, want at most 2 (the others are keyword arguments)"},
		{`notify.telegram("1", "t", base_url = "ftp://x")`, `notify.telegram: base_url: URL scheme must be http or https, got "ftp"`},
		{`notify.telegram("1", "t", base_url = "https://x/?a=b")`, "notify.telegram: base_url must not carry a query or credentials"},
		{`notify.telegram("1", "t", timeout = "soon")`, `notify.telegram: for parameter "timeout": want a duration such as "30s" or "5m", got "soon"`},
		{`notify.telegram("1", "t", silent = "yes")`, "notify.telegram: for parameter \"silent\": got string, want bool"},
		{`notify.webhook("localhost:8080")`, `notify.webhook: url: URL scheme must be http or https, got "localhost"`},
		{`notify.webhook("https://")`, "notify.webhook: url: URL has no host"},
		{`notify.webhook("https://x", headers = {"Bad Header": "v"})`, `notify.webhook: headers: "Bad Header" is not a header name`},
		{`notify.webhook("https://x", headers = {"A": 1})`, "notify.webhook: for parameter \"headers\": A: want a secret or a string, got int"},
		{`notify.webhook("https://x", headers = ["A"])`, "notify.webhook: for parameter \"headers\": want a dict, got list"},
		{`notify.command([])`, "notify.command: argv must name a program"},
		{`notify.command("ntfy publish")`, "notify.command: for parameter argv: want a list of strings, got string"},
		{`notify.command(["ntfy"], "20s")`, "notify.command: got 2 positional arguments, want at most 1 (the others are keyword arguments)"},
		{`notify.imessage("")`, "notify.imessage: recipient is empty"},
		{`notify.imessage("-x")`, `notify.imessage: recipient "-x" must not start with -`},
		{`notify.alertmanager("http://am:9093", labels = {"bad-label": "v"})`, `notify.alertmanager: labels: "bad-label" is not a label name`},
		{`notify.alertmanager("am:9093")`, `notify.alertmanager: url: URL scheme must be http or https, got "am"`},
		{`notify.alertmanager("http://am:9093", labels = {"a": 1})`, "notify.alertmanager: for parameter \"labels\": want string keys and values, got string: int"},
	}
	for _, tc := range cases {
		_, err := build(t, tc.expr)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.expr, err, tc.want)
		}
	}
}

func TestRunUsesIncidentSummaryWithoutText(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "msg")
	p := pager(t, `notify.command(["sh", "-c", "cat > `+out+`"])`)
	env := actionEnv(effect.NewLive())
	env.Message = engine.Message{Kind: "sos"}
	if r := p.Run(t.Context(), env); !r.OK || r.Output != "delivered via command:sh" {
		t.Fatalf("run: %+v", r)
	}
	got, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(got), "incident inc-20260302-0300 open for 17m0s, state critical; failing: colima, node_ready") {
		t.Fatalf("message %q", got)
	}
}
