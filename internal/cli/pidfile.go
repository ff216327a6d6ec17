package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/talon-dev/talon/engine"
)

func pidPath(stateDir string) string { return filepath.Join(stateDir, "talon.pid") }

// writePID records the daemon's pid for `talon reload` when /health is off.
func writePID(stateDir string) (func(), error) {
	path := pidPath(stateDir)
	if err := engine.WriteFileAtomic(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}

// signalDaemon sends SIGHUP to the daemon named by the pid file.
func signalDaemon(stateDir string) (bool, error) {
	b, err := os.ReadFile(pidPath(stateDir))
	if err != nil {
		return false, fmt.Errorf("no daemon pid file in %s", stateDir)
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
