//go:build linux

package testpeer

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSSHD logs in with the generated config and key, and checks that
// cleanup ends the server and every session it started, detached ones too.
func TestSSHD(t *testing.T) {
	t.Parallel()
	var s *SSHD
	t.Run("session", func(t *testing.T) {
		s = StartSSHD(t)
		out, err := exec.Command("ssh", "-F", s.Config, "-o", "BatchMode=yes", s.Alias, `echo "$HOME"; (sleep 300 >/dev/null 2>&1 &)`).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != s.Home {
			t.Fatalf("remote $HOME %q, want %q", got, s.Home)
		}
		if len(s.Sessions()) == 0 {
			t.Fatal("the detached remote sleep is not listed among the sessions")
		}
		out, err = exec.Command("ssh", "-F", s.Config, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", s.WrongKey,
			"-p", strconv.Itoa(s.Port), "-l", s.User, s.Host, "true").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied (publickey)") {
			t.Fatalf("wrong key: err %v, output %s", err, out)
		}
	})
	if left := markedProcs(sshdMarkerVar, s.marker); len(left) > 0 {
		t.Fatalf("processes left after cleanup: %v", left)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, "pw")
	if err := redisPing(r.Addr, "pw"); err != nil {
		t.Fatal(err)
	}
	if err := redisPing(r.Addr, ""); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without AUTH: %v", err)
	}
}

// TestSystemdUser runs a unit under the private user manager and checks that
// cleanup stops it and removes the manager's cgroups.
func TestSystemdUser(t *testing.T) {
	t.Parallel()
	var (
		sd  *SystemdUser
		pid int
		cgs []string
	)
	t.Run("unit", func(t *testing.T) {
		sd = StartSystemdUser(t, map[string]string{"talon-sleep.service": "[Service]\nExecStart=/bin/sleep infinity\n"})
		cgs = append(cgs, sd.cgroups...)
		sd.Systemctl(t, "start", "talon-sleep.service")
		if st := sd.Property(t, "talon-sleep.service", "ActiveState"); st != "active" {
			t.Fatalf("ActiveState %s", st)
		}
		pid, _ = strconv.Atoi(sd.Property(t, "talon-sleep.service", "MainPID"))
		self, _ := os.ReadFile("/proc/self/cgroup")
		unit, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if !strings.Contains(string(unit), cgroupPrefix) || strings.Contains(string(self), cgroupPrefix) {
			t.Fatalf("the unit must run inside the manager's cgroup and the test outside it:\nunit %s\ntest %s", unit, self)
		}
	})
	if pid <= 0 {
		t.Fatal("no MainPID")
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("the unit's process %d outlived the manager", pid)
	}
	for _, cg := range cgs {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s left behind", cg)
		}
	}
}
