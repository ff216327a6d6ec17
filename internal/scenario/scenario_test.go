// Package scenario drives the live daemon through the recorded incidents of
// testdata/scenarios, then replays the journal it wrote through the same
// policy, and fails on any difference in rung starts, pages, resolutions or
// phase transitions. Each scenario is a directory with a policy
// (talon.star), a script of the world (scenario.toml: how each probe
// answers over time, how long each rung takes and what it fixes, when the
// daemon restarts, what must happen), the journal the daemon recorded
// (journal.jsonl) and the decisions replay reads from it (decisions.golden).
// go test -update rewrites the last two.
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"
	"github.com/pelletier/go-toml/v2"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/journal"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

var update = flag.Bool("update", false, "rewrite journal.jsonl and decisions.golden")

// script is scenario.toml.
type script struct {
	Description string     `toml:"description"`
	Interval    duration   `toml:"interval"`
	Run         duration   `toml:"run"`
	Restarts    []duration `toml:"restarts"`
	// Crashes are kill -9s: the state file and the journal are kept as
	// they were at that instant, whatever the daemon did after it.
	Crashes []duration `toml:"crashes"`
	// Controls are the operator's commands (talon pause, resume, ack);
	// Reloads swap in the policy of a directory beside talon.star.
	Controls []control           `toml:"controls"`
	Reloads  []reload            `toml:"reloads"`
	Probes   map[string]probe    `toml:"probes"`
	Rungs    map[string]rung     `toml:"rungs"`
	Pagers   map[string]channelx `toml:"pagers"`
	Expect   expect              `toml:"expect"`
}

// control is an operator's command at a time.
type control struct {
	At       duration `toml:"at"`
	Command  string   `toml:"command"` // pause, resume or ack
	For      duration `toml:"for"`
	Probe    string   `toml:"probe"`
	Tag      string   `toml:"tag"`
	Rung     string   `toml:"rung"`
	Reason   string   `toml:"reason"`
	Incident string   `toml:"incident"`
}

// reload swaps in another policy at a time.
type reload struct {
	At     duration `toml:"at"`
	Policy string   `toml:"policy"` // a directory beside talon.star
}

// channelx is how a webhook host answers.
type channelx struct {
	// Delay is how long it takes to accept a message.
	Delay duration `toml:"delay"`
}

type probe struct {
	// Duration of one run (fake time); default 10 ms × (index + 1).
	Duration duration `toml:"duration"`
	// Down lists [from, to) windows, from the start, when the probe fails.
	Down   [][2]duration `toml:"down"`
	Output string        `toml:"output"`
}

type rung struct {
	Duration duration `toml:"duration"`
	Fixes    []string `toml:"fixes"`
	// FixesAfter delays the fix: the probes pass this long after the rung
	// ends (a VM whose services take a while to come back).
	FixesAfter duration `toml:"fixes_after"`
	// Disturbs are probes that fail while the rung runs (it restarts what
	// they check).
	Disturbs []string `toml:"disturbs"`
	Fails    bool     `toml:"fails"`
}

type expect struct {
	Rungs     []string `toml:"rungs"`
	Pages     int      `toml:"pages"`
	Incidents int      `toml:"incidents"`
	// Channels counts the pages each webhook host accepted, Resolved the
	// "resolved" messages; PageSays is text every page carries.
	Channels map[string]int `toml:"channels"`
	Resolved map[string]int `toml:"resolved"`
	PageSays []string       `toml:"page_says"`
}

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// world answers the daemon's probes and actions from the script, in the
// bubble's fake time.
type world struct {
	t      *testing.T
	s      *script
	epoch  time.Time
	mu     sync.Mutex
	down   map[string][][2]time.Time
	runs   map[string]int
	order  map[string]int
	pages  []delivered
	failed bool
	// disturbed counts the running rungs that disturb each probe.
	disturbed map[string]int
	// gen counts the daemons; a crashed one's messages are never accepted.
	gen int
}

// delivered is a message a webhook host accepted.
type delivered struct {
	host string
	body engine.Message
}

