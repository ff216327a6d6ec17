//go:build linux

package testpeer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SystemdUser is a real systemd user manager (`systemd --user`) of its own,
// for tests of code that runs `systemctl --user`.
//
// It works where systemd is not PID 1 (containers, VMs with another init):
// the manager runs in a private mount namespace (unshare --mount) with a
// tmpfs on /run/systemd holding the /run/systemd/system directory it checks
// for, with private XDG_RUNTIME_DIR, XDG_CONFIG_HOME, XDG_DATA_HOME,
// XDG_STATE_HOME, XDG_CACHE_HOME and HOME, inside a cgroup of its own in
// every mounted cgroup hierarchy. The cgroup matters: a user manager that
// finds itself in the root cgroup moves every process of that cgroup (the
// whole machine) into its init.scope. With a cgroup of its own it only
// manages itself and its units, and cleanup can kill everything it started.
//
// It needs root (mounts, cgroups), and the programs systemd, systemctl,
// unshare and sh.
type SystemdUser struct {
	// RuntimeDir is the manager's XDG_RUNTIME_DIR; systemctl --user finds
	// the manager through RuntimeDir/systemd/private.
	RuntimeDir string
	// UnitDir is where unit files go (XDG_CONFIG_HOME/systemd/user).
	UnitDir string
	// Dir is the scratch directory; the manager's log is Dir/systemd.log.
	Dir string

	systemctl string
	cgroups   []string // the manager's cgroup directory in each hierarchy
}

const (
	systemdReadyTimeout = 20 * time.Second
	cgroupPrefix        = "talon-testpeer-systemd-"
)

// StartSystemdUser writes units (file name → unit file text) into the unit
// directory, starts the manager and waits until `systemctl --user` reaches
// it. The units are not started: tests start them with Systemctl. The
// manager, its units and its cgroups are removed in t.Cleanup.
//
// Where the manager cannot run (not root, no writable cgroup file system),
// the test is skipped, or failed when CI=true, like a missing peer.
func StartSystemdUser(t testing.TB, units map[string]string) *SystemdUser {
	t.Helper()
	bins := Need(t, "systemd", "systemctl", "unshare", "sh")
	if os.Geteuid() != 0 {
		unavailable(t, "a systemd user manager for tests needs root (a private mount namespace and a cgroup of its own); running as uid "+strconv.Itoa(os.Geteuid()))
	}
	mounts, err := cgroupMounts()
	if err != nil || len(mounts) == 0 {
		unavailable(t, fmt.Sprintf("a systemd user manager for tests needs a cgroup file system: %v", err))
	}
	removeStaleCgroups(mounts)

	dir := t.TempDir()
	s := &SystemdUser{
		RuntimeDir: filepath.Join(dir, "runtime"),
		UnitDir:    filepath.Join(dir, "config", "systemd", "user"),
		Dir:        dir,
		systemctl:  bins["systemctl"],
	}
	for _, d := range []string{s.RuntimeDir, s.UnitDir, filepath.Join(dir, "data"), filepath.Join(dir, "state"), filepath.Join(dir, "cache"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("testpeer: %v", err)
		}
	}
	for name, text := range units {
		if err := os.WriteFile(filepath.Join(s.UnitDir, name), []byte(text), 0o644); err != nil {
			t.Fatalf("testpeer: writing unit %s: %v", name, err)
		}
	}

	cg := fmt.Sprintf("%s%d-%s", cgroupPrefix, os.Getpid(), randomHex(4))
	var procsFiles []string
	for _, m := range mounts {
		d := filepath.Join(m, cg)
		if err := os.Mkdir(d, 0o755); err != nil {
			s.removeCgroups()
			unavailable(t, fmt.Sprintf("a systemd user manager for tests needs a cgroup of its own: %v", err))
		}
		s.cgroups = append(s.cgroups, d)
		procsFiles = append(procsFiles, filepath.Join(d, "cgroup.procs"))
	}

	var script strings.Builder
	script.WriteString("set -e\n")
	for _, f := range procsFiles {
		fmt.Fprintf(&script, "echo $$ > %s\n", shQuote(f))
	}
	script.WriteString("[ -d /run/systemd ] || mkdir -p /run/systemd\nmount -t tmpfs -o mode=0755 talon-testpeer /run/systemd\nmkdir -p /run/systemd/system\n")
	fmt.Fprintf(&script, "export XDG_RUNTIME_DIR=%s XDG_CONFIG_HOME=%s XDG_DATA_HOME=%s XDG_STATE_HOME=%s XDG_CACHE_HOME=%s HOME=%s\n",
		shQuote(s.RuntimeDir), shQuote(filepath.Join(dir, "config")), shQuote(filepath.Join(dir, "data")),
		shQuote(filepath.Join(dir, "state")), shQuote(filepath.Join(dir, "cache")), shQuote(filepath.Join(dir, "home")))
	script.WriteString("unset DBUS_SESSION_BUS_ADDRESS NOTIFY_SOCKET\n")
	fmt.Fprintf(&script, "exec %s --user --log-target=console --log-level=info --log-color=no\n", shQuote(bins["systemd"]))

	proc, err := startProc(dir, "systemd", bins["unshare"], "--mount", "--propagation", "private", bins["sh"], "-c", script.String())
	if err != nil {
		s.removeCgroups()
		t.Fatalf("testpeer: starting systemd --user: %v", err)
	}
	t.Cleanup(func() {
		proc.stop() // SIGTERM: the manager stops its units and exits
		s.removeCgroups()
		if t.Failed() {
			t.Logf("testpeer: last lines of %s:\n%s", proc.logPath, tail(proc.logPath, 40))
		}
	})
	err = waitFor(proc, systemdReadyTimeout, func() error {
		_, err := s.run("show", "--property=Version")
		return err
	})
	if err != nil {
		t.Logf("testpeer: last lines of %s:\n%s", proc.logPath, tail(proc.logPath, 40))
		t.Fatalf("testpeer: systemd --user did not come up: %v", err)
	}
	return s
}

