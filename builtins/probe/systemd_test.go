//go:build linux

package probe_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/internal/testpeer"
)

func TestSystemdProbe(t *testing.T) {
	t.Parallel()
	counter := filepath.Join(t.TempDir(), "starts")
	sd := testpeer.StartSystemdUser(t, map[string]string{
		"talon-active.service": "[Service]\nExecStart=/bin/sleep infinity\n",
		"talon-failed.service": "[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
		// Exits 1 three times, then stays up: NRestarts ends at 3.
		"talon-flaky.service": fmt.Sprintf(`[Unit]
StartLimitIntervalSec=0
[Service]
ExecStart=/bin/sh -c 'n=$(cat %[1]s 2>/dev/null || echo 0); echo $((n+1)) > %[1]s; [ "$n" -ge 3 ] && exec sleep infinity; exit 1'
Restart=always
RestartSec=100ms
`, counter),
	})
	sd.Systemctl(t, "start", "talon-active.service", "talon-failed.service", "talon-flaky.service")
	if st := sd.WaitProperty(t, "talon-failed.service", "ActiveState", 10*time.Second, func(v string) bool { return v == "failed" }); st != "failed" {
		t.Fatalf("talon-failed.service: ActiveState %s, want failed", st)
	}
	if n := sd.WaitProperty(t, "talon-flaky.service", "NRestarts", 10*time.Second, func(v string) bool { return v == "3" }); n != "3" {
		t.Fatalf("talon-flaky.service: NRestarts %s, want 3", n)
	}
	if st := sd.WaitProperty(t, "talon-flaky.service", "SubState", 10*time.Second, func(v string) bool { return v == "running" }); st != "running" {
		t.Fatalf("talon-flaky.service: SubState %s, want running", st)
	}
	activePID := sd.Property(t, "talon-active.service", "MainPID")

	cases := []struct {
		name, src string
		env       []string
		passed    bool
		output    string // regexp
		detail    map[string]string
	}{
		{"active", `probe.systemd("worker", "talon-active.service", user = True)`, sd.Env(), true,
			`^active \(running\) pid ` + activePID + ` restarts 0$`,
			map[string]string{"ActiveState": "active", "SubState": "running", "MainPID": activePID, "NRestarts": "0", "ExecMainStatus": "0", "LoadState": "loaded"}},
		{"suffix left out", `probe.systemd("worker", "talon-active", user = True)`, sd.Env(), true, `^active \(running\)`, nil},
		{"failed", `probe.systemd("worker", "talon-failed.service", user = True)`, sd.Env(), false,
			`^failed \(failed\) exit status 3 restarts 0$`,
			map[string]string{"ActiveState": "failed", "ExecMainStatus": "3", "MainPID": "0"}},
		{"restarted", `probe.systemd("worker", "talon-flaky.service", user = True)`, sd.Env(), true,
			`^active \(running\) pid \d+ restarts 3$`, map[string]string{"NRestarts": "3"}},
		{"unknown unit", `probe.systemd("worker", "talon-no-such.service", user = True)`, sd.Env(), false,
			`^unit talon-no-such.service not found \(LoadState=not-found\)$`, map[string]string{"LoadState": "not-found"}},
		{"expect", `probe.systemd("worker", "talon-active.service", user = True, expect_regex = "restarts 0$")`, sd.Env(), true, `^active`, nil},
		{"no manager", `probe.systemd("worker", "talon-active.service", user = True)`, []string{"XDG_RUNTIME_DIR=" + t.TempDir()}, false,
			`Failed to connect to bus`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.RunWithEnv(t, probetest.MustDeclare(t, tc.src), tc.env...)
			if res.Passed != tc.passed || !regexp.MustCompile(tc.output).MatchString(res.Output) {
				t.Fatalf("got passed=%v output=%q; want passed=%v output matching %s", res.Passed, res.Output, tc.passed, tc.output)
			}
			for k, v := range tc.detail {
				if res.Detail[k] != v {
					t.Errorf("detail[%s] = %q, want %q (detail %v)", k, res.Detail[k], v, res.Detail)
				}
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		// A "manager" whose private socket accepts and never speaks D-Bus.
		rt := t.TempDir()
		if err := os.Mkdir(filepath.Join(rt, "systemd"), 0o700); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", filepath.Join(rt, "systemd", "private"))
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		t.Cleanup(func() { l.Close() })
		res, took := probetest.RunWithEnv(t, probetest.MustDeclare(t, `probe.systemd("worker", "talon-active.service", user = True, timeout = "1s")`), "XDG_RUNTIME_DIR="+rt)
		if res.Passed || !res.TimedOut || !strings.HasPrefix(res.Output, "timeout after 1s") {
			t.Fatalf("got %+v", res)
		}
		if took > 2*time.Second {
			t.Fatalf("1s timeout took %v", took)
		}
	})
}

// TestSystemdSystemManagerMissing: where systemd is not PID 1 (this test
// machine), asking the system manager fails with systemctl's own words.
func TestSystemdSystemManagerMissing(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "systemctl")
	if comm, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(comm)) == "systemd" {
		t.Skip("systemd is PID 1 here")
	}
	res, _ := probetest.Run(t, probetest.MustDeclare(t, `probe.systemd("sys", "ssh.service")`))
	if res.Passed || !strings.Contains(res.Output, "not been booted with systemd") {
		t.Fatalf("got %+v", res)
	}
}

func TestSystemdBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\n\n\nprobe.systemd(\"s\", \"--all\")", "talon.star:4:14: in <toplevel>\nError in probe.systemd: probe.systemd: s: unit \"--all\" is not a unit name"},
		{`probe.systemd("s", "")`, `probe.systemd: s: unit "" is not a unit name`},
		{`probe.systemd("s", "a.service", user = "yes")`, `probe.systemd: for parameter "user": got string, want bool`},
		{`probe.systemd("s")`, `probe.systemd: missing argument for unit`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
	p := probetest.MustDeclare(t, `probe.systemd("s", "a.service")`)
	if p.OS != "linux" || strings.Join(p.Programs, ",") != "systemctl" {
		t.Errorf("OS %q Programs %q", p.OS, p.Programs)
	}
}
