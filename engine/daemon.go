package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/text"
)

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
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Host names this machine in pages.
	Host string
	// ShutdownGrace bounds how long in-flight actions get after a stop.
	ShutdownGrace time.Duration
	// WhenBudget bounds one evaluation of a `when=` predicate.
	WhenBudget time.Duration
	// Worker reports the supervised worker's status for /health, if any.
	Worker func() any
}

// Daemon runs probes on their intervals and walks the ladder beside them.
type Daemon struct {
	opts Options
	log  *log.Logger

	reloadMu sync.Mutex // serialises reloads

	mu        sync.Mutex // guards everything below
	state     *State
	policy    *Policy
	policyErr string
	files     []string // what the last load read, good or bad: the watcher watches these
	started   time.Time
	reloads   int
	rungRuns  map[string]int
	pages     atomic.Int64
	lastCycle time.Time
	snapshot  atomic.Pointer[Snapshot] // read without d.mu: /health never waits on the loop
	nextDue   map[string]time.Time
	inflight  map[string]bool
	rungName  string
	rungStop  context.CancelFunc

	ready chan struct{}
	sem   chan struct{} // Options.Parallel across all probe runs
	// longestTimeout is the longest probe timeout of the current policy.
	longestTimeout atomic.Value
	swap           chan *swapReq
	results        chan []Result
	batches        chan []Result // every probe of one launch, for the cycle summary
	rungDone       chan rungDone
	bg             sync.WaitGroup // rung, resolution and probe goroutines
}

type swapReq struct {
	res  *LoadResult
	done chan struct{}
}

type rungDone struct {
	incident, rung string
	out            RungOutcome
	// whole says the rung ran to its end, not cut short by a shutdown.
	whole bool
}

// New builds a daemon; Run starts it.
func New(opts Options) *Daemon {
	if opts.Now == nil {
		opts.Now = time.Now
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
	if opts.WhenBudget <= 0 {
		opts.WhenBudget = 2 * time.Second
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	var sem chan struct{}
	if opts.Parallel > 0 {
		sem = make(chan struct{}, opts.Parallel)
	}
	return &Daemon{opts: opts, log: opts.Logger, sem: sem,
		nextDue: map[string]time.Time{}, inflight: map[string]bool{}, rungRuns: map[string]int{},
		ready: make(chan struct{}), swap: make(chan *swapReq), results: make(chan []Result, 16), batches: make(chan []Result, 4), rungDone: make(chan rungDone, 1)}
}

func (d *Daemon) now() time.Time { return d.opts.Now() }

func (d *Daemon) journal(r Record) {
	if d.opts.Journal == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = d.now()
	}
	if r.Policy == "" && d.policy != nil {
		r.Policy = d.policy.Hash
	}
	if err := d.opts.Journal.Append(r); err != nil {
		d.log.Error("journal write failed", "err", err)
	}
}

// start loads the state and the policy. A bad policy does not stop the
// daemon: it runs with no probes, says why on /health, and waits for a fix.
func (d *Daemon) start() {
	now := d.now()
	st, err := d.loadState(now)
	if err != nil {
		d.log.Error("state file unusable; starting fresh", "err", err)
	}
	res := d.opts.Load()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = st
	d.files = res.Files
	if res.Err() != nil {
		d.policy = &Policy{Hash: res.Hash, Thresholds: DefaultThresholds()}
		d.policyErr = res.ErrorText()
		d.log.Error("policy failed to load; running no probes until it is fixed", "err", d.policyErr)
	} else {
		d.policy = res.Policy
	}
	d.warn(res)
	if d.policyErr == "" {
		// With no good policy there is nothing to fit the state to: keep
		// every probe's state as it was until a good policy loads.
		d.state.Reconcile(d.policy)
	}
	d.started = now
	for _, e := range Interrupted(d.state, d.policy, now) {
		d.record(e)
	}
	d.journal(Record{Type: "start", Phase: d.state.Phase, Error: d.policyErr})
	d.schedule(now, true)
	d.publish()
	d.persist()
	d.log.Info("talon started", "state", d.state.Phase, "policy", short(d.policy.Hash), "probes", len(d.policy.Probes), "dry_run", d.opts.DryRun)
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

// schedule sets when each probe is next due. On the first run the probes
// start jittered over a short window, so a large policy does not fork
// everything in the same millisecond.
func (d *Daemon) schedule(now time.Time, first bool) {
	keep := map[string]bool{}
	for _, p := range d.policy.Probes {
		keep[p.Name] = true
		if due, ok := d.nextDue[p.Name]; ok && !first {
			// A shorter interval after a reload takes effect now, not after
			// the old, longer one.
			if soon := now.Add(d.interval(p)); soon.Before(due) {
				d.nextDue[p.Name] = soon
			}
			continue
		}
		var jitter time.Duration
		if p.Every > 0 {
			jitter = time.Duration(rand.Int64N(int64(min(p.Every/10, 2*time.Second)) + 1))
		}
		d.nextDue[p.Name] = now.Add(jitter)
	}
	for name := range d.nextDue {
		if !keep[name] {
			delete(d.nextDue, name)
		}
	}
}

func (d *Daemon) interval(p *Probe) time.Duration {
	if p.Every > 0 {
		return p.Every
	}
	if d.policy.Interval > 0 {
		return d.policy.Interval
	}
	return d.opts.Interval
}

// env is the child environment: the policy's (from the config it was loaded
// with) or the daemon's.
func (d *Daemon) env() []string {
	if d.policy != nil && d.policy.Env != nil {
		return d.policy.Env
	}
	return d.opts.Env
}

// Run runs until ctx ends, then cancels in-flight actions, saves state and returns.
func (d *Daemon) Run(ctx context.Context) error {
	d.start()
	close(d.ready)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.stop()
			return nil
		case <-tick.C:
			d.launchDue(ctx)
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
			d.mu.Lock()
			d.summary(all)
			d.mu.Unlock()
		case rd := <-d.rungDone:
			d.finishRung(ctx, rd)
		case req := <-d.swap:
			d.apply(req.res)
			close(req.done)
		}
	}
}

