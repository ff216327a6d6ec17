// Package worker supervises Talon's one long-running worker process: it
// spawns it in its own process group with an env file, appends its output to
// log files, polls its health, makes one sync call once it is healthy,
// restarts it with capped exponential backoff, and drains it (SIGTERM to the
// group, then SIGKILL) on restart and on shutdown.
//
// Before each spawn it frees the worker port of stale copies of the worker —
// only processes listening on the port whose command line is the worker's;
// never a client, never an unrelated listener. It steps back whenever an
// external supervisor (a launchd label or a systemd unit) runs the worker,
// and re-checks that every health interval.
//
// Every failure is logged and retried; Run returns only when its context
// ends, and never with the worker (or anything in its group) still alive.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm"
)

// Options configure a Supervisor. They mirror the [worker] config keys as
// plain values; zero durations and counts take the config defaults.
type Options struct {
	Dir     string   // working directory of the worker
	Command []string // argv; Command[0] is resolved on the child's PATH
	// Env is the base environment of the child (PATH built from config, …).
	// The env file's variables, then ExtraEnv's, then WORKER_ROLE=host are
	// laid over it; the child inherits nothing else from Talon.
	Env     []string
	EnvFile string // optional: a missing file is a warning, a bad one an error
	// Files applies strict modes (package fsperm) to the env file and the
	// program, at every spawn: one that another user could change is
	// refused (nil: strictly), or run with a warning when relaxed.
	Files *fsperm.Checker
	// ExtraEnv, when set, is called before each spawn (with a deadline) for
	// more variables, e.g. leased secrets. On error the worker is started
	// with what it returned and the error is logged.
	ExtraEnv func(ctx context.Context) ([]string, error)

	LogStdout string // appended to; parent directories are created
	LogStderr string

	Port       int    // the worker listens on 127.0.0.1:Port
	HealthPath string // GET; 2xx is healthy. "": no polling, a running worker counts as healthy
	SyncPath   string // PUT once after the worker is first healthy; "": none

	DrainTimeout          time.Duration // SIGTERM → SIGKILL of the worker's group (0: SIGKILL at once)
	HealthInterval        time.Duration // default 30s; also the external-supervisor re-check interval
	FailuresBeforeRestart int           // consecutive failed checks before a restart; default 3
	BackoffMax            time.Duration // restart backoff cap; default 30s
	// StartupSyncDelay is extra startup grace: a fresh worker has
	// StartupSyncDelay + FailuresBeforeRestart×HealthInterval to answer its
	// first passing health check before it is restarted. The sync waits for
	// that first passing check, not for a fixed delay.
	StartupSyncDelay time.Duration
	HTTPTimeout      time.Duration // per health or sync request; default 5s

	ExternalLaunchdLabel string // launchctl print gui/UID/LABEL or system/LABEL
	ExternalSystemdUnit  string // systemctl [--user] is-active UNIT

	// Effects runs the short lookups (launchctl, systemctl, lsof, ps) and the
	// health and sync requests. The worker itself is started directly: it is
	// a long-running child, not a command with a result. Default: effect.NewLive().
	Effects effect.Effects
	Logger  *log.Logger
	// Clock gives the time and the timers of the supervisor's rules about
	// time: the restart backoff, the health polls, the startup grace, the
	// sync retries, the external-supervisor re-checks and the drain
	// timeout. Tests step a fake one; default engine.RealClock{}.
	Clock engine.Clock

	// Restarts is the restart count persisted by a previous run; counting
	// continues from it. OnRestart, when set, is called with the new total
	// each time the worker is restarted, so the daemon can persist it. It is
	// called from Run's goroutine and must not block.
	Restarts  int
	OnRestart func(total int)
}

