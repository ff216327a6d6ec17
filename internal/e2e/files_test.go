package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// TestRelativeAndLinkedPathsReloadOnSave: a daemon started with a relative
// --config, a "./" --policy reached through a link to a release directory
// reloads on every save — in place, by rename, through the link, of the
// config — and when the link is switched to another release. Each reload is
// seen by its event (a new hash and one more reload on /health), never by
// waiting a while.
func TestRelativeAndLinkedPathsReloadOnSave(t *testing.T) {
	work := t.TempDir()
	stateDir := filepath.Join(work, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	writeConfig(t, work, bind, stateDir, "")
	v1, v2 := filepath.Join(work, "releases", "v1"), filepath.Join(work, "releases", "v2")
	writeFile(t, filepath.Join(v1, "talon.star"), onePass, 0o644)
	writeFile(t, filepath.Join(v2, "talon.star"), onePass+"probe.exec(\"v2\", [\"true\"])\n", 0o644)
	symlink(t, "releases/v1", filepath.Join(work, "policy"))
	d := startDaemonArgv(t, []string{"sh", "-c", `cd "$1" && exec "$2" run --config config.toml --policy ./policy`, "sh", work, talonBin}, bind, stateDir)
	s := d.waitFor("the first cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 && s.PolicyError == nil })

	reloaded := func(what string, change func()) engine.Snapshot {
		t.Helper()
		before := s
		change()
		s = d.waitFor(what, 10*time.Second, func(n engine.Snapshot) bool {
			return n.PolicyHash != before.PolicyHash && n.Reloads == before.Reloads+1 && n.PolicyError == nil
		})
		return s
	}
	reloaded("a save in place in the release directory", func() {
		writeFile(t, filepath.Join(v1, "talon.star"), onePass+"probe.exec(\"b\", [\"true\"])\n", 0o644)
	})
	reloaded("a save by rename (vim, VS Code)", func() {
		writeFile(t, filepath.Join(v1, ".talon.star.swp"), onePass+"probe.exec(\"c\", [\"true\"])\n", 0o644)
		if err := os.Rename(filepath.Join(v1, ".talon.star.swp"), filepath.Join(v1, "talon.star")); err != nil {
			t.Fatal(err)
		}
	})
	reloaded("a save through the link", func() {
		writeFile(t, filepath.Join(work, "policy", "talon.star"), onePass+"probe.exec(\"d\", [\"true\"])\n", 0o644)
	})
	reloaded("an edit of the relative config.toml", func() {
		b, _ := os.ReadFile(filepath.Join(work, "config.toml"))
		writeFile(t, filepath.Join(work, "config.toml"), strings.Replace(string(b), "check_interval_secs = 1", "check_interval_secs = 2", 1), 0o644)
	})
	got := reloaded("the link switched to another release", func() {
		symlink(t, "releases/v2", filepath.Join(work, "policy.new"))
		if err := os.Rename(filepath.Join(work, "policy.new"), filepath.Join(work, "policy")); err != nil {
			t.Fatal(err)
		}
	})
	if got.ProbeCount != 2 {
		t.Fatalf("after the switch: %d probes, want v2's 2", got.ProbeCount)
	}
}

// TestNamedPipeDoesNotWedgeTheDaemon: a FIFO put in place of the services
// file is refused with its name, and the watcher, SIGHUP, talon reload
// (POST /reload) and talon validate all answer instead of hanging.
func TestNamedPipeDoesNotWedgeTheDaemon(t *testing.T) {
	r := newReloadRig(t, onePass+"services()\n")
	services := filepath.Join(r.dir, "services.toml")
	before, _ := r.d.health()
	writeFile(t, services, "[script.ok]\ncommand = \"true\"\n", 0o644)
	s0 := r.hashChange(before.PolicyHash, "the services file")
	os.Remove(services)
	fspermtest.Mkfifo(t, services)
	want := services + ": is a named pipe, not a regular file; replace it with the file itself"
	r.policyError("the named pipe, through the watcher", want)
	out, err := talonCmd(t, r.d, "reload")
	if err == nil || !strings.Contains(out, "reload refused; the last good policy keeps running: "+want) {
		t.Fatalf("talon reload: %v %s", err, out)
	}
	r.d.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the SIGHUP reload to fail", 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(r.d.stateDir, "talon.log"))
		return strings.Contains(string(b), "reload after SIGHUP failed")
	})
	cfg := r.d.cmd.Args[3]
	fspermtest.Within(t, 30*time.Second, "talon validate", func() {
		out, err := exec.Command(talonBin, "validate", "--config", cfg, "--policy", r.policy).CombinedOutput()
		if err == nil || !strings.Contains(string(out), `"message": "is a named pipe, not a regular file; replace it with the file itself"`) {
			t.Errorf("talon validate: %v\n%s\nwant %s", err, out, want)
		}
	})
	if s, err := r.d.health(); err != nil || s.PolicyHash != s0.PolicyHash || s.ProbeCount != 2 {
		t.Fatalf("after the named pipe: %+v %v", s, err)
	}
	os.Remove(services)
	writeFile(t, services, "[script.ok]\ncommand = \"true\"\n", 0o644)
	r.d.waitFor("the real file back", 10*time.Second, func(s engine.Snapshot) bool { return s.PolicyError == nil })
}

