// Package star holds the small pieces every Talon builtin shares: argument
// types that implement starlark.Unpacker, and typed access to what the host
// hands a thread (the load collector, the run environment).
package star

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm"
)

// Duration accepts "30s", "5m", "1h30m" or a number of seconds, from zero to
// MaxDuration: a larger one is a mistake (9300000000 seconds overflowed to a
// negative duration once, and the SOS rung holding on it fired at once).
type Duration struct{ D time.Duration }

// MaxDuration is the longest duration a policy may give: a year.
const MaxDuration = 366 * 24 * time.Hour

var _ starlark.Unpacker = (*Duration)(nil)

// Unpack implements starlark.Unpacker.
func (d *Duration) Unpack(v starlark.Value) error {
	tooLong := func(what string) error {
		return fmt.Errorf("duration %s is longer than a year; give at most %q", what, "8784h")
	}
	switch x := v.(type) {
	case starlark.String:
		s := string(x)
		if n, err := strconv.ParseFloat(s, 64); err == nil {
			if n > MaxDuration.Seconds() {
				return tooLong(strconv.Quote(s))
			}
			s = strconv.FormatFloat(n, 'f', -1, 64) + "s"
		}
		dd, err := time.ParseDuration(s)
		if err != nil {
			// ParseDuration says "invalid" for a number too large for its
			// unit too: with the first number made 1, it parses.
			if _, err := time.ParseDuration("1" + strings.TrimLeft(s, "0123456789.")); err == nil && s != "" && s[0] >= '0' && s[0] <= '9' {
				return tooLong(strconv.Quote(string(x)))
			}
			return fmt.Errorf("want a duration such as \"30s\" or \"5m\", got %q", string(x))
		}
		if dd < 0 {
			return fmt.Errorf("duration %q is negative", string(x))
		}
		if dd > MaxDuration {
			return tooLong(strconv.Quote(string(x)))
		}
		d.D = dd
	case starlark.Int:
		n, ok := x.Int64()
		if ok && n < 0 || !ok && x.Sign() < 0 {
			return fmt.Errorf("want a non-negative number of seconds, got %s", x)
		}
		if !ok || n > int64(MaxDuration/time.Second) {
			return tooLong(x.String() + " seconds")
		}
		d.D = time.Duration(n) * time.Second
	case starlark.Float:
		if !(x >= 0) { // NaN included
			return fmt.Errorf("want a non-negative number of seconds, got %s", x)
		}
		if float64(x) > MaxDuration.Seconds() {
			return tooLong(x.String() + " seconds")
		}
		d.D = time.Duration(float64(x) * float64(time.Second))
	default:
		return fmt.Errorf("want a duration string such as \"30s\", got %s", v.Type())
	}
	return nil
}

// Count is a number of times (consecutive failures, passes, characters),
// from 0 to MaxCount. Unpack into an int field through a conversion:
// (*star.Count)(&c.After).
type Count int

// MaxCount is the largest count a policy may give.
const MaxCount = 100_000

var _ starlark.Unpacker = (*Count)(nil)

// Unpack implements starlark.Unpacker.
func (c *Count) Unpack(v starlark.Value) error {
	x, ok := v.(starlark.Int)
	if !ok {
		return fmt.Errorf("got %s, want int", v.Type())
	}
	n, ok := x.Int64()
	if !ok || n < 0 || n > MaxCount {
		return fmt.Errorf("want a count from 0 to %d, got %s", MaxCount, x)
	}
	*c = Count(n)
	return nil
}

// StringList accepts a list or tuple of strings.
type StringList []string

var _ starlark.Unpacker = (*StringList)(nil)

// Unpack implements starlark.Unpacker.
func (l *StringList) Unpack(v starlark.Value) error {
	it, ok := v.(starlark.Iterable)
	if !ok || isString(v) {
		return fmt.Errorf("want a list of strings, got %s", v.Type())
	}
	iter := it.Iterate()
	defer iter.Done()
	var out []string
	var x starlark.Value
	for i := 0; iter.Next(&x); i++ {
		s, ok := starlark.AsString(x)
		if !ok {
			return fmt.Errorf("item %d: want string, got %s", i, x.Type())
		}
		out = append(out, s)
	}
	*l = out
	return nil
}

