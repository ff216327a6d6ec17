// Package loader owns where a policy comes from and the rules of loading it
// again: which config.toml, which policy directory (or the embedded default
// policy), which services file; every path made absolute and canonical
// (symbolic links resolved) once, at each load, so that the watcher, the
// hash and every message name a file the same way however it was spelled
// (relative, "./", through a linked directory). A Loader builds each policy
// whole through package builtins; nobody changes a Policy afterwards.
//
// In daemon mode (Options.Daemon) every load reads config.toml again, so a
// config edit takes effect with the next swap, and a file that was part of
// the running policy and has vanished fails the load instead of silently
// dropping what it declared. The last known good policy is the loader's too
// (lkg.go).
package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/policies"
)

// EmbeddedName names the embedded default policy in messages and reports.
const EmbeddedName = "(embedded default)"

// Options configure a Loader.
type Options struct {
	// ConfigFile is config.toml as the user named it ("~" expanded). It is
	// made canonical; the name as given is watched too.
	ConfigFile string
	// ConfigRequired says the file was named explicitly (--config,
	// TALON_CONFIG): its absence is a typo, not a wish for defaults.
	ConfigRequired bool
	// Config and ConfigData are the config already read from ConfigFile
	// (ConfigData nil when the file does not exist). Nil: Load reads it.
	// In daemon mode every Load reads the file again anyway.
	Config     *config.Config
	ConfigData []byte
	// PolicyDir is the policy directory named by --policy or
	// TALON_POLICY ("~" expanded); "" means the config's policy_dir.
	PolicyDir string
	// Daemon re-reads config.toml at every load and fails a load from
	// which a file of the running policy has vanished.
	Daemon bool
	// GOOS and Environ are passed to builtins.Load.
	GOOS    string
	Environ []string
	// Warn receives warnings that concern the config rather than one load
	// (strict_modes = false, settings that need a restart); nil puts them in
	// the load's Warnings, as validate wants them.
	Warn func(msg string, kv ...any)
	// Note receives informational lines (the embedded default policy is
	// running because the policy directory has no talon.star); nil drops them.
	Note func(msg string, kv ...any)
}

// Loader loads the policy, again and again.
type Loader struct {
	opts Options

	mu sync.Mutex
	// cfg is the config of the last good load (first: the one given).
	cfg *config.Config
	// existed holds the files the last good load read: one that vanishes
	// fails the next load (daemon).
	existed map[string]bool
	// name is what the last load loaded: a policy directory, or EmbeddedName.
	name string
	// noted remembers the embedded-default note, so it is said once per change.
	noted string
}

// New returns a Loader. Nothing is read until Load.
func New(opts Options) *Loader {
	if opts.GOOS == "" {
		opts.GOOS = runtime.GOOS
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	return &Loader{opts: opts, cfg: opts.Config}
}

// Config is the configuration of the last good load, or the one the
// Loader was made with.
func (l *Loader) Config() *config.Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// PolicyName is the policy directory of the last load, or EmbeddedName.
func (l *Loader) PolicyName() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.name
}

// ConfigFile is the canonical path of config.toml.
func (l *Loader) ConfigFile() string { return config.Canonical(l.opts.ConfigFile) }

// readConfig reads config.toml, or takes the one given.
func (l *Loader) readConfig() (*config.Config, []byte, error) {
	path := l.ConfigFile()
	var (
		cfg  = l.opts.Config
		data = l.opts.ConfigData
		err  error
	)
	if cfg == nil || l.opts.Daemon || cfg.File != path {
		cfg, data, err = config.Read(path)
		if err != nil {
			return nil, nil, err
		}
	}
	if l.opts.ConfigRequired && !cfg.Found {
		return nil, nil, &engine.PosError{File: path, Message: "config file does not exist; fix --config / TALON_CONFIG or create it"}
	}
	return cfg, data, nil
}

// PolicyDir is the policy directory a load with cfg and flag (--policy or
// TALON_POLICY, "" when not given) uses, as named and made canonical, and
// whether that is the embedded default policy instead: only a directory
// nobody named (the config's default policy_dir) may lack talon.star, which
// means a fresh machine. A named one without it is an error of the load.
func PolicyDir(cfg *config.Config, flag string) (given, canonical string, embedded bool) {
	given, explicit := flag, true
	if given == "" {
		given, explicit = cfg.PolicyDir, cfg.IsSet("policy_dir")
	}
	canonical = config.Canonical(given)
	if !explicit {
		_, err := os.Lstat(filepath.Join(canonical, builtins.EntryFile))
		embedded = errors.Is(err, os.ErrNotExist)
	}
	return given, canonical, embedded
}

