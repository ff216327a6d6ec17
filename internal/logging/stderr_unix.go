//go:build unix

package logging

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// dupStderr returns a close-on-exec duplicate of file descriptor 2. Writes
// to a closed pipe through it fail with EPIPE; written through descriptor 2
// itself they would kill the process with SIGPIPE (see os/signal).
func dupStderr() (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(2), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		if err == unix.EBADF { // no stderr at all: write nowhere
			return nil, nil
		}
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/stderr"), nil
}

// sameFile reports whether f is the file JOURNAL_STREAM names
// ("DEVICE:INODE"): stderr goes to journald, not to a file or pipe that a
// child of a systemd service set up.
func sameFile(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return journalStream == strconv.FormatUint(uint64(st.Dev), 10)+":"+strconv.FormatUint(uint64(st.Ino), 10)
}