// launchDue starts the probes that are due and not already running; one
// probe never overlaps itself.
func (d *Daemon) launchDue(ctx context.Context) {
	now := d.now()
	d.mu.Lock()
	var due []*Probe
	for _, p := range d.policy.Probes {
		if t, ok := d.nextDue[p.Name]; ok && !now.Before(t) && !d.inflight[p.Name] {
			due = append(due, p)
			d.inflight[p.Name] = true
			d.nextDue[p.Name] = t.Add(d.interval(p))
			if d.nextDue[p.Name].Before(now) { // we fell behind: skip, never burst
				d.nextDue[p.Name] = now.Add(d.interval(p))
			}
		}
	}
	d.mu.Unlock()
	if len(due) == 0 {
		return
	}
	runner := d.runner()
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		// Each result goes to the loop as soon as its probe finishes: one
		// slow probe never holds back the others' results or escalation.
		var all []Result
		runner.Stream(ctx, due, func(r Result) {
			all = append(all, r)
			select {
			case d.results <- []Result{r}:
			case <-ctx.Done():
			}
		})
		// One summary line per launched cycle, once all its probes are in.
		select {
		case d.batches <- all:
		case <-ctx.Done():
		}
	}()
}

func (d *Daemon) runner() *Runner {
	return &Runner{Effects: d.opts.Probes, Env: d.env(), Parallel: d.opts.Parallel, Now: d.opts.Now, Sem: d.sem}
}

// observe feeds results to the state machine, then lets the ladder act.
func (d *Daemon) observe(ctx context.Context, rs []Result) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range rs {
		delete(d.inflight, r.Name)
	}
	if ctx.Err() != nil {
		return
	}
	d.lastCycle = now
	var known []Result
	for _, r := range rs {
		// A probe removed by a reload mid-run, or one whose definition the
		// reload changed, does not count: the old run tested something else.
		if p := d.policy.Probe(r.Name); p != nil && (r.digest == "" || r.digest == p.Digest) {
			known = append(known, r)
		}
	}
	d.journal(Record{Type: "cycle", Results: known})
	events := Observe(d.state, d.policy, known, now)
	for _, e := range events {
		d.record(e)
	}
	d.escalate(ctx, now)
	d.publish()
	d.persist()
	if d.opts.Journal != nil {
		d.opts.Journal.Sync()
	}
}

