package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/worker"
)

func workerStatus(t *testing.T, s engine.Snapshot) worker.Status {
	t.Helper()
	var w worker.Status
	b, _ := json.Marshal(s.Worker)
	json.Unmarshal(b, &w)
	return w
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// The daemon supervises the worker: restarts it after a crash, reports it on
// /health, keeps the restart count across its own restart, and never exits
// with the worker alive.
func TestDaemonSupervisesTheWorker(t *testing.T) {
	dir := t.TempDir()
	wport := freePort(t)
	events := filepath.Join(dir, "events")
	envFile := filepath.Join(dir, "worker.env")
	writeFile(t, envFile, fmt.Sprintf("TW_PORT=%d\nTW_EVENTS=%s\nexport TW_PLAN=crash-after=1s,healthy\n", wport, events), 0o644)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"a\", [\"true\"])\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, fmt.Sprintf(`
[worker]
command = [%q]
port = %d
health_endpoint = "/health"
sync_endpoint = "/sync"
env_file = %q
health_interval_secs = 1
restart_backoff_max_secs = 2
drain_timeout_secs = 2
`, workerBin, wport, envFile))
	d := startDaemon(t, cfg, policy, bind, stateDir)
	var w worker.Status
	d.waitFor("the worker to crash, restart and be healthy", 20*time.Second, func(s engine.Snapshot) bool {
		w = workerStatus(t, s)
		return w.Running && w.Healthy && w.Restarts == 1
	})
	if s, _ := d.health(); s.WorkerRestarts != 1 {
		t.Fatalf("worker_restarts %d on /health", s.WorkerRestarts)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", wport))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the worker does not answer: %v", err)
	}
	resp.Body.Close()
	pid := w.PID
	// The sync follows the first good health check: wait for it (an
	// event the worker writes), never for an amount of time.
	waitUntil(t, "the sync of the running worker", 20*time.Second, func() bool {
		b, _ := os.ReadFile(events)
		return strings.Contains(string(b), fmt.Sprintf("sync %d ", pid))
	})
	d.stop()
	if alive(pid) {
		t.Fatalf("talon exited with its worker (pid %d) alive", pid)
	}
	// At most one sync per worker, each after that worker's first good
	// health check; the worker that stayed up got exactly one. (The first
	// worker crashes after 1 s: whether it was polled, or synced, before
	// that depends on the machine's speed, so nothing here asserts it.)
	b, _ := os.ReadFile(events)
	healthy := map[string]bool{}
	synced := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		switch {
		case f[0] == "health" && len(f) > 3 && f[3] == "200":
			healthy[f[1]] = true
		case f[0] == "sync":
			synced[f[1]]++
			if !healthy[f[1]] {
				t.Fatalf("worker %s was synced before it was healthy:\n%s", f[1], b)
			}
		}
	}
	for p, n := range synced {
		if n != 1 {
			t.Fatalf("worker %s was synced %d times:\n%s", p, n, b)
		}
	}
	if starts := strings.Count(string(b), "start "); starts != 2 || synced[fmt.Sprint(pid)] != 1 {
		t.Fatalf("%d starts, the running worker %d synced %d times:\n%s", starts, pid, synced[fmt.Sprint(pid)], b)
	}

	// A new talon continues the count instead of starting from zero.
	d = startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("the worker again", 20*time.Second, func(s engine.Snapshot) bool {
		w = workerStatus(t, s)
		return w.Running && w.Healthy
	})
	if w.Restarts != 1 {
		t.Fatalf("restart count after talon restarted: %d, want 1", w.Restarts)
	}
	pid = w.PID
	d.stop()
	if alive(pid) {
		t.Fatal("worker alive after talon stopped")
	}
}

func TestWorkerOnly(t *testing.T) {
	dir := t.TempDir()
	wport := freePort(t)
	envFile := filepath.Join(dir, "worker.env")
	writeFile(t, envFile, fmt.Sprintf("TW_PORT=%d\n", wport), 0o644)
	stateDir := filepath.Join(dir, "state")
	cfg := writeConfig(t, dir, "127.0.0.1:1", stateDir, fmt.Sprintf(`
[worker]
command = [%q]
port = %d
env_file = %q
health_interval_secs = 1
drain_timeout_secs = 2
`, workerBin, wport, envFile))
	cmd := exec.Command(talonBin, "--worker-only", "--config", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	waitUntil(t, "the worker", 10*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", wport))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("--worker-only after SIGTERM: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("--worker-only did not stop")
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", wport)); err == nil {
		t.Fatal("the worker outlived --worker-only")
	}
}
