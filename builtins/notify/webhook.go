package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

func init() {
	probe.Register(probe.Builtin{Name: "notify.webhook", Fn: webhookBuiltin, Doc: `def webhook(url, *, headers=None, timeout="10s", name=None):
Pages by POSTing JSON to a URL: {"kind", "text", "incident", "state", "failing": [...], "time"}.
kind is "sos", "resolved" or "drill"; time is RFC 3339 UTC. Any 2xx answer is a delivery.
Only the host is ever shown (the path of a chat webhook is often a credential).
url: http:// or https:// URL
headers: dict of extra request headers; values may be secrets, e.g. {"Authorization": "Bearer " + secret("hook")}
timeout: deadline of the request, e.g. "10s"
name: the channel's identity, "webhook:NAME" (default "webhook:HOST"); two webhooks on one host need one`})
}

// Webhook pages by POSTing JSON to a URL.
type Webhook struct {
	value
	url     string // kept unexported: the path may be a credential
	host    string
	Headers map[string]*secret.Secret
	Timeout time.Duration
}

var (
	_ engine.Pager   = (*Webhook)(nil)
	_ starlark.Value = (*Webhook)(nil)
)

var headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// hasLineBreak reports a header value that would split the request's
// headers. Errors never quote the value, which is often a credential.
func hasLineBreak(v string) bool { return strings.ContainsAny(v, "\r\n") }

// NewWebhook validates and builds a webhook channel. Header values are
// secrets (a plain value as secret.Literal): a plain value is checked here,
// any other when a page is sent. timeout must be positive.
func NewWebhook(rawURL string, headers map[string]*secret.Secret, timeout time.Duration) (*Webhook, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url: %v", err)
	}
	for _, k := range star.Keys(headers) {
		if !headerNameRE.MatchString(k) {
			return nil, fmt.Errorf("headers: %q is not a header name", k)
		}
		if v, ok := headers[k].Plain(); ok && hasLineBreak(v) {
			return nil, fmt.Errorf("headers: %s: value has a line break (CR or LF)", k)
		}
	}
	if err := checkTimeout(timeout, "10s"); err != nil {
		return nil, err
	}
	return &Webhook{value: value{kind: "notify.webhook"}, url: rawURL, host: u.Host, Headers: headers, Timeout: timeout}, nil
}

func (w *Webhook) String() string { return w.Describe() }

// GoString is Describe too, so %#v shows no URL or credential.
func (w *Webhook) GoString() string { return w.Describe() }

// Describe names the host only.
func (w *Webhook) Describe() string { return "notify.webhook POST " + w.host }

// Channel is "webhook:HOST", or "webhook:NAME" with name=.
func (w *Webhook) Channel() string { return w.channel("webhook:", w.host) }

// Destination is where it posts (never shown: the path may be a credential).
func (w *Webhook) Destination() string { return w.url }

// Programs are the lease commands of secret header values.
// Secrets lists the secrets a page needs (header values), for talon validate.
func (w *Webhook) Secrets() []*secret.Secret {
	var out []*secret.Secret
	for _, k := range star.Keys(w.Headers) {
		out = append(out, w.Headers[k])
	}
	return out
}

func (w *Webhook) Programs() []string {
	var out []string
	for _, k := range star.Keys(w.Headers) {
		out = append(out, w.Headers[k].Programs()...)
	}
	return out
}

// Run sends env.Message.
func (w *Webhook) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	return run(ctx, w, env)
}

// WebhookPayload is the JSON body notify.webhook posts.
type WebhookPayload struct {
	Kind     string   `json:"kind"`
	Text     string   `json:"text"`
	Incident string   `json:"incident"`
	State    string   `json:"state"`
	Failing  []string `json:"failing"`
	Time     string   `json:"time"`
}

// Payload builds the body for msg in env.
func Payload(env *engine.ActionEnv, msg engine.Message) WebhookPayload {
	p := WebhookPayload{Kind: msg.Kind, Text: msg.Text, Incident: msg.Incident, Failing: []string{},
		Time: messageTime(env).Format(time.RFC3339)}
	if inc := env.Incident; inc != nil {
		if p.Incident == "" {
			p.Incident = inc.ID
		}
		p.State = inc.State
		p.Failing = append(p.Failing, inc.FailingNames()...)
	}
	return p
}

// Send posts msg.
func (w *Webhook) Send(ctx context.Context, env *engine.ActionEnv, msg engine.Message) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("notify.webhook %s: %s", w.host, fmt.Sprintf(format, args...))
	}
	header := http.Header{}
	var values []string
	for _, k := range star.Keys(w.Headers) {
		v, err := w.Headers[k].Resolve(ctx, env.Effects, env.Env)
		if err != nil {
			return fail("header %s: %v", k, err)
		}
		if hasLineBreak(v) {
			return fail("header %s: value %s has a line break (CR or LF)", k, w.Headers[k])
		}
		header.Set(k, v)
		values = append(values, v)
	}
	body, err := json.Marshal(Payload(env, msg))
	if err != nil {
		return fail("%v", err)
	}
	status, data, err := post(ctx, env.Effects, w.Timeout, "webhook POST "+w.host, w.url, header, body)
	if err != nil {
		return fail("%s", redactAll(err.Error(), values))
	}
	if status < 200 || status > 299 {
		msg := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
		if s := snippet(data); s != "" {
			msg += ": " + redactAll(s, values)
		}
		return fail("%s", msg)
	}
	return nil
}

// redactAll hides resolved secret values that a server might echo back.
func redactAll(s string, values []string) string {
	for _, v := range values {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "<secret>")
		}
	}
	return s
}

// SecretMap accepts a dict of strings to strings or secrets.
type SecretMap map[string]*secret.Secret

var _ starlark.Unpacker = (*SecretMap)(nil)

// Unpack implements starlark.Unpacker.
func (m *SecretMap) Unpack(v starlark.Value) error {
	d, ok := v.(*starlark.Dict)
	if !ok {
		return fmt.Errorf("want a dict, got %s", v.Type())
	}
	out := SecretMap{}
	for _, item := range d.Items() {
		k, ok := starlark.AsString(item[0])
		if !ok {
			return fmt.Errorf("want string keys, got %s", item[0].Type())
		}
		a := secret.Arg{Name: "header:" + k}
		if err := a.Unpack(item[1]); err != nil {
			return fmt.Errorf("%s: %v", k, err)
		}
		out[k] = a.Secret
	}
	*m = out
	return nil
}

func webhookBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		rawURL  string
		headers SecretMap
		timeout = star.Duration{D: 10 * time.Second}
		name    string
	)
	if err := checkPositional(b, args, 1); err != nil {
		return nil, err
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "url", &rawURL, "headers??", &headers, "timeout?", &timeout, "name??", &name); err != nil {
		return nil, err
	}
	w, err := NewWebhook(rawURL, headers, timeout.D)
	if err == nil {
		err = checkName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	w.name = name
	return w, nil
}
