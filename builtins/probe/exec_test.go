package probe_test

import (
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
)

func TestExecProbe(t *testing.T) {
	t.Parallel()
	cases := []probeCase{
		{"pass", `probe.exec("ok", ["sh", "-c", "echo hello"])`, true, "hello"},
		{"fail", `probe.exec("bad", ["sh", "-c", "echo nope; exit 2"])`, false, "exit status 2: nope"},
		{"expect", `probe.exec("e", ["echo", "True"], expect_exact = "True")`, true, "True"},
		{"expect miss", `probe.exec("e", ["echo", "False"], expect_exact = "True")`, false, `expected == "True", got "False"`},
		{"env", `probe.exec("env", ["sh", "-c", "echo $X"], env = {"X": "café ✓"})`, true, "café ✓"},
		{"missing program", `probe.exec("m", ["talon-no-such-program"])`, false, "talon-no-such-program: not found on PATH"},
	}
	runCases(t, cases)
}

func TestExecProbeTimeout(t *testing.T) {
	t.Parallel()
	res, took := probetest.Run(t, probetest.MustDeclare(t, `probe.exec("slow", ["sh", "-c", "sleep 30 & sleep 30"], timeout = "1s")`))
	if res.Passed || !res.TimedOut || !strings.HasPrefix(res.Output, "timeout after 1s") {
		t.Fatalf("got %+v", res)
	}
	if took > 3*time.Second {
		t.Fatalf("1s timeout took %v", took)
	}
}

func TestExecProbeBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\n\nprobe.exec(\"x\", [])", "talon.star:3:11: in <toplevel>\nError in probe.exec: probe.exec: x: argv must name a program"},
		{`probe.exec("x", "ls")`, "probe.exec: for parameter argv: want a list of strings, got string"},
		{`probe.exec("x", ["ls"], timeout = "soon")`, `probe.exec: for parameter "timeout": want a duration such as "30s" or "5m", got "soon"`},
		{`probe.exec("x y", ["ls"])`, `probe.exec: probe name "x y"`},
		{`probe.exec("x", ["ls"], critical = True, witness = True)`, "a witness probe cannot be critical"},
		{`probe.exec("x", ["ls"], expect = "a", expect_regex = "b")`, "give only one of expect, expect_regex, expect_exact"},
		{`probe.exec("x", ["ls"], expect_regex = "(")`, "bad expect_regex"},
		{`probe.exec("x", ["ls"]); probe.exec("x", ["ls"])`, `probe "x" declared twice`},
		{`probe.tcp("x", "127.0.0.1:1", True)`, "probe.tcp: got 3 positional arguments, want at most 2; pass the other options by name"},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