// PolicyName is what PolicyDir says to load, for messages: the canonical
// directory or EmbeddedName.
func PolicyName(cfg *config.Config, flag string) string {
	if _, dir, embedded := PolicyDir(cfg, flag); !embedded {
		return dir
	}
	return EmbeddedName
}

// Load loads the policy. It always returns a result; see engine.LoadResult.
func (l *Loader) Load() *engine.LoadResult {
	cfg, data, err := l.readConfig()
	if err != nil {
		return &engine.LoadResult{Errors: []*engine.PosError{asPosError(err)}, Files: union([]string{l.ConfigFile()}, config.Links(l.opts.ConfigFile))}
	}
	l.restartOnly(cfg)
	given, dir, embedded := PolicyDir(cfg, l.opts.PolicyDir)
	entry := filepath.Join(dir, builtins.EntryFile)
	opts := builtins.Options{Config: cfg, ConfigData: data, GOOS: l.opts.GOOS, Environ: l.opts.Environ}
	var res *engine.LoadResult
	name := dir
	if embedded {
		// A fresh machine: no policy of the user's own yet. The default
		// runs, and talon.star is watched, so it loads once it appears.
		name = EmbeddedName
		opts.FS = policies.Default
		res = builtins.Load(EmbeddedName, opts)
		l.note(dir)
	} else {
		res = builtins.Load(dir, opts)
	}
	if !cfg.StrictModes {
		msg := fmt.Sprintf("%s: strict_modes = false: files other users can change are loaded and run (with a warning each) instead of refused; fix their owners and modes and remove the setting", cfg.File)
		if l.opts.Warn != nil {
			l.opts.Warn(msg)
		} else {
			res.Warnings = append(res.Warnings, msg)
		}
	}
	// What is watched: every file read, the entry file and config.toml
	// even when they are missing (so that they load when they appear), and
	// the links on the way to them as given (re-pointing one is an edit).
	res.Files = union(res.Files, []string{entry, l.ConfigFile()}, config.Links(l.opts.ConfigFile), config.Links(given))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.name = name
	if l.opts.Daemon && res.Err() == nil {
		if gone := l.vanished(res.Files); gone != "" {
			res.Errors = append(res.Errors, &engine.PosError{File: gone,
				Message: "this file was part of the running policy and is gone; restore it, or remove it from the policy, to reload"})
			res.Policy = nil
		}
	}
	if res.Err() == nil {
		l.cfg = cfg
		if l.opts.Daemon {
			l.existed = map[string]bool{}
			for _, f := range res.Files {
				if _, err := os.Stat(f); err == nil {
					l.existed[f] = true
				}
			}
		}
	}
	return res
}

// vanished returns a file of this load that the last good load read and
// that no longer exists. (A file no load reads any more may go.)
func (l *Loader) vanished(files []string) string {
	for _, f := range files {
		if _, err := os.Stat(f); err != nil && l.existed[f] {
			return f
		}
	}
	return ""
}

func (l *Loader) note(dir string) {
	if l.opts.Note == nil || l.noted == dir {
		return
	}
	l.noted = dir
	l.opts.Note("no talon.star in the policy directory: running the embedded default policy; it loads as soon as the file appears", "dir", dir)
}

// restartOnly warns about config changes that take effect only on restart
// (the keys tagged restart:"true" in engine/config).
func (l *Loader) restartOnly(c *config.Config) {
	l.mu.Lock()
	old := l.cfg
	l.mu.Unlock()
	if l.opts.Warn == nil || !l.opts.Daemon || old == nil {
		return
	}
	for _, key := range config.RestartNeeded(old, c) {
		l.opts.Warn("config: this change takes effect after a restart", "key", key)
	}
}

func union(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func asPosError(err error) *engine.PosError {
	var pe *engine.PosError
	if errors.As(err, &pe) {
		return pe
	}
	return &engine.PosError{Message: err.Error()}
}
