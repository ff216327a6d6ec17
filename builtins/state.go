package builtins

import (
	"fmt"
	"regexp"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
)

// State is the state module.
//
//	def thresholds(*, failed_after=None, critical_after=None, recover_after=1, flap_window="1h", flap_start=3, flap_stop=1):
//	    Sets the state machine's policy-wide thresholds; call it at most once.
//	    failed_after: consecutive failures before a probe counts as down, for probes without
//	        after= (default: config.probes.critical_after_consecutive_failures)
//	    critical_after: how long an incident stays open before it is critical, e.g. "15m"
//	        (default: config.escalation.critical_threshold_secs)
//	    recover_after: consecutive passes before a down probe counts as up, for probes
//	        without recover_after=
//	    flap_window: the window of flap detection, e.g. "1h"
//	    flap_start: a probe that went down this many times within flap_window is flapping
//	        (0 turns flap detection off)
//	    flap_stop: a flapping probe stops flapping once at most this many of its downs are
//	        left within flap_window (less than flap_start: the gap is the hysteresis)
var State = &starlarkstruct.Module{Name: "state", Members: starlark.StringDict{
	"thresholds": starlark.NewBuiltin("state.thresholds", thresholds),
}}

// LadderDoc documents ladder() and rung().
const LadderDoc = `def ladder(*rungs):
Declares the escalation ladder: one incident at a time walks the rungs in order. Call it once.
rungs: rung(...) values, or lists of them

def rung(name, do, *, when=None, after=None, timeout=None, cooldown=None, repeat=None, state=None, verify=True, settle="30s", flapping="once"):
One step of the ladder.
name: unique rung name
do: an action (exec.cmd, exec.shell, agent.run, notify.*), a function of the incident, or a list of them.
    A function runs with the rung's effects (exec.run works) and returns None or True (done), False or a
    message string (failed), or struct(ok = ..., output = ...) such as exec.run's result
when: function of the incident returning True or False; the rung is skipped while False. It must be
    pure: it reads the incident, never the world. It sees fresh results only: a predicate that reads a
    probe without one makes the rung wait for it (see the incident value)
after: hold the rung until the incident is this old, e.g. "15m"; a rung that pages goes out when the
    incident is this old whatever the rungs before it are doing
timeout: deadline of the whole rung, e.g. "5m" (default 5m)
cooldown: wait at least this long before running the rung again; a rung cooling down (from an earlier
    incident, say) is passed over, and the ladder goes on to the next. For a rung's page, only the pages
    of the open incident count: a new incident's first page is never held by an earlier one, nor by the
    rung's own actions cooling down (its page then goes out alone). Without a cooldown, a rung's actions
    run once per incident (a retry of its page goes out alone). A rung that acts and pages, in an
    incident no critical probe is failing in, runs its actions in their turn and leaves its page out
repeat: pages only: re-send no more often than this while the incident is open
state: state entered when the rung runs: "failed", "investigating", "critical" or "sos"
verify: re-probe the failing probes after the rung ran; a green re-probe resolves the incident
settle: after a rung that ran something and verifies, how long the ladder waits for its effect to show
    before it moves on, re-probing the failing probes; a green re-probe resolves the incident ("0s": none)
flapping: what the rung does for an incident whose probes all flap: "once" (run, or page, once while
    they flap; a page counts its after from the first of the downs), "never", or "always" (as if they
    did not flap)`

// LadderRulesDoc explains how the ladder decides, for docs/policy.md.
const LadderRulesDoc = `How the ladder decides. One decision core takes every decision, in the daemon, in talon replay and in talon test alike.

**Fresh evidence.** A decision reads only results taken after the incident's failures were first seen, and after the last rung that ran something ended: a pass that started before then may predate the outage, or the rung's own disturbance. A when= predicate that reads a probe without a fresh result makes its rung wait for one, at most that probe's interval plus its timeout; then it decides on what there is, and a stale result is neither passed nor failing (incident.passed is false).

**Settle.** Results recorded while a rung runs, and during its settle window after it (rung settle=, default 30s, for rungs that run something and verify), do not move the ladder on. The failing probes are re-probed during the window; when every probe of the incident passes a run taken after the rung ended, the incident resolves at once. Only when the window ends without that does the next rung get its turn.

**Liveness.** A rung cooling down, paused, or whose when= is false is passed over, never waited for: it runs again later, when it is due. A rung that pages has its own slot: with after= it goes out when the incident is that old, whatever the rungs before it are doing (a heal still running, a settle window, an agent held by its own after); without after= it goes out once the rungs before it had their turn. So an incident with a critical probe down longer than the page's after pages, unless the operator paused or acknowledged it, or its probes flap and it paged once already: a page sent for an earlier incident never holds a new incident's first page (flap detection, not a cooldown, quiets a service that goes down and up).

**Flapping.** A probe that went down flap_start times (default 3) within flap_window (default 1h) is flapping, as Nagios's flap detection with a time window; it stops once at most flap_stop (default 1) of its downs are left in the window. It shows on /health and in pages. For an incident whose probes all flap, each rung's flapping= decides: by default a heal runs once while they flap, and one page goes out, saying so, once the flapping is older than the page's after.

**Pause and acknowledge.** talon pause (or POST /pause) stops the ladder for everything, a probe, a tag or a rung, for --for (1h by default, at most 24h: every pause ends) or until talon resume; probes keep running and recording, and pages say what is paused. talon ack stops further rungs and pages of the open incident until it resolves or gets worse (a probe that was up goes down); "resolved" still reaches whoever was paged. These are the only exceptions to "a critical outage pages".`

