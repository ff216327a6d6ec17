package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/health"
)

// The argument errors of pause, resume and ack, and how they say that no
// daemon can be reached. (Their talk with a daemon: internal/e2e.)
func TestControlCommandErrors(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bind := ln.Addr().String()
	ln.Close() // nothing listens there now
	on := filepath.Join(dir, "on.toml")
	off := filepath.Join(dir, "off.toml")
	os.WriteFile(on, []byte(fmt.Sprintf("[health]\nbind = %q\n", bind)), 0o600)
	os.WriteFile(off, []byte("[health]\nenabled = false\n"), 0o600)
	stateDir := t.TempDir()
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"pause", "--probe", "a", "--tag", "b"}, 2, "talon: name at most one of --probe, --tag and --rung\n"},
		{[]string{"resume", "--rung", "a", "--probe", "b"}, 2, "talon: name at most one of --probe, --tag and --rung\n"},
		{[]string{"pause", "--for", "25h"}, 2, "talon: pause --for 25h0m0s: a pause lasts at most 24h; pause again when it ends\n"},
		{[]string{"pause", "--for", "-5m"}, 2, "talon: pause --for -5m0s: want a positive duration such as 30m\n"},
		{[]string{"pause", "--for", "soon"}, 2, "talon: pause: invalid value \"soon\" for flag -for: parse error; see talon help pause\n"},
		{[]string{"pause", "redis"}, 2, "talon: pause takes no arguments, got \"redis\"; see talon help pause\n"},
		{[]string{"ack", "a", "b"}, 2, "talon: ack takes at most one incident, got [\"a\" \"b\"]; see talon help ack\n"},
		{[]string{"pause", "--config", off}, 1, "talon: pause needs the daemon's health endpoint, and " + off + " turns it off ([health] enabled = false)\n"},
		{[]string{"ack", "--config", on, "--state-dir", stateDir}, 1, "talon: ack: talon is not running: no daemon holds the state directory " + stateDir + " (choose it with --config or --state-dir)\n"},
	}
	for _, tc := range cases {
		_, stderr, code := talon(t, tc.args...)
		if code != tc.code || stderr != tc.err {
			t.Errorf("talon %q: exit %d %q\nwant exit %d %q", tc.args, code, stderr, tc.code, tc.err)
		}
	}
}

// recorder is a daemon's Controller that records its commands.
type recorder struct {
	mu    sync.Mutex
	calls []string
	by    string
}

func (r *recorder) Pause(_ context.Context, c engine.Control, d time.Duration) (engine.Pause, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("pause %s %s %s", c.Scope, d, c.Reason))
	r.by = c.By
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	return engine.Pause{ID: "p1", Scope: c.Scope, Name: c.Name, Reason: c.Reason, By: c.By, Since: now, Until: now.Add(d)}, nil
}

func (r *recorder) Resume(context.Context, engine.Control) ([]engine.Pause, error) { return nil, nil }

func (r *recorder) Ack(_ context.Context, c engine.Control) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "ack "+c.Reason)
	return "inc-1", nil
}

