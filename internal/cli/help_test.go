package cli

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := talon(t, "help", c.name)
			if code != 0 || errOut != "" {
				t.Fatalf("help %s: exit %d %q", c.name, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: talon "+c.name) || !strings.Contains(out, "global flags") {
				t.Fatalf("help %s:\n%s", c.name, out)
			}
			if c.name == "help" {
				return
			}
			// CMD --help prints the same text.
			out2, _, code := talon(t, c.name, "--help")
			if code != 0 || out2 != out {
				t.Fatalf("%s --help differs from help %s (exit %d):\n%s\n---\n%s", c.name, c.name, code, out2, out)
			}
		})
	}
}

func TestHelpListsTheCommandsOwnFlags(t *testing.T) {
	out, _, _ := talon(t, "help", "events")
	for _, want := range []string{"--since WHEN", "--until WHEN", "--incident ID", "--follow", "--json", "--utc"} {
		if !strings.Contains(out, want) {
			t.Errorf("help events lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\n  --config") && strings.Contains(strings.SplitN(out, "global flags", 2)[0], "--config") {
		t.Errorf("global flags listed as the command's own:\n%s", out)
	}
}

func TestHelpErrors(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"help", "bogus"}, 2, "", "talon: help: unknown command \"bogus\"; see talon help\n"},
		{[]string{"help", "a", "b"}, 2, "", "talon: help takes one command, got 2; see talon help\n"},
		{[]string{"status", "--format", "yaml"}, 2, "", "talon: --format \"yaml\": want table or json\n"},
	}
	for _, tc := range cases {
		out, errOut, code := talon(t, tc.args...)
		if code != tc.code || out != tc.stdout || errOut != tc.stderr {
			t.Errorf("%v: exit %d stdout %q stderr %q", tc.args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		out, _, code := talon(t, args...)
		if code != 0 || !strings.HasPrefix(out, "usage: talon [global flags]") || !strings.Contains(out, "\n  events ") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut, code := talon(t, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "talon ") || !strings.Contains(out, runtime.Version()) ||
			strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d %q %q", args, code, out, errOut)
		}
	}
	out, _, code := talon(t, "version", "--format", "json")
	var bi buildInfo
	if err := json.Unmarshal([]byte(out), &bi); err != nil || code != 0 || bi.GoVersion != runtime.Version() || bi.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("version --format json: %v %d %s", err, code, out)
	}
}

// --format overrides the pipe detection: a table even though stdout is a
// buffer here.
func TestFormatOverridesPipeDetection(t *testing.T) {
	cfg := testdata(t, "good/config.toml")
	out, _, _ := talon(t, "validate", "--format", "table", "--config", cfg, "--policy", testdata(t, "good"))
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Fatalf("--format table printed JSON:\n%s", out)
	}
	out, _, _ = talon(t, "--format", "json", "validate", "--config", cfg, "--policy", testdata(t, "good"))
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("--format json: %v\n%s", err, out)
	}
}

// The old `talon --dry-run` prints the resolved config under its TOML keys,
// the names config.toml and the policy use.
func TestDryRunPrintsTOMLKeys(t *testing.T) {
	out, errOut, code := talon(t, "--dry-run", "--config", testdata(t, "good/config.toml"), "--policy", testdata(t, "good"))
	var m struct {
		Config map[string]any `json:"config"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("exit %d %q\n%s", code, errOut, out)
	}
	if m.Config["check_interval_secs"] != float64(30) || strings.Contains(out, "CheckIntervalSecs") || strings.Contains(out, "\"File\"") {
		t.Fatalf("config keys:\n%s", out)
	}
	w, _ := m.Config["worker"].(map[string]any)
	if w["health_failures_before_restart"] != float64(3) {
		t.Fatalf("worker table: %v", w)
	}
}
