package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

// logBuf is a log destination the test reads while the daemon writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func mustLoad(t *testing.T, path string) *State {
	t.Helper()
	st, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A probe result that only moves counts is saved with the others, at most
// once per SaveEvery; a decision (here a probe going down) is saved at
// once, before it is published.
func TestStateSavedAtOnceOnDecisionsElseOncePerSecond(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var up atomic.Bool
		up.Store(true)
		probe := &Probe{Name: "api", After: 1, Digest: "api", Check: func(context.Context, *ProbeEnv) Outcome {
			return Outcome{Passed: up.Load(), Output: "out"}
		}}
		pol := &Policy{Hash: "p", Probes: []*Probe{probe}, Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1}}
		path := filepath.Join(t.TempDir(), "state.json")
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: 100 * time.Millisecond, StateFile: path, Probes: effect.NewLive(), Actions: effect.NewLive(),
			Journal: &memJournal{}, Logger: log.New(&logBuf{})})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		t0 := time.Now()
		synctest.Wait()

		advance(550 * time.Millisecond) // six results: 0, 100, ... 500 ms
		mem := d.Snapshot()
		st := mustLoad(t, path)
		if mem.Probes[0].At.Sub(t0) != 500*time.Millisecond {
			t.Fatalf("last result at %s", mem.Probes[0].At.Sub(t0))
		}
		if ps := st.Probes["api"]; ps != nil && ps.Passes > 1 || !st.UpdatedAt.Equal(t0) {
			t.Fatalf("results within a second of the last save were saved one by one: file updated at +%s, %+v", st.UpdatedAt.Sub(t0), ps)
		}
		advance(500 * time.Millisecond)
		st = mustLoad(t, path)
		if ps := st.Probes["api"]; ps == nil || ps.Passes < 10 || !st.UpdatedAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("a second after the first save the counts are not saved: updated at +%s, %+v", st.UpdatedAt.Sub(t0), ps)
		}

		// The probe goes down: saved the moment it is decided.
		advance(120 * time.Millisecond) // results at 1.1 s: saved by 2 s
		up.Store(false)
		advance(100 * time.Millisecond) // the failing result at 1.2 s
		st = mustLoad(t, path)
		if ps := st.Probes["api"]; !ps.Down || !st.UpdatedAt.Equal(t0.Add(1200*time.Millisecond)) {
			t.Fatalf("a probe going down was not saved at once: updated at +%s, %+v", st.UpdatedAt.Sub(t0), ps)
		}
		if st.Probes["api"].Last.Output != "" {
			t.Fatalf("the output went into state.json: %q", st.Probes["api"].Last.Output)
		}
	})
}

// Before every probe has reported since the start, /health is "starting"
// and not ok, even when the state file says healthy with every probe
// passing: those results are from before the restart.
func TestStartingUntilEveryProbeReported(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		pass := func(context.Context, *ProbeEnv) Outcome { return Outcome{Passed: true} }
		slow := func(ctx context.Context, _ *ProbeEnv) Outcome {
			time.Sleep(3 * time.Second)
			return Outcome{Passed: true}
		}
		pol := &Policy{Hash: "p", Thresholds: DefaultThresholds(), Probes: []*Probe{
			{Name: "fast", Digest: "fast", Check: pass},
			{Name: "slow", Digest: "slow", Check: slow, Timeout: 10 * time.Second},
		}}
		path := filepath.Join(t.TempDir(), "state.json")
		before := NewState(time.Now().Add(-time.Hour))
		for _, p := range pol.Probes {
			before.Probes[p.Name] = &ProbeState{Passes: 9, Digest: p.Digest, Last: &Result{Name: p.Name, Passed: true, At: time.Now().Add(-time.Minute)}}
		}
		if err := SaveState(path, before); err != nil {
			t.Fatal(err)
		}
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: time.Minute, StateFile: path, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(&logBuf{})})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		<-d.Ready()
		synctest.Wait()
		reported := func() bool {
			select {
			case <-d.Reported():
				return true
			default:
				return false
			}
		}
		// fast has reported, slow has not.
		if s := d.Snapshot(); s.OK || s.State != Starting || s.ProbeCount != 2 || reported() {
			t.Fatalf("one probe of two reported: ok %v state %s, reported %v", s.OK, s.State, reported())
		}
		advance(3 * time.Second)
		if s := d.Snapshot(); !s.OK || s.State != Healthy || !reported() {
			t.Fatalf("every probe reported: ok %v state %s, reported %v", s.OK, s.State, reported())
		}
	})
}

