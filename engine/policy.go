package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/talon-dev/talon/engine/effect"
)

// Policy is a loaded, validated policy. It is immutable: a reload builds a
// new one and swaps it in whole.
type Policy struct {
	Dir        string
	Hash       string
	Files      []string
	Probes     []*Probe
	Thresholds Thresholds
	Ladder     []*Rung
	// Interval and Env come from the configuration the policy was loaded
	// with, so a config.toml reload takes effect with the policy swap.
	Interval time.Duration
	Env      []string
	// Heartbeat is the dead-man ping the policy declares; nil for none.
	Heartbeat *Heartbeat
	// NoProbes is why the policy declares no probe (probe.none); a policy
	// without probes and without a reason never loads.
	NoProbes string

	indexOnce sync.Once
	byName    map[string]*Probe // built on first use: a Policy is immutable
}

// Probe returns the probe called name, or nil.
func (p *Policy) Probe(name string) *Probe {
	if len(p.Probes) < 8 {
		for _, pr := range p.Probes {
			if pr.Name == name {
				return pr
			}
		}
		return nil
	}
	p.indexOnce.Do(func() {
		p.byName = make(map[string]*Probe, len(p.Probes))
		for _, pr := range p.Probes {
			p.byName[pr.Name] = pr
		}
	})
	return p.byName[name]
}

