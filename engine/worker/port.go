package worker

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/talon-dev/talon/engine/effect"
)

// listener is a process listening on the worker port.
type listener struct {
	PID     int    // 0 when the socket's owner could not be found (another user's process)
	Cmdline string // argv joined with spaces; "" when unknown
}

func (l listener) String() string {
	if l.PID == 0 {
		return "an unknown process"
	}
	cmd := l.Cmdline
	if cmd == "" {
		cmd = "?"
	}
	return fmt.Sprintf("pid %d (%s)", l.PID, cmd)
}

const lookupTimeout = 10 * time.Second

// listeners returns the processes listening on the worker port on a loopback
// or wildcard address. Clients connected to the port are not listed.
func (s *Supervisor) listeners(ctx context.Context) ([]listener, error) {
	if runtime.GOOS == "linux" {
		return procListeners("/proc", s.opts.Port)
	}
	return lsofListeners(ctx, s.opts.Effects, s.opts.Env, s.opts.Port)
}

// procListeners finds listeners through procfs: the LISTEN sockets of
// /proc/net/tcp{,6} on the port, then the processes whose fds are those sockets.
func procListeners(proc string, port int) ([]listener, error) {
	inodes := map[string]bool{}
	read := 0
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		data, err := os.ReadFile(filepath.Join(proc, f))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // no IPv6
			}
			return nil, err
		}
		read++
		for _, ino := range parseProcNet(string(data), port) {
			inodes[ino] = true
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("%s/net/tcp: not found", proc)
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	found := map[string]bool{}
	var out []listener
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(proc, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to look at
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			ino = strings.TrimSuffix(ino, "]")
			if !inodes[ino] {
				continue
			}
			found[ino] = true
			out = append(out, listener{PID: pid, Cmdline: procCmdline(proc, pid)})
			break
		}
	}
	for ino := range inodes {
		if !found[ino] {
			out = append(out, listener{})
			break
		}
	}
	return out, nil
}

func procCmdline(proc string, pid int) string {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	return strings.Join(strings.FieldsFunc(string(b), func(r rune) bool { return r == 0 }), " ")
}

// parseProcNet returns the socket inodes of the LISTEN (state 0A) entries of
// a /proc/net/tcp or tcp6 table bound to port on a loopback or wildcard address.
func parseProcNet(table string, port int) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		host, p, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		pn, err := strconv.ParseUint(p, 16, 16)
		if err != nil || int(pn) != port {
			continue
		}
		ip := procIP(host)
		if ip == nil || !(ip.IsLoopback() || ip.IsUnspecified()) {
			continue
		}
		out = append(out, f[9])
	}
	return out
}

