package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// A running daemon whose policy another user can change refuses to reload
// it: the last good policy keeps running, and the refusal, with the command
// that fixes it, shows on /health, in `talon reload`, `talon status` and the
// log. Fixing the mode reloads by itself.
func TestReloadRefusesAPolicyOthersCanChange(t *testing.T) {
	fspermtest.NeedRoot(t)
	r := newReloadRig(t, onePass)
	s0, _ := r.d.health()
	if s0.ProbeCount != 1 || s0.PolicyError != nil {
		t.Fatalf("start: %+v", s0)
	}
	marker := filepath.Join(r.dir, "owned")
	evil := onePass + fmt.Sprintf("probe.exec(\"evil\", [\"touch\", %q])\n", marker)
	entry := r.entry()

	// The file becomes world-writable, and "another user" writes it.
	fspermtest.Chmod(t, entry, 0o666)
	if err := os.WriteFile(entry, []byte(evil), 0o644); err != nil { // the mode stays 0666
		t.Fatal(err)
	}
	want := "talon.star: unsafe file " + entry + " (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w " + entry
	s1 := r.policyError("the refusal of the world-writable file", want)
	if *s1.PolicyError != want || s1.PolicyHash != s0.PolicyHash || s1.ProbeCount != 1 {
		t.Fatalf("after the refusal: error %q hash %s (want %s) probes %d", *s1.PolicyError, s1.PolicyHash, s0.PolicyHash, s1.ProbeCount)
	}
	// Cycles go on with the last good policy, and the evil probe never ran.
	r.d.waitFor("two more cycles", 5*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(s1.LastCycle.Add(time.Second)) })
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the refused policy ran: %v", err)
	}
	out, err := talonCmd(t, r.d, "reload")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || out != "talon: reload refused; the last good policy keeps running: "+want+"\n" {
		t.Fatalf("talon reload: %v\n%s", err, out)
	}
	out, _ = talonCmd(t, r.d, "status", "--json")
	var st struct{ Health engine.Snapshot }
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Health.PolicyError == nil || *st.Health.PolicyError != want {
		t.Fatalf("talon status: %v\n%s", err, out)
	}
	logged, _ := os.ReadFile(filepath.Join(r.d.stateDir, "talon.log"))
	if !strings.Contains(string(logged), "reload failed; keeping the last good policy") || !strings.Contains(string(logged), "unsafe file "+entry) {
		t.Fatalf("talon.log does not tell of the refusal:\n%s", logged)
	}

	// chmod go-w, as the message says: the watcher sees the mode change
	// and the policy (now the operator's to vouch for) loads.
	fspermtest.Chmod(t, entry, 0o644)
	s2 := r.hashChange(s0.PolicyHash, "the reload after chmod go-w")
	if s2.ProbeCount != 2 {
		t.Fatalf("after the fix: %d probes", s2.ProbeCount)
	}

	// Another user's file renamed in over the policy: refused too.
	tmp := filepath.Join(r.policy, ".talon.star.new")
	writeFile(t, tmp, onePass+"probe.exec(\"c\", [\"true\"])\n", 0o644)
	fspermtest.Chown(t, tmp, fspermtest.Nobody)
	if err := os.Rename(tmp, entry); err != nil {
		t.Fatal(err)
	}
	want = "talon.star: unsafe file " + entry + " (owner nobody, uid 65534, mode 0644): owned by a user other than root; fix: chown root " + entry
	s3 := r.policyError("the refusal of another user's file", want)
	if s3.PolicyHash != s2.PolicyHash || s3.ProbeCount != 2 {
		t.Fatalf("after the second refusal: hash %s (want %s) probes %d", s3.PolicyHash, s2.PolicyHash, s3.ProbeCount)
	}
}

// The state directory and Talon's files in it: a directory others can
// write, or owned by another user, is refused at start with the command
// that fixes it; a journal, log or lock that is a symbolic link is refused
// and the file it names is not touched.
func TestStartRefusesAnUnsafeStateDir(t *testing.T) {
	fspermtest.NeedRoot(t)
	cases := []struct {
		name  string
		setup func(t *testing.T, state, target string)
		want  string
	}{
		{"writable by others", func(t *testing.T, state, _ string) { fspermtest.Chmod(t, state, 0o777) },
			"talon: state dir: unsafe directory $S (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $S\n"},
		{"owned by another user", func(t *testing.T, state, _ string) { fspermtest.Chown(t, state, fspermtest.Nobody) },
			"talon: state dir: unsafe directory $S (owner nobody, uid 65534, mode 0700): owned by a user other than root; fix: chown root $S\n"},
		{"journal.jsonl is a link", func(t *testing.T, state, target string) { symlink(t, target, filepath.Join(state, "journal.jsonl")) },
			"talon: journal: open journal: $S/journal.jsonl is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it\n"},
		{"talon.log is a link", func(t *testing.T, state, target string) { symlink(t, target, filepath.Join(state, "talon.log")) },
			"talon: log: log file: $S/talon.log is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it\n"},
		{"talon.lock is a link", func(t *testing.T, state, target string) { symlink(t, target, filepath.Join(state, "talon.lock")) },
			"talon: lock $S/talon.lock: $S/talon.lock is a symbolic link; talon does not follow links in its state directory, since one could aim its writes at any file: remove it\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			if err := os.Mkdir(state, 0o700); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(dir, "precious")
			writeFile(t, target, "precious\n", 0o644)
			tc.setup(t, state, target)
			policy := filepath.Join(dir, "policy")
			writeFile(t, filepath.Join(policy, "talon.star"), onePass, 0o644)
			cfg := writeConfig(t, dir, fmt.Sprintf("127.0.0.1:%d", freePort(t)), state, "")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, talonBin, "run", "--config", cfg, "--policy", policy).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("talon run: %v (want exit 1)\n%s", err, out)
			}
			if want := strings.ReplaceAll(tc.want, "$S", state); string(out) != want {
				t.Fatalf("got  %s\nwant %s", out, want)
			}
			if b, _ := os.ReadFile(target); string(b) != "precious\n" {
				t.Fatalf("the link's target was changed: %q", b)
			}
			if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o644 {
				t.Fatalf("the link's target's mode changed: %v", fi.Mode())
			}
		})
	}
}

