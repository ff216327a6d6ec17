// Package builtins loads Talon policies. Load runs a policy's talon.star, and
// the files it loads, on a load-phase thread with the policy builtins
// predeclared (probe, the other probe modules, state, ladder, rung, exec,
// notify, agent, secret, config, services, struct), collects what the policy
// declares into a fresh collection, validates it and returns it as an
// immutable engine.Policy. Load always returns a result: errors and the files
// read are fields of it, so a watcher keeps watching a policy that failed.
//
// The Starlark dialect (FileOptions): top-level if and for are allowed, so a
// policy can declare probes in a loop; while, recursion and reassigning a
// global are not. Without while and recursion every policy terminates, and no
// policy can overflow the Go stack; the step budget bounds how long it runs.
//
// Budgets (package bound enforces them): the whole load gets Options.MaxSteps
// (DefaultLoadSteps) Starlark steps, Options.MaxBytes (DefaultLoadBytes) of
// values and Options.Timeout (DefaultLoadTimeout) of wall-clock time; each
// run-phase call — a probe.func, a when= predicate, a do= function — gets
// Options.RunMaxSteps (DefaultRunSteps) and Options.RunMaxBytes
// (DefaultRunBytes) and ends with its context. Going over any of them is an
// error at the file:line:col where it happened; the daemon goes on.
package builtins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/talon-dev/talon/builtins/agent"
	"github.com/talon-dev/talon/builtins/bound"
	_ "github.com/talon-dev/talon/builtins/notify" // registers notify.telegram, notify.webhook, ...
	"github.com/talon-dev/talon/builtins/secret"
	"github.com/talon-dev/talon/builtins/star"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/fsperm"
	"github.com/talon-dev/talon/internal/text"
)

// EntryFile is the file a policy directory starts from.
const EntryFile = "talon.star"

// Budgets; see the package documentation.
const (
	DefaultLoadSteps   uint64 = 10_000_000
	DefaultRunSteps    uint64 = 1_000_000
	DefaultLoadBytes   int64  = 64 << 20
	DefaultRunBytes    int64  = 32 << 20
	DefaultLoadTimeout        = 10 * time.Second
)

// maxPolicyFile bounds each policy file read.
const maxPolicyFile = 1 << 20

// Options configure one Load.
type Options struct {
	// Config is what the policy reads as `config`, and gives the services
	// file, the child PATH, the check interval and threshold defaults.
	// Nil means config.Default().
	Config *config.Config
	// FS, when set, holds the policy (talon.star at its root) instead of the
	// directory on disk: the embedded default policy is loaded this way. The
	// dir argument of Load then only names the policy in Files and errors.
	FS fs.FS
	// MaxSteps is the Starlark step budget of the whole load; 0 means DefaultLoadSteps.
	MaxSteps uint64
	// RunMaxSteps is the step budget of each run-phase call; 0 means DefaultRunSteps.
	RunMaxSteps uint64
	// MaxBytes is the memory budget of the whole load (an estimate of the
	// bytes of the values it builds); 0 means DefaultLoadBytes.
	MaxBytes int64
	// RunMaxBytes is the memory budget of each run-phase call; 0 means DefaultRunBytes.
	RunMaxBytes int64
	// Timeout bounds the wall-clock time of the load; 0 means DefaultLoadTimeout.
	Timeout time.Duration
	// GOOS is the platform probes are checked against; "" means runtime.GOOS.
	// Probes declared for another OS are left out of the policy, with a warning.
	GOOS string
	// Environ is the environment children inherit from (filtered by
	// config.ChildEnv); nil means os.Environ().
	Environ []string
	// Print receives the policy's print() output while it loads; nil
	// discards it. At run time print() goes to the run environment's Log.
	Print func(msg string)
	// ConfigData is the content of the file Config was decoded from
	// (Config.File). The policy reads the config (config.*), so it is part
	// of the policy's hash, and Config.File is listed in Files.
	ConfigData []byte
	// Log receives the notices of run-phase calls that have no log of
	// their own (a probe.func that runs a program not on the child PATH);
	// nil drops them.
	Log func(msg string, kv ...any)
	// ReadServices reads the services file for services(); nil reads it
	// from disk through strict modes. The last-known-good policy is loaded
	// with the services file it was loaded with, from the state directory.
	ReadServices func(path string) ([]byte, error)
}

