// Package cli implements the talon command line: it parses arguments, builds
// the configuration, the policy and the engine, and hands off. It holds no
// watchdog logic of its own.
package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/pelletier/go-toml/v2"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/loader"
)

// exitError carries an exit code and an optional one-line message.
type exitError struct {
	code int
	msg  string
	err  error // an underlying error, such as errClosedPipe
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.err }

// withCode keeps the exit code a command decided on when writing its
// output failed (a closed pipe): the output is lost, the verdict is not.
func withCode(err error, code int) error {
	if err == nil {
		if code == 0 {
			return nil
		}
		return &exitError{code: code}
	}
	if errors.Is(err, errClosedPipe) {
		return &exitError{code: code, err: err}
	}
	return err
}

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// globals are the flags every command accepts.
type globals struct {
	config, policy, stateDir string
	// format is --format: "table", "json" or "" (decide by the terminal).
	format string
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "config.toml path")
	fs.StringVar(&g.policy, "policy", g.policy, "policy directory")
	fs.StringVar(&g.stateDir, "state-dir", g.stateDir, "state directory")
	fs.StringVar(&g.format, "format", g.format, "output style: table or json")
}

// app is one invocation.
type app struct {
	g      globals
	stdout io.Writer
	stderr io.Writer
	tty    bool
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	// A closed stdout (talon check | head -c 1) must end the command quietly:
	// catching SIGPIPE makes a write to it return EPIPE instead of killing
	// us. Catch, never ignore: an ignored signal stays ignored in every child,
	// and `yes | head -1` in a probe would then run until its timeout.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	a := &app{stdout: &pipeWriter{w: stdout}, stderr: stderr,
		g: globals{config: os.Getenv("TALON_CONFIG"), policy: os.Getenv("TALON_POLICY"), stateDir: os.Getenv("TALON_STATE_DIR")}}
	if f, ok := stdout.(*os.File); ok {
		a.tty = isatty.IsTerminal(f.Fd())
	}
	err := a.dispatch(args)
	var ee *exitError
	if errors.Is(err, errClosedPipe) {
		// Quiet, but the exit status still tells the truth.
		if errors.As(err, &ee) {
			return ee.code
		}
		return 0
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(stderr, "talon: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "talon: "+oneLine(err.Error()))
	return 1
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// dispatch finds the command, accepting the old flag spellings.
func (a *app) dispatch(args []string) error {
	cmd, rest := a.command(args)
	switch cmd {
	case "help":
		return a.help(rest)
	case "version":
		return a.version(rest)
	case "events":
		return a.events(rest)
	case "service":
		return a.service(rest)
	case "worker-only":
		return a.workerOnly(rest)
	case "run":
		return a.run(rest)
	case "validate":
		return a.validate(rest)
	case "check":
		return a.check(rest)
	case "status":
		return a.status(rest)
	case "reload":
		return a.reload(rest)
	case "pause":
		return a.pause(rest)
	case "resume":
		return a.resume(rest)
	case "ack":
		return a.ack(rest)
	case "drill":
		return a.drill(rest)
	case "replay":
		return a.replay(rest)
	case "test":
		return a.test(rest)
	case "journal":
		return a.journalCmd(rest)
	case "print":
		return a.print(rest)
	}
	return fail(2, "unknown command %q; see talon help", cmd)
}

// command returns the command word and the remaining arguments. The first
// word that is not a flag or a flag's value is the command; the old flag
// spellings (--check, --status, --validate, --dry-run, --worker-only) name
// one too.
func (a *app) command(args []string) (string, []string) {
	aliases := map[string]string{"--check": "check", "--status": "status", "--validate": "validate",
		"--worker-only": "worker-only", "--version": "version", "-version": "version"}
	for i, arg := range args {
		if c, ok := aliases[arg]; ok {
			return c, without(args, i)
		}
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if strings.HasPrefix(arg, "-") {
			if takesValue(arg) && !strings.Contains(arg, "=") {
				i++
			}
			continue
		}
		return arg, without(args, i)
	}
	// No command word: help, the daemon, or the old --dry-run that printed
	// the config. (With a command word, its own flag parsing answers --help
	// with that command's help.)
	for i, arg := range args {
		switch arg {
		case "-h", "--help", "-help":
			return "help", without(args, i)
		case "--dry-run", "-dry-run":
			return "print", without(args, i)
		}
	}
	return "run", args
}

func takesValue(flagArg string) bool {
	name := strings.TrimLeft(flagArg, "-")
	switch name {
	case "config", "policy", "state-dir", "format", "probe", "diff", "bind",
		"since", "until", "incident", "interval", "label", "with", "run",
		"for", "tag", "rung", "reason":
		return true
	}
	return false
}

func without(s []string, i int) []string {
	return append(append([]string(nil), s[:i]...), s[i+1:]...)
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// flagsOnly is flags for a command that takes no positional arguments.
func (a *app) flagsOnly(name string, args []string, define func(fs *flag.FlagSet)) error {
	rest, err := a.flags(name, args, define)
	if err == nil && len(rest) > 0 {
		return fail(2, "%s takes no arguments, got %q; see talon help %s", name, rest[0], strings.Fields(name)[0])
	}
	return err
}

// flags parses a command's flags together with the global ones.
func (a *app) flags(name string, args []string, define func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet("talon "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.g.register(fs)
	if define != nil {
		define(fs)
	}
	// Flags may come after positional arguments (talon drill sos --config x):
	// parse, set the first positional aside, and go on with the rest.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			word, _, _ := strings.Cut(name, " ")
			if errors.Is(err, flag.ErrHelp) {
				if _, werr := io.WriteString(a.stdout, commandHelp(word, fs)); werr != nil {
					return nil, withCode(werr, 0)
				}
				return nil, &exitError{code: 0}
			}
			return nil, fail(2, "%s: %v; see talon help %s", name, err, word)
		}
		switch a.g.format {
		case "", "table", "json":
		default:
			return nil, fail(2, "--format %q: want table or json", a.g.format)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// env is the loaded configuration and the resolved paths of one invocation.
type env struct {
	cfg     *config.Config
	cfgData []byte // what cfg was decoded from; nil when the file does not exist
	cfgPath string // canonical
	// cfgGiven is config.toml as named (made absolute by the loader);
	// cfgRequired says it was named, so it must exist.
	cfgGiven    string
	cfgRequired bool
	policyDir   string // --policy / TALON_POLICY, "~" expanded; "" means the config's policy_dir
	stateDir    string
	// daemon makes every load read config.toml again (see loader.Options).
	daemon bool
	warn   func(msg string, kv ...any)
	note   func(msg string, kv ...any)
	// ld is the daemon's loader, which lives as long as the daemon; every
	// other command loads once with a fresh one.
	ld *loader.Loader
}

func (a *app) loadEnv() (*env, error) {
	path := a.g.config
	if path == "" {
		path = filepath.Join(homeDir(), ".config", "talon", "config.toml")
	}
	given := config.ExpandHome(path, homeDir())
	cfg, data, err := config.Read(config.Canonical(given))
	if err != nil {
		return nil, err
	}
	// Only the default config may be missing: a --config or TALON_CONFIG
	// that names no file is a typo, not a wish for defaults.
	if a.g.config != "" && !cfg.Found {
		return nil, &engine.PosError{File: cfg.File, Message: "config file does not exist; fix --config / TALON_CONFIG or create it"}
	}
	e := &env{cfg: cfg, cfgData: data, cfgPath: cfg.File, cfgGiven: given, cfgRequired: a.g.config != "", stateDir: cfg.StateDir}
	if a.g.stateDir != "" {
		e.stateDir = config.ExpandHome(a.g.stateDir, homeDir())
	}
	if a.g.policy != "" {
		e.policyDir = config.ExpandHome(a.g.policy, homeDir())
	}
	return e, nil
}

// daemonEnv is loadEnv for the daemon, which must run whatever config.toml
// says: when it does not load (a typo, a truncated save, a file that is
// gone), the env holds what can be read of it (leniently: the state
// directory, the channels; else, narrowly, the state directory and
// [health]: readNarrowly), else the defaults, and the error is returned
// beside it for the log. The daemon's loader then falls back on the last
// known good policy and reports the error everywhere.
func (a *app) daemonEnv() (*env, error) {
	e, err := a.loadEnv()
	if err == nil {
		return e, nil
	}
	path := a.g.config
	if path == "" {
		path = filepath.Join(homeDir(), ".config", "talon", "config.toml")
	}
	given := config.ExpandHome(path, homeDir())
	canon := config.Canonical(given)
	cfg := config.DefaultAt(canon)
	if b, rerr := config.ReadFile(canon, nil); rerr == nil {
		if c, lerr := config.Lenient(canon, b); lerr == nil {
			cfg = c
		} else {
			readNarrowly(cfg, b)
		}
		// What the daemon runs with when the config does not read is the
		// config of its last good policy: the health endpoint is there.
		if a.g.stateDir == "" && !cfg.Found {
			if c := loader.LastGoodConfig(cfg.StateDir); c != nil {
				cfg = c
			}
		}
	}
	e = &env{cfg: cfg, cfgPath: canon, cfgGiven: given, cfgRequired: a.g.config != "", stateDir: cfg.StateDir}
	if a.g.stateDir != "" {
		e.stateDir = config.ExpandHome(a.g.stateDir, homeDir())
	}
	if a.g.policy != "" {
		e.policyDir = config.ExpandHome(a.g.policy, homeDir())
	}
	return e, err
}

// loaderOptions are the loader's options for this invocation.
func (e *env) loaderOptions() loader.Options {
	return loader.Options{ConfigFile: e.cfgGiven, ConfigRequired: e.cfgRequired, Config: e.cfg, ConfigData: e.cfgData,
		PolicyDir: e.policyDir, Daemon: e.daemon, Warn: e.warn, Note: e.note}
}

// load loads the policy of e: through the daemon's loader, or once.
func (e *env) load() *engine.LoadResult {
	if e.ld != nil {
		return e.ld.Load()
	}
	return loader.New(e.loaderOptions()).Load()
}

func (e *env) policyName() string { return loader.PolicyName(e.cfg, e.policyDir) }

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/"
}

// wantJSON decides between JSON and a table: --json, then --format, then
// whether stdout is a terminal.
func (a *app) wantJSON(jsonFlag bool) bool {
	switch {
	case jsonFlag:
		return true
	case a.g.format == "json":
		return true
	case a.g.format == "table":
		return false
	}
	return !a.tty
}

// json writes v as indented JSON.
func (a *app) json(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

var errClosedPipe = errors.New("closed pipe")

// pipeWriter turns EPIPE into errClosedPipe so a command piped into
// `head -c 1` ends quietly with status 0.
type pipeWriter struct {
	w      io.Writer
	closed bool
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	if p.closed {
		return 0, errClosedPipe
	}
	n, err := p.w.Write(b)
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)) {
		p.closed = true
		return n, errClosedPipe
	}
	return n, err
}

// readNarrowly sets in cfg (the defaults of config.toml at cfg.File) what
// the CLI's operator commands need of a config.toml that does not load,
// when it can be read: the state directory (where the daemon, its control
// file and the last good policy are) and [health]. A value of the wrong
// type elsewhere (check_interval_secs = "30") leaves them readable; a file
// that is not TOML at all, only the line naming state_dir. What is read
// must still be valid (a public bind is not taken on trust).
func readNarrowly(cfg *config.Config, doc []byte) {
	var n struct {
		StateDir string        `toml:"state_dir"`
		Health   config.Health `toml:"health"`
	}
	n.Health = cfg.Health
	dir := ""
	if toml.Unmarshal(bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf")), &n) == nil {
		dir = n.StateDir
		c := *cfg
		c.Health = n.Health
		if c.Validate() == nil {
			cfg.Health = n.Health
		}
	} else {
		dir = scanStateDir(doc)
	}
	if dir != "" {
		cfg.StateDir = config.ExpandHome(dir, homeDir())
		if !filepath.IsAbs(cfg.StateDir) {
			cfg.StateDir = filepath.Join(filepath.Dir(cfg.File), cfg.StateDir)
		}
	}
}

// stateDirLine is a top-level state_dir = "..." line.
var stateDirLine = regexp.MustCompile(`^\s*state_dir\s*=\s*"([^"\\]+)"\s*(#.*)?$`)

// scanStateDir finds state_dir in a config.toml that does not parse, line
// by line, before the first table: "" when it is not there.
func scanStateDir(doc []byte) string {
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "[") {
			return ""
		}
		if m := stateDirLine.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	return ""
}