// A state file that cannot be written (here its directory is replaced by a
// file: a real ENOTDIR from the kernel; the e2e test fills a tmpfs and
// remounts it read-only) does not stop the daemon: it goes on probing and
// escalating, says so on /health (write_error, not ok) and once in the
// log, retries, and saves again once it can.
func TestStateWriteFailureReportedOnceAndRecovered(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var up atomic.Bool
		up.Store(true)
		probe := &Probe{Name: "api", Critical: true, Digest: "api", Check: func(context.Context, *ProbeEnv) Outcome {
			return Outcome{Passed: up.Load(), Output: "HTTP 503"}
		}}
		heal := &recAction{name: "heal"}
		pol := &Policy{Hash: "p", Probes: []*Probe{probe}, Thresholds: Thresholds{FailedAfter: 2, RecoverAfter: 1},
			Ladder: []*Rung{{Name: "heal", Do: []Action{heal}, Cooldown: time.Hour}}}
		dir := filepath.Join(t.TempDir(), "state")
		path := filepath.Join(dir, "state.json")
		logs := &logBuf{}
		j := &memJournal{}
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: 100 * time.Millisecond, StateFile: path, Probes: effect.NewLive(), Actions: effect.NewLive(),
			Journal: j, Logger: log.New(logs)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		advance(time.Second)
		if s := d.Snapshot(); !s.OK || s.WriteError != nil {
			t.Fatalf("before the failure: %+v", s)
		}

		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, []byte("in the way"), 0o600); err != nil {
			t.Fatal(err)
		}
		up.Store(false)
		cycles := j.count(func(r Record) bool { return r.Type == "cycle" })
		advance(3 * time.Second)
		s := d.Snapshot()
		if n := j.count(func(r Record) bool { return r.Type == "cycle" }) - cycles; n < 20 {
			t.Fatalf("only %d cycles in 3 s at 100 ms while the state could not be saved", n)
		}
		if heal.runs.Load() != 1 || s.Incident == nil || s.State != Critical { // the one rung is spent: critical
			t.Fatalf("no escalation while the state could not be saved: heal ran %d times, state %s", heal.runs.Load(), s.State)
		}
		if s.OK || s.WriteError == nil || !strings.Contains(s.WriteError.State, "not a directory") || s.WriteError.Journal != "" {
			t.Fatalf("/health does not report the write failure: ok %v, %+v", s.OK, s.WriteError)
		}
		if n := logs.count("state file not saved"); n != 1 {
			t.Fatalf("the failure was logged %d times, want once:\n%s", n, logs.b.String())
		}

		// Room again: the next save succeeds and says so.
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		advance(1100 * time.Millisecond)
		if s := d.Snapshot(); s.WriteError != nil {
			t.Fatalf("still reported after the directory came back: %+v", s.WriteError)
		}
		st := mustLoad(t, path)
		if st.Incident == nil || st.Incident.ID != s.Incident.ID || st.LastRun["heal"].IsZero() {
			t.Fatalf("the saved state lacks the incident decided meanwhile: %+v", st.Incident)
		}
		if n := logs.count("state written again"); n != 1 {
			t.Fatalf("the recovery was logged %d times", n)
		}
	})
}

