package builtins

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm"
)

// collector receives what one load declares. Each load builds a fresh one;
// finish turns it into an immutable engine.Policy.
type collector struct {
	cfg      *config.Config
	perms    *fsperm.Checker // strict modes of this load
	cfgValue starlark.Value
	dir      string
	rt       *runner

	probes        []*engine.Probe
	byName        map[string]*engine.Probe
	thresholds    engine.Thresholds
	thresholdsPos string
	ladder        []*engine.Rung
	ladderPos     string
	ladderSet     bool
	heartbeat     *engine.Heartbeat
	// none is probe.none's reason: the policy declares no probe on purpose.
	none, nonePos string

	// freeze holds the functions the policy handed to builtins; they are
	// frozen when the load ends, so run-phase calls can share them.
	freeze   []starlark.Value
	warnings []string
	files    []readFile
	aliases  []string // other names of files read, for the watcher
	// servicesRead lists the services files services() read (canonical).
	servicesRead []string
	// readServices is Options.ReadServices.
	readServices func(path string) ([]byte, error)
	pre          starlark.StringDict
}

var _ star.Collector = (*collector)(nil)

func newCollector(cfg *config.Config, dir string, rt *runner) *collector {
	t := engine.DefaultThresholds()
	t.FailedAfter = cfg.Probes.CriticalAfterConsecutiveFailures
	t.CriticalAfter = time.Duration(cfg.Escalation.CriticalThresholdSecs) * time.Second
	return &collector{cfg: cfg, cfgValue: configValue(cfg), dir: dir, rt: rt, byName: map[string]*engine.Probe{}, thresholds: t}
}

// AddProbe implements star.Collector.
func (c *collector) AddProbe(p *engine.Probe) error {
	if q, dup := c.byName[p.Name]; dup {
		return fmt.Errorf("probe %q is already declared at %s; probe names must be unique", p.Name, q.Pos)
	}
	c.byName[p.Name] = p
	c.probes = append(c.probes, p)
	return nil
}

// SetThresholds implements star.Collector.
func (c *collector) SetThresholds(t engine.Thresholds, pos string) error {
	if c.thresholdsPos != "" {
		return fmt.Errorf("thresholds are already set at %s; call state.thresholds once", c.thresholdsPos)
	}
	c.thresholds, c.thresholdsPos = t, pos
	return nil
}

// SetLadder implements star.Collector.
func (c *collector) SetLadder(rungs []*engine.Rung, pos string) error {
	if c.ladderSet {
		return fmt.Errorf("the ladder is already declared at %s; call ladder() once with every rung", c.ladderPos)
	}
	c.ladder, c.ladderPos, c.ladderSet = rungs, pos, true
	return nil
}

// Config implements star.Collector.
func (c *collector) Config() starlark.Value { return c.cfgValue }

// Dir implements star.Collector.
func (c *collector) Dir() string { return c.dir }

func (c *collector) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// policyCollector is the collector of a load-phase thread run by Load.
func policyCollector(thread *starlark.Thread, b *starlark.Builtin) (*collector, error) {
	col, err := star.LoadPhase(thread, b)
	if err != nil {
		return nil, err
	}
	c, ok := col.(*collector)
	if !ok {
		return nil, fmt.Errorf("%s: only works in a policy loaded by talon", b.Name())
	}
	return c, nil
}

