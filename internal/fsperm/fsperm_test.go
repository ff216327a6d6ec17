package fsperm

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// nobody is a user other than the daemon's (tests run as root).
const nobody = fspermtest.Nobody

const sticky = os.ModeSticky | 0o777

func mkfile(t *testing.T, path string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chmodown(t, path, mode, uid)
}

func mkdir(t *testing.T, path string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	chmodown(t, path, mode, uid)
}

// chmodown sets the mode exactly (the umask plays no part) and the owner.
func chmodown(t *testing.T, path string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		if err := os.Lchown(path, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheck(t *testing.T) {
	fspermtest.NeedRoot(t)
	t.Parallel()
	cases := []struct {
		name string
		// setup builds the tree under d and returns the path to check.
		setup func(t *testing.T, d string) string
		uid   uint32 // the daemon's user
		want  string // "" for accepted; $D is the temp dir
	}{
		{"own file 0644", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o644, 0)
			return d + "/f"
		}, 0, ""},
		{"own file 0600 in a 0755 dir", func(t *testing.T, d string) string {
			mkdir(t, d+"/p", 0o755, 0)
			mkfile(t, d+"/p/f", 0o600, 0)
			return d + "/p/f"
		}, 0, ""},
		{"group-writable file", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o664, 0)
			return d + "/f"
		}, 0, "unsafe file $D/f (owner root, uid 0, mode 0664): writable by group; fix: chmod go-w $D/f"},
		{"world-writable file", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o646, 0)
			return d + "/f"
		}, 0, "unsafe file $D/f (owner root, uid 0, mode 0646): writable by others; fix: chmod go-w $D/f"},
		{"group- and world-writable file", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o666, 0)
			return d + "/f"
		}, 0, "unsafe file $D/f (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w $D/f"},
		{"file of another user", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o644, nobody)
			return d + "/f"
		}, 0, "unsafe file $D/f (owner nobody, uid 65534, mode 0644): owned by a user other than root; fix: chown root $D/f"},
		{"writable file of another user", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o666, nobody)
			return d + "/f"
		}, 0, "unsafe file $D/f (owner nobody, uid 65534, mode 0666): owned by a user other than root and writable by group and others; fix: chown root $D/f && chmod go-w $D/f"},
		{"world-writable parent directory", func(t *testing.T, d string) string {
			mkdir(t, d+"/p", 0o777, 0)
			mkfile(t, d+"/p/f", 0o644, 0)
			return d + "/p/f"
		}, 0, "unsafe directory $D/p (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/p"},
		{"group-writable grandparent", func(t *testing.T, d string) string {
			mkdir(t, d+"/p", 0o775, 0)
			mkdir(t, d+"/p/q", 0o755, 0)
			mkfile(t, d+"/p/q/f", 0o644, 0)
			return d + "/p/q/f"
		}, 0, "unsafe directory $D/p (owner root, uid 0, mode 0775): writable by group; fix: chmod go-w $D/p"},
		{"parent directory of another user", func(t *testing.T, d string) string {
			mkdir(t, d+"/p", 0o755, nobody)
			mkfile(t, d+"/p/f", 0o644, 0)
			return d + "/p/f"
		}, 0, "unsafe directory $D/p (owner nobody, uid 65534, mode 0755): owned by a user other than root; fix: chown root $D/p"},
		{"root-owned sticky directory like /tmp", func(t *testing.T, d string) string {
			mkdir(t, d+"/tmp", sticky, 0)
			mkfile(t, d+"/tmp/f", 0o644, 0)
			return d + "/tmp/f"
		}, 0, ""},
		{"sticky directory of another user", func(t *testing.T, d string) string {
			mkdir(t, d+"/tmp", sticky, nobody)
			mkfile(t, d+"/tmp/f", 0o644, 0)
			return d + "/tmp/f"
		}, 0, "unsafe directory $D/tmp (owner nobody, uid 65534, mode 1777): owned by a user other than root; fix: chown root $D/tmp"},
		{"sticky directory checked itself", func(t *testing.T, d string) string {
			mkdir(t, d+"/tmp", sticky, 0)
			return d + "/tmp"
		}, 0, "unsafe directory $D/tmp (owner root, uid 0, mode 1777): writable by group and others; fix: chmod go-w $D/tmp"},
		{"directory checked itself", func(t *testing.T, d string) string {
			mkdir(t, d+"/s", 0o700, 0)
			return d + "/s"
		}, 0, ""},
		{"link into an unsafe directory names that directory", func(t *testing.T, d string) string {
			mkdir(t, d+"/bad", 0o777, 0)
			mkfile(t, d+"/bad/f", 0o644, 0)
			symlink(t, "bad/f", d+"/link")
			return d + "/link"
		}, 0, "unsafe directory $D/bad (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/bad"},
		{"link to a safe file", func(t *testing.T, d string) string {
			mkdir(t, d+"/a", 0o755, 0)
			mkdir(t, d+"/a/b", 0o755, 0)
			mkfile(t, d+"/a/b/f", 0o644, 0)
			mkdir(t, d+"/c", 0o755, 0)
			symlink(t, "../a/./b", d+"/c/l") // relative, with .. and .
			return d + "/c/l/f"
		}, 0, ""},
		{"link to an unsafe file through a chain of links", func(t *testing.T, d string) string {
			mkfile(t, d+"/f", 0o666, 0)
			symlink(t, d+"/f", d+"/l1")
			symlink(t, "l1", d+"/l2")
			return d + "/l2"
		}, 0, "unsafe file $D/f (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w $D/f"},
		{"link planted by another user in a sticky directory", func(t *testing.T, d string) string {
			mkdir(t, d+"/tmp", sticky, 0)
			mkfile(t, d+"/f", 0o644, 0)
			symlink(t, d+"/f", d+"/tmp/l")
			if err := os.Lchown(d+"/tmp/l", nobody, -1); err != nil {
				t.Fatal(err)
			}
			return d + "/tmp/l"
		}, 0, "unsafe symbolic link $D/tmp/l (owner nobody, uid 65534, mode 0777): a link in a directory others can write, owned by another user; fix: rm $D/tmp/l (and name the real file instead)"},
		{"link of the daemon's user in a sticky directory", func(t *testing.T, d string) string {
			mkdir(t, d+"/tmp", sticky, 0)
			mkfile(t, d+"/f", 0o644, 0)
			symlink(t, d+"/f", d+"/tmp/l")
			return d + "/tmp/l"
		}, 0, ""},
		{"daemon user not root: own file", func(t *testing.T, d string) string {
			mkdir(t, d+"/home", 0o755, 1000)
			mkfile(t, d+"/home/f", 0o644, 1000)
			return d + "/home/f"
		}, 1000, ""},
		{"daemon user not root: root's file", func(t *testing.T, d string) string {
			mkdir(t, d+"/home", 0o755, 1000)
			mkfile(t, d+"/home/f", 0o644, 0)
			return d + "/home/f"
		}, 1000, ""},
		{"daemon user not root: another user's file", func(t *testing.T, d string) string {
			mkdir(t, d+"/home", 0o755, 1000)
			mkfile(t, d+"/home/f", 0o644, nobody)
			return d + "/home/f"
		}, 1000, "unsafe file $D/home/f (owner nobody, uid 65534, mode 0644): owned by a user other than " + userName(1000) + " or root; fix: chown " + userName(1000) + " $D/home/f"},
		{"path with spaces is quoted in the fix", func(t *testing.T, d string) string {
			mkfile(t, d+"/my file", 0o664, 0)
			return d + "/my file"
		}, 0, "unsafe file $D/my file (owner root, uid 0, mode 0664): writable by group; fix: chmod go-w '$D/my file'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			path := tc.setup(t, d)
			c := &Checker{uid: tc.uid}
			want := strings.ReplaceAll(tc.want, "$D", d)
			for _, how := range []string{"Open", "CheckPath"} {
				var err error
				if how == "Open" {
					var f *os.File
					if f, err = c.Open(path); err == nil {
						f.Close()
					}
				} else {
					err = c.CheckPath(path)
				}
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: refused: %v", how, err)
				case want != "" && err == nil:
					t.Errorf("%s: accepted, want %s", how, want)
				case want != "" && err.Error() != want:
					t.Errorf("%s:\ngot  %v\nwant %s", how, err, want)
				}
				var e *Error
				if want != "" && !errors.As(err, &e) {
					t.Errorf("%s: error is a %T, want *fsperm.Error", how, err)
				}
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestRelaxed is strict_modes = false: the file is allowed and the finding
// goes to the warn function.
func TestRelaxed(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	if err := os.Mkdir(d+"/p", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d+"/p", 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d+"/p/f", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	c := New(false, func(e *Error) { got = append(got, e.Warning()) })
	if c.Strict() {
		t.Fatal("New(false) is strict")
	}
	f, err := c.Open(d + "/p/f")
	if err != nil {
		t.Fatalf("relaxed checker refused: %v", err)
	}
	f.Close()
	user := userName(uint32(os.Geteuid()))
	want := d + "/p/f: unsafe directory " + d + "/p (owner " + user + ", uid " + strconv.Itoa(os.Geteuid()) + ", mode 0777): writable by group and others; fix: chmod go-w " + d + "/p (used anyway: strict_modes = false)"
	if len(got) != 1 || got[0] != want {
		t.Fatalf("warnings %q, want [%q]", got, want)
	}
	if err := New(true, func(*Error) { t.Error("strict checker warned") }).CheckPath(d + "/p/f"); err == nil {
		t.Fatal("strict checker accepted a file in a world-writable directory")
	}
	var nilChecker *Checker
	if err := nilChecker.CheckPath(d + "/p/f"); err == nil || !nilChecker.Strict() {
		t.Fatal("a nil checker is not strict")
	}
}

// TestSwappedFile is a rename between open and check: the path names
// another file than the one opened, and that is refused.
func TestSwappedFile(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(d, n), []byte(n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(filepath.Join(d, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Rename(filepath.Join(d, "b"), filepath.Join(d, "a")); err != nil {
		t.Fatal(err)
	}
	err = New(true, nil).Check(f, filepath.Join(d, "a"))
	if want := d + "/a changed while it was being checked; try again"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	if _, err := New(true, nil).Open(d + "/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	symlink(t, "loop2", d+"/loop1")
	symlink(t, "loop1", d+"/loop2")
	if err := New(true, nil).CheckPath(d + "/loop1"); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("link loop: %v, want ELOOP", err)
	}
}

// TestOpenRefusesSpecialFiles: what is not a regular file is refused, and
// a named pipe without a writer does not block the open.
func TestOpenRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	fifo := filepath.Join(d, "talon.star")
	fspermtest.Mkfifo(t, fifo)
	sock := filepath.Join(d, "config.toml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cases := []struct{ path, want string }{
		{fifo, fifo + " is a named pipe, not a regular file; replace it with the file itself"},
		{sock, sock + " is a socket, not a regular file; replace it with the file itself"},
		{"/dev/null", "/dev/null is a device, not a regular file; replace it with the file itself"},
		{d, d + " is a directory, not a regular file; replace it with the file itself"},
	}
	for _, c := range cases {
		fspermtest.Within(t, 10*time.Second, "opening "+c.path, func() {
			opens := []func(string) (*os.File, error){OpenRegular}
			if c.path != d { // Checker.Open opens a directory for CheckPath
				opens = append(opens, New(true, nil).Open)
			}
			for _, open := range opens {
				f, err := open(c.path)
				var nr *NotRegularError
				if err == nil {
					f.Close()
				}
				if !errors.As(err, &nr) || err.Error() != c.want {
					t.Errorf("%s: got %v, want %s", c.path, err, c.want)
				}
			}
		})
	}
}
