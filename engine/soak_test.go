package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestSoakLadderInvariants drives the decision core (through Sim, the
// driver of `talon test`) through generated scenarios: outages and relapses
// of several probes, slow, failing and undelivered rungs, restarts,
// reloads that rename rungs and change cooldowns, pauses and
// acknowledgements. After each it checks the ladder's invariants:
//
//   - liveness: a critical probe down longer than a page rung's after (plus
//     the time to detect it) makes that rung page, unless a pause or an
//     acknowledgement covered the time, or the probe flapped (a page's
//     cooldown from an earlier incident never holds a new one's page);
//   - no acting rung starts twice inside its cooldown;
//   - no page (the same channels) is delivered twice in an incident inside
//     the rung's repeat, nor twice at all without one.
//
// `make test` runs a bounded number of scenarios; `make soak` sets
// TALON_SOAK to a duration and runs them for that long. A failure prints
// the seed; TALON_SOAK_SEED=N replays that one scenario.
func TestSoakLadderInvariants(t *testing.T) {
	t.Parallel()
	if s := os.Getenv("TALON_SOAK_SEED"); s != "" {
		var seed uint64
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("TALON_SOAK_SEED=%q: %v", s, err)
		}
		if msg := soakOne(seed, true); msg != "" {
			t.Fatalf("seed %d: %s", seed, msg)
		}
		return
	}
	n, until := 300, time.Time{}
	if d := os.Getenv("TALON_SOAK"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("TALON_SOAK=%q: %v", d, err)
		}
		n, until = 0, time.Now().Add(dur)
	}
	start := uint64(time.Now().UnixNano())
	ran := 0
	for i := uint64(0); ; i++ {
		if until.IsZero() && ran >= n || !until.IsZero() && time.Now().After(until) {
			break
		}
		seed := start + i
		if msg := soakOne(seed, false); msg != "" {
			t.Fatalf("seed %d (TALON_SOAK_SEED=%d go test -run TestSoakLadderInvariants -v ./engine/): %s", seed, seed, msg)
		}
		ran++
	}
	t.Logf("%d scenarios", ran)
}

// soakWorld is a generated scenario.
type soakWorld struct {
	rnd      *rand.Rand
	interval time.Duration
	horizon  time.Duration
	probes   []*Probe
	// windows are each probe's outages, [from, to) from the epoch.
	windows map[string][][2]time.Duration
	// policies: the first runs at the start, the others are reloaded.
	policies []*Policy
	reloads  []time.Duration
	restarts []time.Duration
	pauses   [][2]time.Duration // pauses of everything
	acks     []time.Duration
	rungs    map[string]SimRung
}

