package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
)

// The daemon is the imperative shell around the decision core (core.go): it
// schedules probes, runs rungs and pages, journals every fact before feeding
// it to the core, persists the state and publishes /health. It decides
// nothing itself. The files of the shell, by concern:
//
//	daemon.go    options, the main loop, start, reload, shutdown
//	schedule.go  when each probe runs; launching them
//	rung.go      running a rung: actions, pages, verification; "resolved"
//	publish.go   journal, log, state file, /health snapshot

// Journal receives the daemon's records.
type Journal interface {
	Append(Record) error
	Sync() error
}

// Options configure a Daemon. Everything with a side effect is injected.
type Options struct {
	// Load loads the policy; called at start and on every reload.
	Load func() *LoadResult
	// Interval is the global check interval.
	Interval time.Duration
	// StateFile is where the state is persisted ("" keeps it in memory).
	StateFile string
	// Env is the environment of every child process.
	Env []string
	// Parallel bounds concurrent probes.
	Parallel int
	// Probes performs probe side effects; Actions performs rung side effects
	// (a Recorder under --dry-run).
	Probes, Actions effect.Effects
	DryRun          bool
	Journal         Journal
	Logger          *log.Logger
	// Clock gives the time and the daemon's timer; nil means RealClock.
	Clock Clock
	// Now, when set and Clock is not, is the time with real timers.
	Now func() time.Time
	// Host names this machine in pages.
	Host string
	// ShutdownGrace bounds how long in-flight actions get after a stop.
	ShutdownGrace time.Duration
	// WhenBudget bounds one evaluation of a `when=` predicate.
	WhenBudget time.Duration
	// Worker reports the supervised worker's status for /health, if any.
	Worker func() any
	// Answers, when set, reads the channels' answers (delivery facts) the
	// journal holds from since on: at start, those recorded after the
	// state was last saved are applied to it (RecoverAnswers).
	Answers func(since time.Time) ([]Fact, error)
}

// Daemon runs probes on their intervals and walks the ladder beside them.
type Daemon struct {
	opts  Options
	log   *log.Logger
	clock Clock

	reloadMu sync.Mutex // serialises reloads

	mu        sync.Mutex // guards everything below
	core      *Core
	policyErr string
	// fallback is set while the policy running is not the one asked for
	// but the loader's fallback (its last known good, or the default).
	fallback  *Fallback
	files     []string // what the last load read, good or bad: the watcher watches these
	reloads   int
	rungRuns  map[string]int
	pages     atomic.Int64
	lastCycle time.Time
	snapshot  atomic.Pointer[Snapshot] // read without d.mu: /health never waits on the loop
	nextDue   map[string]time.Time
	wake      time.Time // when the core wants a wake fact; zero: never
	rungStops map[string]context.CancelFunc
	// delivering is the context messages are delivered under, and
	// cutPages ends it: a stop cancels a rung's actions at once, but a
	// message on its way gets until the stop deadline (see stop).
	delivering context.Context
	cutPages   context.CancelFunc
	// checkpointOwed says the journal rotated: the next fact is preceded
	// by a checkpoint (the new file replays on its own).
	checkpointOwed atomic.Bool
	// Saving (publish.go): the state is saved at once when the core
	// decides something, else at most once per SaveEvery; saveDue is when
	// a pending save is due (zero: none), lastSave when one was last tried.
	saveDue, lastSave time.Time
	// stateFault and journalFault are the write failures in progress
	// (a full or read-only state directory); nil while writes succeed.
	stateFault, journalFault *writeFault
	// unreported are the probes that have not reported since the start:
	// until they all have, /health says "starting", never ok.
	unreported map[string]bool
	reported   chan struct{} // closed once unreported is empty
	seq        uint64        // numbers the published snapshots
	// pubDue is when a snapshot with results that decided nothing is due
	// (zero: none pending), lastPub when the last one was published.
	pubDue, lastPub time.Time
	// earliest is the earliest time a probe is due (nextDue's minimum).
	earliest time.Time

	ready chan struct{}
	sem   chan struct{} // Options.Parallel across all probe runs
	// longestTimeout is the longest probe timeout of the current policy.
	longestTimeout atomic.Value
	swap           chan *swapReq
	results        chan []Result
	batches        chan []Result // every probe of one launch, for the cycle summary
	rungDone       chan RungEnd
	// poke wakes the loop after a fact fed from another goroutine (a
	// channel's answer, an operator's command) so it re-arms its timer.
	poke chan struct{}
	bg   sync.WaitGroup // rung, resolution and probe goroutines
}