// StringOrList accepts one string or a list of strings.
type StringOrList []string

var _ starlark.Unpacker = (*StringOrList)(nil)

// Unpack implements starlark.Unpacker.
func (l *StringOrList) Unpack(v starlark.Value) error {
	if s, ok := starlark.AsString(v); ok {
		*l = []string{s}
		return nil
	}
	var sl StringList
	if err := sl.Unpack(v); err != nil {
		return err
	}
	*l = StringOrList(sl)
	return nil
}

// StringMap accepts a dict of string to string.
type StringMap map[string]string

var _ starlark.Unpacker = (*StringMap)(nil)

// Unpack implements starlark.Unpacker.
func (m *StringMap) Unpack(v starlark.Value) error {
	d, ok := v.(*starlark.Dict)
	if !ok {
		return fmt.Errorf("want a dict of strings, got %s", v.Type())
	}
	out := map[string]string{}
	for _, item := range d.Items() {
		k, ok1 := starlark.AsString(item[0])
		val, ok2 := starlark.AsString(item[1])
		if !ok1 || !ok2 {
			return fmt.Errorf("want string keys and values, got %s: %s", item[0].Type(), item[1].Type())
		}
		out[k] = val
	}
	*m = out
	return nil
}

func isString(v starlark.Value) bool { _, ok := v.(starlark.String); return ok }

// Keys of a map, sorted.
func Keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Thread-local keys. The host sets them; builtins read them through the
// typed accessors below, which fail loudly when a key is missing.
const (
	collectorKey = "talon.collector"
	runKey       = "talon.run"
)

// Collector receives what load-phase builtins declare.
type Collector interface {
	AddProbe(p *engine.Probe) error
	SetThresholds(t engine.Thresholds, pos string) error
	SetLadder(rungs []*engine.Rung, pos string) error
	// Config is the `config` value the policy reads.
	Config() starlark.Value
	// ServicesFile resolves and reads a services file for services(path).
	Dir() string
}

// SetCollector marks thread as a load-phase thread feeding c.
func SetCollector(thread *starlark.Thread, c Collector) { thread.SetLocal(collectorKey, c) }

// LoadPhase returns the collector of a load-phase thread, or an error naming
// the builtin when called at run time.
func LoadPhase(thread *starlark.Thread, b *starlark.Builtin) (Collector, error) {
	c, ok := thread.Local(collectorKey).(Collector)
	if !ok {
		return nil, fmt.Errorf("%s: declarations are only allowed at the top level of a policy, not while it runs", b.Name())
	}
	return c, nil
}

// SetRun marks thread as a run-phase thread.
func SetRun(thread *starlark.Thread, r *RunEnv) { thread.SetLocal(runKey, r) }

// RunEnv is the run-phase environment: the context of the call (its deadline
// bounds every effect), the effects, the child environment and, inside a rung,
// the incident.
type RunEnv struct {
	Ctx      context.Context
	Effects  effect.Effects
	Env      []string
	Incident *engine.IncidentView // nil inside a probe
	Log      func(msg string, kv ...any)
	// NotFound is told when a program a builtin was asked to run is not
	// on the child PATH, with the caller's position: what talon validate
	// could not see (an argv computed at run time) is logged at its first
	// run. Nil: not reported.
	NotFound func(program, pos string)
	// Files are the strict modes of the load (package fsperm), for files a
	// builtin reads at run time into what a program is told (agent.prompt's
	// log_file). Nil: strict, for the process's user.
	Files *fsperm.Checker
}

// RunPhase returns the run environment or an error naming the builtin and
// telling the user where it may be called instead.
func RunPhase(thread *starlark.Thread, b *starlark.Builtin) (*RunEnv, error) {
	r, ok := thread.Local(runKey).(*RunEnv)
	if !ok {
		return nil, fmt.Errorf("%s: side effects are not allowed while the policy loads; call it from a probe.func or rung function", b.Name())
	}
	return r, nil
}

// Pos is the caller's position as "file:line:col".
func Pos(thread *starlark.Thread) string {
	if thread.CallStackDepth() < 2 {
		return ""
	}
	return thread.CallFrame(1).Pos.String()
}

// Join is strings.Join, here so builtins need not import strings for one call.
func Join(s []string) string { return strings.Join(s, " ") }