// Env is what a child needs for `systemctl --user` to reach this manager.
func (s *SystemdUser) Env() []string {
	return []string{"XDG_RUNTIME_DIR=" + s.RuntimeDir}
}

// Systemctl runs `systemctl --user ARGS...` against the manager and returns
// its standard output; the test fails if it exits non-zero.
func (s *SystemdUser) Systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.run(args...)
	if err != nil {
		t.Fatalf("systemctl --user %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Property returns one property of a unit (systemctl --user show -P).
func (s *SystemdUser) Property(t testing.TB, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(s.Systemctl(t, "show", "--property="+prop, "--value", unit))
}

// WaitProperty polls until the unit's property satisfies ok or timeout
// passes, and returns the last value.
func (s *SystemdUser) WaitProperty(t testing.TB, unit, prop string, timeout time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := s.Property(t, unit, prop)
		if ok(v) || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *SystemdUser) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.systemctl, append([]string{"--user", "--no-pager"}, args...)...)
	cmd.Env = append(os.Environ(), s.Env()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// removeCgroups kills whatever is left in the manager's cgroups and removes them.
func (s *SystemdUser) removeCgroups() {
	removeCgroupTrees(s.cgroups)
	s.cgroups = nil
}

// cgroupMounts lists the mount points of the cgroup hierarchies a manager
// should have a cgroup of its own in: every cgroup2 and cgroup (v1) mount,
// except cpuset, whose new groups have no CPUs until someone assigns them
// (systemd leaves it alone anyway).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || (qf[0] != "cgroup" && qf[0] != "cgroup2") {
			continue
		}
		if pf[3] != "/" {
			continue // a bind mount of a subtree: not a hierarchy root
		}
		if qf[0] == "cgroup" && hasOpt(qf[2], "cpuset") {
			continue
		}
		if err := syscall.Access(pf[4], 2 /* W_OK */); err != nil {
			continue
		}
		out = append(out, pf[4])
	}
	return out, sc.Err()
}

func hasOpt(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// removeStaleCgroups removes the cgroups of managers whose test binary died
// without cleaning up (its pid is part of the name).
func removeStaleCgroups(mounts []string) {
	var stale []string
	for _, m := range mounts {
		entries, _ := os.ReadDir(m)
		for _, e := range entries {
			rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
			if !ok || !e.IsDir() {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() {
				continue
			}
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				stale = append(stale, filepath.Join(m, e.Name()))
			}
		}
	}
	removeCgroupTrees(stale)
}

// removeCgroupTrees SIGKILLs every process in the given cgroup trees, waits
// for them to go and removes the directories, deepest first.
func removeCgroupTrees(roots []string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		alive := 0
		for _, root := range roots {
			filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
						alive++
					}
				}
				return nil
			})
		}
		if alive == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, root := range roots {
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // children before parents
		for _, d := range dirs {
			os.Remove(d)
		}
	}
}

// unavailable skips the test, or fails it in CI, because a peer cannot run here.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testpeer: %s", msg)
	}
	t.Skipf("testpeer: %s", msg)
}

// shQuote quotes s for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