// FileOptions is the Starlark dialect of policy files; see the package documentation.
func FileOptions() *syntax.FileOptions {
	return &syntax.FileOptions{Set: true, TopLevelControl: true}
}

// Load loads the policy in dir (talon.star and what it loads). It never
// panics and always returns a result: on success Policy is set, on failure
// Errors say why with file:line:col positions relative to dir. Files lists
// every file read on disk (absolute paths, the services file included; with
// Options.FS the policy files are not on disk and are not listed), and Hash is
// the sha256 of the names and contents of every file read.
func Load(dir string, opts Options) *engine.LoadResult {
	opts = withDefaults(opts)
	l := &loader{opts: opts, dir: dir, fsys: opts.FS, modules: map[string]*module{}}
	if opts.FS == nil {
		// One name for the directory, however it was spelled: the
		// watcher, the hash and every message use it.
		l.dir = config.Canonical(dir)
	}
	l.rt = &runner{maxSteps: opts.RunMaxSteps, maxBytes: opts.RunMaxBytes}
	l.rt.missing.log = opts.Log
	l.c = newCollector(opts.Config, l.dir, l.rt)
	c := l.c
	c.perms = fsperm.New(opts.Config.StrictModes, func(e *fsperm.Error) { c.warn("%s", e.Warning()) })
	l.rt.perms = c.perms
	c.readServices = opts.ReadServices
	if f := opts.Config.File; f != "" {
		c.record("config:", f, opts.ConfigData)
	}
	res := l.load()
	l.mu.Lock()
	l.abandoned = true // a load stuck past its deadline records nothing more
	res.Files, res.Hash = l.c.filesAndHash()
	for _, f := range l.c.files {
		res.Sources = append(res.Sources, engine.Source{Key: f.key, Path: f.path, Data: f.data})
	}
	l.mu.Unlock()
	if res.Policy != nil {
		res.Policy.Files, res.Policy.Hash = res.Files, res.Hash
	}
	return res
}

