package effect

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}

func execIn(t *testing.T, timeout time.Duration, c Command) ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if c.Env == nil {
		c.Env = testEnv
	}
	return NewLive().Exec(ctx, c)
}

func TestExecExitAndOutput(t *testing.T) {
	t.Parallel()
	r := execIn(t, 5*time.Second, Command{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
	if r.Err != nil || r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" || r.TimedOut {
		t.Fatalf("got %+v", r)
	}
	if r.OK() {
		t.Fatal("exit 3 reported OK")
	}
}

func TestExecResolvesOnChildPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/talon-only-here", []byte("#!/bin/sh\necho found\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := execIn(t, 5*time.Second, Command{Argv: []string{"talon-only-here"}, Env: []string{"PATH=" + dir}})
	if !r.OK() || r.Stdout != "found\n" {
		t.Fatalf("got %+v", r)
	}
	r = execIn(t, 5*time.Second, Command{Argv: []string{"talon-only-here"}, Env: []string{"PATH=/usr/bin"}})
	if r.Err == nil || !strings.Contains(r.Err.Error(), "not found on PATH /usr/bin") {
		t.Fatalf("want not-found error, got %+v", r)
	}
}

// The predecessor waited 30 s here: a background grandchild held the pipe.
func TestExecTimeoutKillsGrandchildren(t *testing.T) {
	t.Parallel()
	marker := "talon-grandchild-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	r := execIn(t, time.Second, Command{Argv: []string{"bash", "-c", "(exec -a " + marker + " sleep 30) & sleep 30"}})
	took := time.Since(start)
	if !r.TimedOut {
		t.Fatalf("want timeout, got %+v", r)
	}
	if took > 3*time.Second {
		t.Fatalf("timeout of 1s took %v", took)
	}
	if pids := pgrep(t, marker); pids != "" {
		t.Fatalf("process left behind: %s", pids)
	}
}

