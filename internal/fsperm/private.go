package fsperm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// OpenPrivate opens a file of Talon's own in its state directory (state.json,
// journal.jsonl, talon.log, the pid file, the lock) without following a
// symbolic link: a link there could aim Talon's writes at any file the
// daemon's user may write. flag is as for os.OpenFile; O_NOFOLLOW and
// O_CLOEXEC are added. A file created is 0600; one opened for writing that
// group or others could read or write is set back to 0600. Anything but a
// regular file is refused.
//
// The state directory itself is checked at start (owned by the daemon's
// user or root, not writable by group or others), so no other user can
// put a link there between two opens.
func OpenPrivate(path string, flag int) (*os.File, error) {
	// O_NONBLOCK: a FIFO put in place of a file must not hang the open; it
	// has no effect on a regular file.
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is %s, not a regular file; remove it", path, kind(fi.Mode()))
	}
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 && fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: make it private (0600): %w", path, err)
		}
	}
	return f, nil
}

// ReadPrivate reads a file OpenPrivate would open, whole.
func ReadPrivate(path string) ([]byte, error) {
	f, err := OpenPrivate(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "of mode " + m.String()
}