// predeclared builds the names every policy file sees. Modules made of
// registered builtins (probe.Register) are merged with the loader's own.
func (c *collector) predeclared() starlark.StringDict {
	if c.pre != nil {
		return c.pre
	}
	own := map[string]starlark.StringDict{
		"probe":   {"func": starlark.NewBuiltin("probe.func", probeFunc), "none": starlark.NewBuiltin("probe.none", probeNone)},
		"exec":    Exec.Members,
		"notify":  Notify.Members,
		"service": Service.Members,
		"state":   State.Members,
	}
	names := probe.Modules()
	for name := range own {
		names = append(names, name)
	}
	sort.Strings(names)
	pre := starlark.StringDict{}
	for _, name := range names {
		if _, done := pre[name]; done {
			continue
		}
		members := starlark.StringDict{}
		for k, v := range own[name] {
			members[k] = v
		}
		for _, b := range probe.Registered(name) {
			short := strings.TrimPrefix(b.Name, name+".")
			if _, taken := members[short]; !taken {
				members[short] = starlark.NewBuiltin(b.Name, b.Fn)
			}
		}
		pre[name] = &starlarkstruct.Module{Name: name, Members: members}
	}
	pre["ladder"] = starlark.NewBuiltin("ladder", ladderBuiltin)
	pre["rung"] = starlark.NewBuiltin("rung", rungBuiltin)
	pre["services"] = starlark.NewBuiltin("services", servicesBuiltin)
	pre["heartbeat"] = starlark.NewBuiltin("heartbeat", heartbeatBuiltin)
	pre["config"] = c.cfgValue
	pre["secret"] = secret.Builtin
	pre["struct"] = starlark.NewBuiltin("struct", starlarkstruct.Make)
	pre.Freeze()
	c.pre = pre
	return pre
}

func (l *loader) predeclared() starlark.StringDict { return l.c.predeclared() }

