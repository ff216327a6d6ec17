//go:build !linux && !darwin

package effect

import (
	"errors"
	"syscall"
)

var errNoProcTable = errors.New("reading other processes' environment is implemented on Linux and macOS only")

func listProcs() ([]procInfo, error)  { return nil, errNoProcTable }
func procEnviron(int) ([]byte, error) { return nil, errNoProcTable }
func procCommand(int) string          { return "" }
func procGone(pid int) bool           { return syscall.Kill(pid, 0) == syscall.ESRCH }
