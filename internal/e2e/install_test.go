package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talon-dev/talon/internal/testpeer"
)

// make install puts a working talon in PREFIX/bin.
func TestMakeInstall(t *testing.T) {
	mk := testpeer.Need(t, "make")["make"]
	root := testpeer.RepoRoot()
	prefix := t.TempDir()
	cmd := exec.Command(mk, "-C", root, "install", "PREFIX="+prefix, "BIN="+filepath.Join(t.TempDir(), "talon"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(prefix, "bin", "talon"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "talon ") {
		t.Fatalf("installed talon version: %v %q", err, out)
	}
}