func (d *Daemon) summary(rs []Result) {
	var failing []string
	var slowest int64
	for _, r := range rs {
		if !r.Passed {
			failing = append(failing, r.Name)
		}
		slowest = max(slowest, r.DurationMS)
	}
	kv := []any{"state", d.state.Phase, "probes", len(rs), "failed", len(failing), "dur", time.Duration(slowest) * time.Millisecond}
	if len(failing) > 0 {
		kv = append(kv, "failing", strings.Join(failing, ","))
	}
	if inc := d.state.Incident; inc != nil {
		kv = append(kv, "incident", inc.ID)
	}
	d.log.Info("cycle", kv...)
}

// record journals and logs one state machine event.
func (d *Daemon) record(e Event) {
	e2 := e
	d.journal(Record{Type: "event", Event: &e2, Time: e.At})
	switch e.Type {
	case "transition":
		d.log.Info("state transition", "from", e.From, "to", e.To, "incident", e.Incident)
	case "incident_open":
		d.log.Warn("incident opened", "incident", e.Incident, "probes", e.Reason)
	case "incident_resolved":
		d.log.Info("incident resolved", "incident", e.Incident, "reason", e.Reason)
	case "probe_down":
		d.log.Warn("probe down", "probe", e.Probe, "output", e.Reason)
	case "probe_up":
		d.log.Info("probe up", "probe", e.Probe)
	case "rung_start":
		d.rungRuns[e.Rung]++
		d.log.Info("rung started", "rung", e.Rung, "incident", e.Incident)
	case "rung_done":
		d.log.Info("rung finished", "rung", e.Rung, "outcome", e.Reason)
	case "rung_skip":
		if strings.HasPrefix(e.Reason, "when= failed") {
			// A predicate that errors disables its rung: never quietly.
			d.log.Error("rung skipped: its when= predicate failed", "rung", e.Rung, "err", e.Reason)
		} else {
			d.log.Info("rung skipped", "rung", e.Rung, "reason", e.Reason)
		}
	case "page_failed":
		d.log.Error("page not delivered", "rung", e.Rung, "reason", e.Reason)
	}
	if e.Type == "incident_resolved" && len(e.Channels) > 0 {
		d.sendResolved(e)
	}
}

// escalate starts the next rung if one is due and none is running.
func (d *Daemon) escalate(ctx context.Context, now time.Time) {
	if d.rungName != "" || d.state.Incident == nil {
		return
	}
	// A parent still running decides whether its children may escalate:
	// with results streaming in, a child's can arrive first.
	names, _ := d.state.Escalating(d.policy)
	for _, name := range names {
		for _, parent := range d.policy.Probe(name).DependsOn {
			if d.inflight[parent] {
				return
			}
		}
	}
	// After a restart, act only on what this run has seen: every probe of
	// the incident must have run once since the start.
	for _, name := range d.state.Incident.Probes {
		if ps := d.state.Probes[name]; ps == nil || ps.Last == nil || ps.Last.At.Before(d.started) {
			return
		}
	}
	view := d.state.View(d.policy, now)
	dec := Decide(d.state, d.policy, now, func(r *Rung) (bool, error) {
		wctx, cancel := context.WithTimeout(ctx, d.opts.WhenBudget)
		defer cancel()
		return r.When(wctx, view)
	})
	for _, e := range dec.Events {
		d.record(e)
	}
	if dec.Run < 0 {
		return
	}
	r := d.policy.Ladder[dec.Run]
	incID := d.state.Incident.ID
	for _, e := range BeginRung(d.state, d.policy, dec.Run, now) {
		d.record(e)
	}
	d.persist() // a crash from here on is remembered as an attempt
	rctx, cancel := context.WithCancel(ctx)
	d.rungName, d.rungStop = r.Name, cancel
	pol := d.policy
	view = d.state.View(pol, now)
	verify := d.failingProbes(pol)
	runner, childEnv := d.runner(), d.env()
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		defer cancel()
		var out RungOutcome
		func() {
			defer func() {
				if v := recover(); v != nil {
					out = RungOutcome{Output: fmt.Sprintf("internal error in rung %s: %v", r.Name, v), Pages: r.Pages()}
				}
			}()
			out = d.runRung(rctx, runner, childEnv, r, view, verify)
		}()
		d.rungDone <- rungDone{incident: incID, rung: r.Name, out: out, whole: rctx.Err() == nil}
	}()
}