// state.json and talon.pid as links: the daemon starts, never reads or
// writes through them, and the files they name stay as they were.
func TestStateAndPidLinksAreNotFollowed(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{"state.json": filepath.Join(dir, "other.json"), "talon.pid": filepath.Join(dir, "other.pid")}
	for name, target := range targets {
		writeFile(t, target, `{"version":1,"phase":"healthy"}`, 0o644)
		symlink(t, target, filepath.Join(state, name))
	}
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), onePass, 0o644)
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, writeConfig(t, dir, bind, state, ""), policy, bind, state)
	d.waitFor("a cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })
	waitUntil(t, "the pid file", 5*time.Second, func() bool {
		fi, err := os.Lstat(filepath.Join(state, "talon.pid"))
		return err == nil && fi.Mode().IsRegular()
	})
	d.stop()
	for name, target := range targets {
		if b, _ := os.ReadFile(target); string(b) != `{"version":1,"phase":"healthy"}` {
			t.Errorf("%s's target was changed: %q", name, b)
		}
	}
	fi, err := os.Lstat(filepath.Join(state, "state.json"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state.json after the run: %v %v, want a regular 0600 file", fi.Mode(), err)
	}
	logged, _ := os.ReadFile(filepath.Join(state, "talon.log"))
	if !strings.Contains(string(logged), "state file unusable; starting fresh") || !strings.Contains(string(logged), "is a symbolic link") {
		t.Fatalf("the log does not say why the state was set aside:\n%s", logged)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// The real binary run as an unprivileged user (nobody), so that "the
// daemon's user" is not root: a policy file of root's that no one else may
// write is accepted, and so is one of its own; one of another non-root
// user's is refused with the chown that fixes it.
func TestStrictModesAsAnUnprivilegedUser(t *testing.T) {
	fspermtest.NeedRoot(t)
	const nobody = fspermtest.Nobody
	base, err := os.MkdirTemp("", "talon-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	fspermtest.Chmod(t, base, 0o755)
	fspermtest.Chown(t, base, nobody)
	bin := filepath.Join(base, "talon")
	copyBinary(t, talonBin, bin) // root's, 0755: nobody may run it
	mkdir := func(name string) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		fspermtest.Chmod(t, p, 0o755)
		fspermtest.Chown(t, p, nobody)
		return p
	}
	home := mkdir("home")
	cfg := filepath.Join(base, "config.toml")
	writeFile(t, cfg, fmt.Sprintf("services_file = %q\npath = [\"/usr/bin\", \"/bin\"]\n", filepath.Join(base, "none.toml")), 0o644)
	fspermtest.Chown(t, cfg, nobody)
	other, err := user.LookupId("1")
	if err != nil {
		t.Fatal(err)
	}
	policies := map[string]int{"roots": 0, "own": nobody, "others": 1}
	for name, uid := range policies {
		dir := mkdir(name)
		writeFile(t, filepath.Join(dir, "talon.star"), onePass, 0o644)
		fspermtest.Chown(t, filepath.Join(dir, "talon.star"), uid)
	}
	// A policy of its own that runs a program of another non-root user.
	prog := filepath.Join(mkdir("bin"), "check")
	writeFile(t, prog, "#!/bin/sh\nexit 0\n", 0o755)
	fspermtest.Chown(t, prog, 1)
	runsOthers := mkdir("runs-others")
	writeFile(t, filepath.Join(runsOthers, "talon.star"), fmt.Sprintf("probe.exec(\"check\", [%q])\n", prog), 0o644)
	fspermtest.Chown(t, filepath.Join(runsOthers, "talon.star"), nobody)
	policies["runs-others"] = nobody
	for name := range policies {
		cmd := exec.Command(bin, "validate", "--config", cfg, "--policy", filepath.Join(base, name))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "TALON_STATE_DIR=" + filepath.Join(home, "state")}
		cmd.Dir = home
		out, err := cmd.CombinedOutput()
		var rep struct {
			OK     bool `json:"ok"`
			Errors []engine.PosError
		}
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			t.Fatalf("%s: %v %v\n%s", name, err, jerr, out)
		}
		entry := filepath.Join(base, name, "talon.star")
		switch name {
		case "others":
			want := "talon.star: unsafe file " + entry + " (owner " + other.Username + ", uid 1, mode 0644): owned by a user other than nobody or root; fix: chown nobody " + entry
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(rep.Errors) != 1 || rep.Errors[0].Error() != want {
				t.Errorf("%s: %v\n%s\nwant error %s", name, err, out, want)
			}
		case "runs-others":
			want := "talon.star:1:11: probe \"check\" runs " + prog + ": unsafe file " + prog + " (owner " + other.Username + ", uid 1, mode 0755): owned by a user other than nobody or root; fix: chown nobody " + prog
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || len(rep.Errors) != 1 || rep.Errors[0].Error() != want {
				t.Errorf("%s: %v\n%s\nwant error %s", name, err, out, want)
			}
		default:
			if err != nil || !rep.OK {
				t.Errorf("%s (owner uid %d): %v\n%s", name, policies[name], err, out)
			}
		}
	}
}

func copyBinary(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	fspermtest.Chmod(t, to, 0o755)
}
