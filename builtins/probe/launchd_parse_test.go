package probe

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLaunchdParsers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file   string
		parse  func(string) launchdJob
		job    launchdJob
		passed bool
		output string
	}{
		{"print-gui-running.txt", parseLaunchctlPrint,
			launchdJob{Domain: "gui/501", State: "running", PID: 1184, LastExit: "0"},
			true, "running pid 1184 (gui/501)"},
		{"print-system-running.txt", parseLaunchctlPrint,
			launchdJob{Domain: "system", State: "running", PID: 412, LastExit: "(never exited)"},
			true, "running pid 412 (system)"},
		{"print-gui-not-running.txt", parseLaunchctlPrint,
			launchdJob{Domain: "gui/501", State: "not running", LastExit: "1"},
			false, "com.x is not running in gui/501 (state = not running, last exit 1)"},
		{"list-running.txt", parseLaunchctlList,
			launchdJob{Domain: "launchctl list", PID: 1184, LastExit: "0"},
			true, "running pid 1184 (launchctl list)"},
		{"list-not-running.txt", parseLaunchctlList,
			launchdJob{Domain: "launchctl list", LastExit: "256"},
			false, "com.x is not running in launchctl list (no pid, last exit 256)"},
	}
	for _, tc := range cases {
		raw, err := os.ReadFile(filepath.Join("testdata", "launchd", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		job := tc.parse(string(raw))
		if !reflect.DeepEqual(job, tc.job) {
			t.Errorf("%s: parsed %+v, want %+v", tc.file, job, tc.job)
		}
		o := launchdOutcome("com.x", job)
		if o.Passed != tc.passed || o.Output != tc.output {
			t.Errorf("%s: got passed=%v output=%q, want passed=%v output=%q", tc.file, o.Passed, o.Output, tc.passed, tc.output)
		}
	}
}

func TestLaunchdNestedStateIsNotTheJobs(t *testing.T) {
	t.Parallel()
	// A not-running job whose nested block says "state = running" and
	// "pid = 7" must not pass: only top-level lines describe the job.
	out := "gui/501/com.x = {\n\tstate = not running\n\tendpoints = {\n\t\t\"com.x.xpc\" = {\n\t\t\tstate = running\n\t\t\tpid = 7\n\t\t}\n\t}\n\tlast exit code = 78: Function not implemented\n}\n"
	job := parseLaunchctlPrint(out)
	if job.State != "not running" || job.PID != 0 || job.LastExit != "78: Function not implemented" {
		t.Fatalf("parsed %+v", job)
	}
	if o := launchdOutcome("com.x", job); o.Passed {
		t.Fatalf("passed: %+v", o)
	}
	// The predecessor's rule: "PID" = 0 is not a running job.
	if o := launchdOutcome("com.x", parseLaunchctlList("{\n\t\"PID\" = 0;\n};\n")); o.Passed {
		t.Fatalf("PID 0 passed: %+v", o)
	}
}

// Found by FuzzLaunchctl: the domain is the first word of its value
// whatever blank separates the words; a stray carriage return was taken
// for the domain and printed in the verdict.
func TestLaunchdDomainFirstWord(t *testing.T) {
	t.Parallel()
	for out, want := range map[string]string{
		"gui/501/com.x = {\n\tdomain = gui/501 [100009]\n}\n": "gui/501",
		"gui/501/com.x = {\n\tdomain = \r system\n}\n":        "system",
		"gui/501/com.x = {\n\tdomain = gui/501\t[1]\n}\n":     "gui/501",
	} {
		if got := parseLaunchctlPrint(out).Domain; got != want {
			t.Errorf("domain of %q: %q, want %q", out, got, want)
		}
	}
}
