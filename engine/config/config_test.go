package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct{ file, err string }{
		{"unknown_key.toml", `unknown_key.toml:2:1: unknown key "prot" in [worker]; did you mean "port"?`},
		{"unknown_table.toml", `unknown_table.toml:2:2: unknown table "workers"; did you mean "worker"?`},
		{"unknown_root_key.toml", `unknown_root_key.toml:2:1: unknown key "frobnicate"; known keys: agent, check_interval_secs, escalation, heal_script, heal_timeout_secs, health, parallel, path, policy_dir, probes, secrets, services_file, state_dir, strict_modes, worker`},
		{"wrong_type.toml", `wrong_type.toml:2:8: worker.port: want an integer, got a string`},
		{"command_string.toml", `command_string.toml:2:11: worker.command: want a list of strings, got a string`},
		{"path_items.toml", `path_items.toml:1:21: path: want a list of strings, and every item must be a string`},
		{"port_range.toml", `port_range.toml:2:1: worker.port must be between 1 and 65535, got 70000`},
		{"port_zero.toml", `port_zero.toml:2:1: worker.port must be between 1 and 65535, got 0`},
		{"bind_public.toml", `bind_public.toml:2:1: health.bind "0.0.0.0:9999" is not a loopback address; use 127.0.0.1 or set health.allow_non_loopback = true`},
		{"bind_no_port.toml", `bind_no_port.toml:2:1: health.bind "localhost" is not host:port`},
		{"interval_zero.toml", `interval_zero.toml:1:1: check_interval_secs must be at least 1, got 0`},
		{"negative.toml", `negative.toml:2:1: probes.critical_after_consecutive_failures must be at least 1, got -1`},
		{"enabled_no_command.toml", `enabled_no_command.toml:2:1: worker.enabled is true but worker.command is empty; set the command or remove enabled`},
		{"path_relative.toml", `path_relative.toml:1:1: path entry "bin" is not an absolute directory`},
		{"syntax.toml", `syntax.toml:1:23: unexpected character U+000A at start of value`},
		{"duplicate_table.toml", `duplicate_table.toml:3:2: table escalation already exists`},
		{"allowed_hosts_url.toml", `allowed_hosts_url.toml:2:1: health.allowed_hosts entry "talon.svc/health" is not a host name or address (no scheme, path, wildcard or space)`},
	}
	td := fspermtest.Copy(t, "testdata") // strict modes: never the checkout's own modes
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(td, "config", tc.file)
			_, err := config.Load(path)
			var pe *engine.PosError
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *engine.PosError", err, err)
			}
			want := filepath.Join(td, "config", tc.err)
			if err.Error() != want {
				t.Fatalf("got  %s\nwant %s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadFull(t *testing.T) {
	t.Setenv("HOME", "/home/zoë")
	path := filepath.Join(fspermtest.Copy(t, "testdata"), "config", "full.toml")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Found || c.File != path {
		t.Fatalf("found=%v file=%q", c.Found, c.File)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"check_interval_secs", c.CheckIntervalSecs, 30},
		{"heal_script", c.HealScript, "/home/zoë/bin/heal ✓.sh"},
		{"services_file", c.ServicesFile, "/home/zoë/talon/services.toml"},
		{"policy_dir", c.PolicyDir, "/etc/talon/policies"},
		{"state_dir", c.StateDir, "/home/zoë/.local/state/talon-test"},
		{"path", c.Path, []string{"/home/zoë/bin", "/usr/bin", "/bin"}},
		{"parallel", c.Parallel, 4},
		{"worker.enabled", c.Worker.Enabled, true},
		{"worker.dir", c.Worker.Dir, "/home/zoë/Code/système"},
		{"worker.command", c.Worker.Command, []string{"bun", "run", "src/serve.ts"}},
		{"worker.port", c.Worker.Port, 3112},
		{"worker.health_endpoint", c.Worker.HealthEndpoint, "/api/health"},
		{"worker.log_stdout", c.Worker.LogStdout, "/var/log/worker.log"},
		{"worker.log_stderr", c.Worker.LogStderr, "/home/zoë/.local/state/talon-test/worker.err.log"},
		{"worker.http_timeout_secs", c.Worker.HTTPTimeoutSecs, 8},
		{"escalation.sos_recipient", c.Escalation.SOSRecipient, "zoë@example.com"},
		{"escalation.sos_telegram_secret_name", c.Escalation.SOSTelegramSecretName, "tg_token"},
		{"agent.cloud_command", c.Agent.CloudCommand, "pi -p --model cloud — “quoted”"},
		{"probes.k8s_timeout_secs", c.Probes.K8sTimeoutSecs, 11},
		{"health.bind", c.Health.Bind, "0.0.0.0:9998"},
		{"secrets.lease_command", c.Secrets.LeaseCommand, []string{"vault", "read", "{name}"}},
		{"secrets.dir", c.Secrets.Dir, "/home/zoë/.secrets"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

func TestMissingFileYieldsDefaultsAndWritesNothing(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	path := filepath.Join(home, ".config", "talon", "config.toml")
	c, err := config.Load("~/.config/talon/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Found || c.File != path {
		t.Fatalf("found=%v file=%q", c.Found, c.File)
	}
	d := config.Default()
	d.File = c.File
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("missing file:\n%+v\nwant defaults:\n%+v", c, d)
	}
	entries, err := os.ReadDir(home)
	if err != nil || len(entries) != 0 {
		t.Fatalf("home has %v (err %v), want it untouched", entries, err)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HealScript != "" {
		t.Errorf("heal_script defaults to %q, want none", c.HealScript)
	}
	if c.Worker.Enabled || c.Worker.Port != 3111 || c.Worker.ExternalLaunchdLabel != "" {
		t.Errorf("worker defaults: %+v", c.Worker)
	}
	wantPath := []string{"/opt/homebrew/bin", "/opt/homebrew/sbin", "/home/u/.local/bin", "/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/lib/nagios/plugins", "/usr/lib/monitoring-plugins"}
	if !slices.Equal(c.Path, wantPath) {
		t.Errorf("path = %v", c.Path)
	}
	if c.ServicesFile != "/home/u/.config/talon/services.toml" || c.PolicyDir != "/home/u/.config/talon/policies" || c.StateDir != "/home/u/.local/state/talon" {
		t.Errorf("paths: %q %q %q", c.ServicesFile, c.PolicyDir, c.StateDir)
	}
	if c.Escalation.SOSCooldownSecs != 14400 || c.Escalation.CriticalThresholdSecs != 900 || c.Escalation.SOSTelegramSecretName != "telegram_bot_token" {
		t.Errorf("escalation: %+v", c.Escalation)
	}
	if c.Probes.CriticalAfterConsecutiveFailures != 2 || c.Probes.ServiceTimeoutSecs != 5 {
		t.Errorf("probes: %+v", c.Probes)
	}
	if !c.Health.Enabled || c.Health.Bind != "127.0.0.1:9999" {
		t.Errorf("health: %+v", c.Health)
	}
	if !slices.Equal(c.Secrets.LeaseCommand, []string{"secrets", "lease", "{name}", "--ttl", "30m"}) {
		t.Errorf("lease_command: %v", c.Secrets.LeaseCommand)
	}
	// Default() hands out independent copies.
	c.Path[0] = "/x"
	if config.Default().Path[0] == "/x" {
		t.Error("Default shares its path slice")
	}
}

func TestWorkerEnabledFollowsCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		doc  string
		want bool
	}{
		{"[worker]\ncommand = [\"w\"]\n", true},
		{"[worker]\ncommand = [\"w\"]\nenabled = false\n", false},
		{"[worker]\nport = 3000\n", false},
	}
	for i, tc := range cases {
		path := filepath.Join(dir, "c"+string(rune('0'+i))+".toml")
		if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Worker.Enabled != tc.want {
			t.Errorf("%q: enabled = %v, want %v", tc.doc, c.Worker.Enabled, tc.want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	t.Parallel()
	c := &config.Config{Path: []string{"/opt/homebrew/bin", "/usr/bin"}}
	base := []string{
		"PATH=/launchd/minimal", "HOME=/Users/z", "USER=z", "LANG=fr_FR.UTF-8", "LC_ALL=C.UTF-8",
		"TMPDIR=/tmp/z", "TERM=xterm", "AWS_SECRET_ACCESS_KEY=s3cr3t", "TELEGRAM_TOKEN=t", "XDG_RUNTIME_DIR=/run/user/1", "noequals",
	}
	got := c.ChildEnv(base)
	want := []string{"HOME=/Users/z", "LANG=fr_FR.UTF-8", "LC_ALL=C.UTF-8", "PATH=/opt/homebrew/bin:/usr/bin", "TERM=xterm", "TMPDIR=/tmp/z", "USER=z", "XDG_RUNTIME_DIR=/run/user/1"}
	if !slices.Equal(got, want) {
		t.Fatalf("ChildEnv:\n got %v\nwant %v", got, want)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Health.Bind = "[::1]:9999"
	if err := c.Validate(); err != nil {
		t.Errorf("ipv6 loopback: %v", err)
	}
	c.Health.Bind = "192.168.1.2:9999"
	if err := c.Validate(); err == nil || err.Error() != `health.bind "192.168.1.2:9999" is not a loopback address; use 127.0.0.1 or set health.allow_non_loopback = true` {
		t.Errorf("public bind: %v", err)
	}
	c.Health.Enabled = false
	if err := c.Validate(); err != nil {
		t.Errorf("disabled health server still validated: %v", err)
	}
	c.Worker.Port = 65536
	if err := c.Validate(); err == nil || err.Error() != "worker.port must be between 1 and 65535, got 65536" {
		t.Errorf("port: %v", err)
	}
}

func TestLoadServices(t *testing.T) {
	t.Parallel()
	s, err := config.LoadServices(filepath.Join(fspermtest.Copy(t, "testdata"), "services", "good.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Service{
		{Kind: "http", Name: "a_api", Target: "http://127.0.0.1:8288/health", Line: 15, Col: 7},
		{Kind: "http", Name: "b_api", Target: "http://127.0.0.1:3018/health/slack", Critical: true, After: 3, Line: 5, Col: 7},
		{Kind: "launchd", Name: "voice_agent", Target: "com.example.voice-agent", TimeoutSecs: 5, Line: 10, Col: 10},
		{Kind: "script", Name: "unicode", Target: "printf 'naïve ✓'", TimeoutSecs: 2, Line: 18, Col: 9},
		{Kind: "script", Name: "zeta", Target: `echo "a#b" # c`, Line: 2, Col: 9},
	}
	if !s.Found || !reflect.DeepEqual(s.List, want) {
		t.Fatalf("got %+v\nwant %+v", s.List, want)
	}
	if s.List[1].ProbeName() != "http:b_api" {
		t.Errorf("probe name %q", s.List[1].ProbeName())
	}
}

func TestLoadServicesInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct{ file, err string }{
		{"missing_url.toml", `missing_url.toml:1:7: http.api is missing required key: url`},
		{"missing_label.toml", `missing_label.toml:1:10: launchd.gateway is missing required key: label`},
		{"unknown_kind.toml", `unknown_kind.toml:4:2: unknown table "tcp"; known keys: http, launchd, script`},
		{"unknown_key.toml", `unknown_key.toml:3:1: unknown key "critical_after" in [script.disk]; known keys: command, critical, critical_after_consecutive_failures, on_failure, timeout_secs`},
		{"wrong_type.toml", `wrong_type.toml:3:16: http.api.timeout_secs: want an integer, got a string`},
		{"duplicate.toml", `duplicate.toml:3:2: table api already exists`},
		{"empty_url.toml", `empty_url.toml:2:1: http.api: url must not be empty`},
		{"after_zero.toml", `after_zero.toml:3:1: script.x: critical_after_consecutive_failures must be at least 1, got 0`},
		{"syntax.toml", `syntax.toml:2:28: basic strings cannot have new lines`},
	}
	td := fspermtest.Copy(t, "testdata")
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			_, err := config.LoadServices(filepath.Join(td, "services", tc.file))
			want := filepath.Join(td, "services", tc.err)
			if err == nil || err.Error() != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
		})
	}
}

func TestLoadServicesMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := config.LoadServices(filepath.Join(dir, "services.toml"))
	if err != nil || s.Found || len(s.List) != 0 {
		t.Fatalf("got %+v, %v", s, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("wrote %v", entries)
	}
}

func TestUTF8Survives(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "services.toml")
	cmd := "printf '日本語 — naïve ✓ \\u00e9'"
	doc := "\xef\xbb\xbf[script.x]\ncommand = \"" + strings.ReplaceAll(cmd, `\`, `\\`) + "\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := config.LoadServices(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.List[0].Target; got != cmd {
		t.Fatalf("got %q, want %q", got, cmd)
	}
}

// A byte order mark at the start of a file must not cost the positions:
// errors keep their line, and an explicit [worker] enabled = false holds.
func TestByteOrderMark(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte("\xef\xbb\xbf[worker]\ncommand = [\"w\"]\nenabled = false\n"), 0o644)
	c, err := config.Load(path)
	if err != nil || c.Worker.Enabled {
		t.Fatalf("BOM: err %v enabled %v", err, c != nil && c.Worker.Enabled)
	}
	os.WriteFile(path, []byte("\xef\xbb\xbfcheck_interval_secs = 0\n"), 0o644)
	if _, err := config.Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":1:1: ") {
		t.Fatalf("BOM error without a position: %v", err)
	}
}

func TestOutOfRange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for body, want := range map[string]string{
		"check_interval_secs = 10000000000\n":         ":1:1: check_interval_secs must be at most 604800 (a week), got 10000000000",
		"state_dir = \"\"\n":                          ":1:1: state_dir must not be empty",
		"[escalation]\nsos_cooldown_secs = 9999999\n": ":2:1: escalation.sos_cooldown_secs must be at most 604800 (a week), got 9999999",
	} {
		path := filepath.Join(dir, "config.toml")
		os.WriteFile(path, []byte(body), 0o644)
		if _, err := config.Load(path); err == nil || err.Error() != path+want {
			t.Errorf("%q: got %v, want %s", body, err, path+want)
		}
	}
	svc := filepath.Join(dir, "services.toml")
	os.WriteFile(svc, []byte("[script.x]\ncommand = \"true\"\ntimeout_secs = 100000000000\n"), 0o644)
	if _, err := config.LoadServices(svc); err == nil || !strings.Contains(err.Error(), ":3:1: script.x: timeout_secs must be between 1 and 3600") {
		t.Errorf("services timeout: %v", err)
	}
}

// TestNamedPipeIsRefused: a FIFO in place of config.toml or services.toml
// is an error naming it, at once; nothing waits for a writer.
func TestNamedPipeIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, name := range []string{"config.toml", "services.toml"} {
		fifo := filepath.Join(dir, name)
		fspermtest.Mkfifo(t, fifo)
		want := fifo + ": is a named pipe, not a regular file; replace it with the file itself"
		fspermtest.Within(t, 10*time.Second, "reading "+name, func() {
			var err error
			if name == "config.toml" {
				_, err = config.Load(fifo)
			} else {
				_, err = config.LoadServices(fifo)
			}
			if err == nil || err.Error() != want {
				t.Errorf("%s: got %v, want %s", name, err, want)
			}
		})
	}
}

func TestRestartNeeded(t *testing.T) {
	a, b := config.Default(), config.Default()
	if got := config.RestartNeeded(a, b); len(got) != 0 {
		t.Fatalf("no change: %v", got)
	}
	b.CheckIntervalSecs = 5                // applied on reload
	b.Path = []string{"/bin"}              // applied on reload
	b.Health.Bind = "127.0.0.1:9000"       // restart
	b.Health.AllowedHosts = []string{"vm"} // restart
	b.Worker.Port = 4000                   // restart: the whole table
	b.StateDir = "/var/lib/talon"          // restart
	got := strings.Join(config.RestartNeeded(a, b), ",")
	if got != "state_dir,worker.port,health.bind,health.allowed_hosts" {
		t.Fatalf("restart needed for %s", got)
	}
}