func TestExecNoOrphanAfterLeaderExits(t *testing.T) {
	t.Parallel()
	marker := "talon-orphan-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	r := execIn(t, 10*time.Second, Command{Argv: []string{"bash", "-c", "(exec -a " + marker + " sleep 30) & echo started"}})
	if !r.OK() || r.Stdout != "started\n" {
		t.Fatalf("got %+v", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("background pipe holder delayed the result by %v", d)
	}
	if pids := pgrep(t, marker); pids != "" {
		t.Fatalf("orphan left behind: %s", pids)
	}
}

func TestExecKeepGroupLeavesDaemonAndReturns(t *testing.T) {
	t.Parallel()
	marker := "talon-daemon-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	r := execIn(t, 10*time.Second, Command{KeepGroup: true, Argv: []string{"bash", "-c", "(exec -a " + marker + " sleep 5) & echo started"}})
	if !r.OK() || r.Stdout != "started\n" {
		t.Fatalf("got %+v", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("pipe holder delayed the result by %v", d)
	}
	pids := pgrep(t, marker)
	if pids == "" {
		t.Fatal("KeepGroup killed the background process")
	}
	for _, p := range strings.Fields(pids) {
		pid, _ := strconv.Atoi(p)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestExecMegabyteOfOutput(t *testing.T) {
	t.Parallel()
	r := execIn(t, 10*time.Second, Command{Argv: []string{"sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo done >&2"}})
	if !r.OK() || r.TimedOut {
		t.Fatalf("1 MB of output failed: exit=%d timedOut=%v err=%v", r.ExitCode, r.TimedOut, r.Err)
	}
	if !r.Truncated || !strings.HasPrefix(r.Stdout, strings.Repeat("x", DefaultMaxOutput)) {
		t.Fatalf("want truncated output starting with 64 KiB of x, got %d bytes", len(r.Stdout))
	}
	if !strings.Contains(r.Stdout, "bytes of output dropped") || r.Stderr != "done\n" {
		t.Fatalf("stderr %q, stdout tail %q", r.Stderr, r.Stdout[len(r.Stdout)-60:])
	}
}

func TestExecStdinNeverBlocks(t *testing.T) {
	t.Parallel()
	big := []byte(strings.Repeat("p", 1<<20))
	// A child that reads its prompt.
	r := execIn(t, 10*time.Second, Command{Argv: []string{"wc", "-c"}, Stdin: big})
	if !r.OK() || strings.TrimSpace(r.Stdout) != "1048576" {
		t.Fatalf("got %+v", r)
	}
	// A child that never reads stdin still finishes.
	start := time.Now()
	r = execIn(t, 10*time.Second, Command{Argv: []string{"true"}, Stdin: big})
	if !r.OK() || time.Since(start) > 3*time.Second {
		t.Fatalf("got %+v after %v", r, time.Since(start))
	}
}

func TestExecGraceSendsTermFirst(t *testing.T) {
	t.Parallel()
	r := execIn(t, 500*time.Millisecond, Command{Grace: 2 * time.Second,
		Argv: []string{"bash", "-c", "trap 'echo got-term; exit 7' TERM; sleep 30 & wait"}})
	if !r.TimedOut || !strings.Contains(r.Stdout, "got-term") {
		t.Fatalf("want a graceful TERM, got %+v", r)
	}
}

func TestExecSpawnFailure(t *testing.T) {
	t.Parallel()
	r := execIn(t, time.Second, Command{Argv: []string{"/nonexistent/talon-prog"}})
	if r.Err == nil || r.OK() {
		t.Fatalf("want error, got %+v", r)
	}
}

func pgrep(t *testing.T, marker string) string {
	t.Helper()
	// Give the kernel a moment to reap.
	for i := 0; i < 20; i++ {
		out, _ := exec.Command("pgrep", "-f", marker).Output()
		if strings.TrimSpace(string(out)) == "" {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := exec.Command("pgrep", "-f", marker).Output()
	return strings.TrimSpace(string(out))
}

// A descendant that leaves the process group (setsid) and keeps the pipe
// open must not hold the result past the deadline.
func TestExecSetsidPipeHolderCannotStallTheResult(t *testing.T) {
	t.Parallel()
	marker := "talon-setsid-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	r := execIn(t, time.Second, Command{Argv: []string{"bash", "-c", "setsid bash -c 'exec -a " + marker + " sleep 6' & sleep 30"}})
	took := time.Since(start)
	defer exec.Command("pkill", "-f", marker).Run()
	if !r.TimedOut || took > 3*time.Second {
		t.Fatalf("timed out %v after %v: a setsid grandchild held the result", r.TimedOut, took)
	}
	start = time.Now()
	r = execIn(t, 10*time.Second, Command{Argv: []string{"bash", "-c", "setsid bash -c 'exec -a " + marker + " sleep 6' & echo done"}})
	if !r.OK() || r.Stdout != "done\n" || time.Since(start) > 3*time.Second {
		t.Fatalf("got %+v after %v", r, time.Since(start))
	}
}

// A process that escaped everything (a cleared environment, setsid, a
// parent that exited: nothing links it to the command) holds the pipes:
// the result is still final at the deadline, however long the exit drain.
func TestExecResultFinalAtDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		timedOut     bool
	}{
		{"killed at the deadline", "sleep 30", true},
		{"exited before the deadline", "echo done", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pidfile := t.TempDir() + "/holder.pid"
			holder := `(env -i setsid sh -c 'echo $$ > ` + pidfile + `; exec sleep 30' &); while [ ! -s ` + pidfile + ` ]; do :; done; ` + tc.script
			r := execIn(t, 300*time.Millisecond, Command{Drain: time.Hour, Argv: []string{"sh", "-c", holder}})
			b, err := os.ReadFile(pidfile)
			if err != nil {
				t.Fatalf("no holder: %v (result %+v)", err, r)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			defer syscall.Kill(pid, syscall.SIGKILL)
			// The result came while the holder still held the pipes.
			if err := syscall.Kill(pid, 0); err != nil {
				t.Fatalf("the holder is gone (%v): the result waited for it", err)
			}
			if r.TimedOut != tc.timedOut {
				t.Fatalf("timed out %v, want %v: %+v", r.TimedOut, tc.timedOut, r)
			}
		})
	}
}