func (d *Daemon) failingProbes(pol *Policy) []*Probe {
	var out []*Probe
	for _, p := range pol.Probes {
		if ps := d.state.Probes[p.Name]; ps != nil && (ps.Down || (ps.Last != nil && !ps.Last.Passed)) {
			out = append(out, p)
		}
	}
	return out
}

// runRung performs a rung's actions outside the loop: probes keep running
// and /health stays fresh while a five-minute heal is in flight.
func (d *Daemon) runRung(ctx context.Context, runner *Runner, childEnv []string, r *Rung, view *IncidentView, verify []*Probe) RungOutcome {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultRungTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	env := &ActionEnv{Effects: d.opts.Actions, Env: childEnv, Incident: view, Rung: r.Name,
		Message: Message{Kind: "sos", Incident: view.ID, Text: d.pageText(view)},
		Log:     func(msg string, kv ...any) { d.log.Info(msg, append([]any{"rung", r.Name}, kv...)...) }}
	out := RungOutcome{OK: true}
	var pagers []Pager
	var actions []Action
	for _, a := range r.Do {
		if p, ok := a.(Pager); ok {
			pagers = append(pagers, p)
		} else {
			actions = append(actions, a)
		}
	}
	var outputs []string
	// Actions run in order and stop at the first failure; the rung's pages
	// go out whatever the actions did.
	for _, a := range actions {
		res := a.Run(ctx, env)
		ok := res.OK
		d.mu.Lock()
		d.journal(Record{Type: "action", Rung: r.Name, Action: a.Describe(), OK: &ok, Output: text.Cap(res.Output, 2000)})
		d.mu.Unlock()
		outputs = append(outputs, res.Output)
		if !res.OK {
			out.OK = false
			break
		}
	}
	if len(pagers) > 0 {
		out.Pages = true
		out.Paged = d.sendAll(ctx, env, pagers, env.Message)
		out.OK = out.OK && len(out.Paged) > 0
	}
	out.Output = strings.Join(outputs, "\n")
	// Verify by re-probing, under the daemon's context rather than the
	// rung's timeout: a heal that used its whole budget still gets checked.
	if r.Verify && len(verify) > 0 && parent.Err() == nil && len(actions) > 0 {
		out.Verify = runner.Run(parent, verify)
		if parent.Err() != nil {
			out.Verify = nil // cut by the shutdown: "context canceled" is not a result
		}
	}
	return out
}

// sendAll delivers msg on every channel concurrently and returns the
// channels that accepted it.
func (d *Daemon) sendAll(ctx context.Context, env *ActionEnv, pagers []Pager, msg Message) []string {
	var mu sync.Mutex
	var delivered []string
	var wg sync.WaitGroup
	for _, p := range pagers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			func() {
				defer func() {
					if v := recover(); v != nil {
						err = fmt.Errorf("internal error in %s: %v", p.Channel(), v)
					}
				}()
				err = p.Send(ctx, env, msg)
			}()
			ok := err == nil
			rec := Record{Type: "action", Rung: env.Rung, Action: "page " + msg.Kind + " via " + p.Channel(), OK: &ok}
			if err != nil {
				rec.Output = err.Error()
				d.log.Error("page channel failed", "rung", env.Rung, "channel", p.Channel(), "err", err)
			} else {
				d.log.Info("page sent", "rung", env.Rung, "channel", p.Channel(), "kind", msg.Kind)
			}
			mu.Lock()
			if ok {
				delivered = append(delivered, p.Channel())
				d.pages.Add(1)
			}
			mu.Unlock()
			d.mu.Lock()
			d.journal(rec)
			d.mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(delivered)
	return delivered
}

