package effect

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"sync"
)

// MarkerVar is set in the environment of every command Talon runs, with a
// value unique to that run, and is inherited by everything the command
// starts. A descendant that left the process group (setsid, a double fork)
// is still found by it when the command's time is up.
const MarkerVar = "TALON_EXEC_ID"

func newMarker() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// children are the pids of the processes Talon started itself and whose
// exit status one of its own Wait calls collects. The reaper (Subreaper)
// leaves them alone: it reaps only orphans that were reparented to Talon.
// It is process-wide because the kernel's subreaper attribute is.
var children = struct {
	sync.Mutex
	pids map[int]int
}{pids: map[int]int{}}

// StartChild starts cmd and records its pid before any reaper can run, so
// that its exit status is left for WaitChild. Every child process of Talon
// is started through it.
func StartChild(cmd *exec.Cmd) error {
	children.Lock()
	defer children.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	children.pids[cmd.Process.Pid]++
	return nil
}

// WaitChild waits for a child started by StartChild and forgets its pid.
func WaitChild(cmd *exec.Cmd) error {
	err := cmd.Wait()
	children.Lock()
	defer children.Unlock()
	pid := cmd.Process.Pid
	if children.pids[pid]--; children.pids[pid] <= 0 {
		delete(children.pids, pid)
	}
	return err
}

func ownChild(pid int) bool { return children.pids[pid] > 0 }