func genWorld(seed uint64) *soakWorld {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &soakWorld{rnd: rnd, interval: time.Duration(15+rnd.IntN(4)*15) * time.Second, horizon: time.Duration(4+rnd.IntN(5)) * time.Hour,
		windows: map[string][][2]time.Duration{}, rungs: map[string]SimRung{}}
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rnd.Int64N(int64(hi-lo)+1)) }
	np := 1 + rnd.IntN(4)
	for i := 0; i < np; i++ {
		p := &Probe{Name: fmt.Sprintf("p%d", i), Critical: i == 0 || rnd.IntN(2) == 0, After: 1 + rnd.IntN(3),
			RecoverAfter: 1 + rnd.IntN(2), Timeout: dur(time.Second, 10*time.Second), Digest: fmt.Sprintf("d%d", i)}
		if i > 0 && rnd.IntN(5) == 0 {
			p.Witness, p.Critical = true, false
		}
		w.probes = append(w.probes, p)
		// Outages: short blips, long outages, relapses right after.
		for at := dur(0, time.Hour); at < w.horizon; {
			length := dur(10*time.Second, 10*time.Minute)
			if rnd.IntN(3) == 0 {
				length = dur(20*time.Minute, 2*time.Hour)
			}
			w.windows[p.Name] = append(w.windows[p.Name], [2]time.Duration{at, at + length})
			gap := dur(time.Hour, 3*time.Hour)
			if rnd.IntN(3) == 0 {
				gap = dur(time.Second, 5*time.Minute) // a relapse
			}
			at += length + gap
		}
	}
	th := DefaultThresholds()
	th.FailedAfter = 1 + rnd.IntN(3)
	th.CriticalAfter = dur(time.Minute, 30*time.Minute)
	if rnd.IntN(2) == 0 {
		th.FlapStart = 0 // off: the liveness check then covers every outage
	}
	mkLadder := func(variant int) []*Rung {
		var ladder []*Rung
		nact := rnd.IntN(4)
		for i := 0; i < nact; i++ {
			r := &Rung{Name: fmt.Sprintf("act%d", i), Do: []Action{fakeAction{fmt.Sprintf("act%d", i)}}, Verify: rnd.IntN(4) > 0,
				Cooldown: []time.Duration{0, 5 * time.Minute, 30 * time.Minute, time.Hour}[rnd.IntN(4)],
				Settle:   []time.Duration{0, 30 * time.Second, 2 * time.Minute}[rnd.IntN(3)],
				Timeout:  dur(time.Minute, 10*time.Minute), Flapping: []string{FlapOnce, FlapNever, FlapAlways}[rnd.IntN(3)]}
			if rnd.IntN(4) == 0 {
				r.After = dur(time.Minute, 20*time.Minute)
			}
			if rnd.IntN(3) == 0 {
				x := w.probes[rnd.IntN(len(w.probes))].Name
				r.When = func(_ context.Context, v *IncidentView) (bool, error) {
					v.Read(x)
					for _, res := range v.Passing {
						if res.Name == x && v.IsFresh(res) {
							return true, nil
						}
					}
					return false, nil
				}
			}
			ladder = append(ladder, r)
		}
		npage := 1 + rnd.IntN(2)
		for i := 0; i < npage; i++ {
			name := fmt.Sprintf("page%d", i)
			if variant > 0 && rnd.IntN(2) == 0 {
				name = fmt.Sprintf("page%d-v%d", i, variant) // a rename: same channels
			}
			r := &Rung{Name: name, Do: []Action{fakePager{fakeAction{fmt.Sprintf("ch%d", i)}}, fakePager{fakeAction{"log"}}},
				After:    []time.Duration{0, dur(time.Minute, 30*time.Minute)}[rnd.IntN(2)],
				Repeat:   []time.Duration{0, 30 * time.Minute, 2 * time.Hour}[rnd.IntN(3)],
				Cooldown: []time.Duration{0, 0, 4 * time.Hour}[rnd.IntN(3)], State: "sos",
				Flapping: []string{FlapOnce, FlapAlways}[rnd.IntN(2)]}
			if rnd.IntN(3) == 0 {
				// A rung that acts and pages: its page on its own clock,
				// its action in its turn (alone in a non-critical incident).
				r.Do = append([]Action{fakeAction{fmt.Sprintf("heal-%s", name)}}, r.Do...)
				r.Verify = rnd.IntN(2) == 0
			}
			pos := rnd.IntN(len(ladder) + 1)
			ladder = append(ladder[:pos], append([]*Rung{r}, ladder[pos:]...)...)
		}
		return ladder
	}
	nvar := 1 + rnd.IntN(3)
	base := mkLadder(0)
	for v := 0; v < nvar; v++ {
		ladder := base
		if v > 0 {
			// A reload: the same probes and pages (some renamed), other
			// acting rungs.
			ladder = nil
			for _, f := range mkLadder(v) {
				if !f.Pages() {
					ladder = append(ladder, f)
				}
			}
			for _, r := range base {
				if !r.Pages() {
					continue
				}
				c := *r
				if rnd.IntN(2) == 0 {
					c.Name = fmt.Sprintf("%s-v%d", strings.SplitN(r.Name, "-", 2)[0], v)
				}
				pos := rnd.IntN(len(ladder) + 1)
				ladder = append(ladder[:pos], append([]*Rung{&c}, ladder[pos:]...)...)
			}
		}
		pol := &Policy{Hash: fmt.Sprintf("h%d", v), Probes: w.probes, Thresholds: th, Ladder: ladder, Interval: w.interval}
		w.policies = append(w.policies, pol)
		if v > 0 {
			w.reloads = append(w.reloads, dur(0, w.horizon))
		}
	}
	sort.Slice(w.reloads, func(i, j int) bool { return w.reloads[i] < w.reloads[j] })
	for i := rnd.IntN(4); i > 0; i-- {
		w.restarts = append(w.restarts, dur(0, w.horizon))
	}
	if rnd.IntN(3) == 0 {
		at := dur(0, w.horizon)
		w.pauses = append(w.pauses, [2]time.Duration{at, at + dur(5*time.Minute, time.Hour)})
	}
	for i := rnd.IntN(3); i > 0; i-- {
		w.acks = append(w.acks, dur(0, w.horizon))
	}
	for _, pol := range w.policies {
		for _, r := range pol.Ladder {
			w.rungs[r.Name] = SimRung{Duration: []time.Duration{0, time.Second, dur(time.Second, 15*time.Minute)}[rnd.IntN(3)],
				Fail: rnd.IntN(2) == 0, Undelivered: r.Pages() && rnd.IntN(5) == 0}
		}
	}
	return w
}

