package effect

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Subreaper makes this process a child subreaper (prctl
// PR_SET_CHILD_SUBREAPER): a process whose parent exits is reparented to
// Talon rather than to init, so that killTree still finds what a command
// left behind after calling setsid, and reaps such orphans when they exit
// (on SIGCHLD, and every 30 s in case a signal was merged) until ctx ends,
// when it stops being a subreaper and closes the returned channel. The
// daemon calls it once at start. While it runs, every child process must be
// started with StartChild, or the reaper may collect its exit status.
func Subreaper(ctx context.Context) (<-chan struct{}, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, err
	}
	subreaping.Add(1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer subreaping.Add(-1)
		defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		defer signal.Stop(sig)
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
			case <-tick.C:
			}
			reapOrphans()
		}
	}()
	return done, nil
}

// subreaping counts the running Subreapers: only while one runs (or as pid
// 1) are orphans reparented to this process.
var subreaping atomic.Int32

// reapOrphans collects the exit status of every child of this process that
// Talon did not start itself (an orphan it adopted as subreaper), so no
// zombie accumulates. Children started by StartChild are left to WaitChild.
// It does nothing unless the process adopts orphans: then a child it did
// not start is one that other code in the process (a test's os/exec) has
// yet to Wait for, and reaping it would fail that Wait with ECHILD.
func reapOrphans() {
	if subreaping.Load() == 0 && os.Getpid() != 1 {
		return
	}
	children.Lock()
	defer children.Unlock()
	for _, pid := range childrenOf(os.Getpid()) {
		if ownChild(pid) {
			continue
		}
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// childrenOf lists the children of pid, from every thread's children file.
func childrenOf(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// subtree is pid's descendants, pid not included.
func subtree(pid int) []int {
	var out []int
	queue := childrenOf(pid)
	seen := map[int]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] || len(seen) > 1<<16 {
			continue
		}
		seen[p] = true
		out = append(out, p)
		queue = append(queue, childrenOf(p)...)
	}
	return out
}

// marked reports whether pid carries the run marker in its environment.
// While a process is in the middle of an execve its environment may read as
// empty: unsure is then true, and the caller looks again.
func marked(pid int, marker string) (yes, unsure bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false, !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH)
	}
	if len(b) == 0 {
		// A kernel thread or a zombie has none; an execve in progress
		// shows none for a moment.
		return false, !zombie(pid)
	}
	want := []byte(MarkerVar + "=" + marker)
	for _, kv := range bytes.Split(b, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true, false
		}
	}
	return false, false
}

// zombie reports whether pid has exited (or is gone).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// killTree kills with SIGKILL everything a command started: its process
// group, the descendants of its leader while the leader has not been
// reaped, and the orphans reparented to Talon that carry the run's marker,
// with their descendants. After each pass it waits for what it killed to
// die — a dying process's children are reparented to Talon only as it
// dies — and looks again, until a pass finds nothing; then it reaps.
func killTree(pgid int, leaderAlive bool, marker string) {
	for range 10 {
		var victims []int
		if leaderAlive {
			victims = subtree(pgid)
		}
		unsure := false
		children.Lock()
		for _, pid := range childrenOf(os.Getpid()) {
			if ownChild(pid) {
				continue
			}
			yes, maybe := marked(pid, marker)
			if yes {
				victims = append(victims, pid)
				victims = append(victims, subtree(pid)...)
			}
			unsure = unsure || maybe
		}
		children.Unlock()
		syscall.Kill(-pgid, syscall.SIGKILL)
		if len(victims) == 0 {
			if !unsure {
				break
			}
			// An orphan in the middle of an execve: look again.
			time.Sleep(time.Millisecond)
			continue
		}
		for _, pid := range victims {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range victims {
			waitDead(pid, 200*time.Millisecond)
		}
	}
	reapOrphans()
}

// waitDead waits until pid has exited (is a zombie or gone), on its pidfd
// where the kernel has them, for at most limit.
func waitDead(pid int, limit time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(limit.Milliseconds()))
		unix.Close(fd)
		return
	}
	if err != unix.ENOSYS {
		return // gone
	}
	for end := time.Now().Add(limit); time.Now().Before(end) && !zombie(pid); time.Sleep(time.Millisecond) {
	}
}
