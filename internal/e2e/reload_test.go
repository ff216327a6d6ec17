package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// reloadRig is a running daemon whose policy the test edits.
type reloadRig struct {
	t      *testing.T
	d      *daemon
	policy string
	dir    string
}

func newReloadRig(t *testing.T, initial string) *reloadRig {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), initial, 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("first cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })
	return &reloadRig{t: t, d: d, policy: policy, dir: dir}
}

func (r *reloadRig) entry() string { return filepath.Join(r.policy, "talon.star") }

// edit writes the entry file in place (as `echo > file` does).
func (r *reloadRig) edit(body string) { writeFile(r.t, r.entry(), body, 0o644) }

// editByRename writes a temp file and renames it over the entry (vim, VS Code).
func (r *reloadRig) editByRename(body string) {
	tmp := filepath.Join(r.policy, ".talon.star.swp-new")
	writeFile(r.t, tmp, body, 0o644)
	if err := os.Rename(tmp, r.entry()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *reloadRig) hashChange(from string, what string) engine.Snapshot {
	r.t.Helper()
	return r.d.waitFor(what, 5*time.Second, func(s engine.Snapshot) bool { return s.PolicyHash != from && s.PolicyError == nil })
}

func (r *reloadRig) policyError(what, contains string) engine.Snapshot {
	r.t.Helper()
	return r.d.waitFor(what, 5*time.Second, func(s engine.Snapshot) bool {
		return s.PolicyError != nil && strings.Contains(*s.PolicyError, contains)
	})
}

const onePass = `probe.exec("a", ["true"])
`

func TestLiveEditsOfARunningPolicy(t *testing.T) {
	r := newReloadRig(t, onePass)
	s0, _ := r.d.health()
	if s0.ProbeCount != 1 || s0.PolicyError != nil {
		t.Fatalf("start: %+v", s0)
	}

	// Add a probe.
	r.edit(onePass + `probe.exec("b", ["true"])` + "\n")
	s1 := r.hashChange(s0.PolicyHash, "the added probe")
	if s1.ProbeCount != 2 {
		t.Fatalf("after adding a probe: %d probes", s1.ProbeCount)
	}
	r.d.waitFor("b to run", 5*time.Second, func(s engine.Snapshot) bool { return len(s.Probes) == 2 })

	// Change a threshold.
	v2 := onePass + `probe.exec("b", ["true"])` + "\nstate.thresholds(failed_after = 5)\n"
	r.edit(v2)
	s2 := r.hashChange(s1.PolicyHash, "the threshold change")

	// Break the syntax: the last good policy keeps running, the error names the line.
	r.edit(v2 + "\nprobe.exec(\"c\", [\"true\"]\n\n")
	s3 := r.policyError("the syntax error", "talon.star:")
	if s3.PolicyHash != s2.PolicyHash || s3.ProbeCount != 2 || !strings.Contains(*s3.PolicyError, "talon.star:7:") {
		t.Fatalf("broken edit: hash %s (want %s) probes %d error %q", s3.PolicyHash, s2.PolicyHash, s3.ProbeCount, *s3.PolicyError)
	}
	cycle := s3.LastCycle
	r.d.waitFor("cycles to go on", 5*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(cycle) })

	// A runtime error and an endless loop behave the same.
	r.edit(v2 + "probe.exec(\"c\", 42)\n")
	r.policyError("the runtime error", "talon.star:4:11: probe.exec: for parameter argv")
	r.edit(v2 + "for i in range(1000000000):\n    pass\n")
	r.policyError("the step budget", "step budget")

	// Fix it: the error clears.
	v3 := v2 + "probe.exec(\"c\", [\"true\"])\n"
	r.edit(v3)
	s4 := r.hashChange(s2.PolicyHash, "the fix")
	if s4.ProbeCount != 3 {
		t.Fatalf("after the fix: %d probes", s4.ProbeCount)
	}

	// Replace the file by rename.
	r.editByRename(v3 + "probe.exec(\"d\", [\"true\"])\n")
	s5 := r.hashChange(s4.PolicyHash, "the renamed-in file")
	if s5.ProbeCount != 4 {
		t.Fatalf("after rename: %d probes", s5.ProbeCount)
	}

	// Delete it, then recreate it.
	if err := os.Remove(r.entry()); err != nil {
		t.Fatal(err)
	}
	s6 := r.policyError("the deleted file", "no talon.star")
	if s6.PolicyHash != s5.PolicyHash || s6.ProbeCount != 4 {
		t.Fatalf("deleted file dropped the policy: %+v", s6)
	}
	r.edit(onePass)
	s7 := r.hashChange(s5.PolicyHash, "the recreated file")
	if s7.ProbeCount != 1 {
		t.Fatalf("after recreate: %d probes", s7.ProbeCount)
	}

	// A loaded library file is watched too; an unrelated file is not.
	writeFile(t, filepath.Join(r.policy, "lib", "extra.star"), "def add():\n    probe.exec(\"lib\", [\"true\"])\n", 0o644)
	r.edit("load(\"lib/extra.star\", \"add\")\n" + onePass + "add()\n")
	s8 := r.hashChange(s7.PolicyHash, "the load() of a library")
	writeFile(t, filepath.Join(r.policy, "lib", "extra.star"), "def add():\n    probe.exec(\"lib2\", [\"true\"])\n", 0o644)
	s9 := r.hashChange(s8.PolicyHash, "the library edit")
	names := probeNames(r.d.waitFor("lib2 to run", 5*time.Second, func(s engine.Snapshot) bool { return hasProbe(s, "lib2") }))
	if strings.Join(names, ",") != "a,lib2" {
		t.Fatalf("probes after the library edit: %v", names)
	}
	writeFile(t, filepath.Join(r.policy, "notes.txt"), "not policy", 0o644)
	time.Sleep(300 * time.Millisecond)
	if s, _ := r.d.health(); s.PolicyHash != s9.PolicyHash || s.Reloads != s9.Reloads {
		t.Fatalf("an unrelated file caused a reload: %+v", s)
	}

	// The journal records each reload with the old and new hashes.
	var reloads, failed int
	for _, rec := range readJournal(t, r.d.stateDir) {
		if rec.Type == "reload" {
			if rec.Error != "" {
				failed++
			} else if rec.OldHash != "" && rec.OldHash != rec.Policy {
				reloads++
			}
		}
	}
	if reloads < 7 || failed < 4 {
		t.Fatalf("journal shows %d reloads and %d failed ones", reloads, failed)
	}
}