// Programs lists every program the policy's probes and actions would run, sorted.
func (p *Policy) Programs() []string {
	seen := map[string]bool{}
	for _, pr := range p.Probes {
		for _, prog := range pr.Programs {
			seen[prog] = true
		}
	}
	for _, r := range p.Ladder {
		for _, a := range r.Do {
			for _, prog := range a.Programs() {
				seen[prog] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Thresholds are the policy-wide state machine settings (state.thresholds).
type Thresholds struct {
	// FailedAfter is the default number of consecutive failures before a
	// probe counts as down.
	FailedAfter int `json:"failed_after"`
	// CriticalAfter is how long an incident stays open before it is critical.
	CriticalAfter time.Duration `json:"critical_after"`
	// RecoverAfter is the default number of consecutive passes before a down
	// probe counts as up again.
	RecoverAfter int `json:"recover_after"`
	// Flap detection, as Nagios's with a time window instead of the last 21
	// checks: a probe that went down FlapStart times within FlapWindow is
	// flapping; it stops flapping once no more than FlapStop of its downs
	// are left within the window (hysteresis). FlapStart 0 turns it off.
	FlapWindow time.Duration `json:"flap_window"`
	FlapStart  int           `json:"flap_start"`
	FlapStop   int           `json:"flap_stop"`
}

// Flap detection defaults: three outages within an hour is flapping; it
// ends when at most one is left within the hour.
const (
	DefaultFlapWindow = time.Hour
	DefaultFlapStart  = 3
	DefaultFlapStop   = 1
)

// DefaultThresholds match the predecessor's defaults: two misses of a
// critical probe, fifteen minutes to critical, one pass to recover; and
// flap detection on.
func DefaultThresholds() Thresholds {
	return Thresholds{FailedAfter: 2, CriticalAfter: 15 * time.Minute, RecoverAfter: 1,
		FlapWindow: DefaultFlapWindow, FlapStart: DefaultFlapStart, FlapStop: DefaultFlapStop}
}

// Rung is one step of the escalation ladder.
type Rung struct {
	Name     string
	When     Predicate // nil: always
	Do       []Action
	After    time.Duration // hold until the incident is this old
	Timeout  time.Duration
	Cooldown time.Duration
	Repeat   time.Duration // pages: re-send no more often than this while open
	State    string        // state entered when the rung runs ("" keeps it)
	Verify   bool
	// Settle is the window after the rung ran something in which the
	// ladder waits for its effect (0: none; builtins default DefaultSettle).
	Settle time.Duration
	// Flapping says what the rung does for an incident whose probes are
	// all flapping: FlapOnce (default), FlapNever or FlapAlways.
	Flapping string
	Pos      string
}

// DefaultSettle is the settle window of a rung that sets none.
const DefaultSettle = 30 * time.Second

// What a rung does for a flapping incident (rung flapping=).
const (
	// FlapOnce: the rung runs (or pages) at most once while its probes flap.
	FlapOnce = "once"
	// FlapNever: the rung does not run for a flapping incident.
	FlapNever = "never"
	// FlapAlways: flapping changes nothing for the rung.
	FlapAlways = "always"
)

// Channels are the channels the rung pages through, in order, without repeats.
func (r *Rung) Channels() []string {
	var out []string
	for _, a := range r.Do {
		if p, ok := a.(Pager); ok && !contains(out, p.Channel()) {
			out = append(out, p.Channel())
		}
	}
	return out
}

// ProbeInterval is how often p runs under this policy: its own interval,
// the policy's, or DefaultInterval.
func (p *Policy) ProbeInterval(pr *Probe) time.Duration {
	switch {
	case pr.Every > 0:
		return pr.Every
	case p.Interval > 0:
		return p.Interval
	}
	return DefaultInterval
}

// DefaultInterval is the check interval when neither the probe nor the
// configuration sets one (config.toml's check_interval_secs default).
const DefaultInterval = time.Minute

// Pages reports whether any of the rung's actions sends a page.
func (r *Rung) Pages() bool {
	for _, a := range r.Do {
		if _, ok := a.(Pager); ok {
			return true
		}
	}
	return false
}

// DefaultRungTimeout bounds rungs that set no timeout.
const DefaultRungTimeout = 5 * time.Minute

// Predicate is a pure function of the incident (a rung's `when`).
type Predicate func(ctx context.Context, inc *IncidentView) (bool, error)

// Action is one thing a rung does.
type Action interface {
	// Describe is a one-line description without secret values.
	Describe() string
	// Programs are the executables it would run.
	Programs() []string
	// Run performs the action through env.Effects.
	Run(ctx context.Context, env *ActionEnv) ActionResult
}

// Pager is an action that delivers a message to people: a notification channel.
type Pager interface {
	Action
	// Channel names the channel ("telegram:123", "webhook", ...).
	Channel() string
	// Send delivers msg.
	Send(ctx context.Context, env *ActionEnv, msg Message) error
}

// RunPager is the Action.Run of every Pager: it sends env.Message (its
// text defaults to the incident's summary, its kind to "sos") and reports.
func RunPager(ctx context.Context, p Pager, env *ActionEnv) ActionResult {
	msg := env.Message
	if msg.Text == "" && env.Incident != nil {
		msg.Text = env.Incident.Summary()
	}
	if msg.Incident == "" && env.Incident != nil {
		msg.Incident = env.Incident.ID
	}
	if msg.Kind == "" {
		msg.Kind = "sos"
	}
	if err := p.Send(ctx, env, msg); err != nil {
		return ActionResult{Output: err.Error()}
	}
	return ActionResult{OK: true, Output: "delivered via " + p.Channel()}
}

// Message is a page.
type Message struct {
	Kind     string // "sos", "resolved", "drill"
	Text     string
	Incident string // incident id
}

// ActionEnv is what an action may use.
type ActionEnv struct {
	Effects  effect.Effects
	Env      []string
	Incident *IncidentView
	Rung     string
	// Message is the page text a Pager sends when run as part of a rung.
	Message Message
	// Log receives progress lines (redacted by construction).
	Log func(msg string, kv ...any)
}

// ActionResult is what became of an action.
type ActionResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output"`
}

// PosError is an error at a place in a policy or config file.
type PosError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
}

func (e *PosError) Error() string {
	switch {
	case e.File == "":
		return e.Message
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Message)
	case e.Col == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Message)
}

// LoadResult is what a policy load produced. By design a load always returns
// a result: on failure Policy is nil and Errors say why, and Files still lists
// what was read, so a watcher can keep watching it.
type LoadResult struct {
	Policy   *Policy
	Files    []string
	Hash     string
	Errors   []*PosError
	Warnings []string
	// Sources are the files the load read with the bytes it read, which is
	// what Hash covers; the loader keeps those of a good load as the last
	// known good policy.
	Sources []Source
	// Fallback, when set, says that Policy is not the policy that was asked
	// for, which failed to load (Fallback.Error says why), but the one the
	// loader fell back on: a daemon starting with a broken file runs its
	// last known good policy, or the embedded default, and says so.
	Fallback *Fallback
}

// Source is one file a load read.
type Source struct {
	// Key names it in the hash: the path inside the policy directory, or
	// "services:" and the services file's path, or "config:".
	Key  string
	Path string // on disk; "" for a file of an embedded policy
	Data []byte
}

// The policies a loader falls back on.
const (
	FallbackLastGood = "last_good" // the last policy that loaded cleanly, kept in the state directory
	FallbackDefault  = "default"   // the embedded default policy (there is no last good one yet)
)

// Fallback says which policy runs instead of the one that failed, and why.
type Fallback struct {
	// Source is FallbackLastGood or FallbackDefault.
	Source string `json:"source"`
	// Since is when the last good policy was last loaded cleanly; zero for
	// the embedded default.
	Since time.Time `json:"since,omitzero"`
	// Hash is the hash of the policy running.
	Hash string `json:"hash"`
	// Error is why the policy asked for did not load, one file:line:col
	// error a line.
	Error string `json:"error"`
}

// Summary is one line for a log, a status line or a page.
func (f *Fallback) Summary() string {
	what := "the embedded default policy (there is no last good policy yet)"
	if f.Source == FallbackLastGood {
		what = fmt.Sprintf("the last good policy, loaded cleanly on %s (%s)", f.Since.UTC().Format("2006-01-02 15:04 MST"), shortHash(f.Hash))
	}
	first, _, _ := strings.Cut(f.Error, "\n")
	return fmt.Sprintf("running %s: the policy failed to load; fix %s", what, first)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Err returns the first error, or nil.
func (r *LoadResult) Err() error {
	if len(r.Errors) == 0 {
		return nil
	}
	return r.Errors[0]
}

// ErrorText is all errors on one line each.
func (r *LoadResult) ErrorText() string {
	var b strings.Builder
	for i, e := range r.Errors {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