type swapReq struct {
	res  *LoadResult
	done chan struct{}
}

// New builds a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.Clock == nil {
		opts.Clock = RealClock{}
		if opts.Now != nil {
			opts.Clock = nowClock{opts.Now}
		}
	}
	if opts.Logger == nil {
		opts.Logger = log.New(os.Stderr)
	}
	if opts.Interval <= 0 {
		opts.Interval = 60 * time.Second
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	var sem chan struct{}
	if opts.Parallel > 0 {
		sem = make(chan struct{}, opts.Parallel)
	}
	delivering, cutPages := context.WithCancel(context.Background())
	d := &Daemon{opts: opts, log: opts.Logger, clock: opts.Clock, sem: sem, delivering: delivering, cutPages: cutPages,
		core:    NewCore(CoreOptions{WhenBudget: opts.WhenBudget}),
		nextDue: map[string]time.Time{}, rungRuns: map[string]int{}, rungStops: map[string]context.CancelFunc{},
		ready: make(chan struct{}), reported: make(chan struct{}), swap: make(chan *swapReq), results: make(chan []Result, 16), batches: make(chan []Result, 4),
		rungDone: make(chan RungEnd, 16), poke: make(chan struct{}, 1)}
	if j, ok := opts.Journal.(interface {
		OnRotate(func(Record) []Record)
	}); ok {
		j.OnRotate(d.checkpoint)
	}
	return d
}

func (d *Daemon) now() time.Time { return d.clock.Now() }

// policy is the policy in force; callers hold d.mu.
func (d *Daemon) policy() *Policy { return d.core.Policy() }

// state is the core's state; callers hold d.mu.
func (d *Daemon) state() *State { return d.core.State() }

// feed journals a fact, hands it to the core and carries out what the core
// decided: it journals and logs the events, saves the state when the core
// says it must be saved now, then sends the notices, starts the rungs and
// launches the re-probes. The fact is journaled first, so that replay reads
// every fact before the decisions it caused. Callers hold d.mu.
func (d *Daemon) feed(ctx context.Context, f Fact) Step {
	if d.checkpointOwed.Swap(false) && f.Kind != FactStart { // a start record carries the state itself
		d.journal(d.checkpointRecord(f.At))
	}
	rec := FactRecord(f)
	switch f.Kind {
	case FactReload:
		rec.OldHash = d.policy().Hash
	case FactStop:
		rec.Phase = d.state().Phase
	}
	d.journal(rec)
	st := d.core.Step(ctx, f)
	for _, e := range st.Events {
		d.record(e)
	}
	d.wake = st.Wake
	if st.Persist || len(st.Events) > 0 || len(st.Runs) > 0 || len(st.Notify) > 0 {
		// A decision (a transition, a rung start, a page going out, a
		// channel's acceptance, an operator's command): a crash from here
		// on must not lose it. The journal first: the state never runs
		// ahead of the facts that made it.
		d.syncJournal()
		d.persist()
	} else {
		// Only counts moved (a probe's result, a launch): saved within
		// SaveEvery, with whatever else changes meanwhile.
		d.persistSoon()
	}
	for _, n := range st.Notify {
		d.notify(n)
	}
	for _, run := range st.Runs {
		d.startRung(ctx, run)
	}
	if len(st.Reprobe) > 0 && ctx.Err() == nil {
		d.launch(ctx, f.At, st.Reprobe)
	}
	return st
}

