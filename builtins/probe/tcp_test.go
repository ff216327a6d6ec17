package probe_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
)

func TestTCPProbe(t *testing.T) {
	t.Parallel()
	open, closed := fmt.Sprintf("127.0.0.1:%d", acceptAndClose(t)), closedAddr(t)
	cases := []probeCase{
		{"pass", `probe.tcp("up", "` + open + `")`, true, "connected to " + open},
		{"fail", `probe.tcp("down", "` + closed + `")`, false, "connection refused"},
	}
	runCases(t, cases)
}

func TestTCPProbeTimeout(t *testing.T) {
	t.Parallel()
	addr := unansweredAddr(t)
	res, took := probetest.Run(t, probetest.MustDeclare(t, `probe.tcp("hang", "`+addr+`", timeout = "1s")`))
	if res.Passed || !res.TimedOut || res.Output != "timeout after 1s connecting to "+addr {
		t.Fatalf("got %+v", res)
	}
	if took < 900*time.Millisecond || took > 2*time.Second {
		t.Fatalf("1s timeout took %v", took)
	}
}

func TestTCPProbeBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{`probe.tcp("x", "localhost")`, `probe.tcp: x: address "localhost": want "host:port"`},
		{`probe.tcp("x", ":80")`, `probe.tcp: x: address ":80": want "host:port"`},
		{`probe.tcp("x", "localhost:0")`, `probe.tcp: x: address "localhost:0": port must be a number between 1 and 65535`},
		{`probe.tcp("x", "localhost:redis")`, `port must be a number between 1 and 65535`},
		{`probe.tcp("x")`, `probe.tcp: missing argument for address`},
		{`probe.tcp("x", 8108)`, `probe.tcp: for parameter address: got int, want string`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
