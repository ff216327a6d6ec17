package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// talon status shows every probe like monit summary: name, state, since
// when (from the journal), last output; --watch keeps redrawing.
func TestStatusShowsTheProbes(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), `
probe.exec("ok", ["echo", "all good"])
probe.exec("bad", ["sh", "-c", "echo 'connection refused'; exit 1"], critical = True, after = 1)
`, 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("bad down", 15*time.Second, func(s engine.Snapshot) bool { return s.Incident != nil })

	out, err := exec.Command(talonBin, "status", "--format", "table", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, re := range []string{
		`(?m)^PROBE\s+STATE\s+SINCE\s+CHECKED\s+LAST OUTPUT$`,
		`(?m)^bad\s+down ×\d+ critical\s+\w{3} \d\d \d\d:\d\d:\d\d \(.+\)\s+(just now|.+ ago)\s+exit status 1: connection refused$`,
		`(?m)^ok\s+ok\s+-\s+(just now|.+ ago)\s+all good$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("status lacks %s:\n%s", re, out)
		}
	}

	// --watch streams one JSON object per refresh until interrupted.
	cmd := exec.Command(talonBin, "status", "--watch", "--interval", "300ms", "--format", "json", "--config", cfg)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for i := 0; i < 2; i++ {
		if !sc.Scan() {
			t.Fatalf("frame %d missing: %v", i, sc.Err())
		}
		var rep struct {
			Source string `json:"source"`
			Probes []struct {
				Name  string     `json:"name"`
				State string     `json:"state"`
				Since *time.Time `json:"since"`
			} `json:"probes"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil || rep.Source != "daemon" || len(rep.Probes) != 2 ||
			rep.Probes[0].Name != "bad" || rep.Probes[0].State != "down" || rep.Probes[0].Since == nil {
			t.Fatalf("frame %d: %v %s", i, err, sc.Text())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("status --watch after SIGTERM: %v", err)
	}
	if strings.Contains(string(out), "\x1b[") {
		t.Fatal("escape codes on a pipe")
	}
}

// statusRun runs talon status as cmd and returns stdout, stderr and the
// exit code.
func statusRun(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// statusJSON is what these tests read of talon status --json.
type statusJSON struct {
	Source      string           `json:"source"`
	Addr        string           `json:"addr"`
	Verified    bool             `json:"verified"`
	DaemonError string           `json:"daemon_error"`
	ConfigError string           `json:"config_error"`
	Health      *engine.Snapshot `json:"health"`
	State       *engine.State    `json:"state"`
}

func decodeStatus(t *testing.T, out string) statusJSON {
	t.Helper()
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("talon status --json: %v\n%s", err, out)
	}
	return s
}

// A config.toml broken while the daemon runs (a half-saved edit at 3 a.m.)
// does not keep talon status from showing the state: it reads what it
// needs leniently, shows the daemon's answer (else the state file's), names
// the config error in one line with its file:line and what to do, and
// exits 0: status informs, talon validate is what fails on a bad config.
func TestStatusWithABrokenConfig(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"ok\", [\"true\"])\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("a cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.OK && s.LastCycle.Unix() > 0 })

	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Not even TOML any more: a table left unclosed on the last line.
	broken := string(good) + "[escalation\n"
	line := strings.Count(broken, "\n")
	writeFile(t, cfg, broken, 0o644)
	cfgLine := regexp.MustCompile(`^config error: ` + regexp.QuoteMeta(cfg) + fmt.Sprintf(`:%d:\d+: [^\n]+; status read the file leniently \(state directory %s\): fix it and check with talon validate$`, line, regexp.QuoteMeta(stateDir)))

	stdout, stderr, code := statusRun(t, exec.Command(talonBin, "status", "--format", "table", "--config", cfg))
	first, rest, _ := strings.Cut(stdout, "\n")
	if code != 0 || stderr != "" || !cfgLine.MatchString(first) || !strings.HasPrefix(rest, "state healthy (daemon on "+bind+"; updated ") {
		t.Fatalf("status with a broken config: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, stderr, code = statusRun(t, exec.Command(talonBin, "status", "--json", "--config", cfg))
	s := decodeStatus(t, stdout)
	if code != 0 || strings.Count(stderr, "\n") != 1 || !cfgLine.MatchString(strings.TrimSuffix(strings.TrimPrefix(stderr, "talon: "), "\n")) ||
		s.Source != "daemon" || !s.Verified || s.Addr != bind || !strings.HasPrefix(s.ConfigError, fmt.Sprintf("%s:%d:", cfg, line)) {
		t.Fatalf("status --json with a broken config: exit %d, stderr %q\n%s", code, stderr, stdout)
	}

	// The daemon gone, the state file, with the same line.
	d.stop()
	stdout, stderr, code = statusRun(t, exec.Command(talonBin, "status", "--format", "table", "--config", cfg))
	first, rest, _ = strings.Cut(stdout, "\n")
	if code != 0 || stderr != "" || !cfgLine.MatchString(first) || !strings.HasPrefix(rest, "state healthy since ") ||
		!strings.Contains(rest, "(from the state file; no daemon answered)\n") {
		t.Fatalf("status with a broken config and no daemon: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, _, code = statusRun(t, exec.Command(talonBin, "status", "--json", "--config", cfg))
	if s := decodeStatus(t, stdout); code != 0 || s.Source != "state_file" || s.Verified || s.State == nil || s.ConfigError == "" {
		t.Fatalf("status --json with a broken config and no daemon: exit %d\n%s", code, stdout)
	}
}

// A program that took the health port after the daemon died (kill -9 left
// its control.token behind) answers /health with a healthy body: talon
// status, which can read the token, asks the server to prove it holds it,
// refuses the answer in one line and shows the state file, saying so.
func TestStatusRefusesASquatter(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), `probe.exec("bad", ["false"], critical = True, after = 1)`+"\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("the incident", 15*time.Second, func(s engine.Snapshot) bool { return s.Incident != nil })
	d.kill9()
	token, err := os.ReadFile(filepath.Join(stateDir, "control.token"))
	if err != nil {
		t.Fatalf("kill -9 left no control.token: %v", err)
	}
	var cf struct{ Token string }
	if err := json.Unmarshal(token, &cf); err != nil || cf.Token == "" {
		t.Fatalf("control.token: %v %s", err, token)
	}

	ln, err := net.Listen("tcp", bind)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, fmt.Sprint(r.Method, " ", r.URL.Path, " ", r.Header))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"state":"healthy","proof":"00","probe_count":1,"failed_probe_count":0,"failed_probes":[]}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	stdout, stderr, code := statusRun(t, exec.Command(talonBin, "status", "--format", "table", "--config", cfg))
	if code != 0 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "talon: not this state directory's talon daemon: the server on "+bind+" cannot prove it holds the state directory's control.token") ||
		strings.Contains(stdout, "healthy") || !regexp.MustCompile(`^state \w+ since \S+ \(from the state file: the server on `+regexp.QuoteMeta(bind)+` is not this state directory's daemon: it could not prove it holds control.token\)\n`).MatchString(stdout) {
		t.Fatalf("status with a squatter: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, _, code = statusRun(t, exec.Command(talonBin, "status", "--json", "--config", cfg))
	if s := decodeStatus(t, stdout); code != 0 || s.Source != "state_file" || s.Verified || s.Health != nil || s.State == nil ||
		s.State.Phase == engine.Healthy || !strings.Contains(s.DaemonError, "cannot prove it holds") {
		t.Fatalf("status --json with a squatter: exit %d\n%s", code, stdout)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("status never asked the squatter")
	}
	for _, s := range seen {
		if strings.Contains(s, cf.Token) || !strings.HasPrefix(s, "GET /identity") {
			t.Fatalf("the squatter got %s", s)
		}
	}
}

// Another user, who cannot read the daemon's control.token, still gets the
// daemon's answer from the configured address, marked unverified: nothing
// proved that the daemon gave it.
func TestStatusUnverifiedForAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("runs talon as another user, which needs root (as every test here runs in CI)")
		}
		t.Skip("runs talon as another user, which needs root")
	}
	dir := t.TempDir()
	// The other user must reach the config and the binary, not the state.
	for _, d := range []string{filepath.Dir(dir), dir, filepath.Dir(talonBin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"ok\", [\"true\"])\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("a cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.OK && s.LastCycle.Unix() > 0 })
	asNobody := func(args ...string) *exec.Cmd {
		cmd := exec.Command(talonBin, args...)
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return cmd
	}
	stdout, stderr, code := statusRun(t, asNobody("status", "--format", "table", "--config", cfg))
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "state healthy (daemon on "+bind+", UNVERIFIED: this user cannot read the state directory's control.token; updated ") {
		t.Fatalf("status as another user: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, _, code = statusRun(t, asNobody("status", "--json", "--config", cfg))
	if s := decodeStatus(t, stdout); code != 0 || s.Source != "daemon" || s.Verified || s.Health == nil || !s.Health.OK {
		t.Fatalf("status --json as another user: exit %d\n%s", code, stdout)
	}
	// The daemon's own user gets the verified answer.
	stdout, _, code = statusRun(t, exec.Command(talonBin, "status", "--json", "--config", cfg))
	if s := decodeStatus(t, stdout); code != 0 || s.Source != "daemon" || !s.Verified {
		t.Fatalf("status --json as the daemon's user: exit %d\n%s", code, stdout)
	}
}