// checkpoint is called by the journal when it rotated, with the record
// about to open the new file (the journal's lock held, and d.mu: every
// record is journaled under it): the new file begins with the core's
// state, before a fact, so that it replays on its own. Before a fact the
// checkpoint goes now (the fact is journaled before the core takes it);
// before a decision or an action it waits for the next fact (the state
// now already includes the fact those belong to).
func (d *Daemon) checkpoint(next Record) []Record {
	if f, ok := RecordFact(next); ok {
		d.checkpointOwed.Store(false)
		if f.Kind == FactStart {
			return nil // a start record carries the state itself
		}
		return []Record{d.checkpointRecord(next.Time)}
	}
	d.checkpointOwed.Store(true)
	return nil
}

// checkpointRecord is the core's checkpoint at, as a journal record.
func (d *Daemon) checkpointRecord(at time.Time) Record {
	rec := FactRecord(d.core.Checkpoint(at))
	rec.Policy = d.policy().Hash
	return rec
}

// answer feeds a channel's answer to a message the moment it is known,
// from the delivering goroutine; the state is saved before it returns.
func (d *Daemon) answer(a Answer) {
	d.mu.Lock()
	d.feed(context.Background(), Fact{Kind: FactDelivery, At: d.now(), Answer: &a})
	d.publish()
	d.mu.Unlock()
	d.pokeLoop()
}

// pokeLoop makes the loop re-arm its timer after a fact fed from outside it.
func (d *Daemon) pokeLoop() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// Pause pauses the ladder for what c covers for dur (0: DefaultPause; at
// most MaxPause; talon pause, POST /pause): a fact the core records, journaled and saved
// at once. It returns the pause.
func (d *Daemon) Pause(ctx context.Context, c Control, dur time.Duration) (Pause, error) {
	d.mu.Lock()
	defer d.pokeLoop()
	defer d.mu.Unlock()
	if why := CheckControl(d.policy(), c); why != "" {
		return Pause{}, errors.New(why)
	}
	if dur < 0 {
		return Pause{}, fmt.Errorf("a pause of %s: want a positive duration", dur)
	}
	if dur > MaxPause {
		return Pause{}, fmt.Errorf("a pause of %s: at most %s; pause again when it ends", dur, strings.TrimSuffix(MaxPause.String(), "0m0s"))
	}
	if dur == 0 {
		dur = DefaultPause
	}
	now := d.now()
	c.Until = now.Add(dur)
	d.feed(ctx, Fact{Kind: FactPause, At: now, Control: &c})
	d.publish()
	ps := d.state().Pauses
	return ps[len(ps)-1], nil
}

// Resume lifts the pauses c selects (all of them when c names none) and
// returns them.
func (d *Daemon) Resume(ctx context.Context, c Control) ([]Pause, error) {
	d.mu.Lock()
	defer d.pokeLoop()
	defer d.mu.Unlock()
	var lifted []Pause
	for _, p := range d.state().Pauses {
		if (c.Scope == "" && c.Name == "") || (p.Scope == c.Scope && p.Name == c.Name) {
			lifted = append(lifted, p)
		}
	}
	if len(lifted) == 0 {
		if c.Scope == "" && c.Name == "" {
			return nil, errors.New("nothing is paused")
		}
		return nil, fmt.Errorf("no pause of %s %s is in force", c.Scope, c.Name)
	}
	d.feed(ctx, Fact{Kind: FactResume, At: d.now(), Control: &c})
	d.publish()
	return lifted, nil
}

// Ack acknowledges the open incident (c.Incident, when set, must name it)
// and returns its id.
func (d *Daemon) Ack(ctx context.Context, c Control) (string, error) {
	d.mu.Lock()
	defer d.pokeLoop()
	defer d.mu.Unlock()
	inc := d.state().Incident
	switch {
	case inc == nil && c.Incident != "":
		return "", fmt.Errorf("incident %s is not open; no incident is", c.Incident)
	case inc == nil:
		return "", errors.New("no incident is open")
	case c.Incident != "" && c.Incident != inc.ID:
		return "", fmt.Errorf("incident %s is not open; the open one is %s", c.Incident, inc.ID)
	}
	c.Incident = inc.ID
	d.feed(ctx, Fact{Kind: FactAck, At: d.now(), Control: &c})
	d.publish()
	return inc.ID, nil
}