func thresholds(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	if len(args) > 0 {
		return nil, fmt.Errorf("%s: pass failed_after=, critical_after= and recover_after= by name", b.Name())
	}
	t := c.thresholds
	critical := star.Duration{D: t.CriticalAfter}
	window := star.Duration{D: t.FlapWindow}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"failed_after??", (*star.Count)(&t.FailedAfter), "critical_after??", &critical, "recover_after??", (*star.Count)(&t.RecoverAfter),
		"flap_window??", &window, "flap_start??", (*star.Count)(&t.FlapStart), "flap_stop??", (*star.Count)(&t.FlapStop)); err != nil {
		return nil, err
	}
	t.CriticalAfter, t.FlapWindow = critical.D, window.D
	if t.FlapStart > 0 && t.FlapStop >= t.FlapStart {
		return nil, fmt.Errorf("%s: flap_stop (%d) must be less than flap_start (%d)", b.Name(), t.FlapStop, t.FlapStart)
	}
	if t.FlapStart > 0 && t.FlapWindow <= 0 {
		return nil, fmt.Errorf("%s: flap_window must be positive while flap_start is set", b.Name())
	}
	if t.FailedAfter < 1 {
		return nil, fmt.Errorf("%s: failed_after must be at least 1, got %d", b.Name(), t.FailedAfter)
	}
	if t.RecoverAfter < 1 {
		return nil, fmt.Errorf("%s: recover_after must be at least 1, got %d", b.Name(), t.RecoverAfter)
	}
	if err := c.SetThresholds(t, star.Pos(thread)); err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return starlark.None, nil
}

// rungValue is the Starlark value of a rung, until ladder() takes it.
type rungValue struct{ r *engine.Rung }

var _ starlark.HasAttrs = (*rungValue)(nil)