// Probes with their own interval start at one of OffsetSlots+1 offsets: a
// hundred probes every second are launched in at most 17 groups a second,
// each with one journal record and one fsync, not in a hundred.
func TestOffsetsGroupLaunches(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int32
		pass := func(context.Context, *ProbeEnv) Outcome { runs.Add(1); return Outcome{Passed: true} }
		pol := &Policy{Hash: "p", Thresholds: DefaultThresholds()}
		for i := range 100 {
			name := "probe_" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26))
			pol.Probes = append(pol.Probes, &Probe{Name: name, Digest: name, Every: time.Second, Check: pass})
		}
		j := &memJournal{}
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Probes: effect.NewLive(), Actions: effect.NewLive(), Journal: j, Logger: log.New(&logBuf{})})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		synctest.Wait()
		advance(999 * time.Millisecond)
		launches := j.count(func(r Record) bool { return r.Type == "launch" })
		if runs.Load() != 100 || launches > OffsetSlots+1 || launches < 2 {
			t.Fatalf("%d probes ran in %d launches in the first second; want all 100 in 2..%d", runs.Load(), launches, OffsetSlots+1)
		}
	})
}

// Results that decide nothing are published together, at most once per
// PublishEvery; a decision is published the moment it is made.
func TestResultsPublishedTogetherDecisionsAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var up atomic.Bool
		up.Store(true)
		probe := &Probe{Name: "api", After: 1, Digest: "api", Check: func(context.Context, *ProbeEnv) Outcome {
			return Outcome{Passed: up.Load()}
		}}
		pol := &Policy{Hash: "p", Probes: []*Probe{probe}, Thresholds: Thresholds{FailedAfter: 1, RecoverAfter: 1}}
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: 10 * time.Millisecond, Probes: effect.NewLive(), Actions: effect.NewLive(), Logger: log.New(&logBuf{})})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		synctest.Wait()
		seq := d.Snapshot().Seq
		var lag time.Duration
		for range 100 { // a second, one result every 10 ms
			advance(10 * time.Millisecond)
			lag = max(lag, time.Since(d.Snapshot().LastCycle))
		}
		if n := d.Snapshot().Seq - seq; n > 11 || n < 9 || lag > PublishEvery {
			t.Fatalf("100 results that decided nothing: %d snapshots, /health up to %s behind; want about 10, at most %s", n, lag, PublishEvery)
		}
		up.Store(false)
		advance(10 * time.Millisecond)
		if s := d.Snapshot(); s.State != Failed || s.FailedProbeCount != 1 || time.Since(s.LastCycle) != 0 {
			t.Fatalf("a probe going down was not published at once: %s, %s behind", s.State, time.Since(s.LastCycle))
		}
	})
}

// The loop sleeps on one timer armed for the next due probe: the first
// launch is at the start itself (no polling tick, no start jitter), and a
// probe with its own interval starts exactly on one of its offset slots.
func TestFirstLaunchOnTimeWithoutJitter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		pass := func(context.Context, *ProbeEnv) Outcome { return Outcome{Passed: true} }
		pol := &Policy{Hash: "p", Thresholds: DefaultThresholds(), Probes: []*Probe{
			{Name: "global", Digest: "g", Check: pass},
			{Name: "own", Digest: "o", Every: 20 * time.Second, Check: pass},
		}}
		j := &memJournal{}
		d := New(Options{Load: func() *LoadResult { return &LoadResult{Policy: pol, Hash: pol.Hash} },
			Interval: time.Hour, Probes: effect.NewLive(), Actions: effect.NewLive(), Journal: j, Logger: log.New(&logBuf{})})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		advance(5 * time.Second)
		j.mu.Lock()
		defer j.mu.Unlock()
		var start time.Time
		launched := map[string]time.Duration{}
		for _, r := range j.recs {
			switch r.Type {
			case "start":
				start = r.Time
			case "launch":
				for _, p := range r.Probes {
					launched[p] = r.Time.Sub(start)
				}
			}
		}
		slot := 2 * time.Second / OffsetSlots // a tenth of 20 s, in 16 steps
		if g, ok := launched["global"]; !ok || g != 0 {
			t.Fatalf("the first probe launched %s after the start (ok %v), want at once", g, ok)
		}
		if o, ok := launched["own"]; !ok || o%slot != 0 || o > 2*time.Second {
			t.Fatalf("a probe with every = 20s launched %s after the start (ok %v), want a multiple of %s up to 2s", o, ok, slot)
		}
	})
}