// start loads the state and the policy and tells the core. A bad policy
// does not stop the daemon: it runs with no probes, says why on /health,
// and waits for a fix. Each step is its own function, so that choosing
// which policy runs can grow without touching the rest.
func (d *Daemon) start(ctx context.Context) {
	now := d.now()
	st, err := d.loadState(now)
	if err != nil {
		d.log.Error("state file unusable; starting fresh", "err", err)
	}
	res := d.opts.Load()
	pol, polErr := d.choosePolicy(res)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files = res.Files
	d.policyErr = polErr
	d.fallback = res.Fallback
	d.warn(res)
	d.recoverAnswers(st, pol)
	d.unreported = map[string]bool{}
	for _, p := range pol.Probes {
		d.unreported[p.Name] = true
	}
	d.feed(ctx, Fact{Kind: FactStart, At: now, State: st, Policy: pol, PolicyError: polErr})
	d.noteReported(nil)
	d.schedule(now, true)
	d.persistPending()
	d.publish()
	d.log.Info("talon started", "state", st.Phase, "policy", short(pol.Hash), "probes", len(pol.Probes), "dry_run", d.opts.DryRun)
}

// recoverAnswers applies to the loaded state the channels' acceptances
// journaled after it was saved (a kill between the two): without them the
// start would page those channels again.
func (d *Daemon) recoverAnswers(st *State, pol *Policy) {
	if d.opts.Answers == nil || st.UpdatedAt.IsZero() {
		return
	}
	facts, err := d.opts.Answers(st.UpdatedAt)
	if err != nil {
		d.log.Warn("could not read the journal for answers recorded after the last state save; a channel that accepted a page just before the last stop may get it again", "err", err)
	}
	for _, line := range RecoverAnswers(st, pol, facts) {
		d.log.Info("recovered from the journal: "+line, "state_saved", st.UpdatedAt)
	}
}

// choosePolicy is the policy the daemon runs after a load, and the error
// to show when it is not the one that was asked for.
func (d *Daemon) choosePolicy(res *LoadResult) (*Policy, string) {
	if res.Err() != nil {
		text := res.ErrorText()
		d.log.Error("policy failed to load; running no probes until it is fixed", "err", text)
		return &Policy{Hash: res.Hash, Thresholds: DefaultThresholds()}, text
	}
	if fb := res.Fallback; fb != nil {
		d.log.Error("policy failed to load; "+fb.Summary(), "fallback", fb.Source, "err", fb.Error)
		return res.Policy, fb.Error
	}
	return res.Policy, ""
}

func (d *Daemon) loadState(now time.Time) (*State, error) {
	if d.opts.StateFile == "" {
		return NewState(now), nil
	}
	if removed, err := RemoveStaleTemps(d.opts.StateFile); len(removed) > 0 || err != nil {
		d.log.Info("removed temp files of an interrupted state save", "files", removed, "err", err)
	}
	st, err := LoadState(d.opts.StateFile)
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, ErrNoState):
		return NewState(now), nil
	}
	if aside, aerr := SetAside(d.opts.StateFile, now); aerr == nil {
		err = fmt.Errorf("%w (kept as %s)", err, aside)
	}
	return NewState(now), err
}

// env is the child environment: the policy's (from the config it was loaded
// with) or the daemon's.
func (d *Daemon) env() []string {
	if pol := d.policy(); pol != nil && pol.Env != nil {
		return pol.Env
	}
	return d.opts.Env
}

