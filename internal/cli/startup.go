package cli

import (
	"path/filepath"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/internal/logging"
)

// logStartup says once, at start, what the daemon runs on: the version,
// the policy, the config, the state directory, the log file and the
// interval. (The health endpoint says where it listens itself.) An
// operator reading journalctl or launchd's stderr file learns from these
// lines which files to look at.
func logStartup(logger *log.Logger, e *env) {
	bi := readBuildInfo()
	kv := []any{"version", bi.Version, "go", bi.GoVersion}
	if bi.Commit != "" {
		kv = append(kv, "commit", shortHash(bi.Commit))
	}
	logger.Info("talon starting", kv...)
	if e.policyDir == "" {
		logger.Info("policy", "path", "embedded default")
	} else {
		logger.Info("policy", "path", e.policyDir)
	}
	if e.cfg.Found {
		logger.Info("config", "path", e.cfgPath)
	} else {
		logger.Info("config", "path", e.cfgPath, "note", "not found; defaults in force")
	}
	logger.Info("state directory", "path", e.stateDir)
	logger.Info("log file", "path", filepath.Join(e.stateDir, logging.FileName))
	logger.Info("check interval", "every", time.Duration(e.cfg.CheckIntervalSecs)*time.Second)
}
