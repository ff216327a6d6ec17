package effect

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// procsWith lists the live processes whose command line contains token,
// and the zombie children of this process.
func procsWith(t *testing.T, token string) (live, zombies []int) {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		if f[0] == "Z" {
			if f[1] == self {
				zombies = append(zombies, pid)
			}
			continue
		}
		if cmd, err := os.ReadFile(d + "/cmdline"); err == nil && bytes.Contains(cmd, []byte(token)) {
			live = append(live, pid)
		}
	}
	return live, zombies
}

// waitGone waits for each pid to exit, through a pidfd (an event, not a
// poll); a process still there after the limit is reported.
func waitGone(t *testing.T, pids []int, limit time.Duration) []int {
	t.Helper()
	var left []int
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // already gone
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, int(limit.Milliseconds())); n == 0 {
			left = append(left, pid)
		}
		unix.Close(fd)
	}
	return left
}

// A probe whose command starts `setsid sleep` children and exits: with the
// process a subreaper, every such child is killed when the probe ends and
// reaped when it dies, however many times the probe runs.
func TestSetsidChildrenDoNotOutliveTheirCommand(t *testing.T) {
	// Not parallel: while this process is a subreaper, a child started
	// without StartChild (pgrep in other tests) could be reaped under them.
	ctx, cancel := context.WithCancel(context.Background())
	done, err := Subreaper(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	token := "talon-setsid-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	script := `setsid bash -c 'exec -a ` + token + ` sleep 1000' & setsid bash -c '(exec -a ` + token + ` sleep 1000 &); sleep 1000' & echo ok`
	for i := range 20 {
		r := execIn(t, 10*time.Second, Command{Argv: []string{"bash", "-c", script}})
		if !r.OK() || r.Stdout != "ok\n" {
			t.Fatalf("run %d: %+v", i, r)
		}
	}
	live, _ := procsWith(t, token)
	if left := waitGone(t, live, 5*time.Second); len(left) > 0 {
		t.Fatalf("%d setsid children outlived their command: %v", len(left), left)
	}
	// Their zombies were reaped (the reaper runs on SIGCHLD).
	reapOrphans()
	if _, zombies := procsWith(t, token); len(zombies) > 0 {
		t.Fatalf("zombies left: %v", zombies)
	}
}

// A command's end must not reap a child that other code in this process
// started with os/exec and has yet to Wait for: outside the daemon (a test
// binary starting kubectl beside probes) nothing is reparented to us, so
// such a child is never an orphan. Its exit status belongs to its Wait,
// which otherwise fails with "waitid: no child processes".
func TestExecLeavesOtherCodesChildrenAlone(t *testing.T) {
	// Not parallel: TestSetsidChildrenDoNotOutliveTheirCommand makes the
	// process a subreaper for a while.
	other := exec.Command("true")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait, without reaping it, until it has exited.
	if left := waitGone(t, []int{other.Process.Pid}, 10*time.Second); len(left) > 0 {
		t.Fatalf("true did not exit: %v", left)
	}
	if r := execIn(t, 10*time.Second, Command{Argv: []string{"true"}}); !r.OK() {
		t.Fatalf("exec: %+v", r)
	}
	if err := other.Wait(); err != nil {
		t.Fatalf("the other code's Wait: %v", err)
	}
}
