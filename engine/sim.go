package engine

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Sim is the third driver of the decision core, for `talon test`: a
// scripted world over a fake clock. The test says which probes are down and
// how each rung behaves; Sim runs cycles (every probe launched and reporting
// at once), wakes the core when it asks, ends rungs when their scripted
// duration is over (applying what they fix), and keeps the same report as
// replay: timeline, incidents, summary.
type Sim struct {
	core     *Core
	rep      reporter
	Epoch    time.Time
	now      time.Time
	Interval time.Duration
	world    map[string]simProbe
	rungs    map[string]SimRung
	running  *simRunning
	wake     time.Time
}

type simProbe struct {
	down   bool
	output string
}

// SimRung scripts how a rung behaves in a Sim: it takes Duration, its
// actions succeed unless Fail, its page reaches every channel unless
// Undelivered, and when it ends the probes in Fixes pass.
type SimRung struct {
	Duration    time.Duration
	Fixes       []string
	Fail        bool
	Undelivered bool
}

type simRunning struct {
	run *RungRun
	end time.Time
}

// NewSim starts a simulation of pol at epoch with every probe passing.
func NewSim(pol *Policy, epoch time.Time, interval time.Duration, opts CoreOptions) *Sim {
	if interval <= 0 {
		interval = pol.Interval
	}
	if interval <= 0 {
		interval = time.Minute
	}
	c := NewCore(opts)
	s := &Sim{core: c, Epoch: epoch, now: epoch, Interval: interval, world: map[string]simProbe{}, rungs: map[string]SimRung{}}
	s.rep = reporter{core: c, failSince: map[string]time.Time{}, open: -1}
	s.step(Fact{Kind: FactStart, At: epoch, Policy: pol, State: NewState(epoch)})
	return s
}

// Policy is the simulated policy.
func (s *Sim) Policy() *Policy { return s.core.Policy() }

// State is the core's state.
func (s *Sim) State() *State { return s.core.State() }

// Now is the simulated time.
func (s *Sim) Now() time.Time { return s.now }

// Set makes the named probes fail (down) or pass from now on.
func (s *Sim) Set(name string, down bool, output string) error {
	if s.core.Policy().Probe(name) == nil {
		return fmt.Errorf("the policy has no probe %q", name)
	}
	s.world[name] = simProbe{down: down, output: output}
	return nil
}

// Script sets how rung name behaves.
func (s *Sim) Script(name string, r SimRung) error {
	for _, x := range s.core.Policy().Ladder {
		if x.Name == name {
			s.rungs[name] = r
			return nil
		}
	}
	return fmt.Errorf("the ladder has no rung %q", name)
}

func (s *Sim) result(p *Probe) Result {
	w := s.world[p.Name]
	r := Result{Name: p.Name, Passed: !w.down, Output: "ok", Critical: p.Critical, At: s.now}
	if w.down {
		r.Output = w.output
		if r.Output == "" {
			r.Output = p.Name + " is down"
		}
	}
	return r
}

// Cycle runs every probe once, now.
func (s *Sim) Cycle() {
	var names []string
	var rs []Result
	for _, p := range s.core.Policy().Probes {
		names = append(names, p.Name)
		rs = append(rs, s.result(p))
	}
	s.step(Fact{Kind: FactLaunch, At: s.now, Probes: names})
	s.step(Fact{Kind: FactResults, At: s.now, Results: rs})
}

// Report feeds one probe result, now.
func (s *Sim) Report(name string, passed bool, output string) error {
	p := s.core.Policy().Probe(name)
	if p == nil {
		return fmt.Errorf("the policy has no probe %q", name)
	}
	s.step(Fact{Kind: FactResults, At: s.now, Results: []Result{{Name: name, Passed: passed, Output: output, Critical: p.Critical, At: s.now}}})
	return nil
}

// Advance moves the clock to now+d, waking the core and ending rungs on
// the way, in time order; no probe runs.
func (s *Sim) Advance(d time.Duration) { s.advanceTo(s.now.Add(d)) }

func (s *Sim) advanceTo(to time.Time) {
	for {
		next, isWake := s.wake, true
		if r := s.running; r != nil && (next.IsZero() || !r.end.After(next)) {
			next, isWake = r.end, false
		}
		if next.IsZero() || next.After(to) {
			break
		}
		s.now = next
		if isWake {
			s.step(Fact{Kind: FactWake, At: next})
		} else {
			s.endRung()
		}
	}
	s.now = to
}

// Run runs a cycle every interval for d: at now, now+interval, … before
// now+d, then advances to now+d.
func (s *Sim) Run(d time.Duration) {
	end := s.now.Add(d)
	for t := s.now; t.Before(end); t = t.Add(s.Interval) {
		s.advanceTo(t)
		s.Cycle()
	}
	s.advanceTo(end)
}

// Restart is a process restart: the state is kept, a running rung is
// interrupted, and the ladder waits for fresh results.
func (s *Sim) Restart() {
	s.running = nil
	s.step(Fact{Kind: FactStart, At: s.now})
}

func (s *Sim) step(f Fact) {
	st := s.core.Step(context.Background(), f)
	if f.Kind == FactResults {
		s.rep.track(f.Results)
	}
	s.rep.fact(f, st)
	s.wake = st.Wake
	if st.Run != nil {
		sr := s.rungs[st.Run.Rung.Name]
		s.running = &simRunning{run: st.Run, end: s.now.Add(sr.Duration)}
		if sr.Duration == 0 {
			s.endRung()
		}
	}
}

// endRung ends the running rung as scripted.
func (s *Sim) endRung() {
	r := s.running
	s.running = nil
	sr := s.rungs[r.run.Rung.Name]
	for _, name := range sr.Fixes {
		if w, ok := s.world[name]; ok {
			w.down = false
			s.world[name] = w
		}
	}
	end := &RungEnd{Incident: r.run.Incident, Rung: r.run.Rung.Name, OK: !sr.Fail}
	if sr.Fail {
		end.Output = r.run.Rung.Name + " failed (scripted)"
	}
	for _, p := range r.run.Pagers {
		d := Delivery{Channel: p.Channel(), OK: !sr.Undelivered}
		if sr.Undelivered {
			d.Error = "not delivered (scripted)"
		}
		end.Deliveries = append(end.Deliveries, d)
	}
	for _, p := range r.run.Verify {
		end.Verify = append(end.Verify, s.result(p))
	}
	s.step(Fact{Kind: FactRungEnd, At: s.now, End: end})
}

// Report is what the simulation decided so far, as replay reports it.
func (s *Sim) Result() ReplayResult {
	out := ReplayResult{Policy: s.core.Policy().Hash, Mode: "simulated", From: s.Epoch, To: s.now,
		Divergences: []ReplayDivergence{}, Warnings: []string{}}
	s.rep.finish(&out, s.core.State().Phase, s.core.Policy())
	return out
}

// Running names the rung running now, or "".
func (s *Sim) Running() string { return s.core.Running() }

// Probes lists the probe names of the policy, sorted.
func (s *Sim) Probes() []string {
	var out []string
	for _, p := range s.core.Policy().Probes {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}