// fakeDaemon does what the daemon does for its control routes: it holds
// the state directory's lock, serves the endpoint on a loopback port with
// a token and writes the control file.
func fakeDaemon(t *testing.T, stateDir string, ctl health.Controller) string {
	t.Helper()
	unlock, err := lockStateDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	token, err := health.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	srv := health.New(health.Options{Bind: "127.0.0.1:0", Snapshot: func() engine.Snapshot { return engine.Snapshot{OK: true} },
		Control: ctl, Token: token, Reload: func(context.Context) (string, error) { return "abcdef123456", nil }})
	addr, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if _, err := health.WriteControlFile(stateDir, health.ControlFile{Token: token, Addr: addr, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	return addr
}

// When config.toml is broken (the time one reaches for pause), pause and
// ack still find the daemon through the state directory and its control
// file, and say that the config did not read.
func TestControlWithABrokenConfig(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	os.Mkdir(stateDir, 0o700)
	ctl := &recorder{}
	fakeDaemon(t, stateDir, ctl)
	cfg := filepath.Join(dir, "config.toml")
	// Not even TOML: only the state_dir line can be read.
	os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir = %q\n[health\nbind = \"127.0.0.1:1\"\n", stateDir)), 0o600)
	// The state directory comes from the config alone.
	run := func(args ...string) (string, string, int) {
		t.Setenv("TALON_STATE_DIR", "")
		var out, errb strings.Builder
		code := Main(args, &out, &errb)
		return out.String(), errb.String(), code
	}
	stdout, stderr, code := run("pause", "--for", "20m", "--reason", "fixing the config", "--config", cfg, "--format", "table")
	if code != 0 || stdout != "paused everything until 2026-12-02T06:20:00Z (fixing the config; by "+whoAsks()+"); probes keep running and recording\n" {
		t.Fatalf("pause with a broken config: exit %d %q %q", code, stdout, stderr)
	}
	if !strings.HasPrefix(stderr, "talon: "+cfg) || !strings.HasSuffix(stderr, "(read leniently: pause finds the daemon through the state directory "+stateDir+")\n") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("pause with a broken config says %q", stderr)
	}
	if _, stderr, code := run("ack", "--reason", "on it", "--config", cfg); code != 0 {
		t.Fatalf("ack with a broken config: exit %d %q", code, stderr)
	}
	if stdout, _, code := run("pause", "--config", cfg, "--format", "table"); code != 0 || !strings.HasSuffix(stdout, "(for 1h, the default: --for sets it, up to 24h); probes keep running and recording\n") {
		t.Fatalf("pause without --for: %q", stdout)
	}
	if u := whoAsks(); ctl.by != u || !strings.Contains(u, fmt.Sprintf("(uid %d)", os.Getuid())) {
		t.Fatalf("by %q, want %q", ctl.by, u)
	}
	if got := strings.Join(ctl.calls, "|"); got != "pause  20m0s fixing the config|ack on it|pause  0s " {
		t.Fatalf("the daemon got %q", got)
	}
	// status too, and only after the daemon proved itself.
	if stdout, stderr, code := run("status", "--config", cfg, "--format", "json"); code != 0 || !strings.Contains(stdout, `"source": "daemon"`) {
		t.Fatalf("status with a broken config: exit %d %q %q", code, stdout, stderr)
	}
	// reload finds it the same way.
	if stdout, stderr, code := talon(t, "reload", "--state-dir", stateDir); code != 0 || stdout != "reloaded: policy abcdef123456\n" {
		t.Fatalf("reload: exit %d %q %q", code, stdout, stderr)
	}
}

