package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"howett.net/plist"
)

// fakeLaunchctl puts a stand-in launchctl first on PATH. launchd cannot
// exist on Linux, so this is as far as a test here can go: the stand-in
// records every command line Talon runs, and answers `print` the way
// launchctl does (exit 113 for a service that is not loaded), keeping the
// loaded services in a directory.
func fakeLaunchctl(t *testing.T) (calls func() []string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "argv.log")
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]q
loaded=%[2]q
case "$1" in
print)
  key=$(echo "$2" | tr / _)
  if [ -f "$loaded/$key" ]; then printf 'gui/501/x = {\n\tstate = running\n\tpid = 777\n}\n'; exit 0; fi
  echo "Could not find service \"$2\" in domain for port" >&2; exit 113 ;;
bootstrap)
  key=$(echo "$2/$(basename "$3" .plist)" | tr / _); touch "$loaded/$key" ;;
bootout)
  key=$(echo "$2" | tr / _); rm -f "$loaded/$key" ;;
esac
exit 0
`, log, filepath.Join(dir, "loaded"))
	os.MkdirAll(filepath.Join(dir, "loaded"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "launchctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func() []string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}

func TestServiceLaunchdThroughLaunchctl(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	calls := fakeLaunchctl(t)
	bin := filepath.Join(home, ".local", "bin", "talon")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	cfg := testdata(t, "good/config.toml")
	uid := os.Getuid()
	plistPath := filepath.Join(home, "Library", "LaunchAgents", "com.talon.watchdog.plist")

	// The predecessor is there: install refuses and names the flag.
	pred := filepath.Join(home, "Library", "LaunchAgents", "com.joel.talon.plist")
	os.MkdirAll(filepath.Dir(pred), 0o755)
	os.WriteFile(pred, []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Label</key><string>com.joel.talon</string></dict></plist>`), 0o644)
	_, errOut, code := talon(t, "service", "install", "--launchd", "--binary", bin, "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "talon: service install: the predecessor's LaunchAgent com.joel.talon is installed at "+pred) ||
		!strings.Contains(errOut, "--replace-predecessor") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d %q", code, errOut)
	}
	calls()

	out, errOut, code := talon(t, "service", "install", "--launchd", "--replace-predecessor", "--binary", bin, "--config", cfg)
	if code != 0 || errOut != "" {
		t.Fatalf("install: exit %d %q\n%s", code, errOut, out)
	}
	target := fmt.Sprintf("gui/%d/com.talon.watchdog", uid)
	want := []string{
		fmt.Sprintf("print gui/%d/com.joel.talon", uid),
		"print " + target,
		"enable " + target,
		fmt.Sprintf("bootstrap gui/%d %s", uid, plistPath),
	}
	if got := calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("launchctl saw:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	b, err := os.ReadFile(plistPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ProgramArguments []string `plist:"ProgramArguments"`
	}
	// TALON_STATE_DIR (set by the test helper) is spelled out: the service
	// will not have this environment.
	if _, err := plist.Unmarshal(b, &doc); err != nil || strings.Join(doc.ProgramArguments, " ") != bin+" --config "+cfg+" --state-dir "+os.Getenv("TALON_STATE_DIR")+" run" {
		t.Fatalf("plist program %v: %v", doc.ProgramArguments, err)
	}
	if _, err := os.Stat(pred + ".replaced-by-talon"); err != nil {
		t.Fatalf("the predecessor's plist was not set aside: %v", err)
	}

	out, _, code = talon(t, "service", "status", "--launchd", "--json", "--binary", bin, "--config", cfg)
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if st["installed"] != true || st["loaded"] != true || st["running"] != true || st["pid"] != float64(777) || st["written_by_talon"] != true {
		t.Fatalf("status %v", st)
	}
	calls()

	out, errOut, code = talon(t, "service", "uninstall", "--launchd", "--binary", bin, "--config", cfg)
	if code != 0 || errOut != "" {
		t.Fatalf("uninstall: exit %d %q\n%s", code, errOut, out)
	}
	want = []string{"print " + target, "bootout " + target}
	if got := calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("launchctl saw:\n%s", strings.Join(got, "\n"))
	}
	if _, err := os.Stat(plistPath); !os.IsNotExist(err) {
		t.Fatal("uninstall left the plist")
	}
	if _, err := os.Stat(pred); err != nil {
		t.Fatalf("uninstall did not put the predecessor back: %v", err)
	}
	// Uninstalling again finds nothing and says so.
	out, _, code = talon(t, "service", "uninstall", "--launchd", "--binary", bin, "--config", cfg)
	if code != 0 || !strings.HasPrefix(out, "nothing to uninstall: ") {
		t.Fatalf("second uninstall: %d %q", code, out)
	}
}

func TestServiceArgumentErrors(t *testing.T) {
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"service"}, "talon: service takes one of install, uninstall, status, print; see talon help service\n"},
		{[]string{"service", "restart"}, "talon: service restart: want install, uninstall, status or print; see talon help service\n"},
		{[]string{"service", "print", "--launchd", "--systemd"}, "talon: service: --launchd and --systemd exclude each other\n"},
		{[]string{"service", "print", "--user", "--system"}, "talon: service: --user and --system exclude each other\n"},
		{[]string{"service", "print", "--binary", "/nonexistent/talon"}, "talon: service: /nonexistent/talon is not an executable file; pass --binary with the installed talon (make install puts it in ~/.local/bin)\n"},
	}
	for _, tc := range cases {
		_, errOut, code := talon(t, tc.args...)
		if errOut != tc.stderr || (code != 1 && code != 2) {
			t.Errorf("%v: exit %d %q, want %q", tc.args, code, errOut, tc.stderr)
		}
	}
	// go test runs from a temporary build: install refuses to point a
	// service at it.
	_, errOut, code := talon(t, "service", "install", "--systemd")
	if code != 1 || !strings.Contains(errOut, "runs from a temporary build") {
		t.Fatalf("install from a test binary: %d %q", code, errOut)
	}
}
