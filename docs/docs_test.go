// Package docs holds Talon's documentation; its test keeps the example
// configurations in docs/examples working.
package docs

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine/config"
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

func TestLaunchdPlistParses(t *testing.T) {
	b, err := os.ReadFile("examples/com.talon.watchdog.plist")
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	var keys []string
	var inKey bool
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("plist is not well-formed XML: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			inKey = x.Name.Local == "key"
		case xml.CharData:
			if inKey {
				keys = append(keys, string(x))
			}
		case xml.EndElement:
			inKey = false
		}
	}
	if got := strings.Join(keys, ","); got != "Label,ProgramArguments,RunAtLoad,KeepAlive,ThrottleInterval,ExitTimeOut,StandardErrorPath" {
		t.Fatalf("plist keys %s", got)
	}
}
