package effect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// drainAfterExit is how long output is still read after the leader exited
// by itself, in case a process outside the group holds the pipe open; never
// past the command's deadline.
const drainAfterExit = 500 * time.Millisecond

// drainAfterKill is how long output already written is still read once the
// command was killed at its deadline: the result is final at the deadline,
// whoever still holds the pipe.
const drainAfterKill = 5 * time.Millisecond

// run is the one place Talon starts a child process. The child leads its own
// process group and carries a run marker (MarkerVar) in its environment;
// output is read while it runs into capped buffers; on the context's end the
// group gets SIGTERM (when Grace > 0) and then the whole tree, setsid'd
// descendants included, SIGKILL (killTree). The result is final at the
// deadline: reading stops then, whoever still holds the pipes. With an
// Instance (the daemon's), the marker carries the instance's prefix and the
// command is recorded as in flight until its tree is dealt with.
func run(ctx context.Context, c Command, in *Instance) (res ExecResult) {
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return ExecResult{ExitCode: -1, Err: errors.New("empty command")}
	}
	prog, err := LookPath(c.Argv[0], envPath(c.Env))
	if err != nil {
		return ExecResult{ExitCode: -1, Err: err}
	}
	max := c.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	marker := in.marker()
	cmd := &exec.Cmd{Path: prog, Args: c.Argv, Dir: c.Dir, Env: append(slices.Clip(c.Env), MarkerVar+"="+marker)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	outR, outW, err := os.Pipe()
	if err != nil {
		return ExecResult{ExitCode: -1, Err: err}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return ExecResult{ExitCode: -1, Err: err}
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	var inW *os.File
	if c.Stdin != nil {
		var inR *os.File
		inR, inW, err = os.Pipe()
		if err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return ExecResult{ExitCode: -1, Err: err}
		}
		cmd.Stdin = inR
		defer inR.Close()
	}
	in.begin(marker)
	if err := StartChild(cmd); err != nil {
		in.end(marker)
		for _, f := range []*os.File{outR, outW, errR, errW, inW} {
			if f != nil {
				f.Close()
			}
		}
		return ExecResult{ExitCode: -1, Err: fmt.Errorf("start %s: %w", c.Argv[0], err)}
	}
	// The child holds its own copies now.
	outW.Close()
	errW.Close()
	pgid := cmd.Process.Pid

	var stdout, stderr capBuffer
	stdout.max, stderr.max = max, max
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); io.Copy(&stdout, outR) }()
	go func() { defer readers.Done(); io.Copy(&stderr, errR) }()
	if inW != nil {
		go func() {
			inW.Write(c.Stdin) // a child that never reads gets EPIPE on exit; fine
			inW.Close()
		}()
	}

	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = WaitChild(cmd); close(exited) }()

	timedOut := false
	select {
	case <-exited:
	case <-ctx.Done():
		timedOut = true
		if c.Grace > 0 {
			syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(c.Grace):
			}
		}
		// The leader is not reaped before <-exited: its pid is still ours.
		select {
		case <-exited:
			killTree(pgid, false, marker)
		default:
			killTree(pgid, true, marker)
			<-exited
		}
	}
	if !c.KeepGroup && !timedOut {
		// Whatever the leader left behind dies with it: no orphans, and no
		// grandchild keeps our pipes open.
		killTree(pgid, false, marker)
	}
	// What is left now was meant to outlive the command (KeepGroup), or
	// escaped it: no sweep after a crash takes it for the command's.
	in.end(marker)
	// Read what is left, but never past the deadline: after a kill only
	// for a moment, after an exit for drainAfterExit at most, in case a
	// descendant that escaped (a daemon a heal started) holds the pipes.
	drain := c.Drain
	if drain <= 0 {
		drain = drainAfterExit
	}
	stop := time.Now().Add(drain)
	if timedOut {
		stop = time.Now().Add(drainAfterKill)
	} else if dl, ok := ctx.Deadline(); ok && dl.Before(stop) {
		stop = dl
	}
	outR.SetReadDeadline(stop)
	errR.SetReadDeadline(stop)
	readers.Wait()
	// The deadline ends the waiting, not what was written before it: on a
	// stalled host the readers may wake only after the deadline, with the
	// command's last output still in the pipe (a probe would then pass or
	// fail on empty output). Take what is there without waiting.
	readReady(outR, &stdout, max)
	readReady(errR, &stderr, max)
	outR.Close()
	errR.Close()

	res = ExecResult{
		ExitCode:  -1,
		Stdout:    stdout.String(),
		Stderr:    stderr.String(),
		Truncated: stdout.dropped > 0 || stderr.dropped > 0,
		TimedOut:  timedOut,
	}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		res.Err = waitErr
	}
	return res
}

// readReady copies to w what f's pipe holds now, never waiting for more:
// at most max bytes and a read buffer beyond (the rest would be dropped by
// w anyway, and a descendant that keeps writing cannot keep this busy).
func readReady(f *os.File, w io.Writer, max int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	f.SetReadDeadline(time.Time{}) // a passed deadline refuses even a read that would not wait
	buf := make([]byte, 32<<10)
	budget := max + len(buf)
	rc.Read(func(fd uintptr) bool {
		for budget > 0 {
			n, err := syscall.Read(int(fd), buf)
			if n <= 0 || err != nil {
				break // empty (EAGAIN), the end, or an error
			}
			w.Write(buf[:n])
			budget -= n
		}
		return true // done: never wait for the pipe to be readable
	})
}

// capBuffer keeps the first max bytes written and counts the rest.
type capBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		b.buf = append(b.buf, p[:room]...)
	}
	b.dropped += len(p) - max(room, 0)
	return len(p), nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.ToValidUTF8(string(b.buf), "\uFFFD")
	if b.dropped > 0 {
		s += fmt.Sprintf("\n[%d bytes of output dropped]", b.dropped)
	}
	return s
}

func envPath(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return ""
}

// LookPath resolves prog against the given PATH list (not the process's own).
// A name containing a slash is used as it is.
func LookPath(prog, path string) (string, error) {
	if strings.Contains(prog, "/") {
		if err := executable(prog); err != nil {
			return "", fmt.Errorf("%s: %w", prog, err)
		}
		return prog, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, prog)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH %s", prog, path)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}
