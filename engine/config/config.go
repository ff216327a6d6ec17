// Package config decodes Talon's config.toml and services.toml strictly: an
// unknown key, a wrong type or an out-of-range value is an error that names
// the file, line and column. A missing file means defaults; nothing is ever
// written to disk.
//
// Config says where and who (paths, ports, commands, recipients); the policy
// says what and when. Key names are those of the predecessor, so an existing
// config.toml keeps working.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm"
)

// Config is the decoded config.toml. Field tags are the TOML key names, which
// are also the names the policy reads (config.worker.port).
type Config struct {
	CheckIntervalSecs int    `toml:"check_interval_secs"`
	HealScript        string `toml:"heal_script"`
	HealTimeoutSecs   int    `toml:"heal_timeout_secs"`
	ServicesFile      string `toml:"services_file"`
	PolicyDir         string `toml:"policy_dir"`
	StateDir          string `toml:"state_dir"`
	// Path lists the directories of the PATH every child process gets.
	Path []string `toml:"path"`
	// Parallel bounds how many probes run at once; 0 runs them all at once.
	Parallel int `toml:"parallel"`
	// StrictModes refuses every file Talon evaluates or runs that another
	// user could change (package fsperm). False only warns. It never
	// relaxes the check of config.toml itself: a file others can write
	// cannot be what says to trust files others can write.
	StrictModes bool `toml:"strict_modes"`

	Worker     Worker     `toml:"worker"`
	Escalation Escalation `toml:"escalation"`
	Agent      Agent      `toml:"agent"`
	Probes     Probes     `toml:"probes"`
	Health     Health     `toml:"health"`
	Secrets    Secrets    `toml:"secrets"`

	// File is the path the config was read from, or would have been read
	// from when Found is false.
	File  string `toml:"-"`
	Found bool   `toml:"-"`

	pos positions
}

// Worker configures the supervised worker process.
type Worker struct {
	// Enabled defaults to true when Command is set, false otherwise.
	Enabled                     bool     `toml:"enabled"`
	Dir                         string   `toml:"dir"`
	Command                     []string `toml:"command"`
	ExternalLaunchdLabel        string   `toml:"external_launchd_label"`
	ExternalSystemdUnit         string   `toml:"external_systemd_unit"`
	Port                        int      `toml:"port"`
	HealthEndpoint              string   `toml:"health_endpoint"`
	SyncEndpoint                string   `toml:"sync_endpoint"` // "": no sync call
	LogStdout                   string   `toml:"log_stdout"`    // "": <state_dir>/worker.log
	LogStderr                   string   `toml:"log_stderr"`    // "": <state_dir>/worker.err.log
	EnvFile                     string   `toml:"env_file"`
	DrainTimeoutSecs            int      `toml:"drain_timeout_secs"`
	HealthIntervalSecs          int      `toml:"health_interval_secs"`
	HealthFailuresBeforeRestart int      `toml:"health_failures_before_restart"`
	RestartBackoffMaxSecs       int      `toml:"restart_backoff_max_secs"`
	StartupSyncDelaySecs        int      `toml:"startup_sync_delay_secs"`
	HTTPTimeoutSecs             int      `toml:"http_timeout_secs"`
}

// Escalation holds the who of escalation; the policy's ladder holds the when.
type Escalation struct {
	AgentCooldownSecs     int    `toml:"agent_cooldown_secs"`
	SOSCooldownSecs       int    `toml:"sos_cooldown_secs"`
	SOSRecipient          string `toml:"sos_recipient"`
	SOSTelegramChatID     string `toml:"sos_telegram_chat_id"`
	SOSTelegramSecretName string `toml:"sos_telegram_secret_name"`
	CriticalThresholdSecs int    `toml:"critical_threshold_secs"`
}

// Agent names the AI agent command lines; "" means none configured.
type Agent struct {
	CloudCommand string `toml:"cloud_command"`
	LocalCommand string `toml:"local_command"`
	TimeoutSecs  int    `toml:"timeout_secs"`
}

