//go:build !linux

package effect

import (
	"context"
	"errors"
	"syscall"
)

// Subreaper is Linux only (prctl PR_SET_CHILD_SUBREAPER).
//
// On macOS a process whose parent exits is reparented to launchd, and no
// process can adopt orphans. The approach there is process-tree tracking:
// while a command runs, its descendants are recorded from the process table
// (sysctl kern.proc.all, parent pids), and at the deadline every recorded
// descendant still carrying the run's MarkerVar (kern.procargs2 shows the
// environment of a process of the same user) is killed with the process
// group. Until that is built, a command's process group is killed at its
// deadline, and a descendant that called setsid can outlive it. What the
// commands of a daemon killed with -9 left running is swept at the next
// start on macOS as on Linux (Instance.Sweep, sweep_darwin.go reads the
// process table and kern.procargs2).
func Subreaper(context.Context) (<-chan struct{}, error) {
	return nil, errors.New("a child subreaper needs Linux")
}

// killTree kills the command's process group.
func killTree(pgid int, _ bool, _ string) {
	syscall.Kill(-pgid, syscall.SIGKILL)
}

func reapOrphans() {}
