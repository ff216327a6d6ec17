package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/testpeer"
)

// The state directory fills up, then turns read-only: the daemon keeps
// probing and escalating, says so on /health (write_error, not ok) and once
// per episode in the log, and saves again as soon as it can. The state
// directory is a 1 MiB tmpfs in the daemon's own mount namespace (unshare
// -m), filled for real (ENOSPC) through /proc/PID/root, then covered by a
// read-only bind mount of itself (EROFS).
func TestFullThenReadOnlyStateDir(t *testing.T) {
	bins := testpeer.Need(t, "unshare", "nsenter", "mount", "umount")
	if out, err := exec.Command(bins["unshare"], "-m", "--propagation", "private", "true").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("a private mount namespace needs root: unshare -m: %v %s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	down, healed := filepath.Join(dir, "down"), filepath.Join(dir, "healed")
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.exec("api", ["sh", "-c", "test ! -e %s"], critical = True)
ladder(rung("heal", do = exec.cmd(["sh", "-c", "echo healed >> %s"]), cooldown = "1h"))
`, down, healed), 0o644)
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemonArgv(t, []string{bins["unshare"], "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=1m,mode=0700 talon-test "$0" && exec "$@"`, stateDir,
		talonBin, "run", "--config", cfg, "--policy", policy}, bind, stateDir)
	d.waitFor("healthy", 10*time.Second, func(s engine.Snapshot) bool { return s.OK })
	pid := d.cmd.Process.Pid
	inside := fmt.Sprintf("/proc/%d/root%s", pid, stateDir) // the state dir as the daemon sees it
	var in, out syscall.Statfs_t
	if err := syscall.Statfs(inside, &in); err != nil {
		t.Fatal(err)
	}
	syscall.Statfs(stateDir, &out)
	if in.Type != 0x01021994 || out.Type == 0x01021994 && out.Blocks == in.Blocks { // TMPFS_MAGIC
		t.Fatalf("the daemon's state dir is not its own tmpfs (type %x, outside %x)", in.Type, out.Type)
	}
	nsenter := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bins["nsenter"], append([]string{"-t", fmt.Sprint(pid), "-m", "--"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nsenter %v: %v %s", args, err, out)
		}
	}
	lines := func(s string) int { return strings.Count(d.stderr.String(), s) }

	// Disk full: a real ENOSPC.
	filler, err := os.Create(inside + "/filler")
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for err == nil {
		_, err = filler.Write(chunk)
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	os.WriteFile(down, nil, 0o600) // the probe fails from now on
	s := d.waitFor("the write failure and the escalation", 20*time.Second, func(s engine.Snapshot) bool {
		return s.WriteError != nil && s.WriteError.State != "" && s.WriteError.Journal != "" && s.Incident != nil
	})
	if s.OK || !strings.Contains(s.WriteError.State, "no space left on device") || !strings.Contains(s.WriteError.Journal, "no space left on device") {
		t.Fatalf("/health while the disk is full: ok %v, %+v", s.OK, s.WriteError)
	}
	waitUntil(t, "the heal rung to run", 10*time.Second, func() bool { _, err := os.Stat(healed); return err == nil })
	// Probing goes on: three more cycles, and still one log line each.
	last := s.LastCycle
	for range 3 {
		s = d.waitFor("another cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(last) })
		last = s.LastCycle
	}
	if s.WriteError == nil || s.OK {
		t.Fatalf("the write failure went off /health while the disk is still full: %+v", s)
	}
	if n, m := lines("state file not saved"), lines("journal not written"); n != 1 || m != 1 {
		t.Fatalf("logged %d state and %d journal failures, want one each:\n%s", n, m, d.stderr.String())
	}

	// Room again: everything is saved, and said so once.
	if err := os.Remove(inside + "/filler"); err != nil {
		t.Fatal(err)
	}
	d.waitFor("the write failure to clear", 10*time.Second, func(s engine.Snapshot) bool { return s.WriteError == nil })
	if n, m := lines("state written again"), lines("journal written again"); n != 1 || m != 1 {
		t.Fatalf("logged %d state and %d journal recoveries, want one each", n, m)
	}
	st, err := engine.LoadState(inside + "/state.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.Incident == nil || st.Incident.ID != s.Incident.ID || st.LastRun["heal"].IsZero() {
		t.Fatalf("the state saved after the disk had room again lacks what was decided meanwhile: %+v", st.Incident)
	}
	readJournal(t, inside) // every line whole: a write cut by ENOSPC left nothing behind

	// Read-only: a read-only bind mount of the state dir over itself. The
	// journal, open already, goes on; new files (the state's temp file) fail.
	nsenter(bins["mount"], "--bind", stateDir, stateDir)
	nsenter(bins["mount"], "-o", "remount,bind,ro", stateDir)
	os.Remove(down) // the probe recovers: the incident resolves
	s = d.waitFor("the read-only failure", 20*time.Second, func(s engine.Snapshot) bool {
		return s.WriteError != nil && s.Incident == nil
	})
	if s.OK || !strings.Contains(s.WriteError.State, "read-only file system") {
		t.Fatalf("/health while the state dir is read-only: ok %v %+v", s.OK, s.WriteError)
	}
	if n := lines("state file not saved"); n != 2 {
		t.Fatalf("logged %d state failures, want one for each episode", n)
	}
	nsenter(bins["umount"], stateDir)
	d.waitFor("healthy again", 10*time.Second, func(s engine.Snapshot) bool { return s.WriteError == nil && s.OK })
	if st, err := engine.LoadState(inside + "/state.json"); err != nil || st.Incident != nil || st.Phase != engine.Healthy {
		t.Fatalf("the resolution was not saved once the dir was writable again: %v %+v", err, st)
	}
	d.stop()
}
