package probe_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/talon-dev/talon/builtins/probe/probetest"
)

func TestLaunchdProbeOffMacOS(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "darwin" {
		t.Skip("on macOS the probe asks launchd")
	}
	p := probetest.MustDeclare(t, `probe.launchd("gateway", "com.joel.gateway", critical = True)`)
	if p.OS != "darwin" || strings.Join(p.Programs, ",") != "launchctl" || !p.Critical {
		t.Fatalf("OS %q Programs %q Critical %v", p.OS, p.Programs, p.Critical)
	}
	res, took := probetest.Run(t, p)
	if res.Passed || res.Output != "probe.launchd: launchd exists only on macOS; use probe.systemd" {
		t.Fatalf("got %+v", res)
	}
	if took.Seconds() > 1 {
		t.Fatalf("took %v", took)
	}
}

func TestLaunchdBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\nprobe.launchd(\"l\", \"\")", "talon.star:2:14: in <toplevel>\nError in probe.launchd: probe.launchd: l: label \"\" is not a launchd label"},
		{`probe.launchd("l", "gui/501/com.x")`, `probe.launchd: l: label "gui/501/com.x" is not a launchd label`},
		{`probe.launchd("l", ["com.x"])`, `probe.launchd: for parameter label: got list, want string`},
		{`probe.launchd("l", "com.x", timeout = -1)`, `probe.launchd: for parameter "timeout": want a non-negative number of seconds, got -1`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
