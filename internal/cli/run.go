package cli

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/health"
	"github.com/talon-dev/talon/engine/journal"
	"github.com/talon-dev/talon/engine/watch"
	"github.com/talon-dev/talon/engine/worker"
	"github.com/talon-dev/talon/internal/loader"
)

// run is the daemon.
func (a *app) run(args []string) error {
	var dryRun, workerOnly bool
	var bind string
	if err := a.flagsOnly("run", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&dryRun, "dry-run", false, "shadow mode: real probes, actions only recorded")
		fs.StringVar(&bind, "bind", "", "health endpoint address, overriding [health] bind")
		fs.BoolVar(&workerOnly, "worker-only", false, "run only the worker supervisor")
	}); err != nil {
		return err
	}
	if workerOnly {
		return a.workerOnly(nil)
	}
	// A broken config.toml does not stop the daemon (under launchd's
	// KeepAlive an exit is a crash loop that watches nothing): it runs the
	// last known good policy and says so. Only what no fallback can fix,
	// an unusable state directory, ends it.
	e, cfgErr := a.daemonEnv()
	if dryRun {
		// Shadow mode keeps its own state and journal: its recorded "pages"
		// and "heals" must never put the live daemon's cooldowns to sleep.
		e.stateDir = filepath.Join(e.stateDir, "dry-run")
	}
	logger, release, err := claimStateDir(e.stateDir, e.cfg.StrictModes)
	if err != nil {
		return err
	}
	defer release()
	// Before the first command: what the previous daemon's commands left
	// running when it was killed dies now.
	inst := sweepOrphans(e.stateDir, logger)
	j, err := journal.Open(filepath.Join(e.stateDir, "journal.jsonl"), journal.Options{})
	if err != nil {
		return fail(1, "journal: %v", err)
	}
	defer j.Close()

	e.daemon = true
	e.warn = func(msg string, kv ...any) { logger.Warn(msg, kv...) }
	e.note = func(msg string, kv ...any) { logger.Info(msg, kv...) }
	lopts := e.loaderOptions()
	lopts.Store = loader.NewStore(e.stateDir)
	lopts.Log = func(msg string, kv ...any) { logger.Warn(msg, kv...) }
	e.ld = loader.New(lopts)
	logStartup(logger, e)
	if cfgErr != nil {
		logger.Error("config.toml does not load; what it says is in force only as far as it reads", "err", cfgErr)
	}
	// The first load decides which config the daemon runs with: the one
	// the policy loaded with, or the one of its fallback.
	first := e.ld.Load()
	if c := e.ld.Config(); c != nil {
		e.cfg = c
	}
	var firstMu sync.Mutex // a SIGHUP may come while the daemon starts
	load := func() *engine.LoadResult {
		firstMu.Lock()
		r := first
		first = nil
		firstMu.Unlock()
		if r != nil {
			return r
		}
		return e.ld.Load()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Orphans of probes and rungs (setsid, double forks) are reparented to
	// the daemon, so their tree is killed at the deadline and reaped.
	if _, err := effect.Subreaper(ctx); err != nil {
		logger.Info("descendants of a command that call setsid can outlive it on this system", "err", err)
	}

	var actions effect.Effects = liveEffects(inst)
	var d *engine.Daemon
	if dryRun {
		actions = &effect.Recorder{OnIntent: func(in effect.Intent) {
			j.Append(engine.Record{Time: time.Now(), Type: "intent", Policy: d.Snapshot().PolicyHash, Intent: in.Kind + ": " + in.Detail})
			logger.Info("dry run: action recorded, not performed", "kind", in.Kind, "intent", in.Detail)
		}}
	}
	var sup *worker.Supervisor
	if e.cfg.Worker.Enabled && !dryRun {
		sup = worker.New(workerOptions(e.cfg, logger, liveEffects(inst)))
	}
	var workerStatus func() any
	if sup != nil {
		workerStatus = func() any { return sup.Status() }
	}
	hbs := &heartbeats{}
	d = engine.New(engine.Options{
		Worker:    workerStatus,
		Load:      hbs.wrap(load),
		Interval:  time.Duration(e.cfg.CheckIntervalSecs) * time.Second,
		StateFile: engine.StatePath(e.stateDir),
		Env:       e.cfg.ChildEnv(os.Environ()),
		Parallel:  e.cfg.Parallel,
		Probes:    liveEffects(inst),
		Actions:   actions,
		DryRun:    dryRun,
		Journal:   j,
		Logger:    logger,
		Answers:   journalAnswers(filepath.Join(e.stateDir, "journal.jsonl")),
	})

	if bind == "" {
		bind = e.cfg.Health.Bind
		if dryRun {
			// The live daemon owns [health] bind; a shadow that took it would
			// leave the live one without /health and answer `talon reload`.
			bind = ""
			logger.Info("dry run: no health endpoint unless --bind names one")
		}
	} else if err := health.RefuseNonLoopback(bind, e.cfg.Health.AllowNonLoopback); err != nil {
		return fail(2, "--bind: %v", err)
	}
	if e.cfg.Health.Enabled && bind != "" {
		// The control routes (pause, resume, ack, reload) want a token only
		// the daemon's user can read: the control file in the state dir.
		token, err := health.NewToken()
		if err != nil {
			logger.Error("no control token: talon pause, resume, ack and reload cannot reach this daemon", "err", err)
		}
		srv := health.New(health.Options{Bind: bind, Snapshot: d.Snapshot, Reload: d.Reload, Logger: logger,
			AllowedHosts: e.cfg.Health.AllowedHosts, Control: d, Token: token})
		// The server logs where it listens: the startup line of the address.
		// A port that is taken (another program, the previous daemon not
		// gone yet) is tried again with backoff, loudly; the watchdog
		// watches on meanwhile.
		// A control file left by a daemon killed with -9 names its token
		// and address: gone until this one listens.
		os.Remove(filepath.Join(e.stateDir, health.TokenFile))
		hctx, hcancel := context.WithCancel(context.Background())
		listened := make(chan struct{})
		var removeControl func()
		go func() {
			defer close(listened)
			srv.Listen(hctx, nil, func(addr string) {
				if token == "" {
					return
				}
				remove, err := health.WriteControlFile(e.stateDir, health.ControlFile{Token: token, Addr: addr, PID: os.Getpid()})
				if err != nil {
					logger.Error("control file not written: talon pause, resume, ack and reload cannot reach this daemon", "err", err)
					return
				}
				removeControl = remove
			})
		}()
		defer func() {
			hcancel()
			<-listened
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			if removeControl != nil {
				removeControl()
			}
		}()
	} else if !e.cfg.Health.Enabled {
		logger.Info("health endpoint", "bind", "none", "note", "[health] enabled = false")
	}
	if dryRun {
		// `talon reload` signals the live daemon, never the shadow.
	} else if removePID, err := writePID(e.stateDir); err != nil {
		logger.Warn("pid file not written; `talon reload` needs /health", "err", err)
	} else {
		defer removePID()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading")
				if _, err := d.Reload(ctx); err != nil {
					logger.Error("reload after SIGHUP failed", "err", err)
				}
			}
		}
	}()
	workerDone := make(chan struct{})
	if sup == nil {
		close(workerDone)
	} else {
		go func() {
			defer close(workerDone)
			select {
			case <-d.Ready():
			case <-ctx.Done():
				return
			}
			// Restarts are counted on from the persisted total.
			sup.Resume(d.WorkerRestarts(), d.SetWorkerRestarts)
			if err := sup.Run(ctx); err != nil {
				logger.Error("worker supervisor stopped", "err", err)
			}
		}()
	}
	{
		go func() {
			select {
			case <-d.Ready():
			case <-ctx.Done():
				return
			}
			// The files of the last load name every directory to watch: the
			// config's, the policy directory (its talon.star is listed even
			// when missing), wherever a services file or a link lives.
			w, err := watch.New(watch.Options{Files: d.Files, Reload: d.Reload, Logger: logger})
			if err != nil {
				logger.Error("file watcher not started; use `talon reload` or SIGHUP", "err", err)
				return
			}
			w.Run(ctx)
		}()
	}
	go func() {
		select {
		case <-d.Ready():
		case <-ctx.Done():
			return
		}
		host, _ := os.Hostname()
		e.ld.PageFallback(ctx, actions, host, func(msg string, kv ...any) { logger.Info(msg, kv...) })
	}()
	if dryRun {
		logger.Info("dry run: no heartbeat pings; the live daemon sends them")
	} else {
		startHeartbeat(ctx, d, hbs, liveEffects(inst), e.cfg.ChildEnv(os.Environ()), logger)
	}
	err = d.Run(ctx)
	<-workerDone // never exit with the worker alive
	return err
}

// journalAnswers reads the delivery facts journaled from since on (seeking,
// not scanning the whole journal), for the daemon's start.
func journalAnswers(path string) func(since time.Time) ([]engine.Fact, error) {
	return func(since time.Time) ([]engine.Fact, error) {
		var facts []engine.Fact
		_, err := journal.ScanWindow(path, journal.ScanOptions{
			Since: since,
			Want:  func(typ string, _ []byte) bool { return typ == "delivery" },
		}, func(r engine.Record) error {
			if f, ok := engine.RecordFact(r); ok && f.Kind == engine.FactDelivery {
				facts = append(facts, f)
			}
			return nil
		})
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return facts, err
	}
}