func newWorld(t *testing.T, s *script, epoch time.Time) *world {
	w := &world{t: t, s: s, epoch: epoch, down: map[string][][2]time.Time{}, runs: map[string]int{}, order: map[string]int{},
		disturbed: map[string]int{}}
	var names []string
	for name, p := range s.Probes {
		names = append(names, name)
		for _, win := range p.Down {
			w.down[name] = append(w.down[name], [2]time.Time{epoch.Add(win[0].Duration), epoch.Add(win[1].Duration)})
		}
	}
	sort.Strings(names)
	for i, n := range names {
		w.order[n] = i
	}
	return w
}

func (w *world) failing(name string, at time.Time) bool {
	for _, win := range w.down[name] {
		if !at.Before(win[0]) && at.Before(win[1]) {
			return true
		}
	}
	return false
}

// sleep waits d of fake time, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// probeExec answers `probe NAME`. Run k of probe i takes 10 ms × (i+1) +
// 7 µs × k (or its scripted duration + 7 µs × k), so that no two events of
// the scenario ever fall on the same instant: the journal is the same on
// every run.
func (w *world) probeExec(ctx context.Context, c effect.Command) effect.ExecResult {
	if len(c.Argv) != 2 || c.Argv[0] != "probe" {
		w.t.Errorf("unexpected probe command %q", c.Argv)
		return effect.ExecResult{ExitCode: -1, Err: fmt.Errorf("unexpected command")}
	}
	name := c.Argv[1]
	start := time.Now()
	w.mu.Lock()
	k := w.runs[name]
	w.runs[name]++
	p, ok := w.s.Probes[name]
	base := time.Duration(w.order[name]+1) * 10 * time.Millisecond
	w.mu.Unlock()
	if !ok {
		w.t.Errorf("the policy runs probe %q, which the scenario does not script", name)
	}
	if p.Duration.Duration > 0 {
		base = p.Duration.Duration
	}
	if !sleep(ctx, base+time.Duration(k)*7*time.Microsecond) {
		return effect.ExecResult{ExitCode: -1, TimedOut: true}
	}
	w.mu.Lock()
	down := w.failing(name, start) || w.disturbed[name] > 0
	w.mu.Unlock()
	if down {
		out := p.Output
		if out == "" {
			out = name + " is down"
		}
		return effect.ExecResult{ExitCode: 1, Stdout: out}
	}
	return effect.ExecResult{Stdout: name + " ok"}
}

// actionExec answers a rung's `heal NAME`-style command: argv[0] names the
// rung's script entry. It takes the scripted duration plus 0.5 ms (off the
// probes' grid), then fixes what the script says.
func (w *world) actionExec(ctx context.Context, c effect.Command) effect.ExecResult {
	name := filepath.Base(c.Argv[0])
	r, ok := w.s.Rungs[name]
	if !ok {
		w.t.Errorf("unexpected action %q", c.Argv)
		return effect.ExecResult{ExitCode: -1, Err: fmt.Errorf("unexpected action")}
	}
	w.mu.Lock()
	for _, p := range r.Disturbs {
		w.disturbed[p]++
	}
	w.mu.Unlock()
	slept := sleep(ctx, r.Duration.Duration+500*time.Microsecond)
	now := time.Now()
	w.mu.Lock()
	for _, p := range r.Disturbs {
		w.disturbed[p]--
	}
	if slept {
		for _, p := range r.Fixes {
			for i, win := range w.down[p] {
				if !now.Before(win[0]) && now.Before(win[1]) {
					w.down[p][i][1] = now.Add(r.FixesAfter.Duration)
				}
			}
		}
	}
	w.mu.Unlock()
	if !slept {
		return effect.ExecResult{ExitCode: -1, TimedOut: true}
	}
	if r.Fails {
		return effect.ExecResult{ExitCode: 1, Stdout: name + " failed"}
	}
	return effect.ExecResult{Stdout: name + " done"}
}

// pager answers notify.webhook's POST for the daemon of generation gen:
// after the host's delay it accepts the message, unless that daemon has
// crashed meanwhile (its answer never arrives).
func (w *world) pager(gen int) func(req *http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		body, _ := io.ReadAll(req.Body)
		if !sleep(req.Context(), w.s.Pagers[req.URL.Host].Delay.Duration) {
			return nil, req.Context().Err()
		}
		var m engine.Message
		if err := json.Unmarshal(body, &m); err != nil {
			w.t.Errorf("webhook body %q: %v", body, err)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if gen != w.gen {
			return nil, fmt.Errorf("connection reset (the daemon crashed)")
		}
		w.pages = append(w.pages, delivered{host: req.URL.Host, body: m})
		return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: req}, nil
	}
}