func (d *Daemon) pageText(v *IncidentView) string {
	prefix := "TALON SOS"
	if d.opts.DryRun {
		prefix = "TALON SOS (dry run)"
	}
	return fmt.Sprintf("🚨 %s on %s: %s", prefix, d.opts.Host, v.Summary())
}

// sendResolved tells every channel that was paged that the incident is over.
func (d *Daemon) sendResolved(e Event) {
	var pagers []Pager
	want := map[string]bool{}
	for _, c := range e.Channels {
		want[c] = true
	}
	for _, r := range d.policy.Ladder {
		for _, a := range r.Do {
			if p, ok := a.(Pager); ok && want[p.Channel()] {
				pagers = append(pagers, p)
				delete(want, p.Channel())
			}
		}
	}
	msg := Message{Kind: "resolved", Incident: e.Incident,
		Text: fmt.Sprintf("✅ TALON resolved on %s: incident %s is over (%s)", d.opts.Host, e.Incident, e.Reason)}
	env := &ActionEnv{Effects: d.opts.Actions, Env: d.env(), Rung: "resolved", Message: msg,
		Log: func(m string, kv ...any) { d.log.Info(m, kv...) }}
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.sendAll(ctx, env, pagers, msg)
	}()
}

func (d *Daemon) finishRung(ctx context.Context, rd rungDone) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rungName, d.rungStop = "", nil
	stopping := ctx.Err() != nil
	if stopping && !rd.whole && len(rd.out.Paged) == 0 {
		return // cut short by the shutdown: stop() records the interruption
	}
	stillOpen := d.state.Incident != nil && d.state.Incident.ID == rd.incident
	for _, e := range FinishRung(d.state, d.policy, rd.incident, rd.rung, rd.out, now) {
		d.record(e)
	}
	if !stillOpen && len(rd.out.Paged) > 0 && !stopping {
		// The incident resolved while its page was on the way: whoever got
		// the page also hears that it is over.
		d.sendResolved(Event{Type: "incident_resolved", Incident: rd.incident, Channels: rd.out.Paged,
			Reason: "resolved while the page was being sent", At: now})
	}
	if len(rd.out.Verify) > 0 {
		d.journal(Record{Type: "cycle", Results: rd.out.Verify, Rung: rd.rung})
	}
	if !stopping {
		d.escalate(ctx, now)
	}
	d.publish()
	d.persist()
}

