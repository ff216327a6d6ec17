package effect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Orphan is a process a sweep killed.
type Orphan struct {
	PID     int
	Command string // its command line, the arguments joined by spaces
}

// SweepGrace is how long a sweep's SIGTERM gives what it found (a heal
// script may clean up) before SIGKILL.
const SweepGrace = 2 * time.Second

// procInfo is one process of this user, from the process table.
type procInfo struct{ pid, ppid, pgid int }

// Sweep kills what the commands of a dead daemon of this instance left
// running: every process of this user whose environment carries the marker
// of a command recorded as in flight, with its process group and its
// descendants — SIGTERM, then after grace SIGKILL to what is left — and
// then clears the record. A command that had ended is no longer in flight,
// so what it meant to leave running (a daemon a heal started, KeepGroup)
// stays; so do the commands of another state directory's daemon and of
// `talon check`, whose markers are not recorded here, and the worker, which
// carries no marker. This process and its own process group are never
// signalled. Call it with the state directory's lock held, before the first
// command runs; it returns what it killed.
func (in *Instance) Sweep(grace time.Duration) ([]Orphan, error) {
	markers, err := in.inFlight()
	if err != nil || len(markers) == 0 {
		return nil, err
	}
	defer func() {
		for m := range markers {
			os.Remove(filepath.Join(in.dir, m))
		}
	}()
	var killed []Orphan
	seen := map[int]bool{}
	groups := map[int]bool{} // of marked processes: their members die too
	sig, limit := syscall.SIGTERM, grace
	if grace <= 0 {
		sig, limit = syscall.SIGKILL, time.Second
	}
	for range 10 {
		victims, err := sweepTargets(markers, groups)
		if err != nil {
			return killed, err
		}
		if len(victims) == 0 {
			break
		}
		for _, pid := range victims {
			if !seen[pid] { // read before the signal: a dead process has no command line
				seen[pid] = true
				killed = append(killed, Orphan{PID: pid, Command: procCommand(pid)})
			}
		}
		for g := range groups {
			syscall.Kill(-g, sig)
		}
		for _, pid := range victims {
			syscall.Kill(pid, sig)
		}
		waitGoneAll(victims, limit)
		sig, limit = syscall.SIGKILL, time.Second
	}
	slices.SortFunc(killed, func(a, b Orphan) int { return a.PID - b.PID })
	return killed, nil
}

// sweepTargets lists the live processes of this user that carry one of
// markers, the descendants of those, and the members of their process
// groups (adding each marked process's group to groups), this process and
// its group excepted.
func sweepTargets(markers map[string]bool, groups map[int]bool) ([]int, error) {
	procs, err := listProcs()
	if err != nil {
		return nil, err
	}
	self, ownGroup := os.Getpid(), syscall.Getpgrp()
	kids := map[int][]int{}
	for _, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p.pid)
	}
	in := map[int]bool{}
	var queue []int
	for _, p := range procs {
		if p.pid == self || procGone(p.pid) {
			continue
		}
		env, err := procEnviron(p.pid)
		if err != nil {
			continue // not ours to read (another user, a setuid program), or gone
		}
		if _, ok := markerIn(env, markers); ok {
			queue = append(queue, p.pid)
			if p.pgid > 1 && p.pgid != ownGroup {
				groups[p.pgid] = true
			}
		}
	}
	for _, p := range procs {
		if groups[p.pgid] {
			queue = append(queue, p.pid)
		}
	}
	var out []int
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if in[pid] || pid == self || procGone(pid) {
			continue
		}
		in[pid] = true
		out = append(out, pid)
		queue = append(queue, kids[pid]...)
	}
	return out, nil
}

// waitGoneAll waits until every pid has exited, for at most limit.
func waitGoneAll(pids []int, limit time.Duration) {
	end := time.Now().Add(limit)
	for _, pid := range pids {
		for !procGone(pid) && time.Now().Before(end) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// parseProcArgs2 splits what macOS's sysctl kern.procargs2 gives — argc (a
// 32-bit integer), the executable's path, NUL padding, argc arguments, then
// the environment, each NUL-terminated, up to an empty string — into the
// arguments and the environment (NUL-separated). It lives here, not in the
// darwin file, so that the tests of every platform run it.
func parseProcArgs2(b []byte) (argv []string, env []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errors.New("kern.procargs2: short")
	}
	argc := int(binary.LittleEndian.Uint32(b))
	b = b[4:]
	i := bytes.IndexByte(b, 0) // the executable's path
	if i < 0 {
		return nil, nil, errors.New("kern.procargs2: no executable path")
	}
	b = bytes.TrimLeft(b[i:], "\x00")
	for len(b) > 0 && len(argv) < argc {
		i = bytes.IndexByte(b, 0)
		if i < 0 {
			i = len(b)
		}
		argv = append(argv, string(b[:i]))
		b = b[min(i+1, len(b)):]
	}
	var kvs [][]byte
	for len(b) > 0 {
		i = bytes.IndexByte(b, 0)
		if i <= 0 {
			break // an empty string ends the environment
		}
		kvs = append(kvs, b[:i])
		b = b[i+1:]
	}
	return argv, bytes.Join(kvs, []byte{0}), nil
}
