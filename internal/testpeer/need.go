// Package testpeer finds and starts the real programs ("test peers") that
// tests talk to: etcd, kube-apiserver, kubectl, monitoring plugins and so on.
//
// Peers are installed by `make test`. A test that needs a missing peer is
// skipped locally and fails in CI (CI=true), so a broken install never hides
// behind a green run.
package testpeer

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rootModule is the module line that identifies the repository's root go.mod.
const rootModule = "module github.com/talon-dev/talon"

// extraDirs are searched, in order, for programs that are not on PATH.
// RepoRoot()/.cache/k8s is appended at lookup time.
var extraDirs = []string{"/usr/sbin", "/usr/lib/nagios/plugins"}

// Need resolves each program to an absolute path, looking on PATH first and
// then in /usr/sbin, /usr/lib/nagios/plugins and <repo>/.cache/k8s. It
// returns name → absolute path. If any program is missing the test is
// skipped, or failed when the CI environment variable is "true".
func Need(t testing.TB, programs ...string) map[string]string {
	t.Helper()
	found := make(map[string]string, len(programs))
	var missing []string
	for _, name := range programs {
		if p, ok := lookup(name); ok {
			found[name] = p
		} else {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		msg := "test peer " + strings.Join(missing, ", ") + " missing: run `make test` (it installs peers)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s", msg)
		}
		t.Skipf("%s", msg)
	}
	return found
}

func lookup(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, true
		}
	}
	if strings.ContainsRune(name, filepath.Separator) {
		return "", false
	}
	dirs := append([]string(nil), extraDirs...)
	if root := RepoRoot(); root != "" {
		dirs = append(dirs, filepath.Join(root, ".cache", "k8s"))
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// RepoRoot walks up from the working directory to the directory whose go.mod
// declares module github.com/talon-dev/talon. It returns "" if there is none.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if isRootGoMod(filepath.Join(dir, "go.mod")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// isRootGoMod reports whether the go.mod at path has the root module line as
// its first line (ignoring blank lines and // comments).
func isRootGoMod(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		return line == rootModule
	}
	return false
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// listens on 127.0.0.1:0, takes the port and closes the listener.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("testpeer: closing port probe: %v", err)
	}
	return port
}
