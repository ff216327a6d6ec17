package effect

import (
	"errors"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listProcs reads the process table (sysctl kern.proc.uid): the processes
// whose effective user is this process's.
func listProcs() ([]procInfo, error) {
	kps, err := unix.SysctlKinfoProcSlice("kern.proc.uid", os.Geteuid())
	if err != nil {
		return nil, err
	}
	out := make([]procInfo, 0, len(kps))
	for _, kp := range kps {
		out = append(out, procInfo{pid: int(kp.Proc.P_pid), ppid: int(kp.Eproc.Ppid), pgid: int(kp.Eproc.Pgid)})
	}
	return out, nil
}

// procArgs2 is pid's arguments and environment, from sysctl
// kern.procargs2 (parseProcArgs2). The kernel shows another user's process
// only to root.
func procArgs2(pid int) (argv []string, env []byte, err error) {
	b, err := unix.SysctlRaw("kern.procargs2", pid)
	if err != nil {
		return nil, nil, err
	}
	return parseProcArgs2(b)
}

// procEnviron is pid's environment, NUL-separated.
func procEnviron(pid int) ([]byte, error) {
	_, env, err := procArgs2(pid)
	return env, err
}

// procCommand is pid's command line, the arguments joined by spaces.
func procCommand(pid int) string {
	argv, _, _ := procArgs2(pid)
	return strings.Join(argv, " ")
}

// procGone reports whether pid has exited (is a zombie or gone).
func procGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	return err != nil || kp.Proc.P_pid != int32(pid) || kp.Proc.P_stat == 5 // SZOMB
}