// TestTruncatedEntryFileNeverResolvesAnIncident: a talon.star cut to 0
// bytes, or filled with NULs, is an error of the reload: the open incident
// stays open, its probes keep running, and nothing says "recovered".
func TestTruncatedEntryFileNeverResolvesAnIncident(t *testing.T) {
	r := newReloadRig(t, "probe.exec(\"down\", [\"false\"], critical = True, after = 1)\nladder(rung(\"log\", do = notify.log()))\n")
	s := r.d.waitFor("the incident", 10*time.Second, func(s engine.Snapshot) bool { return s.Incident != nil })
	id := s.Incident.ID
	for _, c := range []struct{ body, err string }{
		{"", "talon.star: the file is empty; a policy must declare at least one probe, or call probe.none(reason) to run without any"},
		{"\x00\x00\x00\x00\x00\x00\x00\x00", "talon.star:1:1: NUL byte: the file is damaged or not text; restore it from a good copy"},
	} {
		r.edit(c.body)
		r.policyError("the truncated file", c.err)
		cycle := r.d.waitFor("a cycle", 10*time.Second, func(s engine.Snapshot) bool { return true }).LastCycle
		s = r.d.waitFor("the next cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(cycle) })
		if s.Incident == nil || s.Incident.ID != id || s.ProbeCount != 1 {
			t.Fatalf("%q: the incident did not survive: %+v", c.body, s)
		}
	}
	for _, rec := range readJournal(t, r.d.stateDir) {
		if rec.Event != nil && rec.Event.Type == "incident_resolved" {
			t.Fatalf("the journal says the incident resolved: %+v", rec.Event)
		}
	}
}

// TestMissingTalonStarAtStart: a policy directory named on the command line
// without talon.star is reported (the daemon runs the embedded default and
// says why), and the file is loaded as soon as it appears.
func TestMissingTalonStarAtStart(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	os.MkdirAll(policy, 0o755)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	s := d.waitFor("the default to run", 10*time.Second, func(s engine.Snapshot) bool { return len(s.Probes) > 0 })
	want := "talon.star: no talon.star in policy directory " + policy + "; create it or point policy_dir elsewhere"
	if s.OK || s.Fallback == nil || s.Fallback.Source != engine.FallbackDefault || s.PolicyError == nil || *s.PolicyError != want {
		t.Fatalf("a missing talon.star is not reported: %+v", s)
	}
	writeFile(t, filepath.Join(policy, "talon.star"), onePass, 0o644)
	s = d.waitFor("talon.star to load", 10*time.Second, func(s engine.Snapshot) bool { return s.Fallback == nil && s.PolicyError == nil })
	if s.ProbeCount != 1 || s.Reloads != 1 {
		t.Fatalf("after talon.star appeared: %+v", s)
	}
}

// TestEmptiedServicesFileKeepsTheLastGoodSet: a services.toml emptied
// while the daemon runs (a truncated save) keeps the probes it declared
// and says why; a comment declares no service on purpose.
func TestEmptiedServicesFileKeepsTheLastGoodSet(t *testing.T) {
	r := newReloadRig(t, onePass+"services()\n")
	services := filepath.Join(r.dir, "services.toml")
	before, _ := r.d.health()
	writeFile(t, services, "[script.ok]\ncommand = \"true\"\n", 0o644)
	r.hashChange(before.PolicyHash, "the services file")
	writeFile(t, services, "", 0o644)
	s := r.policyError("the emptied services file", services+": the file is empty; write at least a comment in it to declare no service")
	if s.ProbeCount != 2 {
		t.Fatalf("an emptied services file dropped its probes: %+v", s)
	}
	writeFile(t, services, "# no services for now\n", 0o644)
	r.d.waitFor("the services dropped on purpose", 10*time.Second, func(s engine.Snapshot) bool { return s.PolicyError == nil && s.ProbeCount == 1 })
}
