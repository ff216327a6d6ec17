package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/worker"
	"github.com/talon-dev/talon/internal/fsperm"
)

// workerOptions maps [worker] in config.toml onto the supervisor.
func workerOptions(cfg *config.Config, logger *log.Logger, fx effect.Effects) worker.Options {
	w := cfg.Worker
	secs := func(n int) time.Duration { return time.Duration(n) * time.Second }
	return worker.Options{
		Dir: w.Dir, Command: w.Command, Env: cfg.ChildEnv(os.Environ()), EnvFile: w.EnvFile,
		LogStdout: w.LogStdout, LogStderr: w.LogStderr,
		Port: w.Port, HealthPath: w.HealthEndpoint, SyncPath: w.SyncEndpoint,
		DrainTimeout: secs(w.DrainTimeoutSecs), HealthInterval: secs(w.HealthIntervalSecs),
		FailuresBeforeRestart: w.HealthFailuresBeforeRestart, BackoffMax: secs(w.RestartBackoffMaxSecs),
		StartupSyncDelay: secs(w.StartupSyncDelaySecs), HTTPTimeout: secs(w.HTTPTimeoutSecs),
		ExternalLaunchdLabel: w.ExternalLaunchdLabel, ExternalSystemdUnit: w.ExternalSystemdUnit,
		Effects: fx, Logger: logger.With("component", "worker"),
		Files: fsperm.New(cfg.StrictModes, func(e *fsperm.Error) {
			logger.Warn("worker: "+e.Warning(), "component", "worker")
		}),
	}
}

// workerOnly runs the worker supervisor alone in the foreground: no probes,
// no escalation, no /health. It takes the state dir's lock, so it never
// runs beside a daemon that supervises the same worker.
func (a *app) workerOnly(args []string) error {
	if err := a.flagsOnly("run --worker-only", args, nil); err != nil {
		return err
	}
	e, err := a.loadEnv()
	if err != nil {
		return err
	}
	if len(e.cfg.Worker.Command) == 0 {
		return fail(2, "--worker-only: [worker] command is not set in %s", e.cfg.File)
	}
	logger, release, err := claimStateDir(e.stateDir, e.cfg.StrictModes)
	if err != nil {
		return err
	}
	defer release()
	inst := sweepOrphans(e.stateDir, logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := workerOptions(e.cfg, logger, liveEffects(inst))
	opts.OnRestart = func(total int) { logger.Info("worker restarts", "total", total) }
	sup := worker.New(opts)
	// SIGHUP and SIGUSR1/2 go to the worker's process group; a hang-up
	// must never kill us and orphan the worker.
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(fwd)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-fwd:
				logger.Info("forwarding signal to the worker", "signal", sig)
				sup.Signal(sig.(syscall.Signal))
			}
		}
	}()
	return sup.Run(ctx)
}
