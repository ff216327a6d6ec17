package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// SIGTERM while a long heal runs: the heal's whole process group is stopped,
// the interruption is recorded, state is written and the daemon exits 0 in
// a few seconds.
func TestSIGTERMDuringAHealStopsItsGroup(t *testing.T) {
	dir := t.TempDir()
	marker := fmt.Sprintf("talon-heal-child-%d", time.Now().UnixNano())
	heal := filepath.Join(dir, "heal.sh")
	writeFile(t, heal, "#!/bin/bash\n(exec -a "+marker+" sleep 60) &\nsleep 60\n", 0o755)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.exec("down", ["false"], critical = True, after = 1)
ladder(rung("heal", do = exec.cmd([%q]), timeout = "5m", cooldown = "1h"))
`, heal), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("the heal to run", 10*time.Second, func(s engine.Snapshot) bool { return s.Rung != nil && *s.Rung == "heal" })
	if out, _ := exec.Command("pgrep", "-f", marker).Output(); len(out) == 0 {
		t.Fatal("the heal's background child is not running")
	}
	// /health stays fresh while the heal runs.
	s1, _ := d.health()
	d.waitFor("a cycle during the heal", 5*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(s1.LastCycle) })

	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	err := <-d.done
	d.done <- err
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("SIGTERM took %v", took)
	}
	for i := 0; i < 20; i++ {
		if out, _ := exec.Command("pgrep", "-f", marker).Output(); len(out) == 0 {
			break
		} else if i == 19 {
			t.Fatalf("heal processes survived the daemon: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st engine.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Incident == nil || st.Incident.Running != "" || st.Incident.Rungs["heal"] == nil || st.Incident.Rungs["heal"].Attempts != 1 ||
		!strings.Contains(st.Incident.Rungs["heal"].LastOutput, "interrupted") {
		t.Fatalf("state after SIGTERM: %s", b)
	}
	assertReplayMatches(t, cfg, policy, stateDir)
}

// Two daemons on one state directory would page twice: the second refuses.
func TestSecondDaemonOnTheSameStateDirRefuses(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"a\", [\"true\"])\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	out, err := exec.Command(talonBin, "run", "--config", cfg, "--policy", policy).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another talon daemon (pid ") {
		t.Fatalf("second daemon: %v %s", err, out)
	}
	if _, err := d.health(); err != nil {
		t.Fatalf("the first daemon suffered: %v", err)
	}
}