// Probes holds timeouts and thresholds the policy may read.
type Probes struct {
	ColimaTimeoutSecs                 int `toml:"colima_timeout_secs"`
	K8sTimeoutSecs                    int `toml:"k8s_timeout_secs"`
	ServiceTimeoutSecs                int `toml:"service_timeout_secs"`
	CriticalAfterConsecutiveFailures  int `toml:"critical_after_consecutive_failures"`
	ConsecutiveFailuresBeforeEscalate int `toml:"consecutive_failures_before_escalate"`
}

// Health configures the /health and /metrics server.
type Health struct {
	Enabled          bool   `toml:"enabled"`
	Bind             string `toml:"bind"`
	AllowNonLoopback bool   `toml:"allow_non_loopback"`
}

// Secrets says how secrets are obtained.
type Secrets struct {
	// LeaseCommand is run to lease a secret; "{name}" is replaced by its name.
	LeaseCommand []string `toml:"lease_command"`
	// Dir holds file secrets, one file per name.
	Dir string `toml:"dir"`
}

// DefaultPath is the PATH of child processes unless config.toml sets `path`.
// Entries starting with "~/" are expanded.
var DefaultPath = []string{
	"/opt/homebrew/bin", "/opt/homebrew/sbin", "~/.local/bin",
	"/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/bin", "/usr/sbin", "/sbin",
	// Nagios/Monitoring plugins as Debian installs them.
	"/usr/lib/nagios/plugins", "/usr/lib/monitoring-plugins",
}

// Default returns the configuration used when config.toml is missing, with
// "~" expanded from $HOME.
func Default() *Config {
	c := defaults()
	c.finish(homeDir(), false)
	return c
}

func defaults() *Config {
	return &Config{
		CheckIntervalSecs: 60,
		HealTimeoutSecs:   300,
		StrictModes:       true,
		ServicesFile:      "~/.config/talon/services.toml",
		PolicyDir:         "~/.config/talon/policies",
		StateDir:          "~/.local/state/talon",
		Path:              append([]string(nil), DefaultPath...),
		Worker: Worker{
			Port:                        3111,
			HealthEndpoint:              "/health",
			DrainTimeoutSecs:            5,
			HealthIntervalSecs:          30,
			HealthFailuresBeforeRestart: 3,
			RestartBackoffMaxSecs:       30,
			StartupSyncDelaySecs:        5,
			HTTPTimeoutSecs:             5,
		},
		Escalation: Escalation{
			AgentCooldownSecs:     600,
			SOSCooldownSecs:       14400,
			SOSTelegramSecretName: "telegram_bot_token",
			CriticalThresholdSecs: 900,
		},
		Agent: Agent{TimeoutSecs: 300},
		Probes: Probes{
			ColimaTimeoutSecs:                 5,
			K8sTimeoutSecs:                    10,
			ServiceTimeoutSecs:                5,
			CriticalAfterConsecutiveFailures:  2,
			ConsecutiveFailuresBeforeEscalate: 3,
		},
		Health:  Health{Enabled: true, Bind: "127.0.0.1:9999"},
		Secrets: Secrets{LeaseCommand: []string{"secrets", "lease", "{name}", "--ttl", "30m"}, Dir: "~/.config/talon/secrets"},
	}
}

// maxFileSize bounds config and services files: they are small by nature, and
// a path pointing at a device must not hang the daemon.
const maxFileSize = 1 << 20

// Load reads the config file at path ("~" expanded). A missing file yields the
// defaults (Found false) and is not created. Decode and validation errors are
// *engine.PosError values naming the file, line and column.
//
// The file must be one no other user can change (fsperm), whatever its
// strict_modes says: the setting of a file others can write is no reason to
// trust anything.
func Load(path string) (*Config, error) {
	c, _, err := Read(path)
	return c, err
}

