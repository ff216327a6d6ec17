//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/testpeer"
)

// `talon service install --systemd` under a real systemd user manager: the
// unit is written and started, SIGHUP from `systemctl reload` reaches the
// daemon, /health answers while it runs, what a heal started in the
// background survives `systemctl stop` (KillMode=process), and uninstall
// stops it and removes the unit.
func TestServiceUnderSystemd(t *testing.T) {
	sd := testpeer.StartSystemdUser(t, nil)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	up := filepath.Join(dir, "up")
	healPID := filepath.Join(dir, "heal.pid")
	writeFile(t, up, "", 0o644)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.exec("svc", ["test", "-e", %q], critical = True)
state.thresholds(failed_after = 1)
ladder(
    rung("heal", do = exec.shell("sleep 600 >/dev/null 2>&1 & echo $! > %s"), cooldown = "1h"),
)
`, up, healPID), 0o644)
	cfg := writeConfig(t, dir, bind, stateDir, "")

	env := append(os.Environ(), sd.Env()...)
	env = append(env, "XDG_CONFIG_HOME="+filepath.Join(sd.Dir, "config"), "HOME="+filepath.Join(sd.Dir, "home"))
	talon := func(args ...string) (string, string, error) {
		cmd := exec.Command(talonBin, args...)
		cmd.Env = env
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	unit := filepath.Join(sd.UnitDir, "talon.service")

	out, errOut, err := talon("service", "install", "--systemd", "--user", "--binary", talonBin, "--config", cfg, "--policy", policy)
	if err != nil {
		t.Fatalf("install: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "wrote "+unit+"\n") || !strings.Contains(out, "enabled and started talon.service\n") {
		t.Fatalf("install said:\n%s", out)
	}
	b, err := os.ReadFile(unit)
	if err != nil || !strings.Contains(string(b), "ExecStart="+talonBin+" --config "+cfg+" --policy "+policy+" run\n") {
		t.Fatalf("unit: %v\n%s", err, b)
	}
	d := &daemon{t: t, bind: bind}
	d.waitFor("/health under systemd", 20*time.Second, func(s engine.Snapshot) bool { return s.OK && s.ProbeCount == 1 })
	if v := sd.Property(t, "talon.service", "KillMode"); v != "process" {
		t.Fatalf("KillMode %q", v)
	}
	mainPID, _ := strconv.Atoi(sd.Property(t, "talon.service", "MainPID"))
	if mainPID <= 0 {
		t.Fatal("no main pid")
	}

	// systemctl reload sends SIGHUP; the daemon logs that it reloads.
	sd.Systemctl(t, "reload", "talon.service")
	waitUntil(t, "the SIGHUP in talon.log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(stateDir, "talon.log"))
		return strings.Contains(string(b), `"msg":"SIGHUP: reloading"`)
	})
	if pid, _ := strconv.Atoi(sd.Property(t, "talon.service", "MainPID")); pid != mainPID {
		t.Fatalf("reload restarted the daemon: pid %d, was %d", pid, mainPID)
	}

	out, _, err = talon("service", "status", "--systemd", "--json", "--binary", talonBin, "--config", cfg, "--policy", policy)
	var st map[string]any
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if st["installed"] != true || st["loaded"] != true || st["running"] != true || st["pid"] != float64(mainPID) ||
		st["health"] != "answering on "+bind+": healthy" {
		t.Fatalf("status %v", st)
	}

	// An outage: the heal starts a process in the background on purpose.
	os.Remove(up)
	waitUntil(t, "the heal", 20*time.Second, func() bool {
		b, err := os.ReadFile(healPID)
		return err == nil && strings.TrimSpace(string(b)) != ""
	})
	b, _ = os.ReadFile(healPID)
	sleeper, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() { syscall.Kill(sleeper, syscall.SIGKILL) })

	out, errOut, err = talon("service", "uninstall", "--systemd", "--binary", talonBin, "--config", cfg, "--policy", policy)
	if err != nil || !strings.Contains(out, "stopped and disabled talon.service\n") || !strings.Contains(out, "removed "+unit+"\n") {
		t.Fatalf("uninstall: %v\n%s%s", err, out, errOut)
	}
	if _, err := os.Stat(unit); !os.IsNotExist(err) {
		t.Fatal("the unit file is still there")
	}
	if syscall.Kill(mainPID, 0) == nil {
		t.Fatalf("talon (pid %d) still runs after uninstall", mainPID)
	}
	if _, err := d.health(); err == nil {
		t.Fatal("/health still answers after uninstall")
	}
	if err := syscall.Kill(sleeper, 0); err != nil {
		t.Fatalf("what the heal started (pid %d) died with the service: %v", sleeper, err)
	}
	// The daemon stopped cleanly: its journal ends with a stop record.
	recs := readJournal(t, stateDir)
	if last := recs[len(recs)-1]; last.Type != "stop" {
		t.Fatalf("journal ends with %q, want a clean stop", last.Type)
	}
	if v := sd.Property(t, "talon.service", "LoadState"); v != "not-found" {
		t.Fatalf("after uninstall and daemon-reload LoadState is %q", v)
	}
}