func withDefaults(opts Options) Options {
	if opts.Config == nil {
		opts.Config = config.Default()
	}
	if opts.MaxSteps == 0 {
		opts.MaxSteps = DefaultLoadSteps
	}
	if opts.RunMaxSteps == 0 {
		opts.RunMaxSteps = DefaultRunSteps
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultLoadBytes
	}
	if opts.RunMaxBytes == 0 {
		opts.RunMaxBytes = DefaultRunBytes
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultLoadTimeout
	}
	if opts.GOOS == "" {
		opts.GOOS = runtime.GOOS
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	return opts
}

type loader struct {
	opts    Options
	dir     string
	fsys    fs.FS    // Options.FS; nil when the policy is on disk
	root    *os.Root // the policy directory on disk
	c       *collector
	rt      *runner
	modules map[string]*module
	stack   []string // files being loaded, outermost first

	mu        sync.Mutex // guards the files read (c.record) against a load abandoned past its deadline
	abandoned bool
}

type module struct {
	globals starlark.StringDict
	err     error
	done    bool
}

// loadError carries the positioned errors of a loaded file through the
// `load` statement of the file that loaded it.
type loadError struct{ errs []*engine.PosError }

func (e *loadError) Error() string { return e.errs[0].Error() }

// readError is a file that could not be read; its `load` statement is the
// position to report.
type readError struct{ msg string }

func (e *readError) Error() string { return e.msg }

func (l *loader) load() *engine.LoadResult {
	res := &engine.LoadResult{}
	// What config.toml names to run is checked whatever the policy is,
	// the embedded default included.
	if errs := l.c.checkConfigFiles(); len(errs) > 0 {
		res.Errors = errs
		res.Warnings = l.c.warnings
		return res
	}
	if l.fsys == nil {
		root, err := os.OpenRoot(l.dir)
		if err != nil {
			msg := fmt.Sprintf("cannot open policy directory: %v", err)
			if errors.Is(err, fs.ErrNotExist) {
				msg = fmt.Sprintf("no policy directory %s; create it with a %s, or point policy_dir elsewhere", l.dir, EntryFile)
			}
			res.Errors = []*engine.PosError{{File: EntryFile, Message: msg}}
			return res
		}
		defer root.Close()
		l.root = root
	}
	thread := &starlark.Thread{Name: "load " + l.dir, Load: l.loadModule}
	thread.Print = func(_ *starlark.Thread, msg string) {
		if l.opts.Print != nil {
			l.opts.Print(msg)
		}
	}
	star.SetCollector(thread, l.c)
	secret.SetLeaseCommand(thread, l.opts.Config.Secrets.LeaseCommand)
	secret.SetFiles(thread, l.c.perms)
	agent.SetCaller(thread, l.rt.callWithIncident)

	l.modules[EntryFile] = &module{}
	l.stack = []string{EntryFile}
	var (
		pol  *engine.Policy
		errs []*engine.PosError
	)
	lim := bound.Limits{Steps: l.opts.MaxSteps, Bytes: l.opts.MaxBytes, Time: l.opts.Timeout}
	err := bound.Run(context.Background(), thread, lim, func() error {
		if _, err := l.exec(thread, EntryFile); err != nil {
			return err
		}
		pol, errs = l.c.finish(l.opts) // freezes what the run phase calls: bounded too
		return nil
	})
	var stuck *bound.Stuck
	if errors.As(err, &stuck) {
		// The load goes on in the background until its one operation
		// returns; nothing it holds may be read.
		res.Errors = []*engine.PosError{{File: EntryFile, Message: fmt.Sprintf("loading the policy took more than its %s: it %v; shorten it or move the work into a probe.func", l.opts.Timeout, err)}}
		return res
	}
	if err != nil {
		res.Errors = l.posErrors(err)
		res.Warnings = l.c.warnings
		return res
	}
	res.Warnings = l.c.warnings
	if len(errs) > 0 {
		res.Errors = errs
		return res
	}
	res.Policy = pol
	return res
}

// exec reads and runs one policy file; name is relative to the policy dir.
func (l *loader) exec(thread *starlark.Thread, name string) (starlark.StringDict, error) {
	src, err := l.read(name)
	if err != nil {
		return nil, err
	}
	return bound.ExecFile(FileOptions(), thread, name, src, l.predeclared())
}

func (l *loader) read(name string) ([]byte, error) {
	f, err := l.open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if name == EntryFile {
				return nil, &engine.PosError{File: EntryFile, Message: fmt.Sprintf("no %s in policy directory %s; create it or point policy_dir elsewhere", EntryFile, l.dir)}
			}
			return nil, &readError{fmt.Sprintf("no file %s in the policy directory", name)}
		}
		return nil, l.readErr(name, err)
	}
	defer f.Close()
	path := ""
	if l.opts.FS == nil {
		path = filepath.Join(l.dir, filepath.FromSlash(name))
	}
	if st, err := f.Stat(); err != nil {
		return nil, l.readErr(name, err)
	} else if !st.Mode().IsRegular() {
		// Refused before anything reads it: a named pipe would block.
		l.mu.Lock()
		if !l.abandoned {
			l.c.record(name, path, nil) // still watched: a fix reloads
		}
		l.mu.Unlock()
		reason := (&fsperm.NotRegularError{Mode: st.Mode()}).Reason()
		if name == EntryFile {
			return nil, &engine.PosError{File: EntryFile, Message: reason}
		}
		return nil, &readError{name + " " + reason}
	}
	if l.opts.FS == nil {
		// Strict modes: the file opened, and every directory above it,
		// must be one no other user can change. (The embedded policy is
		// part of the binary.)
		osf, ok := f.(*os.File)
		if !ok {
			return nil, l.readErr(name, errors.New("cannot check who may change it"))
		}
		if err := l.c.perms.Check(osf, path); err != nil {
			l.c.record(name, path, nil) // still watched: a fix reloads
			var unsafe *fsperm.Error
			switch {
			case !errors.As(err, &unsafe):
				return nil, l.readErr(name, err)
			case name == EntryFile:
				return nil, &engine.PosError{File: EntryFile, Message: unsafe.Error()}
			}
			return nil, &readError{unsafe.Error()}
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return nil, l.readErr(name, err)
	}
	if len(data) > maxPolicyFile {
		return nil, l.readErr(name, fmt.Errorf("larger than %d bytes", maxPolicyFile))
	}
	l.mu.Lock()
	if !l.abandoned {
		l.c.record(name, path, data)
		if path != "" {
			// A policy file that is a link (inside the directory) is
			// edited where it points: watch that name too.
			if r, err := filepath.EvalSymlinks(path); err == nil && r != path {
				l.c.alias(r)
			}
		}
	}
	l.mu.Unlock()
	if err := checkText(name, data); err != nil {
		return nil, err
	}
	if name == EntryFile && len(bytes.TrimSpace(data)) == 0 {
		// A truncated save, a disk that filled up: never "a policy that
		// watches nothing", which would drop every probe and close an open
		// incident as recovered.
		return nil, &engine.PosError{File: EntryFile, Message: "the file is empty; a policy must declare at least one probe, or call probe.none(reason) to run without any"}
	}
	return data, nil
}

