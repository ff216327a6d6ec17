package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm"
	"github.com/talon-dev/talon/internal/logging"
)

func pidPath(stateDir string) string { return filepath.Join(stateDir, "talon.pid") }

// writePID records the daemon's pid for `talon reload` when /health is off.
func writePID(stateDir string) (func(), error) {
	path := pidPath(stateDir)
	if err := engine.WriteFileAtomic(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}

// signalDaemon sends SIGHUP to the daemon named by the pid file, but only
// while a daemon holds the state dir's lock: a pid file left by kill -9
// names a process that may now be anything.
func signalDaemon(stateDir string) (bool, error) {
	if !daemonHolds(stateDir) {
		return false, fmt.Errorf("no daemon holds %s (any pid file there is stale)", stateDir)
	}
	b, err := fsperm.ReadPrivate(pidPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("no daemon pid file in %s", stateDir)
	} else if err != nil {
		return false, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false, fmt.Errorf("pid file %s is corrupt", pidPath(stateDir))
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return false, fmt.Errorf("signal daemon pid %d: %w", pid, err)
	}
	return true, nil
}

// lockStateDir takes an exclusive lock on the state directory, so two
// daemons never write one state file (and page twice). The lock dies with
// the process, even on kill -9.
func lockStateDir(dir string) (func(), error) {
	path := filepath.Join(dir, "talon.lock")
	f, err := fsperm.OpenPrivate(path, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return nil, fail(1, "lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		holder := ""
		if b, err := fsperm.ReadPrivate(pidPath(dir)); err == nil {
			holder = " (pid " + strings.TrimSpace(string(b)) + ")"
		}
		return nil, fail(1, "another talon daemon%s is running on state dir %s; stop it first or use --state-dir", holder, dir)
	}
	return func() { f.Close() }, nil
}

// daemonHolds reports whether a running daemon holds the state dir's lock.
func daemonHolds(dir string) bool {
	held, _ := lockHeld(dir)
	return held
}

// lockHeld reports whether a running daemon holds the state dir's lock,
// and whether that is known: this user may be unable to open the lock
// file (another user's state directory), and then cannot tell.
func lockHeld(dir string) (held, known bool) {
	f, err := fsperm.OpenPrivate(filepath.Join(dir, "talon.lock"), os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		return false, true // no daemon ever ran here
	}
	if err != nil {
		return false, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true, true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, true
}

// claimStateDir is how a long-running command starts: it creates the state
// directory (0700), checks that no other user can change it or the
// directories above it (strict modes: refused, or with strict_modes = false
// logged), takes its lock (one daemon per state dir) and opens the log.
func claimStateDir(dir string, strict bool) (*log.Logger, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fail(1, "state dir: %v; talon cannot run without it: make it a directory talon's user can write (mode 0700), or choose another with state_dir or --state-dir", err)
	}
	var relaxed []string
	perms := fsperm.New(strict, func(e *fsperm.Error) { relaxed = append(relaxed, e.Warning()) })
	if err := perms.CheckPath(dir); err != nil {
		return nil, nil, fail(1, "state dir: %v", err)
	}
	unlock, err := lockStateDir(dir)
	if err != nil {
		return nil, nil, err
	}
	// We hold the lock, so any pid file here was left by a daemon that died
	// (kill -9): remove it before anyone signals the pid it names.
	os.Remove(pidPath(dir))
	logger, closeLog, err := logging.New(logging.Options{Dir: dir})
	if err != nil {
		unlock()
		return nil, nil, fail(1, "log: %v", err)
	}
	for _, w := range relaxed {
		logger.Warn("state dir: "+w, "state_dir", dir)
	}
	return logger, func() { closeLog.Close(); unlock() }, nil
}
