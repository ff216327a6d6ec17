// Package fspermtest helps tests live with StrictModes (package fsperm).
//
// Tests must not depend on how the repository was checked out: a checkout
// made under umask 002 has group-writable files, and one owned by another
// user than the one running the tests (a CI container running as root over
// a runner's workspace) is owned by someone else. Talon rightly refuses to
// evaluate such files, so a test that loads a policy, a config or a services
// file from the checkout loads a Copy of it instead, made with the modes the
// test needs (directories 0755, files 0644, executables 0755).
package fspermtest

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Nobody is the uid tests give files to when they need "another user".
const Nobody = 65534

// NeedRoot skips a test that must run as root (to create files owned by
// another user, or to run Talon as one), or fails it when CI=true.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test must run as root: it gives files to another user")
	}
	t.Skip("needs root to give files to another user")
}

// Copy copies the file or tree at src (relative to the test's working
// directory, normally its package directory) into a new temporary
// directory and returns the copy's path: src's base name (of its absolute
// path) inside that directory. Directories get mode 0755, files 0644, or 0755 when src's
// copy is executable, whatever the checkout's modes and owners are.
func Copy(t testing.TB, src string) string {
	t.Helper()
	abs, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(abs))
	if err := CopyTree(src, dst); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return dst
}

// CopyTree copies the file or tree at src to dst (which must not exist)
// with the modes Copy gives, for a TestMain that shares one copy.
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			return os.Chmod(to, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(path, to, mode)
		}
		return nil // links, sockets: not part of any test fixture
	})
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(to, mode)
}

// Chown gives path (not following a link) to uid, and fails the test if
// it cannot.
func Chown(t testing.TB, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// Chmod sets path's mode exactly (the umask plays no part).
func Chmod(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Mkfifo makes a named pipe at path (mode 0644) for tests that put one
// where Talon expects a file: nothing ever opens its other end, so an open
// that blocks on it blocks for good.
func Mkfifo(t testing.TB, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	Chmod(t, path, 0o644)
}

// Within fails the test unless f returns within limit: a guard for code
// that must not block (on a named pipe, say), so that a regression fails
// with a message instead of hanging until the test binary's timeout. The
// limit is generous on purpose; it is never what a test measures.
func Within(t testing.TB, limit time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s blocked for %s", what, limit)
	}
}