func (w *soakWorld) down(name string, at time.Duration) bool {
	for _, win := range w.windows[name] {
		if at >= win[0] && at < win[1] {
			return true
		}
	}
	return false
}

// soakOne runs one scenario and returns the first broken invariant, or "".
func soakOne(seed uint64, verbose bool) string { return soakRun(genWorld(seed), verbose) }

// soakRun runs w and returns the first broken invariant, or "".
func soakRun(w *soakWorld, verbose bool) (msg string) {
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprintf("panic: %v", v)
		}
	}()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSim(w.policies[0], epoch, w.interval, CoreOptions{})
	script := func() {
		for name, r := range w.rungs {
			s.Script(name, r) // rungs of the other policies are refused
		}
	}
	script()
	type mark struct {
		at   time.Duration
		kind string
	}
	var marks []mark
	for _, t := range w.reloads {
		marks = append(marks, mark{t, "reload"})
	}
	for _, t := range w.restarts {
		marks = append(marks, mark{t, "restart"})
	}
	for _, p := range w.pauses {
		marks = append(marks, mark{p[0], "pause"})
	}
	for _, t := range w.acks {
		marks = append(marks, mark{t, "ack"})
	}
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].at < marks[j].at })
	next, reload := 0, 1
	var acked [][2]time.Duration // [ack, end of that incident)
	for t := time.Duration(0); t < w.horizon; t += w.interval {
		for next < len(marks) && marks[next].at <= t {
			switch m := marks[next]; m.kind {
			case "reload":
				s.Reload(w.policies[reload])
				reload++
				script()
			case "restart":
				s.Restart()
			case "pause":
				for _, p := range w.pauses {
					if p[0] == m.at {
						s.Pause(Control{Until: epoch.Add(p[1])})
					}
				}
			case "ack":
				if s.Ack("") == nil {
					acked = append(acked, [2]time.Duration{m.at, w.horizon})
				}
			}
			next++
		}
		for _, p := range w.probes {
			s.Set(p.Name, w.down(p.Name, t), "")
		}
		s.Advance(epoch.Add(t).Sub(s.Now()))
		s.Cycle()
	}
	s.Advance(epoch.Add(w.horizon).Sub(s.Now()))
	res := s.Result()
	off := func(at time.Time) time.Duration { return at.Sub(epoch) }
	// What the timeline says.
	starts := map[string][]time.Duration{}
	type page struct {
		at       time.Duration
		incident string
	}
	delivered := map[string][]page{} // by the page's first channel
	var flapping [][2]time.Duration
	flapFrom := map[string]time.Duration{}
	var incidents [][2]time.Duration // [opened, resolved)
	for i, st := range res.Timeline {
		switch st.Kind {
		case "rung":
			starts[st.Rung] = append(starts[st.Rung], off(st.At))
		case "page":
			delivered[st.Channels[0]] = append(delivered[st.Channels[0]], page{off(st.At), st.Incident})
		case "flap_start":
			flapFrom[st.Probe] = off(st.At)
		case "flap_stop":
			flapping = append(flapping, [2]time.Duration{flapFrom[st.Probe], off(st.At)})
			delete(flapFrom, st.Probe)
		case "incident_open":
			incidents = append(incidents, [2]time.Duration{off(st.At), w.horizon})
		case "incident_resolved":
			if n := len(incidents); n > 0 {
				incidents[n-1][1] = off(st.At)
			}
			for j := range acked {
				if acked[j][1] == w.horizon && acked[j][0] <= off(st.At) {
					acked[j][1] = off(st.At)
				}
			}
		case "ack_cleared":
			for j := range acked {
				if acked[j][1] == w.horizon && acked[j][0] <= off(st.At) {
					acked[j][1] = off(st.At)
				}
			}
		}
		if verbose {
			fmt.Printf("%3d +%-10s %s %s %s %v %s\n", i, off(st.At), st.Kind, st.Rung, st.Probe, st.Channels, st.Reason)
		}
	}
	for _, from := range flapFrom {
		flapping = append(flapping, [2]time.Duration{from, w.horizon})
	}
	overlaps := func(ivs [][2]time.Duration, a, b time.Duration) bool {
		for _, iv := range ivs {
			if iv[0] < b && a < iv[1] {
				return true
			}
		}
		return false
	}
	// The rungs of every policy, by name, with their strictest settings.
	type rungInfo struct {
		cooldown, repeat, after time.Duration
		pages                   bool
		channel                 string
	}
	rungs := map[string]rungInfo{}
	for _, pol := range w.policies {
		for _, r := range pol.Ladder {
			ri, ok := rungs[r.Name]
			if !ok || r.Cooldown < ri.cooldown {
				ri.cooldown = r.Cooldown
			}
			if !ok || r.Repeat < ri.repeat {
				ri.repeat = r.Repeat
			}
			ri.pages, ri.after = r.Pages(), r.After
			if r.Pages() {
				ri.channel = r.Channels()[0]
			}
			rungs[r.Name] = ri
		}
	}
	// No acting rung starts twice inside its cooldown.
	for name, ts := range starts {
		ri := rungs[name]
		if ri.pages || ri.cooldown == 0 {
			continue
		}
		for i := 1; i < len(ts); i++ {
			if ts[i]-ts[i-1] < ri.cooldown {
				return fmt.Sprintf("rung %s started at +%s and again at +%s, inside its cooldown of %s", name, ts[i-1], ts[i], ri.cooldown)
			}
		}
	}
	// No page twice inside its repeat, in one incident.
	for _, pol := range w.policies {
		for _, r := range pol.Ladder {
			if !r.Pages() {
				continue
			}
			ps := delivered[r.Channels()[0]]
			for i := 1; i < len(ps); i++ {
				if ps[i].incident != ps[i-1].incident {
					continue
				}
				if r.Repeat == 0 {
					return fmt.Sprintf("channel %s paged twice in incident %s (+%s, +%s) without a repeat", r.Channels()[0], ps[i].incident, ps[i-1].at, ps[i].at)
				}
				if ps[i].at-ps[i-1].at < rungs[r.Name].repeat {
					return fmt.Sprintf("channel %s paged at +%s and +%s in incident %s, inside the repeat of %s", r.Channels()[0], ps[i-1].at, ps[i].at, ps[i].incident, r.Repeat)
				}
			}
		}
	}
	// Liveness, for each page rung with after= of the first policy, whose
	// settings every reload keeps (reloads only rename it).
	maxAfter := 1
	for _, p := range w.probes {
		maxAfter = max(maxAfter, p.After)
	}
	var maxPage time.Duration
	for name, r := range w.rungs {
		if rungs[name].pages {
			maxPage = max(maxPage, r.Duration)
		}
	}
	slack := time.Duration(maxAfter+3)*w.interval + maxPage + 10*time.Second
	pageStarts := func(channel string) []time.Duration {
		var out []time.Duration
		for name, ts := range starts {
			if rungs[name].channel == channel {
				out = append(out, ts...)
			}
		}
		return out
	}
	// A page without after= waits for the rungs before it: each may run
	// (its scripted duration), settle, wait for fresh results, or hold the
	// walk by its own after (a page before it included).
	var walk, holds, longest time.Duration
	for _, pol := range w.policies {
		for _, r := range pol.Ladder {
			walk += w.rungs[r.Name].Duration + r.Settle + w.interval + 10*time.Second
			holds = max(holds, r.After)
			longest = max(longest, w.rungs[r.Name].Duration+r.Settle)
		}
	}
	walk += longest // a rung of the incident before may still be running
	for _, r := range w.policies[0].Ladder {
		if !r.Pages() {
			continue
		}
		after := r.After
		if after == 0 {
			after = walk + holds
		}
		ch := r.Channels()[0]
		for _, p := range w.probes {
			if !p.Critical {
				continue
			}
			for _, win := range w.windows[p.Name] {
				a := win[0]
				due := a + after
				deadline := due + slack
				if win[1] <= deadline || deadline > w.horizon {
					continue
				}
				if overlaps(w.pauses, a, deadline) || overlaps(acked, a, deadline) || overlaps(flapping, a, deadline) {
					continue
				}
				// The incident the outage is part of (it may have opened
				// before, for another probe, and paged already).
				from := a
				for _, inc := range incidents {
					if inc[0] <= a+slack && a < inc[1] {
						from = min(from, inc[0])
					}
				}
				ok := false
				for _, ts := range pageStarts(ch) {
					ok = ok || ts >= from && ts <= deadline
				}
				if !ok {
					return fmt.Sprintf("critical probe %s down from +%s to +%s; page rung %s (after %s) did not page by +%s", p.Name, a, win[1], r.Name, after, deadline)
				}
			}
		}
	}
	return ""
}

func TestSoakFindsABrokenLiveness(t *testing.T) {
	t.Parallel()
	// The checker itself must be able to fail: the same scenarios with
	// page rungs that never page (when= is always false) are caught.
	msg := ""
	for seed := uint64(1); seed < 400 && msg == ""; seed++ {
		w := genWorld(seed)
		for _, pol := range w.policies {
			for _, r := range pol.Ladder {
				if r.Pages() {
					r.When = func(context.Context, *IncidentView) (bool, error) { return false, nil }
				}
			}
		}
		msg = soakRun(w, false)
	}
	if !strings.Contains(msg, "did not page by") {
		t.Fatalf("a ladder that never pages went unnoticed: %q", msg)
	}
}
