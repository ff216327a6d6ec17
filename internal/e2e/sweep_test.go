package e2e

import (
	"bytes"
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
)

// pidsByArgv0 lists the live processes whose argv[0] is name.
func pidsByArgv0(name string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		b, err := os.ReadFile(p + "/cmdline")
		if err != nil || !bytes.HasPrefix(b, []byte(name+"\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(p))
		if running(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// running reports whether pid is running (neither gone nor a zombie).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	return len(f) > 0 && f[0] != "Z"
}

// onePid waits for exactly one live process with argv[0] name.
func onePid(t *testing.T, name string) int {
	t.Helper()
	var pids []int
	waitUntil(t, "the process "+name, 20*time.Second, func() bool {
		pids = pidsByArgv0(name)
		return len(pids) == 1
	})
	return pids[0]
}

// hungProbe is a policy whose probe starts a `setsid` sleeper and hangs,
// beside a quick probe that completes cycles.
func hungProbe(tok string) string {
	return fmt.Sprintf(`probe.exec("hang", ["bash", "-c", "setsid bash -c 'exec -a %[1]s-setsid sleep 300' & exec -a %[1]s-probe sleep 300"], timeout = "5m")
probe.exec("quick", ["true"])
`, tok)
}

// After kill -9 of the daemon while a probe hangs, the probe and the setsid
// child it started outlive the daemon (reparented to init, nobody kills
// them); the next daemon of the same state dir kills both before its first
// cycle completes, and says so in one log line. A daemon of another state
// dir with the same kind of hung probe, and `talon check` run beside it with
// the same state dir, keep theirs.
func TestRestartSweepsWhatAKilledDaemonLeft(t *testing.T) {
	tok := "talon-e2e-sweep-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() {
		for _, s := range []string{"a", "b", "check"} {
			for _, suffix := range []string{"-setsid", "-probe"} {
				for _, pid := range pidsByArgv0(tok + "-" + s + suffix) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	daemonOf := func(name string) (cfg, policy, stateDir, bind string) {
		dir := filepath.Join(t.TempDir(), name)
		policy = filepath.Join(dir, "policy")
		writeFile(t, filepath.Join(policy, "talon.star"), hungProbe(tok+"-"+name), 0o644)
		stateDir = filepath.Join(dir, "state")
		bind = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		return writeConfig(t, dir, bind, stateDir, ""), policy, stateDir, bind
	}
	cfgA, policyA, stateA, bindA := daemonOf("a")
	cfgB, policyB, stateB, bindB := daemonOf("b")

	a := startDaemon(t, cfgA, policyA, bindA, stateA)
	oldSleeper, oldProbe := onePid(t, tok+"-a-setsid"), onePid(t, tok+"-a-probe")
	b := startDaemon(t, cfgB, policyB, bindB, stateB)
	otherSleeper := onePid(t, tok+"-b-setsid")

	a.kill9()
	if !running(oldSleeper) || !running(oldProbe) {
		t.Fatalf("after kill -9 of the daemon: sleeper running %v, probe running %v; the test proves nothing", running(oldSleeper), running(oldProbe))
	}

	// `talon check` with the same config (so the same state dir), its own
	// hung probe, running while the daemon restarts.
	checkPolicy := filepath.Join(t.TempDir(), "check")
	writeFile(t, filepath.Join(checkPolicy, "talon.star"), hungProbe(tok+"-check"), 0o644)
	check := exec.Command(talonBin, "check", "--config", cfgA, "--policy", checkPolicy)
	check.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := check.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-check.Process.Pid, syscall.SIGKILL); check.Wait() })
	checkSleeper := onePid(t, tok+"-check-setsid")

	restarted := time.Now()
	a = startDaemon(t, cfgA, policyA, bindA, stateA)
	a.waitFor("the first cycle", 20*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(restarted) })
	if running(oldSleeper) || running(oldProbe) {
		t.Fatalf("after the first cycle of the restarted daemon: the dead one's sleeper running %v, its probe running %v", running(oldSleeper), running(oldProbe))
	}
	if !running(otherSleeper) {
		t.Error("the hung probe's sleeper of the daemon of another state dir was killed")
	}
	if !running(checkSleeper) {
		t.Error("the sleeper of `talon check` beside the daemon was killed")
	}
	// The restarted daemon's own probe runs again, and is not swept.
	newProbe := onePid(t, tok+"-a-probe")
	if newProbe == oldProbe {
		t.Fatalf("the probe's pid %d is the old one's", newProbe)
	}
	log := a.stderr.String()
	var line string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "killed what the commands of a dead daemon left running") {
			if line != "" {
				t.Fatalf("two sweep lines:\n%s\n%s", line, l)
			}
			line = l
		}
	}
	for _, want := range []string{"count=2", strconv.Itoa(oldSleeper), strconv.Itoa(oldProbe), tok + "-a-setsid 300"} {
		if !strings.Contains(line, want) {
			t.Errorf("the sweep's log line %q does not say %q", line, want)
		}
	}
	t.Logf("sweep: %s", line)
	a.stop()
	b.stop()
}
