package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

var sighup = syscall.SIGHUP

// talonCmd runs a talon command against a running daemon's config.
func talonCmd(t *testing.T, d *daemon, args ...string) (string, error) {
	t.Helper()
	cfg := d.cmd.Args[3]
	out, err := exec.Command(talonBin, append(args, "--config", cfg)...).CombinedOutput()
	return string(out), err
}

// Every command piped into `head -c 1` ends with status 0 and nothing on
// stderr, however much it had left to write (the predecessor aborted).
func TestClosedPipeIsQuiet(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p")
	var body strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&body, "probe.exec(\"probe_%03d\", [\"echo\", %q])\n", i, strings.Repeat("x", 200))
	}
	writeFile(t, filepath.Join(policy, "talon.star"), body.String(), 0o644)
	stateDir := filepath.Join(dir, "state")
	st := engine.NewState(time.Now())
	for i := 0; i < 300; i++ {
		st.Probes[fmt.Sprintf("probe_%03d", i)] = &engine.ProbeState{Last: &engine.Result{Name: "x", Output: strings.Repeat("y", 200)}}
	}
	if err := engine.SaveState(engine.StatePath(stateDir), st); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, "127.0.0.1:1", stateDir, "")
	for _, args := range [][]string{{"check"}, {"check", "--json"}, {"validate"}, {"--check"}, {"--dry-run"}, {"status"}, {"--status"}, {"--help"}} {
		cmd := exec.Command("bash", "-c", `set -o pipefail; "$0" "$@" | head -c 1 >/dev/null`, talonBin)
		cmd.Args = append(cmd.Args, append(args, "--config", cfg, "--policy", policy)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 {
			t.Errorf("talon %v | head -c 1: %v, stderr %q", args, err, stderr.String())
		}
	}
	// Quiet, but not lying: a failing check into a closed pipe still exits 1.
	writeFile(t, filepath.Join(policy, "talon.star"), body.String()+"probe.exec(\"bad\", [\"false\"])\n", 0o644)
	cmd := exec.Command("bash", "-c", `set -o pipefail; "$0" check --config "$1" --policy "$2" | head -c 1 >/dev/null`, talonBin, cfg, policy)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || stderr.Len() != 0 {
		t.Fatalf("failing check into a closed pipe: %v, stderr %q", err, stderr.String())
	}
}

// Children must not inherit an ignored SIGPIPE: `yes | head -n 1` ends at once.
func TestProbesGetDefaultSIGPIPE(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p")
	writeFile(t, filepath.Join(policy, "talon.star"), `probe.script("pipe", "yes | head -n 1", timeout = "5s")`+"\n", 0o644)
	cfg := writeConfig(t, dir, "127.0.0.1:1", filepath.Join(dir, "state"), "")
	start := time.Now()
	out, err := exec.Command(talonBin, "check", "--config", cfg, "--policy", policy).CombinedOutput()
	if err != nil || time.Since(start) > 3*time.Second || !strings.Contains(string(out), `"passed": true`) {
		t.Fatalf("yes | head -n 1 under talon check: %v after %v\n%s", err, time.Since(start), out)
	}
}

// A pid file left by kill -9 names a process that may be anything now:
// reload refuses to signal it.
func TestReloadNeverSignalsAStalePid(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	victim := exec.Command("sleep", "30")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	writeFile(t, filepath.Join(stateDir, "talon.pid"), fmt.Sprintf("%d\n", victim.Process.Pid), 0o644)
	writeFile(t, filepath.Join(stateDir, "talon.lock"), "", 0o600)
	cfg := writeConfig(t, dir, fmt.Sprintf("127.0.0.1:%d", freePort(t)), stateDir, "")
	out, err := exec.Command(talonBin, "reload", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pid file there is stale") {
		t.Fatalf("reload with a stale pid file: %v %s", err, out)
	}
	time.Sleep(100 * time.Millisecond)
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatal("talon reload signalled a process that is not talon")
	}
}

func TestExplicitConfigMustExist(t *testing.T) {
	out, err := exec.Command(talonBin, "check", "--config", "/nonexistent/talon/config.toml").CombinedOutput()
	if err == nil || string(out) != "talon: /nonexistent/talon/config.toml: config file does not exist; fix --config / TALON_CONFIG or create it\n" {
		t.Fatalf("%v %q", err, out)
	}
}