// Run runs until ctx ends, then cancels in-flight actions, saves state and
// returns. The loop sleeps on one timer, armed for the next probe that is
// due or the next time the core asked to be woken, whichever comes first.
func (d *Daemon) Run(ctx context.Context) error {
	d.start(ctx)
	close(d.ready)
	timer := d.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.stop()
			return nil
		case <-timer.C():
			d.tick(ctx)
		case rs := <-d.results:
			// Take every result that is already waiting: probes that finish
			// together are observed (and persisted) together.
			for more := true; more; {
				select {
				case r := <-d.results:
					rs = append(rs, r...)
				default:
					more = false
				}
			}
			d.observe(ctx, rs)
		case all := <-d.batches:
			// Every result of one launch is in: one journal fsync for them
			// all, not one per result.
			d.mu.Lock()
			d.summary(all)
			d.syncJournal()
			d.publishIfFault()
			d.mu.Unlock()
		case end := <-d.rungDone:
			d.mu.Lock()
			d.finishRung(ctx, end)
			d.mu.Unlock()
		case <-d.poke:
		case req := <-d.swap:
			d.apply(ctx, req.res)
			close(req.done)
		}
		timer.Reset(d.untilNext())
	}
}

// tick wakes the core when it asked to be woken, then launches the probes
// that are due.
func (d *Daemon) tick(ctx context.Context) {
	now := d.now()
	d.mu.Lock()
	if !d.wake.IsZero() && !now.Before(d.wake) {
		d.feed(ctx, Fact{Kind: FactWake, At: now})
		d.publish()
	}
	if !d.saveDue.IsZero() && !now.Before(d.saveDue) {
		d.persist()
		d.publishIfFault()
	}
	if !d.pubDue.IsZero() && !now.Before(d.pubDue) {
		d.publish()
	}
	d.mu.Unlock()
	d.launchDue(ctx, now)
}

