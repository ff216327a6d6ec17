// Package docs holds Talon's documentation; its test keeps the example
// configurations in docs/examples working.
package docs

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"howett.net/plist"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/service"
	"github.com/talon-dev/talon/internal/testpeer"
)

func TestPrometheusExample(t *testing.T) {
	promtool := testpeer.Need(t, "promtool")["promtool"]
	out, err := exec.Command(promtool, "check", "config", "examples/prometheus.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool: %v\n%s", err, out)
	}
	out, err = exec.Command(promtool, "check", "rules", "examples/talon-rules.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 rules found") {
		t.Fatalf("promtool rules: %v\n%s", err, out)
	}
}

func TestAlertmanagerExample(t *testing.T) {
	amtool := testpeer.Need(t, "amtool")["amtool"]
	out, err := exec.Command(amtool, "check-config", "examples/alertmanager.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("amtool: %v\n%s", err, out)
	}
}

func TestPolicyExampleLoads(t *testing.T) {
	cfg := config.Default()
	cfg.ServicesFile = filepath.Join(t.TempDir(), "none.toml")
	dir := t.TempDir()
	src, err := os.ReadFile("examples/talon.star")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "talon.star"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	res := builtins.Load(dir, builtins.Options{Config: cfg, GOOS: runtime.GOOS})
	if res.Err() != nil || len(res.Policy.Ladder) != 2 || !res.Policy.Ladder[1].Pages() {
		t.Fatalf("examples/talon.star: %v", res.ErrorText())
	}
}

var update = flag.Bool("update", false, "rewrite the service examples")

// exampleSpec is the install the examples show: a user at /Users/you
// (macOS) or /home/you (Linux) who ran `make install`.
func exampleSpec(manager string) service.Spec {
	home := "/Users/you"
	if manager == service.Systemd {
		home = "/home/you"
	}
	s := service.Spec{Manager: manager, Name: service.DefaultUnit, Home: home, UID: 501,
		Argv:     []string{home + "/.local/bin/talon", "--config", home + "/.config/talon/config.toml", "run"},
		Path:     []string{"/opt/homebrew/bin", home + "/.local/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"},
		StateDir: home + "/.local/state/talon"}
	if manager == service.Launchd {
		s.Name = service.DefaultLabel
	}
	return s
}

// The service files in docs/examples are what `talon service print` writes
// for that install, and the plist reads with a real plist decoder.
func TestServiceExamples(t *testing.T) {
	for file, manager := range map[string]string{"examples/com.talon.watchdog.plist": service.Launchd, "examples/talon.service": service.Systemd} {
		want, err := exampleSpec(manager).Render(service.Manifest{})
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			os.WriteFile(file, want, 0o644)
		}
		have, err := os.ReadFile(file)
		if err != nil || !bytes.Equal(have, want) {
			t.Fatalf("%s is not what talon service print writes; run go test ./docs -run ServiceExamples -update", file)
		}
	}
	b, _ := os.ReadFile("examples/com.talon.watchdog.plist")
	var doc struct {
		Label            string   `plist:"Label"`
		ProgramArguments []string `plist:"ProgramArguments"`
		KeepAlive        bool     `plist:"KeepAlive"`
		RunAtLoad        bool     `plist:"RunAtLoad"`
	}
	if _, err := plist.Unmarshal(b, &doc); err != nil || doc.Label != "com.talon.watchdog" || !doc.KeepAlive || !doc.RunAtLoad ||
		doc.ProgramArguments[0] != "/Users/you/.local/bin/talon" {
		t.Fatalf("plist: %v %+v", err, doc)
	}
}
