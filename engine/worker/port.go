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
	"github.com/talon-dev/talon/internal/text"
)

// Listener is a process listening on a TCP port.
type Listener struct {
	PID     int    // 0 when the socket's owner could not be found (another user's process)
	Cmdline string // argv joined with spaces; "" when unknown
}

func (l Listener) String() string {
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

// Listeners returns the processes listening on port on a loopback or
// wildcard address: procfs on Linux, lsof and ps (through fx, with env)
// elsewhere. Clients connected to the port are never listed.
func Listeners(ctx context.Context, fx effect.Effects, env []string, port int) ([]Listener, error) {
	if runtime.GOOS == "linux" {
		return procListeners("/proc", port)
	}
	return lsofListeners(ctx, fx, env, port)
}

// procListeners finds listeners through procfs: the LISTEN sockets of
// /proc/net/tcp{,6} on the port, then the processes whose fds are those sockets.
func procListeners(proc string, port int) ([]Listener, error) {
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
	var out []Listener
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
			out = append(out, Listener{PID: pid, Cmdline: procCmdline(proc, pid)})
			break
		}
	}
	for ino := range inodes {
		if !found[ino] {
			out = append(out, Listener{})
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
func lsofListeners(ctx context.Context, fx effect.Effects, env []string, port int) ([]Listener, error) {
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
	var ls []Listener
	for _, line := range strings.Fields(out) {
		// A PID is digits and positive, written as lsof writes it: "-5"
		// or "0" would signal a process group (or our own) if it got as
		// far as a kill, and "01" is not lsof's (it would be init's).
		pid, err := strconv.Atoi(line)
		if err != nil || pid <= 0 || strconv.Itoa(pid) != line {
			return nil, fmt.Errorf("lsof: unexpected output %s", text.Quote(line, 100))
		}
		l := Listener{PID: pid}
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
	// One line (a multi-line warning joined by spaces), cut at a character.
	msg := strings.Join(strings.Fields(r.Stderr), " ")
	if msg == "" {
		msg = strings.Join(strings.Fields(r.Stdout), " ")
	}
	return fmt.Sprintf("exit %d: %s", r.ExitCode, text.Cap(msg, 200))
}

// IsCopyOf returns the rule that tells a copy of command from anything
// else on its port: one word of the command line has the base name of
// command[0] and is followed by exactly command's arguments. Words are
// compared after splitting on spaces, so that procfs argv and ps output
// (already joined) compare the same way.
func IsCopyOf(command []string) func(cmdline string) bool {
	return func(cmdline string) bool { return isWorkerCopy(cmdline, command) }
}

// isWorkerCopy reports whether a command line is a copy of command (IsCopyOf).
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

// PortClearer makes a TCP port free for a fresh copy of a program (the
// worker, a service about to be restarted). Processes listening on the port
// that IsCopy recognizes as stale copies are stopped: SIGTERM (to their
// group when they lead one), then SIGKILL after Drain. Anything else
// listening there is left alone and reported. Clients connected to the port
// are never considered: the predecessor's port cleanup killed them too.
type PortClearer struct {
	Port int
	// What names the program in messages: "the worker", "com.x.voice".
	What string
	// IsCopy tells a stale copy from anything else by its command line.
	IsCopy func(cmdline string) bool
	Drain  time.Duration
	// Effects and Env run lsof and ps where there is no procfs.
	Effects effect.Effects
	Env     []string
	// Warn receives what the clearer does (it stops processes: always
	// worth a warning line).
	Warn func(msg string, kv ...any)
	// Signal sends sig to pid (a negative pid: a process group); nil means
	// syscall.Kill. A policy action passes one that goes through its
	// effects, so that a dry run only records the kill.
	Signal func(ctx context.Context, pid int, sig syscall.Signal) error
}

func (c *PortClearer) signal(ctx context.Context, pid int, sig syscall.Signal) {
	if c.Signal != nil {
		if err := c.Signal(ctx, pid, sig); err != nil {
			c.Warn("signalling a stale listener failed", "pid", pid, "signal", sig, "err", err)
		}
		return
	}
	syscall.Kill(pid, sig)
}

// ErrUnknownListeners wraps the error of listing the port's listeners: the
// caller decides whether not knowing stops it (it stops nothing here).
type ErrUnknownListeners struct{ Err error }

func (e *ErrUnknownListeners) Error() string { return "cannot list the listeners: " + e.Err.Error() }
func (e *ErrUnknownListeners) Unwrap() error { return e.Err }

// Clear stops the stale copies listening on the port and returns them. It
// fails when something else holds the port (nothing is stopped then), when
// the port is still held afterwards, and with an *ErrUnknownListeners when
// the listeners cannot be listed: not knowing is no reason to kill anything.
func (c *PortClearer) Clear(ctx context.Context) ([]Listener, error) {
	ls, err := Listeners(ctx, c.Effects, c.Env, c.Port)
	if err != nil {
		return nil, &ErrUnknownListeners{Err: err}
	}
	self := os.Getpid()
	var stale []Listener
	for _, l := range ls {
		if l.PID == 0 || l.PID == self || !c.IsCopy(l.Cmdline) {
			return nil, fmt.Errorf("port %d is held by %s, not a copy of %s; not touching it", c.Port, l, c.What)
		}
		stale = append(stale, l)
	}
	for _, l := range stale {
		c.Warn("stopping a stale copy of "+c.What+" listening on its port", "port", c.Port, "pid", l.PID, "cmd", l.Cmdline)
		c.stopStale(ctx, l.PID)
	}
	if len(stale) > 0 {
		ls, err := Listeners(ctx, c.Effects, c.Env, c.Port)
		if err == nil && len(ls) > 0 {
			return stale, fmt.Errorf("port %d is still held by %s after stopping the stale copy of %s", c.Port, ls[0], c.What)
		}
	}
	return stale, nil
}

// clearPort makes the worker port free for a new worker (PortClearer); a
// port held by something else is an error, so the caller backs off and
// tries again. Not knowing who listens is no reason to keep the worker
// down: a worker that cannot bind exits and is retried.
func (s *Supervisor) clearPort(ctx context.Context) error {
	c := &PortClearer{Port: s.opts.Port, What: "the worker", IsCopy: IsCopyOf(s.opts.Command), Drain: s.opts.DrainTimeout,
		Effects: s.opts.Effects, Env: s.opts.Env, Warn: func(msg string, kv ...any) { s.log.Warn(msg, kv...) }}
	_, err := c.Clear(ctx)
	var unknown *ErrUnknownListeners
	if errors.As(err, &unknown) {
		s.log.Warn("cannot list the processes listening on the worker port; starting the worker anyway", "port", s.opts.Port, "err", unknown.Err)
		return nil
	}
	return err
}

// stopStale sends SIGTERM to a stale copy (to its group when it leads
// one, as a worker Talon started does), waits up to the drain timeout for
// it to stop listening, then SIGKILLs it.
func (c *PortClearer) stopStale(ctx context.Context, pid int) {
	target := pid
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid && pgid != syscall.Getpgrp() {
		target = -pid
	}
	listening := func() bool {
		ls, err := Listeners(ctx, c.Effects, c.Env, c.Port)
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
	c.signal(ctx, target, syscall.SIGTERM)
	deadline := time.Now().Add(c.Drain)
	for time.Now().Before(deadline) && listening() {
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	if listening() {
		c.Warn("stale copy of "+c.What+" ignored SIGTERM; killing it", "pid", pid)
	}
	// Kill whatever is left of its group (a grandchild holding the socket);
	// a lone process only if it still listens, so a PID that exited is never
	// signalled again.
	if target < 0 || listening() {
		c.signal(ctx, target, syscall.SIGKILL)
	}
	for i := 0; i < 20 && listening(); i++ {
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
}
