package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/agent"
	"github.com/talon-dev/talon/engine"
)

// TestPromptText pins the whole prompt for a small incident: this is what
// an agent reads.
func TestPromptText(t *testing.T) {
	t.Parallel()
	got := agent.Prompt(incident(), agent.PromptOptions{Task: "the Kubernetes node in Colima"})
	want := `You are the recovery agent of Talon, the watchdog daemon on this host. Talon's probes keep failing and its scripted heal steps have not brought them back, so it is handing the problem to you. Your goal: find out why the failing checks below fail and restore the service with safe shell commands, then say what you did.

What to restore: the Kubernetes node in Colima

Incident inc-1: open for 12m0s, state investigating.

Failing probes:
- node_ready (2.1s, critical): False

Still passing: colima, redis

What Talon already tried, oldest first:

## heal (1 run(s), last failed at 2026-03-02T03:05:00Z)
exit status 1: kube API not reachable

Rules you must follow:
- Never recreate, reset or delete the cluster or its VM unless a person has explicitly approved it.
- Never delete persistent volumes, PersistentVolumeClaims or the data behind them.
- Never kill the SSH control socket (the ssh/Lima mux master) that you and Talon reach the VM through.
- Prefer the least destructive fix that works: restart one service before restarting many, and a service before a VM.
- If the only fix you can see is destructive, stop and report what you would do and why, without doing it.

Act now. When you are done, reply with a short report: what was wrong, what you changed, and what still fails.
`
	if got != want {
		t.Fatalf("prompt\n%s\nwant\n%s", got, want)
	}
}

func TestPromptTruncation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "talon.log")
	var lines []string
	for i := 1; i <= 200; i++ {
		lines = append(lines, fmt.Sprintf("cycle %d ok", i))
	}
	os.WriteFile(logFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	stderrFile := filepath.Join(dir, "worker.err")
	var long []string
	for i := 1; i <= 130; i++ {
		long = append(long, fmt.Sprintf("%03d %s", i, strings.Repeat("é", 100)))
	}
	os.WriteFile(stderrFile, []byte(strings.Join(long, "\n")), 0o644)

	inc := incident()
	inc.Failing = []engine.Result{
		{Name: "redis", Output: strings.Repeat("ab", 1000) + "\nsecond line", DurationMS: 10012, TimedOut: true},
		{Name: "k8s_api", Output: "line one\nline two", DurationMS: 5},
	}
	inc.Rungs = map[string]engine.RungRecord{
		"heal":   {Attempts: 2, LastRun: started.Add(6 * time.Minute), LastOK: true, LastOutput: strings.Repeat("h", 5000) + "END-OF-HEAL"},
		"bridge": {Attempts: 1, LastRun: started.Add(2 * time.Minute), LastOutput: "colima restarted"},
		"agent":  {Attempts: 0},
	}
	got := agent.Prompt(inc, agent.PromptOptions{LogFile: logFile, WorkerStderr: stderrFile, MaxOutput: 100})

	for _, want := range []string{
		"- redis (10.012s, timed out): " + strings.Repeat("ab", 50) + " …[1912 more characters]\n",
		"- k8s_api (5ms): line one | line two\n",
		"## bridge (1 run(s), last failed at 2026-03-02T03:02:00Z)\ncolima restarted\n",
		"## heal (2 run(s), last succeeded but the probes still fail at 2026-03-02T03:06:00Z)\n[1011 earlier characters]… hhh",
		"END-OF-HEAL\n",
		"Talon's log (" + logFile + ", last 120 lines):\ncycle 81 ok\n",
		"cycle 200 ok\n\nThe worker's stderr",
		"The worker's stderr (" + stderrFile + ", last 120 lines):\n[8599 earlier characters]… ",
		"130 " + strings.Repeat("é", 100) + "\n\nRules you must follow:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("prompt lacks %q", want)
		}
	}
	if strings.Contains(got, "cycle 80 ok") || strings.Contains(got, "## agent") {
		t.Errorf("prompt has too much:\n%s", got)
	}
	if strings.Index(got, "## bridge") > strings.Index(got, "## heal") {
		t.Error("rungs not oldest first")
	}
	// Bounded: 2 probes × 100, one rung × 4000, two tails × 4000, plus the text.
	if n := len([]rune(got)); n > 14000 {
		t.Errorf("prompt of %d characters", n)
	}
	// The stderr tail is exactly MaxTail characters after its marker.
	i := strings.Index(got, "[8599 earlier characters]… ") + len("[8599 earlier characters]… ")
	j := strings.Index(got, "\n\nRules you must follow:")
	if n := len([]rune(got[i:j])); n != agent.MaxTail {
		t.Errorf("stderr tail of %d characters, want %d", n, agent.MaxTail)
	}
}

func TestPromptMissingLog(t *testing.T) {
	t.Parallel()
	got := agent.Prompt(nil, agent.PromptOptions{LogFile: "/nonexistent/talon.log"})
	if !strings.Contains(got, "Talon's log (/nonexistent/talon.log, last 120 lines):\n(cannot read it: no such file or directory)\n") {
		t.Fatalf("prompt:\n%s", got)
	}
	if !strings.HasSuffix(got, "what still fails.\n") {
		t.Fatalf("prompt:\n%s", got)
	}
}