// A program that took the daemon's address (the daemon restarted and lost
// the port, say) never receives the token: the CLI refuses to talk to it.
func TestControlRefusesASquatter(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	os.Mkdir(stateDir, 0o700)
	ctl := &recorder{}
	fakeDaemon(t, stateDir, ctl)
	cf, err := health.ReadControlFile(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	squatter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, fmt.Sprint(r.Method, " ", r.URL.Path, " ", r.Header))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"proof":"00","pause":{"id":"p1"},"policy_hash":"h"}`)
	}))
	defer squatter.Close()
	cf.Addr = strings.TrimPrefix(squatter.URL, "http://")
	if _, err := health.WriteControlFile(stateDir, cf); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"pause", "ack", "reload"} {
		_, stderr, code := talon(t, cmd, "--state-dir", stateDir)
		if code != 1 || !strings.Contains(stderr, "cannot prove it holds the state directory's control.token") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s to a squatter: exit %d %q", cmd, code, stderr)
		}
	}
	// talon status does not take it for the daemon either.
	if _, stderr, code := talon(t, "status", "--state-dir", stateDir); code != 1 || !strings.Contains(stderr, "cannot prove it holds the state directory's control.token") {
		t.Errorf("status from a squatter: exit %d %q", code, stderr)
	}
	for _, s := range seen {
		if strings.Contains(s, cf.Token) || !strings.HasPrefix(s, "GET /identity") {
			t.Fatalf("the squatter got %s", s)
		}
	}
	if len(ctl.calls) != 0 {
		t.Fatalf("the daemon got %v", ctl.calls)
	}
}

// Without a control.token to check the answer against, status still asks
// the configured address, and says the answer is unverified, and why: no
// daemon holds the state directory, or the one that does wrote no token
// (its endpoint is not listening: what answers may have taken its port).
func TestStatusWithoutATokenIsUnverified(t *testing.T) {
	srv := health.New(health.Options{Bind: "127.0.0.1:0", Snapshot: func() engine.Snapshot {
		return engine.Snapshot{OK: true, State: engine.Healthy, UpdatedAtUnix: 1}
	}})
	addr, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	os.Mkdir(stateDir, 0o700)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[health]\nbind = %q\n", addr)), 0o600)
	status := func() (string, string) {
		stdout, stderr, code := talon(t, "status", "--config", cfg, "--state-dir", stateDir, "--format", "table")
		first, _, _ := strings.Cut(stdout, "\n")
		if code != 0 || stderr != "" {
			t.Fatalf("status: exit %d %q\n%s", code, stderr, stdout)
		}
		jsonOut, _, _ := talon(t, "status", "--config", cfg, "--state-dir", stateDir, "--json")
		return first, jsonOut
	}
	first, js := status()
	if want := "state healthy (daemon on " + addr + ", UNVERIFIED: no daemon holds the state directory " + stateDir + "; updated "; !strings.HasPrefix(first, want) ||
		!strings.Contains(js, `"verified": false`) || !strings.Contains(js, `"source": "daemon"`) {
		t.Fatalf("status, no daemon holding the state directory: %q\n%s", first, js)
	}
	unlock, err := lockStateDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if first, _ := status(); !strings.HasPrefix(first, "state healthy (daemon on "+addr+", UNVERIFIED: no control.token in the state directory; updated ") {
		t.Fatalf("status, a daemon without a token holding the state directory: %q", first)
	}
}

// A config.toml that is TOML but does not load (a value of the wrong type)
// still gives status its state directory and [health]: the bind it asks
// is the file's, not the default.
func TestStatusReadsHealthOfAConfigThatDoesNotLoad(t *testing.T) {
	srv := health.New(health.Options{Bind: "127.0.0.1:0", Snapshot: func() engine.Snapshot {
		return engine.Snapshot{OK: true, State: engine.Healthy, UpdatedAtUnix: 1}
	}})
	addr, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir = \"state\"\ncheck_interval_secs = \"30\"\n[health]\nbind = %q\n", addr)), 0o600)
	t.Setenv("TALON_STATE_DIR", "")
	var out, errb strings.Builder
	code := Main([]string{"status", "--config", cfg, "--format", "table"}, &out, &errb)
	stateDir := filepath.Join(dir, "state")
	want := "config error: " + cfg + ":2:23: check_interval_secs: want an integer, got a string; status read the file leniently (state directory " + stateDir + "): fix it and check with talon validate\n" +
		"state healthy (daemon on " + addr + ", UNVERIFIED: no daemon holds the state directory " + stateDir + "; updated "
	if code != 0 || errb.String() != "" || !strings.HasPrefix(out.String(), want) {
		t.Fatalf("status: exit %d %q\n%s\nwant the start:\n%s", code, errb.String(), out.String(), want)
	}
}

// What readNarrowly takes of a config.toml that does not load, and what it
// leaves at the defaults.
func TestReadNarrowly(t *testing.T) {
	def := config.DefaultAt("/etc/talon/config.toml")
	cases := []struct {
		name, doc, stateDir, bind string
	}{
		{"wrong type elsewhere", "state_dir = \"/var/talon\"\ncheck_interval_secs = \"x\"\n[health]\nbind = \"127.0.0.1:7\"\n", "/var/talon", "127.0.0.1:7"},
		{"relative state_dir", "state_dir = \"st\"\nparallel = []\n", "/etc/talon/st", def.Health.Bind},
		{"public bind not taken on trust", "check_interval_secs = \"x\"\n[health]\nbind = \"0.0.0.0:7\"\n", def.StateDir, def.Health.Bind},
		{"public bind allowed", "check_interval_secs = \"x\"\n[health]\nbind = \"0.0.0.0:7\"\nallow_non_loopback = true\n", def.StateDir, "0.0.0.0:7"},
		{"not TOML", "state_dir = \"/var/talon\"\n[health\nbind = \"127.0.0.1:7\"\n", "/var/talon", def.Health.Bind},
	}
	for _, tc := range cases {
		cfg := config.DefaultAt("/etc/talon/config.toml")
		readNarrowly(cfg, []byte(tc.doc))
		if cfg.StateDir != tc.stateDir || cfg.Health.Bind != tc.bind {
			t.Errorf("%s: state_dir %q bind %q; want %q %q", tc.name, cfg.StateDir, cfg.Health.Bind, tc.stateDir, tc.bind)
		}
	}
}
