package effect

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pidByArgv0 waits until exactly one live process has argv[0] name, and
// returns it.
func pidByArgv0(t *testing.T, name string) int {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		var found []int
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			b, err := os.ReadFile(d + "/cmdline")
			if err != nil || !bytes.HasPrefix(b, []byte(name+"\x00")) {
				continue
			}
			pid, _ := strconv.Atoi(filepath.Base(d))
			if !zombie(pid) {
				found = append(found, pid)
			}
		}
		if len(found) == 1 {
			return found[0]
		}
	}
	t.Fatalf("no single process %s", name)
	return 0
}

// startWith starts argv in its own process group with env (the test's
// PATH first), to be killed and reaped when the test ends.
func startWith(t *testing.T, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(slices.Clip(testEnv), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

func killByArgv0(t *testing.T, names ...string) {
	t.Cleanup(func() {
		for _, n := range names {
			dirs, _ := filepath.Glob("/proc/[0-9]*")
			for _, d := range dirs {
				if b, err := os.ReadFile(d + "/cmdline"); err == nil && bytes.HasPrefix(b, []byte(n+"\x00")) {
					pid, _ := strconv.Atoi(filepath.Base(d))
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
}

// The sweep on real processes: the tree of a command recorded as in flight
// dies — its leader (which gets SIGTERM first and cleans up), a child that
// called setsid, a child that cleared its environment, a child that ignores
// SIGTERM (SIGKILL after the grace) — while processes of this instance whose
// command had ended, of another instance, of `talon check` (a marker without
// prefix) and one that carries the marker inside another variable live on.
func TestSweepKillsTheTreesOfCommandsInFlight(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, err := NewInstance(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewInstance(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	tok := "talon-sweep-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	n := func(s string) string { return tok + "-" + s }
	killByArgv0(t, n("setsid"), n("bare"), n("stubborn"), n("nap"), n("keep"), n("other"), n("check"), n("decoy"))

	flying := in.marker()
	in.begin(flying)
	random := strings.TrimPrefix(flying, in.Prefix()+"-")
	script := filepath.Join(dir, "inflight.sh")
	cleaned := filepath.Join(dir, "cleaned")
	if err := os.WriteFile(script, []byte(`
setsid bash -c 'exec -a `+n("setsid")+` sleep 300' &
env -i bash -c 'exec -a `+n("bare")+` sleep 300' &
(trap '' TERM; exec -a `+n("stubborn")+` sleep 300) &
(exec -a `+n("nap")+` sleep 300) &
trap 'echo cleaned > `+cleaned+`; exit 0' TERM
wait
`), 0o644); err != nil {
		t.Fatal(err)
	}
	leader := startWith(t, []string{MarkerVar + "=" + flying}, "bash", script)
	startWith(t, []string{MarkerVar + "=" + in.marker()}, "bash", "-c", "exec -a "+n("keep")+" sleep 300")
	startWith(t, []string{MarkerVar + "=" + other.Prefix() + "-" + random}, "bash", "-c", "exec -a "+n("other")+" sleep 300")
	startWith(t, []string{MarkerVar + "=" + random}, "bash", "-c", "exec -a "+n("check")+" sleep 300")
	startWith(t, []string{"SAVED=" + MarkerVar + "=" + flying}, "bash", "-c", "exec -a "+n("decoy")+" sleep 300")

	doomed := map[int]string{leader.Process.Pid: "bash " + script}
	for _, s := range []string{"setsid", "bare", "stubborn", "nap"} {
		doomed[pidByArgv0(t, n(s))] = n(s) + " 300"
	}
	spared := map[int]string{}
	for _, s := range []string{"keep", "other", "check", "decoy"} {
		spared[pidByArgv0(t, n(s))] = s
	}

	killed, err := in.Sweep(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, o := range killed {
		got[o.PID] = o.Command
	}
	if len(got) != len(doomed) {
		t.Errorf("killed %v, want %v", got, doomed)
	}
	for pid, cmd := range doomed {
		if got[pid] != cmd {
			t.Errorf("pid %d (%s): reported as %q", pid, cmd, got[pid])
		}
		if !zombie(pid) {
			t.Errorf("pid %d (%s) is still running", pid, cmd)
		}
	}
	for pid, what := range spared {
		if zombie(pid) {
			t.Errorf("the %s process (pid %d) was killed", what, pid)
		}
	}
	if b, err := os.ReadFile(cleaned); err != nil || string(b) != "cleaned\n" {
		t.Errorf("the leader had no SIGTERM to clean up on: %q, %v", b, err)
	}
	if left, err := in.inFlight(); err != nil || len(left) != 0 {
		t.Errorf("in flight after the sweep: %v, %v", left, err)
	}
	// A second sweep finds nothing: the record is cleared.
	if again, err := in.Sweep(time.Second); err != nil || len(again) != 0 {
		t.Errorf("second sweep: %v, %v", again, err)
	}
}

// Through Live with the daemon's Instance: a command is recorded as in
// flight while it runs and carries the instance's marker; a sweep (as the
// next daemon makes it after a crash) kills its tree, setsid'd child
// included; what a command that ended left running on purpose (KeepGroup)
// is no longer in flight and stays.
func TestLiveRecordsCommandsForTheSweep(t *testing.T) {
	t.Parallel()
	in, err := NewInstance(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLive()
	l.Instance = in
	tok := "talon-live-sweep-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	killByArgv0(t, tok+"-daemon", tok+"-hung", tok+"-probe")

	r := l.Exec(context.Background(), Command{Argv: []string{"bash", "-c", "setsid bash -c 'exec -a " + tok + "-daemon sleep 300' & echo ok"},
		Env: testEnv, KeepGroup: true})
	if !r.OK() {
		t.Fatalf("heal: %+v", r)
	}
	daemon := pidByArgv0(t, tok+"-daemon")
	env, _ := procEnviron(daemon)
	if !bytes.Contains(env, []byte(MarkerVar+"="+in.Prefix()+"-")) {
		t.Fatalf("the heal's daemon does not carry the instance's marker: %q", env)
	}
	if m, _ := in.inFlight(); len(m) != 0 {
		t.Fatalf("in flight after the heal ended: %v", m)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := make(chan ExecResult, 1)
	go func() {
		res <- l.Exec(ctx, Command{Argv: []string{"bash", "-c", "setsid bash -c 'exec -a " + tok + "-hung sleep 300' & exec -a " + tok + "-probe sleep 300"}, Env: testEnv})
	}()
	hung, probe := pidByArgv0(t, tok+"-hung"), pidByArgv0(t, tok+"-probe")
	if m, _ := in.inFlight(); len(m) != 1 {
		t.Fatalf("in flight while the probe runs: %v", m)
	}
	killed, err := in.Sweep(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, o := range killed {
		pids = append(pids, o.PID)
	}
	slices.Sort(pids)
	want := []int{min(hung, probe), max(hung, probe)}
	if !slices.Equal(pids, want) {
		t.Fatalf("swept %v, want the probe and its setsid child %v", killed, want)
	}
	if r := <-res; r.OK() || r.TimedOut {
		t.Fatalf("the swept probe: %+v", r)
	}
	if zombie(daemon) {
		t.Fatal("the daemon a heal started was swept")
	}
}