// procIP decodes a procfs address: 32-bit words in host (little-endian) order.
func procIP(h string) net.IP {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// lsofListeners asks lsof (macOS, BSDs) for the PIDs listening on the port
// and ps for their command lines. lsof exits 1 with no output when there are none.
func lsofListeners(ctx context.Context, fx effect.Effects, env []string, port int) ([]listener, error) {
	cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	res := fx.Exec(cctx, effect.Command{
		Argv: []string{"lsof", "-nP", "-t", "-iTCP:" + strconv.Itoa(port), "-sTCP:LISTEN"},
		Env:  env,
	})
	if res.Err != nil || res.TimedOut || res.ExitCode < 0 {
		return nil, fmt.Errorf("lsof: %s", execProblem(res))
	}
	out := strings.TrimSpace(res.Stdout)
	if res.ExitCode != 0 && (out != "" || strings.TrimSpace(res.Stderr) != "") {
		return nil, fmt.Errorf("lsof: %s", execProblem(res))
	}
	var ls []listener
	for _, line := range strings.Fields(out) {
		pid, err := strconv.Atoi(line)
		if err != nil {
			return nil, fmt.Errorf("lsof: unexpected output %q", line)
		}
		l := listener{PID: pid}
		ps := fx.Exec(cctx, effect.Command{Argv: []string{"ps", "-o", "command=", "-p", line}, Env: env})
		if ps.OK() {
			l.Cmdline = strings.TrimSpace(ps.Stdout)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func execProblem(r effect.ExecResult) string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case r.TimedOut:
		return fmt.Sprintf("timed out after %s", r.Duration.Round(time.Millisecond))
	}
	msg := strings.TrimSpace(r.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(r.Stdout)
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return fmt.Sprintf("exit %d: %s", r.ExitCode, msg)
}

// isWorkerCopy reports whether a command line is a copy of the worker: one
// of its words has the base name of command[0] and is followed by exactly
// command's arguments. Words are compared after splitting on spaces, so that
// procfs argv and ps output (already joined) compare the same way.
func isWorkerCopy(cmdline string, command []string) bool {
	if len(command) == 0 {
		return false
	}
	have := strings.Fields(cmdline)
	want := strings.Fields(strings.Join(command[1:], " "))
	base := filepath.Base(command[0])
	for i, w := range have {
		if filepath.Base(w) != base || len(have)-i-1 < len(want) {
			continue
		}
		match := true
		for j, a := range want {
			if have[i+1+j] != a {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// clearPort makes the worker port free for a new worker. Processes listening
// on it that are stale copies of the worker are stopped (SIGTERM, then
// SIGKILL after the drain timeout); anything else listening there is left
// alone and reported as an error, so the caller backs off and tries again.
// Clients connected to the port are never considered.
func (s *Supervisor) clearPort(ctx context.Context) error {
	ls, err := s.listeners(ctx)
	if err != nil {
		// Not knowing is no reason to kill anything, nor to keep the worker
		// down: a worker that cannot bind exits and is retried.
		s.log.Warn("cannot list the processes listening on the worker port; starting the worker anyway", "port", s.opts.Port, "err", err)
		return nil
	}
	self := os.Getpid()
	var stale []listener
	for _, l := range ls {
		if l.PID == 0 || l.PID == self || !isWorkerCopy(l.Cmdline, s.opts.Command) {
			return fmt.Errorf("port %d is held by %s, not a copy of the worker; not touching it", s.opts.Port, l)
		}
		stale = append(stale, l)
	}
	for _, l := range stale {
		s.log.Warn("stopping a stale copy of the worker listening on its port", "port", s.opts.Port, "pid", l.PID, "cmd", l.Cmdline)
		s.stopStale(ctx, l.PID)
	}
	if len(stale) > 0 {
		ls, err := s.listeners(ctx)
		if err == nil && len(ls) > 0 {
			return fmt.Errorf("port %d is still held by %s after stopping the stale worker", s.opts.Port, ls[0])
		}
	}
	return nil
}

// stopStale sends SIGTERM to a stale worker (to its group when it leads
// one, as a worker Talon started does), waits up to the drain timeout for
// it to stop listening, then SIGKILLs it.
func (s *Supervisor) stopStale(ctx context.Context, pid int) {
	target := pid
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid && pgid != syscall.Getpgrp() {
		target = -pid
	}
	listening := func() bool {
		ls, err := s.listeners(ctx)
		if err != nil {
			return true
		}
		for _, l := range ls {
			if l.PID == pid {
				return true
			}
		}
		return false
	}
	syscall.Kill(target, syscall.SIGTERM)
	deadline := time.Now().Add(s.opts.DrainTimeout)
	for time.Now().Before(deadline) && listening() {
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	if listening() {
		s.log.Warn("stale worker ignored SIGTERM; killing it", "pid", pid)
	}
	// Kill whatever is left of its group (a grandchild holding the socket);
	// a lone process only if it still listens, so a PID that exited is never
	// signalled again.
	if target < 0 || listening() {
		syscall.Kill(target, syscall.SIGKILL)
	}
	for i := 0; i < 20 && listening(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
}
