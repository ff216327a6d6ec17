package builtins

import (
	"fmt"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

// IncidentDoc documents the `incident` value handed to when= predicates,
// do= functions and prompt functions.
const IncidentDoc = `incident: the open incident, read-only
id: incident id
state: state-machine position ("failed", "investigating", "critical", "sos")
started: when it opened, unix seconds
age: seconds since it opened
summary: one text for prompts and pages: failing probes and their output
critical: whether a critical probe is failing
failing_probes, passing_probes: lists of struct(name, passed, output, duration_ms, critical)
rungs: dict rung name -> struct(attempts, last_ok, last_output, last_run)
failing(name): whether probe name failed in the last cycle
passed(name): whether probe name passed in the last cycle`

// incident is the Starlark view of an engine.IncidentView.
type incident struct {
	view  *engine.IncidentView
	known map[string]bool // declared probes; nil: not checked
	attrs starlark.StringDict
}

var (
	_ starlark.HasAttrs = (*incident)(nil)
)

func newIncident(v *engine.IncidentView, known map[string]bool) *incident {
	results := func(rs []engine.Result) *starlark.List {
		out := make([]starlark.Value, len(rs))
		for i, r := range rs {
			out[i] = starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
				"name":        starlark.String(r.Name),
				"passed":      starlark.Bool(r.Passed),
				"output":      starlark.String(r.Output),
				"duration_ms": starlark.MakeInt64(r.DurationMS),
				"critical":    starlark.Bool(r.Critical),
			})
		}
		l := starlark.NewList(out)
		l.Freeze()
		return l
	}
	rungs := starlark.NewDict(len(v.Rungs))
	for _, name := range star.Keys(v.Rungs) {
		r := v.Rungs[name]
		lastRun := starlark.Value(starlark.None)
		if !r.LastRun.IsZero() {
			lastRun = starlark.MakeInt64(r.LastRun.Unix())
		}
		rungs.SetKey(starlark.String(name), starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
			"attempts":    starlark.MakeInt(r.Attempts),
			"last_ok":     starlark.Bool(r.LastOK),
			"last_output": starlark.String(r.LastOutput),
			"last_run":    lastRun,
		}))
	}
	rungs.Freeze()
	inc := &incident{view: v, known: known}
	inc.attrs = starlark.StringDict{
		"id":             starlark.String(v.ID),
		"state":          starlark.String(v.State),
		"started":        starlark.MakeInt64(v.Started.Unix()),
		"age":            starlark.MakeInt64(int64(v.Age().Seconds())),
		"summary":        starlark.String(v.Summary()),
		"critical":       starlark.Bool(v.Critical),
		"failing_probes": results(v.Failing),
		"passing_probes": results(v.Passing),
		"rungs":          rungs,
		"failing":        starlark.NewBuiltin("incident.failing", inc.failing),
		"passed":         starlark.NewBuiltin("incident.passed", inc.passed),
	}
	return inc
}

// IncidentView returns the engine's view; agent.prompt accepts any value with this method.
func (i *incident) IncidentView() *engine.IncidentView { return i.view }

func (i *incident) String() string        { return fmt.Sprintf("<incident %s>", i.view.ID) }
func (i *incident) Type() string          { return "incident" }
func (i *incident) Freeze()               {}
func (i *incident) Truth() starlark.Bool  { return starlark.True }
func (i *incident) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: incident") }

func (i *incident) Attr(name string) (starlark.Value, error) {
	if v, ok := i.attrs[name]; ok {
		return v, nil
	}
	return nil, nil
}

func (i *incident) AttrNames() []string {
	names := i.attrs.Keys()
	sort.Strings(names)
	return names
}

func (i *incident) probeArg(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (string, error) {
	var name string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &name); err != nil {
		return "", err
	}
	if i.known != nil && !i.known[name] {
		return "", fmt.Errorf("%s: no probe named %q in this policy", b.Name(), name)
	}
	return name, nil
}

func (i *incident) failing(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name, err := i.probeArg(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.Bool(contains(i.view.Failing, name)), nil
}

func (i *incident) passed(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name, err := i.probeArg(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.Bool(contains(i.view.Passing, name)), nil
}

func contains(rs []engine.Result, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}