// checkText refuses a policy file that is not text: a NUL byte (a file cut
// short and padded by a crash, a binary copied by mistake) would otherwise
// end the source silently, and bytes that are not UTF-8 would be read as
// something else than what the editor showed. The error is at the first
// bad byte.
func checkText(name string, data []byte) error {
	at := func(i int, msg string) error {
		line := 1 + bytes.Count(data[:i], []byte("\n"))
		col := 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:i], '\n')+1:i])
		return &engine.PosError{File: name, Line: line, Col: col, Message: msg}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return at(i, "NUL byte: the file is damaged or not text; restore it from a good copy")
	}
	if !utf8.Valid(data) {
		i := 0
		for i < len(data) {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			i += size
		}
		return at(i, fmt.Sprintf("byte 0x%02x is not UTF-8: save the file as UTF-8 text", data[i]))
	}
	return nil
}

// open opens a policy file for reading. On disk it goes through the os.Root
// of the policy directory (no path leaves it, symbolic links included) with
// O_NONBLOCK, so that a named pipe in place of a policy file is refused, never
// waited on: an open for reading of a FIFO without a writer blocks for good.
func (l *loader) open(name string) (fs.File, error) {
	if l.root == nil {
		return l.fsys.Open(name)
	}
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	f, err := l.root.OpenFile(filepath.FromSlash(name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (l *loader) readErr(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if name == EntryFile {
		return &engine.PosError{File: EntryFile, Message: fmt.Sprintf("cannot read: %v", err)}
	}
	return &readError{fmt.Sprintf("cannot read %s: %v", name, err)}
}

// loadModule implements load(): paths are relative to the policy directory
// and never leave it; each file runs once (later loads share its frozen
// globals); a file that loads itself, directly or not, is a cycle.
func (l *loader) loadModule(thread *starlark.Thread, spec string) (starlark.StringDict, error) {
	name, err := cleanLoadPath(spec)
	if err != nil {
		return nil, err
	}
	if m, ok := l.modules[name]; ok {
		if !m.done {
			return nil, fmt.Errorf("load cycle: %s", strings.Join(append(slices.Clone(l.stack), name), " → "))
		}
		return m.globals, m.err
	}
	m := &module{}
	l.modules[name] = m
	l.stack = append(l.stack, name)
	g, err := l.exec(thread, name)
	l.stack = l.stack[:len(l.stack)-1]
	var re *readError
	if err != nil && !errors.As(err, &re) {
		err = &loadError{errs: l.posErrors(err)}
	}
	m.globals, m.err, m.done = g, err, true
	return g, err
}

func cleanLoadPath(spec string) (string, error) {
	switch {
	case spec == "":
		return "", errors.New("empty path")
	case strings.HasPrefix(spec, "/") || filepath.IsAbs(spec):
		return "", errors.New("absolute paths are not allowed; load files by their path inside the policy directory")
	case strings.Contains(spec, `\`):
		return "", errors.New(`use "/" to separate directories`)
	}
	name := path.Clean(spec)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", errors.New("the path leaves the policy directory; keep loaded files inside it")
	}
	if !strings.HasSuffix(name, ".star") {
		return "", errors.New("only .star files can be loaded")
	}
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("invalid path %q", spec)
	}
	return name, nil
}

// posErrors turns an error of a load into positioned errors.
func (l *loader) posErrors(err error) []*engine.PosError {
	var le *loadError
	if errors.As(err, &le) {
		return le.errs
	}
	var pe *engine.PosError
	if errors.As(err, &pe) {
		return []*engine.PosError{pe}
	}
	var rl resolve.ErrorList
	if errors.As(err, &rl) {
		var out []*engine.PosError
		for _, e := range rl {
			out = append(out, atPos(e.Pos, e.Msg))
		}
		return out
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return []*engine.PosError{atPos(se.Pos, se.Msg)}
	}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return []*engine.PosError{evalPosError(err, ee, loadAdvice)}
	}
	return []*engine.PosError{{File: EntryFile, Message: oneLine(err.Error())}}
}

func atPos(p syntax.Position, msg string) *engine.PosError {
	return &engine.PosError{File: p.Filename(), Line: int(p.Line), Col: int(p.Col), Message: msg}
}

const builtinFile = "<builtin>"

// What to do when a budget runs out, while loading and at run time.
var (
	loadAdvice = map[string]string{
		"steps":  "a loop runs too long; shorten it or move the work into a probe.func",
		"memory": "build smaller values (join a list rather than adding strings in a loop), or move the work into a probe.func",
		"time":   "the policy takes too long to load; shorten it or move the work into a probe.func",
	}
	runAdvice = map[string]string{
		"steps":  "a loop runs too long; shorten it",
		"memory": "build smaller values (join a list rather than adding strings in a loop)",
		"time":   "it ran past its deadline; shorten it",
	}
)

// maxErrorText bounds the message of a policy error: it goes into the log,
// /health, the journal and `talon validate`'s one line, and a policy can
// make an error quote a huge value (fail(s), a missing dict key).
const maxErrorText = 2000

// evalPosError places an evaluation error at its innermost frame in a
// policy file and says what to do when a budget ran out.
func evalPosError(err error, ee *starlark.EvalError, advice map[string]string) *engine.PosError {
	msg := ee.Msg
	var ex *bound.Exceeded
	if errors.As(err, &ex) {
		switch ex.Bound {
		case "steps":
			msg = fmt.Sprintf("step budget of %s exhausted: %s", ex.Limit, advice["steps"])
		default:
			msg = ex.Error() + "; " + advice[ex.Bound]
		}
	} else if reason, ok := strings.CutPrefix(msg, "Starlark computation cancelled: "); ok {
		msg = "cancelled: " + reason
	}
	msg = oneLine(msg)
	for i := len(ee.CallStack) - 1; i >= 0; i-- {
		p := ee.CallStack[i].Pos
		if p.Filename() != builtinFile && p.Filename() != "" {
			return atPos(p, msg)
		}
	}
	return &engine.PosError{Message: msg}
}

// oneLine keeps an error message to one bounded line.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
	return text.Cap(s, maxErrorText)
}

// parsePos splits a "file:line:col" position as written by star.Pos.
func parsePos(pos string) (file string, line, col int) {
	file = pos
	nums := [2]int{}
	for i := 1; i >= 0; i-- {
		j := strings.LastIndexByte(file, ':')
		if j < 0 {
			return pos, 0, 0
		}
		n := 0
		if _, err := fmt.Sscanf(file[j+1:], "%d", &n); err != nil {
			return pos, 0, 0
		}
		nums[i], file = n, file[:j]
	}
	return file, nums[0], nums[1]
}

// errorAt is a PosError at a "file:line:col" position.
func errorAt(pos, format string, args ...any) *engine.PosError {
	f, line, col := parsePos(pos)
	return &engine.PosError{File: f, Line: line, Col: col, Message: fmt.Sprintf(format, args...)}
}

type readFile struct {
	key  string // name in the hash: the policy-relative name, or the absolute path of a services file
	path string // absolute path for Files; "" for a file of Options.FS, which is not on disk
	data []byte
}

// alias lists another name of a file read (a link, or what a link points
// to) in Files, for the watcher, without making it part of the hash.
func (c *collector) alias(path string) {
	if path != "" && !slices.Contains(c.aliases, path) {
		c.aliases = append(c.aliases, path)
	}
}

func (c *collector) record(key, path string, data []byte) {
	for _, f := range c.files {
		if f.key == key {
			return
		}
	}
	c.files = append(c.files, readFile{key: key, path: path, data: data})
}

// filesAndHash lists the files read, sorted, and hashes their names and
// contents in that order.
func (c *collector) filesAndHash() ([]string, string) {
	fs := slices.Clone(c.files)
	sort.Slice(fs, func(i, j int) bool { return fs[i].key < fs[j].key })
	h := sha256.New()
	var files []string
	for _, f := range fs {
		fmt.Fprintf(h, "%s\x00%d\x00", f.key, len(f.data))
		h.Write(f.data)
		if f.path != "" {
			files = append(files, f.path)
		}
	}
	files = append(files, c.aliases...)
	sort.Strings(files)
	return slices.Compact(files), hex.EncodeToString(h.Sum(nil))
}
