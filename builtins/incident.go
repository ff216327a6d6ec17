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
Decisions read only fresh evidence: a probe's result counts only when it was taken after the incident's
failures were first seen and after the last rung that ran something ended (a pass must also have started
after both). A when= predicate that reads a probe without a fresh result makes its rung wait for one, at
most that probe's interval plus its timeout; then it decides on what there is, and a stale result is
neither passed nor failing.
id: incident id
state: state-machine position ("failed", "investigating", "critical", "sos")
started: when it opened, unix seconds
age: seconds since it opened
summary: one text for prompts and pages: the probes failing since the incident began and their output (a probe whose last result is older is only named), flapping probes, pauses
critical: whether a critical probe is failing
failing_probes: list of struct(name, passed, output, duration_ms, critical) of the fresh failing results
passing_probes: the same for the fresh passing results
stale_probes: the same for the probes whose last result is not fresh
flapping: names of the probes that flap (down and up repeatedly; state.thresholds)
paused: the operator's pauses in force, described
rungs: dict rung name -> struct(attempts, last_ok, last_output, last_run)
failing: failing(name) says whether probe name's last result failed and is fresh
passed: passed(name) says whether probe name's last result passed and is fresh`

// incident is the Starlark view of an engine.IncidentView.
type incident struct {
	view  *engine.IncidentView
	known map[string]bool // declared probes; nil: not checked
	attrs starlark.StringDict
	// fresh and stale split the view's results by freshness.
	failing, passing, stale []engine.Result
}

var (
	_ starlark.HasAttrs = (*incident)(nil)
)

func results(rs []engine.Result) *starlark.List {
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

func strList(s []string) *starlark.List {
	out := make([]starlark.Value, len(s))
	for i, x := range s {
		out[i] = starlark.String(x)
	}
	l := starlark.NewList(out)
	l.Freeze()
	return l
}

func newIncident(v *engine.IncidentView, known map[string]bool) *incident {
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
	for _, r := range v.Failing {
		if v.IsFresh(r) {
			inc.failing = append(inc.failing, r)
		} else {
			inc.stale = append(inc.stale, r)
		}
	}
	for _, r := range v.Passing {
		if v.IsFresh(r) {
			inc.passing = append(inc.passing, r)
		} else {
			inc.stale = append(inc.stale, r)
		}
	}
	inc.attrs = starlark.StringDict{
		"id":       starlark.String(v.ID),
		"state":    starlark.String(v.State),
		"started":  starlark.MakeInt64(v.Started.Unix()),
		"age":      starlark.MakeInt64(int64(v.Age().Seconds())),
		"summary":  starlark.String(v.Summary()),
		"critical": starlark.Bool(v.Critical),
		"flapping": strList(v.Flapping),
		"paused":   strList(v.Paused),
		"rungs":    rungs,
		"failing":  starlark.NewBuiltin("incident.failing", inc.failingFn),
		"passed":   starlark.NewBuiltin("incident.passed", inc.passedFn),
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
	switch name {
	case "failing_probes", "passing_probes", "stale_probes":
		// A list of every probe's result: the predicate read them all.
		i.view.ReadAll()
		return results(map[string][]engine.Result{"failing_probes": i.failing, "passing_probes": i.passing, "stale_probes": i.stale}[name]), nil
	}
	if v, ok := i.attrs[name]; ok {
		return v, nil
	}
	return nil, nil
}

func (i *incident) AttrNames() []string {
	names := append(i.attrs.Keys(), "failing_probes", "passing_probes", "stale_probes")
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

func (i *incident) failingFn(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name, err := i.probeArg(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	i.view.Read(name)
	return starlark.Bool(contains(i.failing, name)), nil
}

func (i *incident) passedFn(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name, err := i.probeArg(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	i.view.Read(name)
	return starlark.Bool(contains(i.passing, name)), nil
}

func contains(rs []engine.Result, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}