// observe feeds results to the core.
func (d *Daemon) observe(ctx context.Context, rs []Result) {
	if ctx.Err() != nil {
		return // shutting down: what the probes said no longer matters
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastCycle = now
	st := d.feed(ctx, Fact{Kind: FactResults, At: now, Results: rs})
	starting := d.unreported != nil
	d.noteReported(rs)
	if len(st.Events) > 0 || len(st.Runs) > 0 || len(st.Notify) > 0 || starting != (d.unreported != nil) {
		d.publish()
		return
	}
	// Results that decided nothing: published with the others that come
	// within PublishEvery (at 1,000 probes, rebuilding the snapshot for
	// each result was most of the loop's work).
	d.publishSoon()
}

// finishRung feeds a rung's outcome to the core; callers hold d.mu.
func (d *Daemon) finishRung(ctx context.Context, end RungEnd) {
	delete(d.rungStops, end.Rung)
	end.Stopping = end.Stopping || ctx.Err() != nil
	d.feed(ctx, Fact{Kind: FactRungEnd, At: d.now(), End: &end})
	d.persistPending() // a rung's outcome is saved at once, whatever it decided
	d.publish()
}

// apply swaps in a freshly loaded policy between cycles.
func (d *Daemon) apply(ctx context.Context, res *LoadResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.policy().Hash
	if len(res.Files) > 0 {
		d.files = res.Files
	}
	if res.Err() != nil {
		d.policyErr = res.ErrorText()
		d.journal(Record{Type: "reload", OldHash: old, Error: d.policyErr})
		d.log.Error("reload failed; keeping the last good policy", "err", d.policyErr, "policy", short(old))
		d.publish()
		return
	}
	d.policyErr = ""
	if was := d.fallback; was != nil && res.Fallback == nil {
		d.log.Info("the policy loads again: the fallback is over", "fallback", was.Source)
	}
	d.fallback = res.Fallback
	if fb := res.Fallback; fb != nil {
		d.policyErr = fb.Error
	}
	if res.Policy.Hash == old {
		d.publish()
		return
	}
	d.reloads++
	d.warn(res)
	now := d.now()
	d.feed(ctx, Fact{Kind: FactReload, At: now, Policy: res.Policy})
	d.schedule(now, false)
	d.noteReported(nil)
	d.log.Info("policy reloaded", "policy", short(res.Policy.Hash), "old", short(old), "probes", len(res.Policy.Probes))
	d.persistPending()
	d.publish()
}

// warn logs what validate would warn about: programs missing from the
// children's PATH, probes for another OS. A recovery that cannot run must
// never be silent (the predecessor lost six days to a missing limactl).
func (d *Daemon) warn(res *LoadResult) {
	for _, w := range res.Warnings {
		d.log.Warn("policy warning", "warning", w)
	}
}

// Reload loads the policy again and swaps it in if it is good. It is what
// SIGHUP, `talon reload` and the file watcher call.
func (d *Daemon) Reload(ctx context.Context) (string, error) {
	// A reload asked for while the daemon starts (a SIGHUP, POST /reload)
	// comes after the start's own load: the first load is the start's.
	select {
	case <-d.ready:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	res := d.opts.Load()
	req := &swapReq{res: res, done: make(chan struct{})}
	select {
	case d.swap <- req:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	<-req.done
	if err := res.Err(); err != nil {
		return "", errors.New(res.ErrorText())
	}
	return res.Hash, nil
}

// stop cancels a running rung's actions, lets the messages on their way
// finish until the stop deadline (ShutdownGrace) and cuts the rest (a
// channel cut short stays owed the message: the next start sends it
// again), records the rungs' outcomes (or their interruption), journals
// the stop and saves.
func (d *Daemon) stop() {
	d.mu.Lock()
	for _, stop := range d.rungStops {
		stop()
	}
	d.mu.Unlock()
	if !d.waitBackground(d.opts.ShutdownGrace) {
		d.mu.Lock()
		d.cutPages()
		d.mu.Unlock()
		if !d.waitBackground(2 * time.Second) {
			d.log.Warn("in-flight work did not stop in time")
		}
	}
	d.mu.Lock()
	// Messages queued from here on (a "resolved" for an incident that a
	// rung's verification just closed) get the grace period of their own.
	d.cutPages()
	d.delivering, d.cutPages = context.WithCancel(context.Background())
	defer func() { d.mu.Lock(); d.cutPages(); d.mu.Unlock() }()
	ctx := context.Background()
	// A rung that finished while we were stopping keeps its real outcome
	// (a delivered page must not be re-sent after the restart).
	for more := true; more; {
		select {
		case end := <-d.rungDone:
			end.Stopping = true
			d.finishRung(ctx, end)
		default:
			more = false
		}
	}
	d.feed(ctx, Fact{Kind: FactStop, At: d.now()})
	d.syncJournal()
	d.persist()
	d.mu.Unlock()
	// A "resolved" message queued just now still goes out, within the
	// grace period.
	d.waitBackground(d.opts.ShutdownGrace)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncJournal()
	if !d.saveDue.IsZero() { // a "resolved" went out meanwhile
		d.persist()
	}
	d.log.Info("talon stopped", "state", d.state().Phase)
}

// waitBackground waits for the rung, resolution and probe goroutines, at
// most limit; it reports whether they all ended.
func (d *Daemon) waitBackground(limit time.Duration) bool {
	done := make(chan struct{})
	go func() { d.bg.Wait(); close(done) }()
	t := d.clock.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C():
		return false
	}
}

// WorkerRestarts is the persisted worker restart count (valid once Ready).
func (d *Daemon) WorkerRestarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state().WorkerRestarts
}

// SetWorkerRestarts records a worker restart count; it survives a restart
// of Talon (the predecessor's reset to 0).
func (d *Daemon) SetWorkerRestarts(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state().WorkerRestarts = n
	d.persist()
	d.publish()
}

// Ready is closed once the daemon has loaded its state and policy.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Reported is closed once every probe of the policy has reported since the
// start: until then /health says "starting" and is not ok.
func (d *Daemon) Reported() <-chan struct{} { return d.reported }

// Files lists the files the last policy load read, good or bad.
func (d *Daemon) Files() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.files...)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// StatePath is the state file inside a state directory.
func StatePath(dir string) string { return filepath.Join(dir, "state.json") }
