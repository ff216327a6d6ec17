package probe

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSystemdOutcome judges `systemctl --user show` output recorded from a
// real systemd 252 user manager (testdata/systemd).
func TestSystemdOutcome(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file   string
		passed bool
		output string
	}{
		{"active.txt", true, "active (running) pid 21053 restarts 0"},
		{"failed.txt", false, "failed (failed) exit status 3 restarts 0"},
		{"restarting.txt", true, "active (running) pid 21107 restarts 4"},
		{"auto-restart.txt", false, "activating (auto-restart) exit status 1 restarts 1"},
		{"not-found.txt", false, "unit u.service not found (LoadState=not-found)"},
	}
	for _, tc := range cases {
		raw, err := os.ReadFile(filepath.Join("testdata", "systemd", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		o := systemdOutcome("u.service", parseSystemctlShow(string(raw)))
		if o.Passed != tc.passed || o.Output != tc.output {
			t.Errorf("%s: got passed=%v output=%q, want passed=%v output=%q", tc.file, o.Passed, o.Output, tc.passed, tc.output)
		}
		if len(o.Detail) != len(systemdProps) {
			t.Errorf("%s: detail %v, want all of %v", tc.file, o.Detail, systemdProps)
		}
	}
	if o := systemdOutcome("u", parseSystemctlShow("")); o.Passed || o.Output != "unit u: systemctl printed no ActiveState" {
		t.Errorf("empty output: %+v", o)
	}
}