func loadPolicy(t *testing.T, dir string, interval time.Duration) *engine.Policy {
	t.Helper()
	cfg := config.Default()
	if interval > 0 {
		cfg.CheckIntervalSecs = int(interval / time.Second)
	}
	cfg.ServicesFile = filepath.Join(dir, "no-services.toml")
	res := builtins.Load(dir, builtins.Options{Config: cfg, GOOS: "linux", Environ: []string{"PATH=/usr/bin:/bin"}})
	if err := res.Err(); err != nil {
		t.Fatalf("%s: %s", dir, res.ErrorText())
	}
	return res.Policy
}

func TestScenarios(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "..", "testdata", "scenarios", "*", "scenario.toml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, path := range dirs {
		dir := filepath.Dir(path)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			runScenario(t, dir)
		})
	}
}

func runScenario(t *testing.T, dir string) {
	var s script
	b, err := os.ReadFile(filepath.Join(dir, "scenario.toml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("scenario.toml: %v", err)
	}
	// A copy: strict modes refuse files others can change, and the
	// checkout's modes depend on how it was made.
	copied := fspermtest.Copy(t, dir)
	pol := loadPolicy(t, copied, s.Interval.Duration)
	versions := map[string]*engine.Policy{pol.Hash: pol}
	var reloaded []*engine.Policy
	for _, r := range s.Reloads {
		p := loadPolicy(t, filepath.Join(copied, r.Policy), s.Interval.Duration)
		versions[p.Hash] = p
		reloaded = append(reloaded, p)
	}
	var polMu sync.Mutex
	current := pol
	tmp := t.TempDir()
	jpath := filepath.Join(tmp, "journal.jsonl")
	var w *world
	synctest.Test(t, func(t *testing.T) {
		epoch := time.Now()
		w = newWorld(t, &s, epoch)
		type stop struct {
			at    time.Duration
			crash bool
		}
		var stops []stop
		for _, r := range s.Restarts {
			stops = append(stops, stop{r.Duration, false})
		}
		for _, c := range s.Crashes {
			stops = append(stops, stop{c.Duration, true})
		}
		sort.Slice(stops, func(i, j int) bool { return stops[i].at < stops[j].at })
		stops = append(stops, stop{s.Run.Duration, false})
		// What happens to a running daemon: commands and reloads, in time order.
		type act struct {
			at time.Duration
			do func(d *engine.Daemon)
		}
		var acts []act
		for _, c := range s.Controls {
			acts = append(acts, act{c.At.Duration, func(d *engine.Daemon) { w.command(d, c) }})
		}
		for i, r := range s.Reloads {
			acts = append(acts, act{r.At.Duration, func(d *engine.Daemon) {
				polMu.Lock()
				current = reloaded[i]
				polMu.Unlock()
				if _, err := d.Reload(context.Background()); err != nil {
					t.Errorf("reload to %s: %v", r.Policy, err)
				}
			}})
		}
		sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
		statePath := filepath.Join(tmp, "state.json")
		for _, st := range stops {
			ctx, cancel := context.WithCancel(context.Background())
			w.mu.Lock()
			gen := w.gen
			w.mu.Unlock()
			// Each process opens the journal afresh, as a restart does (a
			// compact record builds only on what the file holds).
			j, err := journal.Open(jpath, journal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			d := engine.New(engine.Options{
				Load: func() *engine.LoadResult {
					polMu.Lock()
					defer polMu.Unlock()
					return &engine.LoadResult{Policy: current, Hash: current.Hash}
				},
				Interval:  s.Interval.Duration,
				StateFile: statePath,
				Probes:    &effect.Fake{ExecFunc: w.probeExec},
				Actions:   &effect.Fake{ExecFunc: w.actionExec, DoFunc: w.pager(gen)},
				Journal:   j,
				Logger:    log.New(io.Discard),
				Host:      "scenario",
			})
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			// In the bubble, a sleep moves the fake clock: every goroutine
			// runs until it blocks, then time jumps to the next timer.
			for len(acts) > 0 && acts[0].at < st.at {
				time.Sleep(epoch.Add(acts[0].at).Sub(time.Now()))
				synctest.Wait()
				acts[0].do(d)
				acts = acts[1:]
			}
			time.Sleep(epoch.Add(st.at).Sub(time.Now()))
			synctest.Wait()
			var state, jour []byte
			if st.crash {
				// kill -9: what is on disk now is all the next start finds;
				// whatever this daemon does from here on is lost.
				state, _ = os.ReadFile(statePath)
				if jour, err = os.ReadFile(jpath); err != nil {
					t.Fatal(err)
				}
				w.mu.Lock()
				w.gen++
				w.mu.Unlock()
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			if st.crash {
				if err := os.WriteFile(jpath, jour, 0o600); err != nil {
					t.Fatal(err)
				}
				os.Remove(statePath)
				if state != nil {
					if err := engine.WriteFileAtomic(statePath, state, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	})
	recorded, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's own journal, replayed through its policy.
	live := replayFile(t, pol, versions, jpath)
	checkAgainstJournal(t, jpath, live)
	got := render(live)
	checkExpect(t, &s, live)
	checkChannels(t, &s, w)
	golden := filepath.Join(dir, "decisions.golden")
	stored := filepath.Join(dir, "journal.jsonl")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stored, recorded, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("decisions differ from %s (run go test -update and review the diff):\n%s", golden, got)
	}
	// The recorded fixture still replays to the same decisions.
	if fixture := render(replayFile(t, pol, versions, stored)); fixture != string(want) {
		t.Errorf("%s no longer replays to %s:\n%s", stored, golden, fixture)
	}
}

// replayFile replays a journal faithfully; any divergence fails the test.
func replayFile(t *testing.T, pol *engine.Policy, versions map[string]*engine.Policy, path string) engine.ReplayResult {
	t.Helper()
	r := engine.NewReplayer(pol, engine.ReplayOptions{AsRecorded: len(versions) > 1, Versions: versions})
	if _, err := journal.Scan(path, func(rec engine.Record, pos journal.Pos) error {
		r.Feed(rec, pos.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	res := r.Result()
	if res.Mode != engine.ModeFaithful || len(res.Divergences) != 0 {
		t.Fatalf("replay of %s: mode %s (%s), divergences %+v", path, res.Mode, res.ModeReason, res.Divergences)
	}
	return res
}

// checkAgainstJournal compares the decisions the daemon journaled with the
// ones replay took: rung starts, pages, resolutions, phase transitions.
func checkAgainstJournal(t *testing.T, path string, r engine.ReplayResult) {
	t.Helper()
	var journaled, replayed []string
	if _, err := journal.Read(path, func(rec engine.Record) error {
		if e := rec.Event; e != nil {
			at := e.At.UTC().Format(time.RFC3339Nano)
			switch {
			case e.Type == "rung_start":
				journaled = append(journaled, at+" rung "+e.Rung)
			case e.Type == "rung_done" && len(e.Channels) > 0:
				journaled = append(journaled, at+" page "+strings.Join(e.Channels, ","))
			case e.Type == "incident_resolved":
				journaled = append(journaled, at+" resolved "+e.Incident)
			case e.Type == "transition":
				journaled = append(journaled, at+" "+string(e.From)+">"+string(e.To))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, st := range r.Timeline {
		at := st.At.UTC().Format(time.RFC3339Nano)
		switch st.Kind {
		case "rung":
			replayed = append(replayed, at+" rung "+st.Rung)
		case "page":
			replayed = append(replayed, at+" page "+strings.Join(st.Channels, ","))
		case "incident_resolved":
			replayed = append(replayed, at+" resolved "+st.Incident)
		case "transition":
			replayed = append(replayed, at+" "+string(st.From)+">"+string(st.To))
		}
	}
	if strings.Join(journaled, "\n") != strings.Join(replayed, "\n") {
		t.Fatalf("the daemon journaled:\n%s\nreplay decided:\n%s", strings.Join(journaled, "\n"), strings.Join(replayed, "\n"))
	}
}

func checkExpect(t *testing.T, s *script, r engine.ReplayResult) {
	t.Helper()
	var rungs []string
	for _, st := range r.Timeline {
		if st.Kind == "rung" {
			rungs = append(rungs, st.Rung)
		}
	}
	if strings.Join(rungs, ",") != strings.Join(s.Expect.Rungs, ",") {
		t.Errorf("rungs started %v, the scenario expects %v", rungs, s.Expect.Rungs)
	}
	if r.Summary.Pages != s.Expect.Pages || r.Summary.Incidents != s.Expect.Incidents {
		t.Errorf("%d pages and %d incidents; the scenario expects %d and %d", r.Summary.Pages, r.Summary.Incidents, s.Expect.Pages, s.Expect.Incidents)
	}
}

// command gives an operator's command to the running daemon.
func (w *world) command(d *engine.Daemon, c control) {
	ctx := context.Background()
	ctl := engine.Control{Reason: c.Reason, Incident: c.Incident}
	for _, x := range []struct{ scope, name string }{{engine.ScopeProbe, c.Probe}, {engine.ScopeTag, c.Tag}, {engine.ScopeRung, c.Rung}} {
		if x.name != "" {
			ctl.Scope, ctl.Name = x.scope, x.name
		}
	}
	var err error
	switch c.Command {
	case "pause":
		_, err = d.Pause(ctx, ctl, c.For.Duration)
	case "resume":
		_, err = d.Resume(ctx, ctl)
	case "ack":
		_, err = d.Ack(ctx, ctl)
	default:
		err = fmt.Errorf("unknown command %q", c.Command)
	}
	if err != nil {
		w.t.Errorf("%s at +%s: %v", c.Command, c.At.Duration, err)
	}
}

// checkChannels compares what each webhook host accepted with the script.
func checkChannels(t *testing.T, s *script, w *world) {
	t.Helper()
	pages, resolved := map[string]int{}, map[string]int{}
	for _, p := range w.pages {
		switch p.body.Kind {
		case "sos":
			pages[p.host]++
			for _, want := range s.Expect.PageSays {
				if !strings.Contains(p.body.Text, want) {
					t.Errorf("the page to %s does not say %q:\n%s", p.host, want, p.body.Text)
				}
			}
		case "resolved":
			resolved[p.host]++
		}
	}
	for host, n := range s.Expect.Channels {
		if pages[host] != n {
			t.Errorf("%s accepted %d pages; the scenario expects %d (all: %v)", host, pages[host], n, pages)
		}
	}
	for host, n := range s.Expect.Resolved {
		if resolved[host] != n {
			t.Errorf("%s accepted %d \"resolved\" messages; the scenario expects %d (all: %v)", host, resolved[host], n, resolved)
		}
	}
}

// render is the decisions of a replay, one per line, at their offset from
// the bubble's epoch.
func render(r engine.ReplayResult) string {
	var b strings.Builder
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, st := range r.Timeline {
		off := st.At.Sub(epoch)
		line := fmt.Sprintf("+%02d:%02d:%06.3f  %s", int(off.Hours()), int(off.Minutes())%60, (off % time.Minute).Seconds(), st.Kind)
		switch st.Kind {
		case "transition":
			line += fmt.Sprintf(" %s → %s", st.From, st.To)
		case "probe_down", "probe_up":
			line += " " + st.Probe
		case "incident_open":
			line += " " + strings.Join(st.Probes, ", ")
		case "rung", "rung_skip":
			line += " " + st.Rung
			if st.Reason != "" {
				line += ": " + st.Reason
			}
		case "rung_end":
			line += " " + st.Rung
			if st.OK != nil && !*st.OK {
				line += " failed"
			}
			for _, v := range st.Verify {
				line += fmt.Sprintf(" %s=%t", v.Probe, v.Passed)
			}
		case "page", "resolved":
			line += " " + strings.Join(st.Channels, ", ")
		case "resent":
			line += " " + strings.Join(st.Channels, ", ") + ": " + st.Reason
		case "settle_start", "settle_end", "pause", "resume", "pause_expired", "ack", "ack_cleared", "unreachable", "rung_renamed":
			if st.Rung != "" {
				line += " " + st.Rung
			}
			line += ": " + st.Reason
		case "flap_start", "flap_stop":
			line += " " + st.Probe + ": " + st.Reason
		case "incident_resolved", "journal", "page_failed", "mode":
			line += ": " + st.Reason
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "summary: %d incidents, %d pages, %d resolved messages, final phase %s\n",
		r.Summary.Incidents, r.Summary.Pages, r.Summary.Resolved, r.Summary.FinalPhase)
	return b.String()
}
