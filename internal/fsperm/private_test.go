package fsperm

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestOpenPrivate(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	target := filepath.Join(d, "precious")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(d, "journal.jsonl")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(d, "talon.lock")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(d, "talon.log")
	if err := os.WriteFile(loose, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		flag int
		want string // error; "" for success
		mode os.FileMode
	}{
		{link, os.O_WRONLY | os.O_APPEND | os.O_CREATE, link + " is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it", 0},
		{link, os.O_RDONLY, link + " is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it", 0},
		{fifo, os.O_RDONLY, fifo + " is a named pipe, not a regular file; remove it", 0},
		{loose, os.O_WRONLY | os.O_APPEND, "", 0o600},
		{filepath.Join(d, "new"), os.O_RDWR | os.O_CREATE, "", 0o600},
	}
	for _, tc := range cases {
		f, err := OpenPrivate(tc.path, tc.flag)
		switch {
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s: got %v, want %s", tc.path, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.want == "":
			fi, _ := f.Stat()
			if fi.Mode().Perm() != tc.mode {
				t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode().Perm(), tc.mode)
			}
			f.Close()
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "precious\n" {
		t.Fatalf("the link's target changed: %q %v", b, err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o644 {
		t.Fatalf("the link's target's mode changed: %v", fi.Mode())
	}
}