// apply swaps in a freshly loaded policy between cycles.
func (d *Daemon) apply(res *LoadResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.policy.Hash
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
	if res.Policy.Hash == old {
		d.publish()
		return
	}
	oldLadder := d.policy.Ladder
	d.policy = res.Policy
	d.reloads++
	d.warn(res)
	d.state.Incident.Relocate(oldLadder, d.policy.Ladder)
	for _, e := range d.state.settle(d.policy, d.now()) {
		d.record(e) // an incident whose probes the reload removed resolves
	}
	d.state.Reconcile(d.policy)
	d.schedule(d.now(), false)
	d.journal(Record{Type: "reload", OldHash: old})
	d.log.Info("policy reloaded", "policy", short(d.policy.Hash), "old", short(old), "probes", len(d.policy.Probes))
	d.publish()
	d.persist()
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

// stop cancels a running rung, records it as interrupted, and saves.
func (d *Daemon) stop() {
	d.mu.Lock()
	if d.rungStop != nil {
		d.rungStop()
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.opts.ShutdownGrace + 2*time.Second):
		d.log.Warn("in-flight work did not stop in time")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// A rung that finished while we were stopping keeps its real outcome
	// (a delivered page must not be re-sent after the restart).
	select {
	case rd := <-d.rungDone:
		if rd.whole || len(rd.out.Paged) > 0 {
			for _, e := range FinishRung(d.state, d.policy, rd.incident, rd.rung, rd.out, d.now()) {
				d.record(e)
			}
		}
	default:
	}
	for _, e := range Interrupted(d.state, d.policy, d.now()) {
		d.record(e)
	}
	d.journal(Record{Type: "stop", Phase: d.state.Phase})
	d.persist()
	// A "resolved" message queued just now (a rung outcome applied above)
	// still goes out, within the grace period.
	d.mu.Unlock()
	done2 := make(chan struct{})
	go func() { d.bg.Wait(); close(done2) }()
	select {
	case <-done2:
	case <-time.After(d.opts.ShutdownGrace):
	}
	d.mu.Lock()
	if d.opts.Journal != nil {
		d.opts.Journal.Sync()
	}
	d.log.Info("talon stopped", "state", d.state.Phase)
}

func (d *Daemon) persist() {
	if d.opts.StateFile == "" {
		return
	}
	d.state.UpdatedAt = d.now()
	if err := SaveState(d.opts.StateFile, d.state); err != nil {
		d.log.Error("state not saved", "err", err)
	}
}

// publish rebuilds the snapshot; callers hold d.mu.
func (d *Daemon) publish() {
	// The loop is stuck when no result came for three times the longest
	// gap between two runs of any probe (its interval plus its timeout).
	longest := time.Duration(0)
	for _, p := range d.policy.Probes {
		longest = max(longest, d.interval(p)+p.EffectiveTimeout())
	}
	d.longestTimeout.Store(longest)
	s := Snapshot{State: d.state.Phase, ConsecutiveFailures: d.state.ConsecutiveFailures,
		ProbeCount: len(d.policy.Probes), WorkerRestarts: d.state.WorkerRestarts,
		UpdatedAtUnix: d.now().Unix(), PolicyHash: d.policy.Hash, LastCycle: d.lastCycle,
		DryRun: d.opts.DryRun, Reloads: d.reloads, FailedProbes: []string{},
		RungRuns: maps.Clone(d.rungRuns), Pages: int(d.pages.Load())}
	for _, p := range d.policy.Probes {
		if ps := d.state.Probes[p.Name]; ps != nil && ps.Last != nil {
			s.Probes = append(s.Probes, *ps.Last)
			if !ps.Last.Passed {
				s.FailedProbes = append(s.FailedProbes, p.Name)
			}
		}
	}
	s.FailedProbeCount = len(s.FailedProbes)
	if d.policyErr != "" {
		pe := d.policyErr
		s.PolicyError = &pe
	}
	if inc := d.state.Incident; inc != nil {
		s.Incident = &IncidentInfo{ID: inc.ID, Started: inc.Started, Probes: inc.Probes, Critical: inc.Critical, Position: inc.Position, Paged: inc.Paged}
	}
	if d.rungName != "" {
		r := d.rungName
		s.Rung = &r
	}
	s.OK = s.State == Healthy && s.FailedProbeCount == 0 && s.PolicyError == nil
	d.snapshot.Store(&s)
}

// WorkerRestarts is the persisted worker restart count (valid once Ready).
func (d *Daemon) WorkerRestarts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.WorkerRestarts
}

// SetWorkerRestarts records a worker restart count; it survives a restart
// of Talon (the predecessor's reset to 0).
func (d *Daemon) SetWorkerRestarts(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == nil {
		return
	}
	d.state.WorkerRestarts = n
	d.publish()
	d.persist()
}

// Ready is closed once the daemon has loaded its state and policy.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Files lists the files the last policy load read, good or bad.
func (d *Daemon) Files() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.files...)
}

// Snapshot returns the last published health. A daemon whose probe results
// have stopped coming (a wedged loop) says so: it is not ok and Stale is set.
func (d *Daemon) Snapshot() Snapshot {
	p := d.snapshot.Load()
	if p == nil {
		return Snapshot{State: Healthy, FailedProbes: []string{}}
	}
	s := *p
	if d.opts.Worker != nil {
		s.Worker = d.opts.Worker() // live, not as of the last cycle
	}
	if limit := d.staleAfter(); limit > 0 && !s.LastCycle.IsZero() && d.now().Sub(s.LastCycle) > limit {
		s.OK, s.Stale = false, true
	}
	return s
}

// staleAfter is how long without any probe result means the loop is stuck;
// zero (a policy without probes) means never.
func (d *Daemon) staleAfter() time.Duration {
	return 3 * d.longestTimeout.Load().(time.Duration)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// StatePath is the state file inside a state directory.
func StatePath(dir string) string { return filepath.Join(dir, "state.json") }