// Read is Load that also returns the bytes it decoded (nil when the file
// does not exist), for a caller that hashes or keeps them.
func Read(path string) (*Config, []byte, error) {
	path = ExpandHome(path, homeDir())
	doc, err := ReadFile(path, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c := defaults()
		c.File = path
		c.finish(homeDir(), false)
		return c, nil, nil
	case err != nil:
		return nil, nil, &engine.PosError{File: path, Message: FileErrorMessage(err)}
	}
	c, err := Parse(path, doc)
	if err != nil {
		return nil, nil, err
	}
	return c, doc, nil
}

// Parse decodes doc, the content of the config file at path, strictly and
// validates it. An empty file (or one of blanks) is an error: a file cut
// short by a full disk or a bad save must not silently become every
// default; a comment is enough to mean "the defaults, on purpose".
func Parse(path string, doc []byte) (*Config, error) {
	c := defaults()
	c.File = path
	if isBlank(doc) {
		return nil, &engine.PosError{File: path, Message: "the file is empty; write at least a comment in it to run with every default"}
	}
	c.Found = true
	if err := decodeStrict(path, doc, c); err != nil {
		return nil, err
	}
	c.pos = scanPositions(doc)
	_, enabledSet := c.pos[keyOf("worker", "enabled")]
	c.finish(homeDir(), enabledSet)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Lenient decodes doc as Parse does but skips keys it does not know, for
// what must be known even when the file has an error: the state directory
// and the channels of a daemon that falls back to its last good policy.
// It fails only when the TOML itself cannot be read.
func Lenient(path string, doc []byte) (*Config, error) {
	c := defaults()
	c.File = path
	if err := toml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf")))).Decode(c); err != nil {
		return nil, err
	}
	c.Found = true
	c.pos = scanPositions(doc)
	_, enabledSet := c.pos[keyOf("worker", "enabled")]
	c.finish(homeDir(), enabledSet)
	return c, nil
}

// IsSet reports whether the file sets key (dotted: "worker.port"), rather
// than the key having its default.
func (c *Config) IsSet(key string) bool {
	_, ok := c.pos[keyOf(strings.Split(key, ".")...)]
	return ok
}

