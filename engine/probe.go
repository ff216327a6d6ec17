// Package engine loads, validates and swaps policies, runs probes, keeps the
// persistent health state machine and walks the escalation ladder. It never
// imports the Starlark builtins: the loader is handed to it.
package engine

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/talon-dev/talon/engine/effect"
)

// Probe is one declared check, immutable once a policy is loaded.
type Probe struct {
	Name         string
	Kind         string // exec, script, http, tcp, func, ssh, kubectl, ...
	Critical     bool
	Witness      bool
	After        int // consecutive failures before the probe counts as down; 0: policy default
	RecoverAfter int // consecutive passes before a down probe counts as up; 0: policy default
	Timeout      time.Duration
	Every        time.Duration // own interval; 0: the global interval
	DependsOn    []string
	Tags         []string
	Expect       *Matcher
	// Programs are the executables the probe runs, for `talon validate`.
	Programs []string
	// Reads are the files its program reads as its configuration (an ssh
	// config, a kubeconfig), "~" allowed: either can make the program run
	// any command, so strict modes apply to them as to the program.
	Reads []string
	// OS restricts the probe to one GOOS ("darwin", "linux"); empty: any.
	OS string
	// Pos is where the probe was declared, "file:line:col".
	Pos string
	// Digest identifies the definition; state carries across a reload only
	// for probes whose digest is unchanged.
	Digest string
	Check  Check
}

// What a probe's failure leads to (its on_failure): the ladder acts and may
// page, acts but never pages, or the failure is only shown.
const (
	OnFailurePage = "page"
	OnFailureAct  = "act"
	OnFailureShow = "show"
)

// OnFailure is what a failure of the probe leads to: OnFailurePage for a
// critical probe, OnFailureShow for a witness, OnFailureAct otherwise.
func (p *Probe) OnFailure() string {
	switch {
	case p.Critical:
		return OnFailurePage
	case p.Witness:
		return OnFailureShow
	}
	return OnFailureAct
}

// DefaultProbeTimeout bounds probes that do not set a timeout.
const DefaultProbeTimeout = 10 * time.Second

// EffectiveTimeout is the probe's deadline.
func (p *Probe) EffectiveTimeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultProbeTimeout
}

// Check performs one run of a probe. It must honour ctx, whose deadline the
// runner owns, and never decide state: it only reports what it saw.
type Check func(ctx context.Context, env *ProbeEnv) Outcome

// ProbeEnv is what a check may use.
type ProbeEnv struct {
	Effects effect.Effects
	// Env is the environment for child processes, PATH included.
	Env []string
	// Probe is the probe being run.
	Probe *Probe
}

// Command returns an effect.Command for argv with the probe environment.
func (e *ProbeEnv) Command(argv ...string) effect.Command {
	// Clip the shared environment so a kind appending to its copy can never
	// write into the runner's slice that other probes read concurrently.
	return effect.Command{Argv: argv, Env: slices.Clip(e.Env)}
}

// Outcome is what a check observed.
type Outcome struct {
	Passed  bool
	Warning bool
	// Output is the short human text shown in results.
	Output string
	// SubjectSet says Subject is meant even when empty (an empty HTTP body
	// must not be matched as the made-up "HTTP 200").
	SubjectSet bool
	// Subject is the text `expect` is matched against (command output, HTTP
	// body); empty means Output.
	Subject string
	// Detail carries structured facts (perf data, unit state) as strings.
	Detail map[string]string
	// TimedOut marks an outcome cut short by the deadline.
	TimedOut bool
}

// Failf is a failed outcome with a formatted message.
func Failf(format string, args ...any) Outcome {
	return Outcome{Output: fmt.Sprintf(format, args...)}
}

// ExecOutcome turns a finished command into an outcome: exit 0 passes.
func ExecOutcome(r effect.ExecResult, timeout time.Duration) Outcome {
	switch {
	case r.TimedOut:
		out := CombineOutput(r.Stdout, r.Stderr)
		msg := fmt.Sprintf("timeout after %s", timeout)
		if out != "" {
			msg += ": " + out
		}
		return Outcome{Output: msg, TimedOut: true}
	case r.Err != nil:
		return Outcome{Output: r.Err.Error()}
	}
	out := CombineOutput(r.Stdout, r.Stderr)
	o := Outcome{Passed: r.ExitCode == 0, Output: out, Subject: strings.TrimSpace(r.Stdout)}
	if o.Subject == "" {
		o.Subject = out
	}
	if !o.Passed {
		if out == "" {
			o.Output = fmt.Sprintf("exit status %d", r.ExitCode)
		} else {
			o.Output = fmt.Sprintf("exit status %d: %s", r.ExitCode, out)
		}
	}
	return o
}

// CombineOutput joins trimmed stdout and stderr with a newline, dropping an empty side.
func CombineOutput(stdout, stderr string) string {
	a, b := strings.TrimSpace(stdout), strings.TrimSpace(stderr)
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n" + b
}

// Matcher is a probe's `expect`: a substring, a regular expression, or an exact value.
type Matcher struct {
	Mode string // "substring", "regex", "exact"
	Text string
	re   *regexp.Regexp
}

// NewMatcher validates and builds a matcher.
func NewMatcher(mode, text string) (*Matcher, error) {
	m := &Matcher{Mode: mode, Text: text}
	switch mode {
	case "substring", "exact":
	case "regex":
		re, err := regexp.Compile(text)
		if err != nil {
			return nil, fmt.Errorf("bad expect_regex %q: %v", text, err)
		}
		m.re = re
	default:
		return nil, fmt.Errorf("unknown match mode %q", mode)
	}
	return m, nil
}

// Match reports whether s satisfies the matcher.
func (m *Matcher) Match(s string) bool {
	switch m.Mode {
	case "regex":
		return m.re.MatchString(s)
	case "exact":
		return strings.TrimSpace(s) == m.Text
	}
	return strings.Contains(s, m.Text)
}

func (m *Matcher) String() string {
	switch m.Mode {
	case "regex":
		return "/" + m.Text + "/"
	case "exact":
		return "== " + fmt.Sprintf("%q", m.Text)
	}
	return fmt.Sprintf("%q", m.Text)
}

// Result is one probe run as reported and journaled.
type Result struct {
	Name       string            `json:"name"`
	Passed     bool              `json:"passed"`
	Output     string            `json:"output"`
	DurationMS int64             `json:"duration_ms"`
	Critical   bool              `json:"critical"`
	Warning    bool              `json:"warning,omitempty"`
	TimedOut   bool              `json:"timed_out,omitempty"`
	Detail     map[string]string `json:"detail,omitempty"`
	// At is when the run started: evidence taken before a failure
	// began is no evidence of it (see Fresh).
	At time.Time `json:"at"`
	// digest is the definition the result came from; a result of a
	// definition that a reload replaced is not counted.
	digest string
}