// finish validates what the load declared and builds the policy.
func (c *collector) finish(opts Options) (*engine.Policy, []*engine.PosError) {
	for _, v := range c.freeze {
		v.Freeze()
	}
	var errs []*engine.PosError
	for _, p := range c.probes {
		for _, d := range p.DependsOn {
			if d == p.Name {
				errs = append(errs, errorAt(p.Pos, "probe %q depends on itself; remove it from depends_on", p.Name))
			} else if c.byName[d] == nil {
				errs = append(errs, errorAt(p.Pos, "probe %q depends on %q, which is not declared", p.Name, d))
			}
		}
	}
	if len(errs) == 0 {
		if cycle := dependsCycle(c.probes, c.byName); cycle != nil {
			errs = append(errs, errorAt(c.byName[cycle[0]].Pos, "depends_on cycle: %s", strings.Join(cycle, " → ")))
		}
	}
	if c.thresholds.FailedAfter < 1 {
		errs = append(errs, errorAt(c.thresholdsPos, "failed_after must be at least 1, got %d", c.thresholds.FailedAfter))
	}
	if len(errs) > 0 {
		return nil, errs
	}

	known := map[string]bool{}
	for _, p := range c.probes {
		known[p.Name] = true
	}
	c.rt.probes = known

	if errs := c.checkPredicates(); len(errs) > 0 {
		return nil, errs
	}
	if errs := c.checkChannels(); len(errs) > 0 {
		return nil, errs
	}
	for _, r := range c.ladder {
		for _, a := range r.Do {
			if sa, ok := a.(*ServiceAction); ok {
				for _, name := range sa.IfFailing {
					if !known[name] {
						return nil, []*engine.PosError{errorAt(sa.Pos, "service.restart: %s: if_failing names %q, which is not a probe of this policy", sa.Unit, name)}
					}
				}
			}
		}
	}

	var kept []*engine.Probe
	dropped := map[string]bool{}
	for _, p := range c.probes {
		if p.OS != "" && p.OS != opts.GOOS {
			dropped[p.Name] = true
			c.warn("%s: probe %q is for %s; it does not run on %s", p.Pos, p.Name, p.OS, opts.GOOS)
			continue
		}
		kept = append(kept, p)
	}
	for _, p := range kept {
		if len(dropped) > 0 {
			var deps []string
			for _, d := range p.DependsOn {
				if !dropped[d] {
					deps = append(deps, d)
				}
			}
			p.DependsOn = deps
		}
	}
	switch {
	case c.nonePos != "" && len(c.probes) > 0:
		return nil, []*engine.PosError{errorAt(c.nonePos, "probe.none: the policy also declares probe %q at %s; remove probe.none or the probes", c.probes[0].Name, c.probes[0].Pos)}
	case c.nonePos == "" && len(c.probes) == 0:
		return nil, []*engine.PosError{{File: EntryFile, Message: "the policy declares no probe; declare at least one, or call probe.none(reason) to run without any"}}
	case c.nonePos == "" && len(kept) == 0:
		return nil, []*engine.PosError{{File: EntryFile, Message: fmt.Sprintf("the policy declares no probe that runs on %s (all %d are for other systems); declare one that does", opts.GOOS, len(c.probes))}}
	}

	// Every program the policy runs where the source names it, and every
	// file such a program reads as its configuration, is held to strict
	// modes like the policy itself: one another user can change is their
	// code running as the daemon's user. A missing program is a warning.
	path := c.cfg.PathList()
	childEnv := c.cfg.ChildEnv(opts.Environ)
	seen := map[string]bool{}
	var unsafe []*engine.PosError
	program := func(pos, who, prog string) {
		key := pos + "\x00" + prog
		if seen[key] {
			return
		}
		seen[key] = true
		resolved, err := effect.LookPath(prog, path)
		if err != nil {
			if strings.Contains(prog, "/") {
				c.warn("%s: program %q (%s) cannot run: %v", pos, prog, who, err)
			} else {
				c.warn("%s: program %q not found on PATH (%s); install it or add its directory to path in config.toml", pos, prog, who)
			}
			return
		}
		if err := c.perms.CheckPath(resolved); err != nil && !errors.Is(err, fs.ErrNotExist) {
			unsafe = append(unsafe, errorAt(pos, "%s runs %s: %v", who, prog, err))
			return
		}
		// A directory searched before the one it was found in, that
		// another user can write, lets them put their own program first.
		if !strings.Contains(prog, "/") {
			for _, dir := range filepath.SplitList(path) {
				if dir == "" || dir == filepath.Dir(resolved) {
					break
				}
				if err := c.perms.CheckPath(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
					unsafe = append(unsafe, errorAt(pos, "%s runs %s, found on the child PATH after %s: %v", who, prog, dir, err))
					return
				}
			}
		}
	}
	reads := func(pos, who, file string) {
		files := probe.ConfigFiles([]string{file}, childEnv)
		for _, f := range files {
			if f == "" || seen[pos+"\x00"+f] {
				continue
			}
			seen[pos+"\x00"+f] = true
			if err := c.perms.CheckPath(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				unsafe = append(unsafe, errorAt(pos, "%s reads %s: %v", who, f, err))
			}
		}
	}
	for _, p := range kept {
		for _, prog := range p.Programs {
			program(p.Pos, fmt.Sprintf("probe %q", p.Name), prog)
		}
		for _, f := range p.Reads {
			reads(p.Pos, fmt.Sprintf("probe %q", p.Name), f)
		}
	}
	for _, r := range c.ladder {
		for _, a := range r.Do {
			for _, prog := range a.Programs() {
				program(r.Pos, fmt.Sprintf("rung %q", r.Name), prog)
			}
		}
	}
	for _, run := range c.staticRuns() {
		program(run.pos, run.via, run.prog)
	}
	if len(unsafe) > 0 {
		return nil, unsafe
	}
	c.checkPaging(opts.Environ, kept)
	c.checkServices(opts.Environ)
	c.checkWorker()

	return &engine.Policy{
		NoProbes:   c.none,
		Dir:        c.dir,
		Probes:     kept,
		Thresholds: c.thresholds,
		Ladder:     c.ladder,
		Interval:   time.Duration(c.cfg.CheckIntervalSecs) * time.Second,
		Env:        c.cfg.ChildEnv(opts.Environ),
		Heartbeat:  c.heartbeat,
	}, nil
}

// destined is a channel that says where it delivers: two pagers with one
// channel identity must deliver to the same place.
type destined interface{ Destination() string }

