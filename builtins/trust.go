package builtins

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
)

// checkConfigFiles applies strict modes (package fsperm) to what config.toml
// names for Talon to run or read besides the policy: the heal script, the
// agent commands, the worker's command and env file, the lease command and
// the secrets directory. Programs are resolved the way a child resolves
// them, on the child PATH (config `path`); a program that does not resolve
// is left to validate's missing-program warning. A shell command string is
// judged by its first word only, when that is a plain program name or a
// path ("~/" expanded): programs later in a pipeline, what a script runs in
// turn and words the shell computes (variables, quotes) are not checked.
// A named file or directory that does not exist is not an error here.
func (c *collector) checkConfigFiles() []*engine.PosError {
	cfg := c.cfg
	var errs []*engine.PosError
	check := func(key, path string) {
		if err := c.perms.CheckPath(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, cfg.ErrorAt(key, "%s: %v", key, err))
		}
	}
	program := func(key, prog string) {
		if prog == "" {
			return
		}
		if p, err := effect.LookPath(prog, cfg.PathList()); err == nil {
			check(key, p)
		}
	}
	program("heal_script", cfg.HealScript)
	program("agent.cloud_command", shellProgram(cfg.Agent.CloudCommand))
	program("agent.local_command", shellProgram(cfg.Agent.LocalCommand))
	if w := cfg.Worker.Command; len(w) > 0 {
		prog := w[0]
		if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && cfg.Worker.Dir != "" {
			prog = filepath.Join(cfg.Worker.Dir, prog) // as the supervisor runs it
		}
		program("worker.command", prog)
	}
	if l := cfg.Secrets.LeaseCommand; len(l) > 0 {
		program("secrets.lease_command", l[0])
	}
	if cfg.Worker.EnvFile != "" {
		check("worker.env_file", cfg.Worker.EnvFile)
	}
	if cfg.Secrets.Dir != "" {
		check("secrets.dir", cfg.Secrets.Dir)
	}
	return errs
}

// shellProgram is the program a shell command string starts with, as
// probe.ShellProgram finds it, with a leading "~/" expanded as sh does.
func shellProgram(command string) string {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(command), "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil && home != "" {
			return probe.ShellProgram(config.ExpandHome("~/"+rest, home))
		}
	}
	return probe.ShellProgram(command)
}
