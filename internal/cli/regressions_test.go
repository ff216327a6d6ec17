package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A kill -9'd daemon leaves talon.pid; `talon run --worker-only` then holds
// the lock (it writes no pid file). `talon reload` finds no /health, sees
// the lock held, and SIGHUPs whatever process now has the stale pid.
func TestRegressionReloadSignalsStalePIDUnderWorkerOnly(t *testing.T) {
	dir := t.TempDir()
	victim := exec.Command("sleep", "30") // stands for an unrelated process that got the pid
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	os.WriteFile(filepath.Join(dir, "talon.pid"), []byte(strconv.Itoa(victim.Process.Pid)+"\n"), 0o644)
	_, release, err := claimStateDir(dir, true) // what workerOnly does
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	sent, err := signalDaemon(dir)
	done := make(chan error, 1)
	go func() { done <- victim.Wait() }()
	select {
	case werr := <-done:
		t.Fatalf("signalDaemon sent=%v err=%v: unrelated pid %d killed (%v)", sent, err, victim.Process.Pid, werr)
	case <-time.After(300 * time.Millisecond):
	}
}
