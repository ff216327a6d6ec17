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
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

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
	// Store, in daemon mode, keeps every policy that loads cleanly, and
	// lets the first load fall back on the last of them (lkg.go).
	Store *Store
	// Log receives the run-time notices of the policies loaded
	// (builtins.Options.Log).
	Log func(msg string, kv ...any)
	// Now is the clock of the last-good records; nil: time.Now.
	Now func() time.Time
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
	// served says a load has handed the daemon a policy: from then on a
	// failed load keeps the policy running instead of falling back.
	served bool
	// fallback is the fallback the last load returned; nil when the
	// policy asked for loaded.
	fallback *engine.LoadResult
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
//
// In daemon mode with a Store, a load that succeeds is kept as the last
// known good policy; and the first load, when it fails, falls back instead
// of failing: on the last known good policy (its files, services file and
// config as they were when it loaded cleanly), else on the embedded default
// with the config's channels. The result then has Fallback set and the
// failed load's files in Files, so that a fix is seen and loaded. Later
// loads that fail leave the policy running as it is (the daemon's rule).
func (l *Loader) Load() *engine.LoadResult {
	res := l.load()
	l.mu.Lock()
	defer l.mu.Unlock()
	if res.Err() == nil {
		l.served, l.fallback = true, nil
		if l.opts.Daemon && l.opts.Store != nil {
			if err := l.opts.Store.Save(res, l.name, l.now()); err != nil && l.opts.Warn != nil {
				l.opts.Warn("the last good policy was not kept; a restart with a broken file would run the embedded default", "err", err)
			}
		}
		return res
	}
	if !l.opts.Daemon || l.opts.Store == nil || l.served {
		return res
	}
	fb := l.fallbackFor(res)
	if fb == nil {
		return res
	}
	l.served, l.fallback = true, fb
	return fb
}

// Fallback is the fallback the last load returned (its Policy and
// Fallback), or nil when the policy asked for is running.
func (l *Loader) Fallback() *engine.LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fallback
}

func (l *Loader) now() time.Time {
	if l.opts.Now != nil {
		return l.opts.Now()
	}
	return time.Now()
}

// fallbackFor is the fallback for failed, a first load that failed: the
// last known good policy, else the embedded default with the config's
// channels (the config as it reads, leniently if need be, else the
// defaults), with the services file if it loads and without it if not.
// Callers hold l.mu.
func (l *Loader) fallbackFor(failed *engine.LoadResult) *engine.LoadResult {
	why := failed.ErrorText()
	done := func(res *engine.LoadResult, fb *engine.Fallback, cfg *config.Config) *engine.LoadResult {
		fb.Hash, fb.Error = res.Hash, why
		res.Fallback = fb
		res.Files = union(res.Files, failed.Files)
		res.Warnings = append(failed.Warnings, res.Warnings...)
		l.cfg = cfg
		return res
	}
	if lg, err := l.opts.Store.Load(); err != nil {
		l.warnf("the last good policy cannot be read; falling back on the embedded default", "err", err)
	} else if lg != nil {
		res, cfg := l.loadLastGood(lg)
		if res.Err() == nil {
			l.name = lg.PolicyDir
			// Its own files are watched too: where they were is where the
			// fix will be made (the broken config may name nothing else).
			res.Files = union(res.Files, lg.paths())
			return done(res, &engine.Fallback{Source: engine.FallbackLastGood, Since: lg.Saved}, cfg)
		}
		l.warnf("the last good policy does not load any more; falling back on the embedded default", "err", res.ErrorText())
	}
	for _, cfg := range l.fallbackConfigs() {
		for _, withServices := range []bool{true, false} {
			opts := builtins.Options{Config: cfg, GOOS: l.opts.GOOS, Environ: l.opts.Environ, FS: policies.Default, Log: l.opts.Log}
			if !withServices {
				opts.ReadServices = func(path string) ([]byte, error) {
					return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
				}
			}
			if res := builtins.Load(EmbeddedName, opts); res.Err() == nil {
				l.name = EmbeddedName
				return done(res, &engine.Fallback{Source: engine.FallbackDefault}, cfg)
			}
		}
	}
	return nil
}

// loadLastGood loads the kept policy from its own files.
func (l *Loader) loadLastGood(lg *LastGood) (*engine.LoadResult, *config.Config) {
	cfg := config.Default()
	var data []byte
	if path, b, ok := lg.config(); ok {
		if b == nil {
			cfg = config.DefaultAt(path)
		} else if c, err := config.Parse(path, b); err == nil {
			cfg, data = c, b
		} else {
			return &engine.LoadResult{Errors: []*engine.PosError{asPosError(err)}}, nil
		}
	}
	res := builtins.Load(lg.PolicyDir, builtins.Options{Config: cfg, ConfigData: data, FS: lg.policyFiles(),
		ReadServices: lg.readServices, GOOS: l.opts.GOOS, Environ: l.opts.Environ, Log: l.opts.Log})
	return res, cfg
}

// fallbackConfigs are the configs the embedded default may fall back with,
// best first: config.toml as it reads, then read leniently (a typo in one
// key must not cost the channels), then the defaults.
func (l *Loader) fallbackConfigs() []*config.Config {
	path := l.ConfigFile()
	var out []*config.Config
	if c, _, err := config.Read(path); err == nil {
		out = append(out, c)
	} else if b, rerr := config.ReadFile(path, nil); rerr == nil {
		if c, err := config.Lenient(path, b); err == nil {
			out = append(out, c)
		}
	}
	return append(out, config.DefaultAt(path))
}

func (l *Loader) warnf(msg string, kv ...any) {
	if l.opts.Warn != nil {
		l.opts.Warn(msg, kv...)
	}
}

// load is one load of the policy asked for.
func (l *Loader) load() *engine.LoadResult {
	cfg, data, err := l.readConfig()
	if err != nil {
		files := union([]string{l.ConfigFile()}, config.Links(l.opts.ConfigFile))
		if l.opts.PolicyDir != "" { // named on the command line: watched whatever the config says
			files = union(files, []string{filepath.Join(config.Canonical(l.opts.PolicyDir), builtins.EntryFile)}, config.Links(l.opts.PolicyDir))
		}
		return &engine.LoadResult{Errors: []*engine.PosError{asPosError(err)}, Files: files}
	}
	l.restartOnly(cfg)
	given, dir, embedded := PolicyDir(cfg, l.opts.PolicyDir)
	entry := filepath.Join(dir, builtins.EntryFile)
	opts := builtins.Options{Config: cfg, ConfigData: data, GOOS: l.opts.GOOS, Environ: l.opts.Environ, Log: l.opts.Log}
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
