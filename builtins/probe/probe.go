// Package probe holds Talon's probe kinds, one file per kind. Each file
// registers its Starlark builtins in init; the builtins package assembles
// them into modules by the prefix of their qualified name ("probe.exec" goes
// into the probe module, "ssh.probe" into ssh).
package probe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

// Builtin is one registered Starlark function.
type Builtin struct {
	Name string // qualified: "probe.exec"
	Doc  string // Python-style signature and one line per argument
	Fn   func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)
}

// registry is filled by init functions only and read-only afterwards.
var registry = map[string]Builtin{}

// Register adds a builtin. It panics on a duplicate name: that is a
// programming error caught by every test run.
func Register(b Builtin) {
	if _, dup := registry[b.Name]; dup {
		panic("probe: duplicate builtin " + b.Name)
	}
	registry[b.Name] = b
}

// Registered returns the builtins whose qualified name starts with module+".", sorted.
func Registered(module string) []Builtin {
	var out []Builtin
	for name, b := range registry {
		if strings.HasPrefix(name, module+".") {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Modules lists the module names that have registered builtins.
func Modules() []string {
	seen := map[string]bool{}
	for name := range registry {
		seen[name[:strings.IndexByte(name, '.')]] = true
	}
	return star.Keys(seen)
}

// CommonDoc documents the options every probe kind accepts.
const CommonDoc = `on_failure: what a failure of this probe leads to, once it is down: "page" (the ladder acts and, when the incident is critical, pages people; the same as critical = True), "act" (the ladder acts, heal and agents, but no page is ever sent for it: the default), or "show" (only shown on /health, in talon status and the metrics; it never escalates: the same as witness = True). talon validate lists every probe with its choice
critical: a failure of this probe may page (default False)
after: consecutive failures before the probe counts as down (default: state.thresholds failed_after)
recover_after: consecutive passes before a down probe counts as up again
timeout: deadline of one run, e.g. "5s" (default "10s")
every: own interval, e.g. "5m" (default: the global check interval)
witness: observed and reported, never escalates by itself
depends_on: probe names; while one of them fails, this probe does not escalate
expect: substring the output must contain
expect_regex: regular expression the output must match
expect_exact: value the trimmed output must equal
tags: list of strings`

// Common holds the options shared by every probe kind.
type Common struct {
	Critical     bool
	After        int
	RecoverAfter int
	Timeout      star.Duration
	Every        star.Duration
	Witness      bool
	DependsOn    star.StringOrList
	Expect       string
	ExpectRegex  string
	ExpectExact  string
	Tags         star.StringList
	OnFailure    string
}

// Params returns the UnpackArgs pairs for the common options, to append
// after a kind's own parameters.
func (c *Common) Params() []any {
	return []any{
		"critical?", &c.Critical,
		"after?", (*star.Count)(&c.After),
		"recover_after?", (*star.Count)(&c.RecoverAfter),
		"timeout?", &c.Timeout,
		"every?", &c.Every,
		"witness?", &c.Witness,
		"depends_on?", &c.DependsOn,
		"expect?", &c.Expect,
		"expect_regex?", &c.ExpectRegex,
		"expect_exact?", &c.ExpectExact,
		"tags?", &c.Tags,
		"on_failure?", &c.OnFailure,
	}
}

// Unpack parses args into the kind's own pairs followed by the common
// options, which are keyword-only: probe.launchd("gw", "com.x.gw", True)
// must not quietly declare a critical probe.
func (c *Common) Unpack(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, own ...any) error {
	if n := len(own) / 2; len(args) > n {
		return fmt.Errorf("%s: got %d positional arguments, want at most %d; pass the other options by name (critical = True, timeout = \"5s\", ...)", b.Name(), len(args), n)
	}
	return starlark.UnpackArgs(b.Name(), args, kwargs, append(own, c.Params()...)...)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:/@-]*$`)

// Spec builds and validates the probe where the user declared it, so a bad
// probe fails at the call site. key describes the definition (kind-specific
// arguments) for the digest that decides whether state survives a reload.
func (c *Common) Spec(thread *starlark.Thread, b *starlark.Builtin, name, kind string, check engine.Check, key ...string) (*engine.Probe, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%s: probe name %q: use letters, digits and _ . : / @ -", b.Name(), name)
	}
	if c.Critical && c.Witness {
		return nil, fmt.Errorf("%s: %s: a witness probe cannot be critical", b.Name(), name)
	}
	switch c.OnFailure {
	case "":
	case engine.OnFailurePage, engine.OnFailureAct, engine.OnFailureShow:
		implied := engine.OnFailureAct
		if c.Critical {
			implied = engine.OnFailurePage
		} else if c.Witness {
			implied = engine.OnFailureShow
		}
		if (c.Critical || c.Witness) && implied != c.OnFailure {
			return nil, fmt.Errorf("%s: %s: on_failure = %q contradicts %s; keep one of them", b.Name(), name, c.OnFailure, map[bool]string{true: "critical = True", false: "witness = True"}[c.Critical])
		}
		c.Critical, c.Witness = c.OnFailure == engine.OnFailurePage, c.OnFailure == engine.OnFailureShow
	default:
		return nil, fmt.Errorf("%s: %s: on_failure must be \"page\", \"act\" or \"show\", got %q", b.Name(), name, c.OnFailure)
	}
	p := &engine.Probe{
		Name: name, Kind: kind, Critical: c.Critical, Witness: c.Witness,
		After: c.After, RecoverAfter: c.RecoverAfter,
		Timeout: c.Timeout.D, Every: c.Every.D,
		DependsOn: []string(c.DependsOn), Tags: []string(c.Tags),
		Pos: star.Pos(thread), Check: check,
	}
	var set []string
	for _, m := range []struct{ mode, text string }{{"substring", c.Expect}, {"regex", c.ExpectRegex}, {"exact", c.ExpectExact}} {
		if m.text == "" {
			continue
		}
		set = append(set, m.mode)
		mt, err := engine.NewMatcher(m.mode, m.text)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", b.Name(), name, err)
		}
		p.Expect = mt
	}
	if len(set) > 1 {
		return nil, fmt.Errorf("%s: %s: give only one of expect, expect_regex, expect_exact", b.Name(), name)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%v\x00%v\x00%d\x00%d\x00%s\x00%s\x00%q\x00", kind, name, p.Critical, p.Witness, p.After, p.RecoverAfter, p.Timeout, p.Every, p.DependsOn)
	if p.Expect != nil {
		fmt.Fprintf(h, "%s\x00%s\x00", p.Expect.Mode, p.Expect.Text)
	}
	for _, k := range key {
		fmt.Fprintf(h, "%s\x00", k)
	}
	p.Digest = hex.EncodeToString(h.Sum(nil))[:16]
	return p, nil
}

// Declare adds p to the policy being loaded; it fails outside the load phase.
func Declare(thread *starlark.Thread, b *starlark.Builtin, p *engine.Probe) (starlark.Value, error) {
	c, err := star.LoadPhase(thread, b)
	if err != nil {
		return nil, err
	}
	if err := c.AddProbe(p); err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return starlark.None, nil
}
