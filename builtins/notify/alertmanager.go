package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/text"
)

func init() {
	probe.Register(probe.Builtin{Name: "notify.alertmanager", Fn: alertmanagerBuiltin, Doc: `def alertmanager(url, *, labels=None, timeout="10s", name=None):
Pages through a Prometheus Alertmanager (POST URL/api/v2/alerts), which deduplicates, groups,
silences and routes the pages of many Talons. The alert has the labels alertname="TalonSOS",
instance (this host's name), incident and severity ("critical"; "info" for a drill), the
annotations summary (first line of the message) and description (the message), and startsAt
(when the incident started). A "resolved" message sends the same alert with endsAt = now.
A firing alert carries no endsAt: Alertmanager keeps it for its resolve_timeout, so choose
a rung repeat= shorter than that, or a longer resolve_timeout, to keep it firing.
url: base URL of Alertmanager, e.g. "http://alertmanager:9093"
labels: dict of extra labels, added to (and overriding) the ones above
timeout: deadline of the request, e.g. "10s"
name: the channel's identity, "alertmanager:NAME" (default "alertmanager:HOST")`})
}

// Alertmanager pages through Alertmanager's v2 API.
type Alertmanager struct {
	value
	url     string // base URL, no trailing slash
	host    string
	Labels  map[string]string
	Timeout time.Duration
}

var (
	_ engine.Pager   = (*Alertmanager)(nil)
	_ starlark.Value = (*Alertmanager)(nil)
)

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// NewAlertmanager validates and builds an Alertmanager channel.
func NewAlertmanager(rawURL string, labels map[string]string, timeout time.Duration) (*Alertmanager, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url: %v", err)
	}
	if u.RawQuery != "" {
		return nil, fmt.Errorf("url: give the base URL without a query")
	}
	for k := range labels {
		if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") {
			return nil, fmt.Errorf("labels: %q is not a label name", k)
		}
	}
	if err := checkTimeout(timeout, "10s"); err != nil {
		return nil, err
	}
	return &Alertmanager{value: value{kind: "notify.alertmanager"}, url: strings.TrimRight(rawURL, "/"), host: u.Host,
		Labels: labels, Timeout: timeout}, nil
}

func (a *Alertmanager) String() string { return a.Describe() }

// GoString is Describe too, so %#v shows no URL or credential.
func (a *Alertmanager) GoString() string { return a.Describe() }

// Describe names the host.
func (a *Alertmanager) Describe() string { return "notify.alertmanager " + a.host }

// Channel is "alertmanager:HOST", or "alertmanager:NAME" with name=.
func (a *Alertmanager) Channel() string { return a.channel("alertmanager:", a.host) }

// Destination is the Alertmanager it posts to and the labels it sets.
func (a *Alertmanager) Destination() string { return a.url + "\x00" + fmt.Sprint(a.Labels) }

// Programs is empty: the request is in-process.
func (a *Alertmanager) Programs() []string { return nil }

// Run sends env.Message.
func (a *Alertmanager) Run(ctx context.Context, env *engine.ActionEnv) engine.ActionResult {
	return run(ctx, a, env)
}

// Alert is one alert of Alertmanager's v2 postableAlert schema.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt,omitempty"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Alert builds the alert for msg. The labels are the same for the firing and
// the resolved message of an incident, so Alertmanager matches them.
func (a *Alertmanager) Alert(env *engine.ActionEnv, msg engine.Message) Alert {
	now := messageTime(env)
	host, _ := os.Hostname()
	severity := "critical"
	if msg.Kind == "drill" {
		severity = "info"
	}
	labels := map[string]string{"alertname": "TalonSOS", "instance": host, "severity": severity}
	incident := msg.Incident
	start := now
	if inc := env.Incident; inc != nil {
		if incident == "" {
			incident = inc.ID
		}
		if !inc.Started.IsZero() {
			start = inc.Started.UTC()
		}
	}
	if incident != "" {
		labels["incident"] = incident
	}
	for k, v := range a.Labels {
		labels[k] = v
	}
	summary, _, _ := strings.Cut(strings.TrimSpace(msg.Text), "\n")
	al := Alert{
		Labels:      labels,
		Annotations: map[string]string{"summary": text.Runes(summary, 200), "description": msg.Text},
		StartsAt:    start.Format(time.RFC3339Nano),
	}
	if msg.Kind == "resolved" {
		al.EndsAt = now.Format(time.RFC3339Nano)
	}
	return al
}

// Send posts one alert for msg.
func (a *Alertmanager) Send(ctx context.Context, env *engine.ActionEnv, msg engine.Message) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("notify.alertmanager %s: %s", a.host, fmt.Sprintf(format, args...))
	}
	body, err := json.Marshal([]Alert{a.Alert(env, msg)})
	if err != nil {
		return fail("%v", err)
	}
	status, data, err := post(ctx, env.Effects, a.Timeout, "alertmanager POST "+a.host+"/api/v2/alerts", a.url+"/api/v2/alerts", nil, body)
	if err != nil {
		return fail("%v", err)
	}
	if status != http.StatusOK {
		msg := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
		if s := snippet(data); s != "" {
			msg += ": " + s
		}
		return fail("%s", msg)
	}
	return nil
}

func alertmanagerBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		rawURL  string
		labels  star.StringMap
		timeout = star.Duration{D: 10 * time.Second}
		name    string
	)
	if err := checkPositional(b, args, 1); err != nil {
		return nil, err
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "url", &rawURL, "labels??", &labels, "timeout?", &timeout, "name??", &name); err != nil {
		return nil, err
	}
	a, err := NewAlertmanager(rawURL, labels, timeout.D)
	if err == nil {
		err = checkName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	a.name = name
	return a, nil
}