func (v *rungValue) String() string        { return fmt.Sprintf("<rung %s>", v.r.Name) }
func (v *rungValue) Type() string          { return "rung" }
func (v *rungValue) Freeze()               {}
func (v *rungValue) Truth() starlark.Bool  { return starlark.True }
func (v *rungValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: rung") }

func (v *rungValue) Attr(name string) (starlark.Value, error) {
	r := v.r
	switch name {
	case "name":
		return starlark.String(r.Name), nil
	case "state":
		return starlark.String(r.State), nil
	case "verify":
		return starlark.Bool(r.Verify), nil
	case "after":
		return starlark.Float(r.After.Seconds()), nil
	case "timeout":
		return starlark.Float(r.Timeout.Seconds()), nil
	case "cooldown":
		return starlark.Float(r.Cooldown.Seconds()), nil
	case "repeat":
		return starlark.Float(r.Repeat.Seconds()), nil
	case "settle":
		return starlark.Float(r.Settle.Seconds()), nil
	case "flapping":
		return starlark.String(r.Flapping), nil
	case "conditional":
		return starlark.Bool(r.When != nil), nil
	case "do":
		var out []starlark.Value
		for _, a := range r.Do {
			out = append(out, starlark.String(a.Describe()))
		}
		return starlark.NewList(out), nil
	}
	return nil, nil
}

func (v *rungValue) AttrNames() []string {
	return []string{"after", "conditional", "cooldown", "do", "flapping", "name", "repeat", "settle", "state", "timeout", "verify"}
}

var rungNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]*$`)

// rungStates are the states a rung may raise the incident to.
var rungStates = []engine.Phase{engine.Failed, engine.Investigating, engine.Critical, engine.SOS}

func rungBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	if len(args) > 2 {
		return nil, fmt.Errorf("%s: got %d positional arguments; pass everything after do= by name", b.Name(), len(args))
	}
	var (
		name                            string
		do                              starlark.Value
		when                            starlark.Value = starlark.None
		after, timeout, cooldown, every star.Duration
		settle                          = star.Duration{D: engine.DefaultSettle}
		state                           string
		verify                          = true
		flapping                        = engine.FlapOnce
	)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name, "do", &do, "when??", &when,
		"after??", &after, "timeout??", &timeout, "cooldown??", &cooldown, "repeat??", &every,
		"state??", &state, "verify??", &verify, "settle??", &settle, "flapping??", &flapping); err != nil {
		return nil, err
	}
	if !rungNameRE.MatchString(name) {
		return nil, fmt.Errorf("%s: rung name %q: use letters, digits and _ . : -", b.Name(), name)
	}
	switch flapping {
	case engine.FlapOnce, engine.FlapNever, engine.FlapAlways:
	default:
		return nil, fmt.Errorf("%s: %s: flapping must be \"once\", \"never\" or \"always\"; got %q", b.Name(), name, flapping)
	}
	r := &engine.Rung{Name: name, After: after.D, Timeout: timeout.D, Cooldown: cooldown.D, Repeat: every.D,
		State: state, Verify: verify, Settle: settle.D, Flapping: flapping, Pos: star.Pos(thread)}
	if state != "" {
		ok := false
		for _, p := range rungStates {
			ok = ok || engine.Phase(state) == p
		}
		if !ok {
			return nil, fmt.Errorf("%s: %s: state must be one of failed, investigating, critical, sos; got %q", b.Name(), name, state)
		}
	}
	var items []starlark.Value
	switch x := do.(type) {
	case *starlark.List:
		for i := 0; i < x.Len(); i++ {
			items = append(items, x.Index(i))
		}
	case starlark.Tuple:
		items = x
	default:
		items = []starlark.Value{do}
	}
	for i, it := range items {
		switch x := it.(type) {
		case engine.Action:
			r.Do = append(r.Do, x)
		case *starlark.Builtin:
			return nil, fmt.Errorf("%s: %s: do item %d is the function %s itself; call it: %s(...)", b.Name(), name, i, x.Name(), x.Name())
		case starlark.Callable:
			if !accepts(x, 1) {
				return nil, fmt.Errorf("%s: %s: do= function %s must take one parameter, the incident", b.Name(), name, x.Name())
			}
			r.Do = append(r.Do, newFuncAction(c.rt, x))
			c.freeze = append(c.freeze, x)
		case starlark.NoneType:
			if len(items) == 1 {
				return nil, fmt.Errorf("%s: %s: do must name at least one action", b.Name(), name)
			}
			return nil, fmt.Errorf("%s: %s: do item %d is None; want an action or a function", b.Name(), name, i)
		default:
			return nil, fmt.Errorf("%s: %s: do item %d is %s; want an action (exec.cmd, notify.log, ...) or a function of the incident", b.Name(), name, i, it.Type())
		}
	}
	if len(r.Do) == 0 {
		return nil, fmt.Errorf("%s: %s: do must name at least one action", b.Name(), name)
	}
	if when != starlark.None {
		fn, ok := when.(starlark.Callable)
		if !ok {
			return nil, fmt.Errorf("%s: %s: when= must be a function of the incident, got %s", b.Name(), name, when.Type())
		}
		if !accepts(fn, 1) {
			return nil, fmt.Errorf("%s: %s: when= function %s must take one parameter, the incident", b.Name(), name, fn.Name())
		}
		r.When = c.rt.predicate(fn, r.Pos)
		c.freeze = append(c.freeze, fn)
	}
	return &rungValue{r: r}, nil
}

func ladderBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	c, err := policyCollector(thread, b)
	if err != nil {
		return nil, err
	}
	if len(kwargs) > 0 {
		return nil, fmt.Errorf("%s: takes rungs only, got %s=", b.Name(), kwargs[0][0])
	}
	var rungs []*engine.Rung
	seen := map[string]*engine.Rung{}
	add := func(v starlark.Value, where string) error {
		rv, ok := v.(*rungValue)
		if !ok {
			return fmt.Errorf("%s: %s is %s; want rung(...)", b.Name(), where, v.Type())
		}
		if prev, dup := seen[rv.r.Name]; dup {
			return fmt.Errorf("%s: rung %q appears twice (%s and %s); rung names must be unique", b.Name(), rv.r.Name, prev.Pos, rv.r.Pos)
		}
		seen[rv.r.Name] = rv.r
		rungs = append(rungs, rv.r)
		return nil
	}
	for i, a := range args {
		where := fmt.Sprintf("argument %d", i+1)
		if it, ok := a.(starlark.Indexable); ok && (a.Type() == "list" || a.Type() == "tuple") {
			for j := 0; j < it.Len(); j++ {
				if err := add(it.Index(j), fmt.Sprintf("%s item %d", where, j)); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := add(a, where); err != nil {
			return nil, err
		}
	}
	if err := c.SetLadder(rungs, star.Pos(thread)); err != nil {
		return nil, fmt.Errorf("%s: %v", b.Name(), err)
	}
	return starlark.None, nil
}
