package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/talon-dev/talon/engine"
)

// A probe that starts `setsid sleep` children at every run: the daemon, a
// child subreaper, kills each run's whole tree when the run ends and reaps
// it; after 100 runs no such process and no zombie is left.
func TestSetsidOrphansOfProbes(t *testing.T) {
	dir := t.TempDir()
	token := "talon-e2e-orphan-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	policy := fmt.Sprintf(`probe.exec("forks", ["bash", "-c", "setsid bash -c 'exec -a %[1]s sleep 1000' & (setsid bash -c 'exec -a %[1]s sleep 1000' &); echo ok"], every = "100ms")
`, token)
	writeFile(t, filepath.Join(dir, "policy", "talon.star"), policy, 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, writeConfig(t, dir, bind, stateDir, ""), filepath.Join(dir, "policy"), bind, stateDir)
	pid := d.cmd.Process.Pid

	runs := func() int {
		n := 0
		for _, rec := range readJournal(t, stateDir) {
			for _, r := range rec.Results {
				if r.Name == "forks" {
					if !r.Passed {
						t.Fatalf("probe failed: %s", r.Output)
					}
					n++
				}
			}
		}
		return n
	}
	var last time.Time
	for deadline := time.Now().Add(60 * time.Second); runs() < 100; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d runs in 60 s", runs())
		}
		s := d.waitFor("the next run", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(last) })
		last = s.LastCycle
	}
	n := runs()
	// Swap the probe out (no run is in flight after the swap), then count.
	h, _ := d.health()
	writeFile(t, filepath.Join(dir, "policy", "talon.star"), `probe.exec("quiet", ["true"])`+"\n", 0o644)
	d.waitFor("the policy without the probe", 10*time.Second, func(s engine.Snapshot) bool {
		return s.PolicyHash != h.PolicyHash && hasProbe(s, "quiet") && !hasProbe(s, "forks")
	})
	// A run in flight at the swap still ends, and kills its children then:
	// wait (on each process's exit, not on a clock) before counting.
	left := len(waitExit(t, procsMatching(token), 5*time.Second))
	zombies := 0
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		stat, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			zombies++
		}
	}
	t.Logf("%d runs of the probe, each starting 2 setsid children: %d left, %d zombies of the daemon", n, left, zombies)
	if left > 0 || zombies > 0 {
		t.Fatalf("%d setsid children outlived their probe, %d zombies", left, zombies)
	}
}

// procsMatching lists the live processes whose command line contains token.
func procsMatching(token string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		stat, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:])); len(f) == 0 || f[0] == "Z" {
			continue
		}
		if cmd, err := os.ReadFile(p + "/cmdline"); err == nil && bytes.Contains(cmd, []byte(token)) {
			pid, _ := strconv.Atoi(filepath.Base(p))
			out = append(out, pid)
		}
	}
	return out
}

// waitExit waits for each process to exit, on its pidfd (an event); it
// returns those still running after limit.
func waitExit(t *testing.T, pids []int, limit time.Duration) []int {
	t.Helper()
	var left []int
	end := time.Now().Add(limit)
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone already
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, int(max(time.Until(end), 0).Milliseconds())); n == 0 {
			left = append(left, pid)
		}
		unix.Close(fd)
	}
	return left
}