// checkChannels refuses a ladder where one channel identity names two
// destinations, or a rung that pages one channel twice: each channel's
// answer is recorded under its identity (which channels accepted a page,
// which are still owed one after a crash, who hears "resolved"), so an
// identity must mean one destination. The same channel in several rungs is
// fine.
func (c *collector) checkChannels() []*engine.PosError {
	type first struct {
		rung *engine.Rung
		dest string
	}
	seen := map[string]first{}
	for _, r := range c.ladder {
		inRung := map[string]bool{}
		for _, a := range r.Do {
			p, ok := a.(engine.Pager)
			if !ok {
				continue
			}
			ch := p.Channel()
			if inRung[ch] {
				return []*engine.PosError{errorAt(r.Pos, "rung %q pages channel %s twice; name each channel once in a rung", r.Name, ch)}
			}
			inRung[ch] = true
			dest := fmt.Sprintf("%T %p", p, p)
			if d, ok := p.(destined); ok {
				dest = fmt.Sprintf("%T %s", p, d.Destination())
			}
			if f, ok := seen[ch]; ok && f.dest != dest {
				return []*engine.PosError{errorAt(r.Pos, "rung %q pages channel %s, which rung %q (%s) names for another destination; use the same channel in both, or tell them apart with name=",
					r.Name, ch, f.rung.Name, f.rung.Pos)}
			} else if !ok {
				seen[ch] = first{r, dest}
			}
		}
	}
	return nil
}

// checkPredicates finds a ladder naming an unknown probe. when= predicates
// are pure, so evaluating them at load time is safe: each runs against a
// synthetic incident where every probe passes, and one where every probe
// fails, which between them reach most incident.failing/passed calls. Only
// "no probe named" errors count here; any other error may depend on a real
// incident and surfaces when the rung is considered.
func (c *collector) checkPredicates() []*engine.PosError {
	var errs []*engine.PosError
	now := time.Unix(0, 0).UTC()
	views := []*engine.IncidentView{}
	for _, passed := range []bool{true, false} {
		v := &engine.IncidentView{ID: "load-check", Started: now, Now: now, State: string(engine.Failed), Rungs: map[string]engine.RungRecord{}}
		for _, p := range c.probes {
			r := engine.Result{Name: p.Name, Passed: passed, Critical: p.Critical}
			if passed {
				v.Passing = append(v.Passing, r)
			} else {
				v.Failing = append(v.Failing, r)
			}
		}
		views = append(views, v)
	}
	for _, r := range c.ladder {
		if r.When == nil {
			continue
		}
		for _, v := range views {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := r.When(ctx, v)
			cancel()
			var pe *engine.PosError
			if errors.As(err, &pe) && strings.Contains(pe.Message, "no probe named") {
				pe.Message += fmt.Sprintf(" (when= of rung %q)", r.Name)
				errs = append(errs, pe)
				break
			}
		}
	}
	return errs
}

// dependsCycle returns a depends_on cycle as probe names, first repeated
// last, or nil.
func dependsCycle(probes []*engine.Probe, byName map[string]*engine.Probe) []string {
	const (
		unvisited = iota
		visiting
		done
	)
	mark := map[string]int{}
	var stack []string
	var visit func(name string) []string
	visit = func(name string) []string {
		switch mark[name] {
		case visiting:
			for i, n := range stack {
				if n == name {
					return append(append([]string(nil), stack[i:]...), name)
				}
			}
		case done:
			return nil
		}
		mark[name] = visiting
		stack = append(stack, name)
		for _, d := range byName[name].DependsOn {
			if byName[d] == nil {
				continue
			}
			if cyc := visit(d); cyc != nil {
				return cyc
			}
		}
		stack = stack[:len(stack)-1]
		mark[name] = done
		return nil
	}
	for _, p := range probes {
		if cyc := visit(p.Name); cyc != nil {
			return cyc
		}
	}
	return nil
}
