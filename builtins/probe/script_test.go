package probe_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe"
	"github.com/talon-dev/talon/builtins/probe/probetest"
)

func TestScriptProbe(t *testing.T) {
	t.Parallel()
	cases := []probeCase{
		{"pass", `probe.script("ok", "echo hello | tr a-z A-Z")`, true, "HELLO"},
		{"fail", `probe.script("bad", "echo nope >&2; exit 2")`, false, "exit status 2: nope"},
		{"negation", `probe.script("taint", "! echo disk-pressure | grep -q disk-pressure")`, false, "exit status 1"},
		{"expect", `probe.script("e", "echo True", expect_exact = "True")`, true, "True"},
		{"utf-8", `probe.script("u", "printf 'café ✓'")`, true, "café ✓"},
		{"quoting", `probe.script("q", "echo \"a#b\" # c")`, true, "a#b"},
		{"big output is not a timeout", `probe.script("big", "head -c 300000 /dev/zero | tr '\\0' x; echo", timeout = "5s")`, true, "bytes of output dropped"},
		{"missing program", `probe.script("m", "talon-no-such-program")`, false, "exit status 127"},
	}
	runCases(t, cases)
}

func TestScriptProbeTimeout(t *testing.T) {
	t.Parallel()
	// A background job and a pipeline member both hold the output pipe: the
	// whole group dies at the deadline.
	res, took := probetest.Run(t, probetest.MustDeclare(t, `probe.script("slow", "sleep 30 & echo started; sleep 30 | cat", timeout = "1s")`))
	if res.Passed || !res.TimedOut || !strings.HasPrefix(res.Output, "timeout after 1s") {
		t.Fatalf("got %+v", res)
	}
	// Had the group outlived the deadline, the run would have waited for
	// its sleeps (30 s). How much over 1 s it took depends on the
	// machine's load, so only that is checked.
	if took >= 15*time.Second {
		t.Fatalf("1s timeout took %v: the group was not killed at the deadline", took)
	}
}

func TestScriptProbeBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{`probe.script("x", "")`, "probe.script: x: command must not be empty"},
		{`probe.script("x", ["ls"])`, "probe.script: for parameter command: got list, want string"},
		{`probe.script("x")`, "probe.script: missing argument for command"},
		{`probe.script("x", "true", after = -1)`, `for parameter "after": want a count from 0 to 100000, got -1`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}

func TestShellProgram(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"colima status":                  "colima",
		"kubectl get nodes | grep Ready": "kubectl",
		"! kubectl get nodes":            "",
		"LANG=C df -P /":                 "df",
		"/usr/local/bin/heal.sh --now":   "/usr/local/bin/heal.sh",
		"$HOME/bin/x":                    "",
		"'quoted' arg":                   "",
		"if true; then :; fi":            "",
		"":                               "",
	}
	for cmd, want := range cases {
		if got := probe.ShellProgram(cmd); got != want {
			t.Errorf("ShellProgram(%q) = %q, want %q", cmd, got, want)
		}
	}
	p := probetest.MustDeclare(t, `probe.script("p", "redis-cli ping")`)
	if !slices.Equal(p.Programs, []string{"redis-cli"}) || p.Kind != "script" {
		t.Errorf("programs %v kind %s", p.Programs, p.Kind)
	}
}