func isBlank(doc []byte) bool {
	return len(bytes.TrimSpace(bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf")))) == 0
}

// finish applies the defaults that depend on other keys and expands "~".
func (c *Config) finish(home string, enabledSet bool) {
	if !enabledSet {
		c.Worker.Enabled = len(c.Worker.Command) > 0
	}
	for _, p := range []*string{&c.HealScript, &c.ServicesFile, &c.PolicyDir, &c.StateDir,
		&c.Worker.Dir, &c.Worker.LogStdout, &c.Worker.LogStderr, &c.Worker.EnvFile, &c.Secrets.Dir} {
		*p = ExpandHome(*p, home)
		// A relative path in config.toml is relative to the file, not to
		// wherever the daemon happens to start (launchd starts it in /).
		// (A heal_script without a slash is a program looked up on PATH.)
		if *p != "" && !filepath.IsAbs(*p) && c.File != "" && (p != &c.HealScript || strings.Contains(*p, "/")) {
			*p = filepath.Join(filepath.Dir(c.File), *p)
		}
	}
	for i := range c.Path {
		c.Path[i] = ExpandHome(c.Path[i], home)
	}
	if c.Worker.LogStdout == "" {
		c.Worker.LogStdout = filepath.Join(c.StateDir, "worker.log")
	}
	if c.Worker.LogStderr == "" {
		c.Worker.LogStderr = filepath.Join(c.StateDir, "worker.err.log")
	}
	if e := c.Worker.HealthEndpoint; e != "" && !strings.HasPrefix(e, "/") {
		c.Worker.HealthEndpoint = "/" + e
	}
	if e := c.Worker.SyncEndpoint; e != "" && !strings.HasPrefix(e, "/") {
		c.Worker.SyncEndpoint = "/" + e
	}
}

// Validate checks ranges and combinations the types cannot express. The
// error is an *engine.PosError at the offending key when it came from a file.
func (c *Config) Validate() error {
	type rule struct {
		key string
		v   int
		min int
	}
	// No setting in seconds may exceed a week: larger values are typos, and
	// far larger ones overflow a time.Duration into nonsense.
	const maxSecs = 7 * 24 * 3600
	w, e, p := &c.Worker, &c.Escalation, &c.Probes
	for _, r := range []rule{
		{"check_interval_secs", c.CheckIntervalSecs, 1},
		{"heal_timeout_secs", c.HealTimeoutSecs, 1},
		{"parallel", c.Parallel, 0},
		{"worker.drain_timeout_secs", w.DrainTimeoutSecs, 0},
		{"worker.health_interval_secs", w.HealthIntervalSecs, 1},
		{"worker.health_failures_before_restart", w.HealthFailuresBeforeRestart, 1},
		{"worker.restart_backoff_max_secs", w.RestartBackoffMaxSecs, 1},
		{"worker.startup_sync_delay_secs", w.StartupSyncDelaySecs, 0},
		{"worker.http_timeout_secs", w.HTTPTimeoutSecs, 1},
		{"escalation.agent_cooldown_secs", e.AgentCooldownSecs, 0},
		{"escalation.sos_cooldown_secs", e.SOSCooldownSecs, 0},
		{"escalation.critical_threshold_secs", e.CriticalThresholdSecs, 0},
		{"agent.timeout_secs", c.Agent.TimeoutSecs, 1},
		{"probes.colima_timeout_secs", p.ColimaTimeoutSecs, 1},
		{"probes.k8s_timeout_secs", p.K8sTimeoutSecs, 1},
		{"probes.service_timeout_secs", p.ServiceTimeoutSecs, 1},
		{"probes.critical_after_consecutive_failures", p.CriticalAfterConsecutiveFailures, 1},
		{"probes.consecutive_failures_before_escalate", p.ConsecutiveFailuresBeforeEscalate, 1},
	} {
		if r.v < r.min {
			return c.errAt(r.key, "%s must be at least %d, got %d", r.key, r.min, r.v)
		}
		if strings.HasSuffix(r.key, "_secs") && r.v > maxSecs {
			return c.errAt(r.key, "%s must be at most %d (a week), got %d", r.key, maxSecs, r.v)
		}
	}
	if c.StateDir == "" {
		return c.errAt("state_dir", "state_dir must not be empty")
	}
	if w.Port < 1 || w.Port > 65535 {
		return c.errAt("worker.port", "worker.port must be between 1 and 65535, got %d", w.Port)
	}
	if w.Enabled && len(w.Command) == 0 {
		return c.errAt("worker.enabled", "worker.enabled is true but worker.command is empty; set the command or remove enabled")
	}
	for i, a := range w.Command {
		if a == "" {
			return c.errAt("worker.command", "worker.command item %d is empty", i)
		}
	}
	for _, d := range c.Path {
		if d == "" || !filepath.IsAbs(d) {
			return c.errAt("path", "path entry %q is not an absolute directory", d)
		}
	}
	if len(c.Secrets.LeaseCommand) > 0 && c.Secrets.LeaseCommand[0] == "" {
		return c.errAt("secrets.lease_command", "secrets.lease_command must start with a program name")
	}
	if c.Health.Enabled {
		if err := checkBind(c.Health.Bind, c.Health.AllowNonLoopback); err != nil {
			return c.errAt("health.bind", "health.bind %s", err)
		}
	}
	return nil
}

func checkBind(bind string, allowNonLoopback bool) error {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("%q is not host:port", bind)
	}
	if n, err := net.LookupPort("tcp", port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be between 1 and 65535", bind)
	}
	if allowNonLoopback {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address; use 127.0.0.1 or set health.allow_non_loopback = true", bind)
}

// errAt builds a validation error at key's position in the file, if known.
func (c *Config) errAt(key, format string, args ...any) *engine.PosError {
	e := &engine.PosError{File: c.File, Message: fmt.Sprintf(format, args...)}
	if !c.Found {
		e.File = ""
	}
	if p, ok := c.pos[keyOf(strings.Split(key, ".")...)]; ok {
		e.Line, e.Col = p.line, p.col
	}
	return e
}

// PathList is the child PATH value: the `path` directories joined by ":".
func (c *Config) PathList() string { return strings.Join(c.Path, string(filepath.ListSeparator)) }

// inheritedEnv lists the variables children inherit from Talon's own
// environment; names ending in "_" are prefixes. Anything else (tokens,
// proxies set for one shell, the launchd PATH) stays out.
var inheritedEnv = []string{
	"HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_", "TZ", "TMPDIR", "TERM",
	"XDG_", "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "KUBECONFIG", "DOCKER_HOST", "DOCKER_CONTEXT",
	"__CF_USER_TEXT_ENCODING",
}

// ChildEnv is the environment of every child process: the variables of base
// ("KEY=value" entries, normally os.Environ()) that identify the user, locale,
// terminal, temp dir and session (HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE,
// LC_*, TZ, TMPDIR, TERM, XDG_*, DBUS_SESSION_BUS_ADDRESS, SSH_AUTH_SOCK,
// KUBECONFIG, DOCKER_HOST, DOCKER_CONTEXT), plus PATH built from `path`.
// The result is sorted, so it is deterministic.
func (c *Config) ChildEnv(base []string) []string {
	seen := map[string]string{}
	for _, kv := range base {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || k == "PATH" {
			continue
		}
		for _, allow := range inheritedEnv {
			if k == allow || (strings.HasSuffix(allow, "_") && strings.HasPrefix(k, allow)) {
				seen[k] = v
				break
			}
		}
	}
	seen["PATH"] = c.PathList()
	out := make([]string, 0, len(seen))
	for k, v := range seen {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ExpandHome replaces a leading "~" or "~/" with home. Paths are left alone
// when home is empty.
func ExpandHome(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

// Canonical is path made absolute and cleaned, with every symbolic link
// resolved: the one name under which Talon watches, hashes and reports a
// file, whatever spelling (relative, "./", through a linked directory) it
// was given as. A path that does not exist (yet) is resolved as far as it
// exists and the rest appended, so a file that appears later is found under
// the same name.
func Canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	dir := filepath.Dir(abs)
	if dir == abs {
		return abs
	}
	return filepath.Join(Canonical(dir), filepath.Base(abs))
}

// Links lists the symbolic links met on the way to path (each by its
// canonical name: the resolved directory it sits in, and its own name), so
// that a watcher can watch them: re-pointing a link on the way is a change
// of the file the path names, though no file changed.
func Links(path string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	var out []string
	cur := string(filepath.Separator)
	for _, part := range strings.Split(abs, string(filepath.Separator)) {
		if part == "" {
			continue
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			break // the rest does not exist (yet)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		out = append(out, next)
		if cur, err = filepath.EvalSymlinks(next); err != nil {
			break
		}
	}
	return out
}

func homeDir() string {
	h, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return h
}

// ReadFile reads a config or services file: a regular file of at most 1 MiB
// that files (nil: strictly, for the process's user) finds safe. The check is
// made on the file opened, so a missing file is still fs.ErrNotExist. A named
// pipe, socket or device is refused without blocking (*fsperm.NotRegularError).
func ReadFile(path string, files *fsperm.Checker) ([]byte, error) {
	f, err := files.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(buf) > maxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes", maxFileSize)
	}
	return buf, nil
}

// FileErrorMessage is the text of an error reading a file, for a message that
// names the file already: without the path where the error repeats it.
func FileErrorMessage(err error) string {
	var nr *fsperm.NotRegularError
	if errors.As(err, &nr) {
		return nr.Reason()
	}
	return err.Error()
}

// tomlKeys lists the TOML keys of struct type t, sorted.
func tomlKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		switch {
		case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, tomlKeys(f.Type)...)
		case tag != "" && tag != "-":
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out
}

// ErrorAt is an error about key (dotted: "agent.cloud_command") at its
// position in the file, for checks made outside this package.
func (c *Config) ErrorAt(key, format string, args ...any) *engine.PosError {
	return c.errAt(key, format, args...)
}