// Status is a snapshot of the supervisor.
type Status struct {
	PID        int       `json:"pid,omitempty"`
	Running    bool      `json:"running"`
	Healthy    bool      `json:"healthy"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"last_exit,omitempty"` // "exit status 1", "signal: killed"
	LastExitAt time.Time `json:"last_exit_at,omitzero"`
	// External names who runs the worker while the supervisor steps back
	// ("systemd unit x (system)"); "" while Talon supervises it.
	External  string `json:"external,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Supervisor runs one worker. Create it with New and call Run once.
type Supervisor struct {
	opts Options
	log  *log.Logger

	mu  sync.Mutex
	st  Status
	cur *proc // the running worker, nil when none
}

// proc is one spawned worker.
type proc struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	exited  chan struct{} // closed once Wait returned
	state   *os.ProcessState
}

// stopReason tells why the watch of one worker ended.
type stopReason int

const (
	stopShutdown  stopReason = iota // Run's context ended
	stopExited                      // the worker exited by itself
	stopUnhealthy                   // too many failed health checks
	stopStepBack                    // an external supervisor took over
)

const (
	syncAttempts   = 4
	syncFirstRetry = time.Second
	extraEnvTTL    = 30 * time.Second
	firstBackoff   = time.Second
)

// New returns a supervisor for opts, filling in defaults. Run reports bad options.
func New(opts Options) *Supervisor {
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 30 * time.Second
	}
	if opts.FailuresBeforeRestart <= 0 {
		opts.FailuresBeforeRestart = 3
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.HTTPTimeout <= 0 {
		opts.HTTPTimeout = 5 * time.Second
	}
	if opts.DrainTimeout < 0 {
		opts.DrainTimeout = 0
	}
	if opts.StartupSyncDelay < 0 {
		opts.StartupSyncDelay = 0
	}
	if opts.Effects == nil {
		opts.Effects = effect.NewLive()
	}
	if opts.Clock == nil {
		opts.Clock = engine.RealClock{}
	}
	if opts.HealthPath != "" && !strings.HasPrefix(opts.HealthPath, "/") {
		opts.HealthPath = "/" + opts.HealthPath
	}
	if opts.SyncPath != "" && !strings.HasPrefix(opts.SyncPath, "/") {
		opts.SyncPath = "/" + opts.SyncPath
	}
	lg := opts.Logger
	if lg == nil {
		lg = log.New(io.Discard)
	}
	return &Supervisor{opts: opts, log: lg.With("component", "worker"), st: Status{Restarts: opts.Restarts}}
}

// Status returns a snapshot of the supervisor's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Signal forwards sig to the running worker's process group (SIGHUP to make
// it reload, say). It is an error when no worker of ours is running.
func (s *Supervisor) Signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.cur
	if w == nil {
		return errors.New("no worker running")
	}
	select {
	case <-w.exited:
		return errors.New("no worker running")
	default:
	}
	// The group exists while its leader is unreaped (exited is not closed).
	return syscall.Kill(-w.pid, sig)
}

// Run supervises the worker until ctx ends, then drains it and returns nil.
// It returns early only for unusable options (no command, bad port).
func (s *Supervisor) Run(ctx context.Context) error {
	if len(s.opts.Command) == 0 || s.opts.Command[0] == "" {
		return errors.New("worker: command is empty")
	}
	if s.opts.Port < 1 || s.opts.Port > 65535 {
		return fmt.Errorf("worker: port %d out of range 1-65535", s.opts.Port)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	owners := make(chan decision, 1)
	var dec decision
	if s.externalConfigured() {
		wg.Add(1)
		go func() { defer wg.Done(); s.ownerWatcher(ctx, owners) }()
		select {
		case <-ctx.Done():
			return nil
		case dec = <-owners:
		}
	}

	backoff := min(firstBackoff, s.opts.BackoffMax)
	// wait sleeps d, cut short by shutdown or by an external supervisor
	// taking over. It reports false on shutdown.
	wait := func(d time.Duration) bool {
		t := s.opts.Clock.NewTimer(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return false
			case <-t.C():
				return true
			case dec = <-owners:
				s.setExternal(dec)
				if dec.owner != "" {
					return true
				}
			}
		}
	}
	// retry logs a failed attempt and waits the backoff before the next.
	retry := func(err error) bool {
		s.setError(err)
		s.log.Error("worker not started; retrying", "err", err, "backoff", backoff)
		ok := wait(backoff)
		backoff = min(2*backoff, s.opts.BackoffMax)
		return ok
	}

	for {
		if ctx.Err() != nil {
			return nil
		}
		s.setExternal(dec)
		if dec.owner != "" {
			select {
			case <-ctx.Done():
				return nil
			case dec = <-owners:
			}
			continue
		}
		if err := s.clearPort(ctx); err != nil {
			if !retry(err) {
				return nil
			}
			continue
		}
		w, err := s.spawn(ctx)
		if err != nil {
			if !retry(err) {
				return nil
			}
			continue
		}
		reason := s.watch(ctx, w, owners, &dec, &backoff)
		s.drain(w, reason)
		switch reason {
		case stopShutdown:
			return nil
		case stopStepBack:
			continue
		}
		total := s.countRestart()
		s.log.Warn("restarting worker", "restarts", total, "backoff", backoff)
		if !wait(backoff) {
			return nil
		}
		backoff = min(2*backoff, s.opts.BackoffMax)
	}
}

func (s *Supervisor) countRestart() int {
	s.mu.Lock()
	s.st.Restarts++
	n := s.st.Restarts
	onRestart := s.opts.OnRestart
	s.mu.Unlock()
	if onRestart != nil {
		onRestart(n)
	}
	return n
}

// Resume sets the restart count to continue from (persisted by an earlier
// run) and the callback for new restarts. Call it before Run.
func (s *Supervisor) Resume(restarts int, onRestart func(total int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Restarts = restarts
	s.opts.OnRestart = onRestart
}

func (s *Supervisor) setError(err error) {
	s.mu.Lock()
	s.st.LastError = err.Error()
	s.mu.Unlock()
}

func (s *Supervisor) setExternal(d decision) {
	s.mu.Lock()
	s.st.External = d.owner
	if d.problem != "" {
		s.st.LastError = "external supervisor check: " + d.problem
	}
	s.mu.Unlock()
}

func (s *Supervisor) setHealthy(ok bool) {
	s.mu.Lock()
	s.st.Healthy = ok
	s.mu.Unlock()
}

// childEnv builds the worker's environment: Options.Env, the env file,
// ExtraEnv, WORKER_ROLE=host — a later value of a variable wins.
func (s *Supervisor) childEnv(ctx context.Context) ([]string, error) {
	var file []string
	if s.opts.EnvFile != "" {
		var err error
		file, err = readEnvFile(s.opts.EnvFile, s.opts.Files)
		if errors.Is(err, os.ErrNotExist) {
			s.log.Warn("worker env file not found; starting without it", "path", s.opts.EnvFile)
		} else if err != nil {
			return nil, fmt.Errorf("worker env file: %w", err)
		}
	}
	var extra []string
	if s.opts.ExtraEnv != nil {
		cctx, cancel := context.WithTimeout(ctx, extraEnvTTL)
		var err error
		extra, err = s.opts.ExtraEnv(cctx)
		cancel()
		if err != nil {
			s.log.Warn("worker extra environment incomplete", "err", err)
		}
	}
	env := mergeEnv(s.opts.Env, file, extra, []string{"WORKER_ROLE=host"})
	// The worker is a service, not a command with a result: it carries no
	// run marker (one Talon itself inherited, say), so neither killTree nor
	// the sweep after a crash (effect.Instance.Sweep) ever takes it for
	// what a command left behind. Only the supervisor ends it.
	return slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, effect.MarkerVar+"=") }), nil
}

// spawn starts the worker in its own process group with its output
// appended to the log files.
func (s *Supervisor) spawn(ctx context.Context) (*proc, error) {
	env, err := s.childEnv(ctx)
	if err != nil {
		return nil, err
	}
	prog := s.opts.Command[0]
	if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && s.opts.Dir != "" {
		prog = filepath.Join(s.opts.Dir, prog)
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	prog, err = effect.LookPath(prog, path)
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	if err := s.opts.Files.CheckPath(prog); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	stdout, err := openLog(s.opts.LogStdout)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := openLog(s.opts.LogStderr)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	cmd := &exec.Cmd{
		Path:        prog,
		Args:        s.opts.Command,
		Dir:         s.opts.Dir,
		Env:         env,
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := effect.StartChild(cmd); err != nil { // known to the orphan reaper, which leaves it to us
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &proc{cmd: cmd, pid: cmd.Process.Pid, started: s.opts.Clock.Now(), exited: make(chan struct{})}
	go func() {
		effect.WaitChild(cmd)
		w.state = cmd.ProcessState
		close(w.exited)
	}()
	s.mu.Lock()
	s.cur = w
	s.st.PID, s.st.Running, s.st.Healthy, s.st.StartedAt = w.pid, true, false, w.started
	s.mu.Unlock()
	s.log.Info("worker started", "pid", w.pid, "cmd", strings.Join(s.opts.Command, " "))
	return w, nil
}

// openLog opens path for appending, creating it and its directory. An empty
// path discards the output.
func openLog(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("worker log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("worker log: %w", err)
	}
	return f, nil
}

// watch follows one running worker until it must stop, and says why.
func (s *Supervisor) watch(ctx context.Context, w *proc, owners <-chan decision, dec *decision, backoff *time.Duration) stopReason {
	var syncs sync.WaitGroup
	defer syncs.Wait()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	o := s.opts
	startPoll := min(o.HealthInterval, time.Second)
	grace := o.StartupSyncDelay + time.Duration(o.FailuresBeforeRestart)*o.HealthInterval
	everHealthy := false
	failures := 0
	timer := o.Clock.NewTimer(startPoll)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return stopShutdown
		case <-w.exited:
			return stopExited
		case d := <-owners:
			*dec = d
			s.setExternal(d)
			if d.owner != "" {
				s.log.Info("stopping our worker: an external supervisor runs it", "owner", d.owner, "pid", w.pid)
				return stopStepBack
			}
		case <-timer.C():
			err := s.checkHealth(wctx, w)
			if ctx.Err() != nil {
				return stopShutdown
			}
			switch {
			case err == nil:
				if !everHealthy {
					everHealthy = true
					s.log.Info("worker is healthy", "pid", w.pid, "after", s.since(w.started).Round(time.Millisecond))
					if o.SyncPath != "" {
						syncs.Add(1)
						go func() { defer syncs.Done(); s.sync(wctx) }()
					}
				} else if failures > 0 {
					s.log.Info("worker health recovered", "pid", w.pid, "after_failures", failures)
				} else {
					s.log.Debug("worker health check passed", "pid", w.pid)
				}
				failures = 0
				*backoff = min(firstBackoff, o.BackoffMax)
				s.setHealthy(true)
				timer.Reset(o.HealthInterval)
			case !everHealthy:
				if s.since(w.started) >= grace {
					err = fmt.Errorf("worker not healthy %s after start: %w", grace, err)
					s.setError(err)
					s.log.Error("restarting worker that never became healthy", "pid", w.pid, "err", err)
					return stopUnhealthy
				}
				s.log.Debug("worker not healthy yet", "pid", w.pid, "err", err)
				timer.Reset(startPoll)
			default:
				failures++
				s.setHealthy(false)
				s.setError(err)
				s.log.Warn("worker health check failed", "pid", w.pid, "consecutive", failures, "threshold", o.FailuresBeforeRestart, "err", err)
				if failures >= o.FailuresBeforeRestart {
					s.log.Error("restarting worker after consecutive failed health checks", "pid", w.pid, "failures", failures)
					return stopUnhealthy
				}
				timer.Reset(o.HealthInterval)
			}
		}
	}
}

// since is the time on the supervisor's clock since t.
func (s *Supervisor) since(t time.Time) time.Duration { return s.opts.Clock.Now().Sub(t) }

// sleep waits d on the supervisor's clock, or until ctx ends (its error).
func (s *Supervisor) sleep(ctx context.Context, d time.Duration) error {
	t := s.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// checkHealth polls the health endpoint. Without one, a worker that has run
// for StartupSyncDelay counts as healthy.
func (s *Supervisor) checkHealth(ctx context.Context, w *proc) error {
	if s.opts.HealthPath == "" {
		if s.since(w.started) < s.opts.StartupSyncDelay {
			return errors.New("starting")
		}
		return nil
	}
	return s.request(ctx, http.MethodGet, s.opts.HealthPath)
}

// sync makes the one sync call of this worker, retrying a failure a few
// times with backoff.
func (s *Supervisor) sync(ctx context.Context) {
	delay := syncFirstRetry
	for attempt := 1; ; attempt++ {
		err := s.request(ctx, http.MethodPut, s.opts.SyncPath)
		if err == nil {
			s.log.Info("worker sync succeeded", "path", s.opts.SyncPath, "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt == syncAttempts {
			s.setError(fmt.Errorf("worker sync: %w", err))
			s.log.Error("worker sync failed; not retrying until the worker restarts", "attempts", attempt, "err", err)
			return
		}
		s.log.Warn("worker sync failed; retrying", "attempt", attempt, "retry_in", delay, "err", err)
		if s.sleep(ctx, delay) != nil {
			return
		}
		delay *= 2
	}
}

// request sends METHOD http://127.0.0.1:PORT/path; a 2xx answer is success.
func (s *Supervisor) request(ctx context.Context, method, path string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.HTTPTimeout)
	defer cancel()
	url := "http://127.0.0.1:" + strconv.Itoa(s.opts.Port) + path
	req, err := http.NewRequestWithContext(ctx, method, url, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := s.opts.Effects.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

// killWait bounds the wait for a SIGKILLed group to be gone.
const killWait = 2 * time.Second

// waitGroupDead waits, at most limit, until no process of group pgid runs.
// Zombies do not count: they are dead, and reaping the orphans among them
// is init's business (which takes its time in some containers).
func waitGroupDead(pgid int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for groupRuns(pgid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// groupRuns reports whether a process of group pgid is alive and not a
// zombie. Without procfs it falls back to kill(-pgid, 0), which counts
// zombies too.
func groupRuns(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// drain stops the worker and everything in its process group: SIGTERM to
// the group, up to DrainTimeout for the leader and the group to be gone,
// then SIGKILL to the group. A worker that already exited still has its
// group's leftovers cleared the same way. It returns once the worker is reaped.
func (s *Supervisor) drain(w *proc, reason stopReason) {
	pgid := w.pid
	groupAlive := func() bool { return syscall.Kill(-pgid, 0) == nil }
	exited := func() bool {
		select {
		case <-w.exited:
			return true
		default:
			return false
		}
	}
	if !exited() {
		s.log.Info("stopping worker", "pid", w.pid, "drain", s.opts.DrainTimeout)
	}
	if !exited() || groupAlive() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := s.opts.Clock.NewTimer(s.opts.DrainTimeout)
		// The tick only polls the group; it is no rule, so it is real.
		tick := time.NewTicker(50 * time.Millisecond)
	wait:
		for !exited() || groupAlive() {
			select {
			case <-deadline.C():
				break wait
			case <-w.exited:
			case <-tick.C:
			}
		}
		deadline.Stop()
		tick.Stop()
		if !exited() || groupAlive() {
			s.log.Warn("worker did not stop within the drain timeout; killing its process group", "pid", w.pid, "drain", s.opts.DrainTimeout)
			syscall.Kill(-pgid, syscall.SIGKILL)
			// SIGKILL is delivered at once but a process dies when it is
			// next scheduled: wait until nothing of the group runs, so
			// that Run never returns with part of the worker alive.
			waitGroupDead(pgid, killWait)
		}
	}
	<-w.exited
	status := "unknown"
	if w.state != nil {
		status = w.state.String()
	}
	if reason == stopExited {
		s.setError(fmt.Errorf("worker exited: %s", status))
		s.log.Warn("worker exited", "pid", w.pid, "status", status, "uptime", s.since(w.started).Round(time.Millisecond))
	} else {
		s.log.Info("worker stopped", "pid", w.pid, "status", status)
	}
	s.mu.Lock()
	s.cur = nil
	s.st.PID, s.st.Running, s.st.Healthy = 0, false, false
	s.st.LastExit, s.st.LastExitAt = status, s.opts.Clock.Now()
	s.mu.Unlock()
}
