package journal

import (
	"os"
	"syscall"
)

// lockDir takes an advisory lock (syscall.LOCK_SH or LOCK_EX) on the
// journal's directory and returns its release. The writer holds it
// exclusively while it moves files (a rotation's shift, a compressed
// generation replacing its plain form), a reader shared while it lists and
// opens them: a directory listing taken while names move can miss a file
// that exists throughout under one name or the other. Where the lock is not
// to be had (a file system without flock), the reader's second listing
// (openAll) still catches most moves.
func lockDir(dir string, how int) (unlock func()) {
	d, err := os.Open(dir)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(d.Fd()), how); err != nil {
		d.Close()
		return func() {}
	}
	return func() {
		syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		d.Close()
	}
}