func TestBadServicesFileKeepsTheLastGoodSet(t *testing.T) {
	r := newReloadRig(t, onePass+"services()\n")
	services := filepath.Join(r.dir, "services.toml")
	s0, _ := r.d.health()
	writeFile(t, services, "[script.ok]\ncommand = \"true\"\n", 0o644)
	s1 := r.hashChange(s0.PolicyHash, "the services file")
	if s1.ProbeCount != 2 {
		t.Fatalf("services probe not added: %+v", s1)
	}
	writeFile(t, services, "[script.ok]\ncommand = \"true\"\ncritcal = true\n", 0o644)
	s2 := r.policyError("the bad services key", "services.toml:3")
	if s2.ProbeCount != 2 || s2.PolicyHash != s1.PolicyHash {
		t.Fatalf("a bad services file dropped probes: %+v", s2)
	}
	// Fixed, then renamed away: the probes stay until it comes back.
	writeFile(t, services, "[script.ok]\ncommand = \"true\"\n", 0o644)
	r.d.waitFor("the fixed services file", 5*time.Second, func(s engine.Snapshot) bool { return s.PolicyError == nil })
	if err := os.Rename(services, services+".bak"); err != nil {
		t.Fatal(err)
	}
	s3 := r.policyError("the vanished services file", "is gone")
	if s3.ProbeCount != 2 {
		t.Fatalf("a vanished services file dropped probes: %+v", s3)
	}
	os.Rename(services+".bak", services)
	r.d.waitFor("the restored services file", 5*time.Second, func(s engine.Snapshot) bool { return s.PolicyError == nil && s.ProbeCount == 2 })
}

func TestSIGHUPAndTalonReload(t *testing.T) {
	r := newReloadRig(t, onePass)
	s0, _ := r.d.health()
	out, err := talonCmd(t, r.d, "reload")
	if err != nil || !strings.Contains(out, "reloaded") {
		t.Fatalf("talon reload: %v %s", err, out)
	}
	// SIGHUP reaches the reload path (an edit would be applied by the
	// watcher anyway, so the log line is what tells SIGHUP apart).
	r.d.cmd.Process.Signal(sighup)
	waitUntil(t, "the SIGHUP reload in the log", 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(r.d.stateDir, "talon.log"))
		return strings.Contains(string(b), "SIGHUP: reloading")
	})
	s1, _ := r.d.health()
	if s1.PolicyHash != s0.PolicyHash || s1.PolicyError != nil {
		t.Fatalf("SIGHUP of an unchanged policy changed it: %+v", s1)
	}

	// A policy the daemon refuses is a failed `talon reload`, with the error.
	r.edit("probe.exec(\"a\", [\"true\"]\n")
	r.policyError("the broken edit", "talon.star:")
	out, err = talonCmd(t, r.d, "reload")
	if err == nil || !strings.Contains(out, "reload refused; the last good policy keeps running: talon.star:2:1") {
		t.Fatalf("talon reload of a broken policy: %v %s", err, out)
	}
	if s, _ := r.d.health(); s.PolicyHash != s1.PolicyHash {
		t.Fatal("the refused policy was swapped in")
	}
}

func TestIdleClientDoesNotBlockHealth(t *testing.T) {
	r := newReloadRig(t, onePass)
	idle, err := net.Dial("tcp", r.d.bind)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	half, err := net.Dial("tcp", r.d.bind)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("GET /hea"))
	var took []time.Duration
	c := http.Client{Timeout: 2 * time.Second}
	for i := 0; i < 5; i++ {
		start := time.Now()
		resp, err := c.Get("http://" + r.d.bind + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		took = append(took, time.Since(start))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	if took[len(took)/2] > 100*time.Millisecond {
		t.Fatalf("with an idle client connected, /health took %v (median of %v)", took[len(took)/2], took)
	}
}

func hasProbe(s engine.Snapshot, name string) bool {
	for _, p := range s.Probes {
		if p.Name == name {
			return true
		}
	}
	return false
}

func probeNames(s engine.Snapshot) []string {
	var out []string
	for _, p := range s.Probes {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

// With /health off, `talon reload` reaches the daemon through its pid file
// and SIGHUP, and only while the daemon holds the state dir.
func TestReloadWithoutHealthSignalsTheDaemon(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), onePass, 0o644)
	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf("check_interval_secs = 1\nstate_dir = %q\nservices_file = %q\n[health]\nenabled = false\n",
		stateDir, filepath.Join(dir, "services.toml")), 0o644)
	cmd := exec.Command(talonBin, "run", "--config", cfg, "--policy", policy)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	logged := func(s string) bool {
		b, _ := os.ReadFile(filepath.Join(stateDir, "talon.log"))
		return strings.Contains(string(b), s)
	}
	waitUntil(t, "the daemon to start", 10*time.Second, func() bool { return logged("talon started") })
	waitUntil(t, "the pid file", 5*time.Second, func() bool { _, err := os.Stat(filepath.Join(stateDir, "talon.pid")); return err == nil })
	out, err := exec.Command(talonBin, "reload", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sent SIGHUP to the daemon") {
		t.Fatalf("talon reload: %v %s", err, out)
	}
	waitUntil(t, "the SIGHUP reload in the log", 5*time.Second, func() bool { return logged("SIGHUP: reloading") })
}
