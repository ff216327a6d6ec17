package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// strictTree is a policy, a config, a services file and a bin directory
// under one temporary directory, every file safe: owned by root (the
// tests' user), nothing writable by group or others.
type strictTree struct {
	t   *testing.T
	dir string
}

func newStrictTree(t *testing.T, configExtra string) *strictTree {
	t.Helper()
	s := &strictTree{t: t, dir: t.TempDir()}
	s.mkdir("policy", 0o755)
	s.mkdir("policy/lib", 0o755)
	s.mkdir("bin", 0o755)
	s.write("policy/talon.star", "load(\"lib/x.star\", \"x\")\nprobe.exec(\"a\", [\"true\"], critical = True)\nservices()\n"+
		"ladder(rung(\"sos\", do = notify.webhook(\"http://127.0.0.1:9/\")))\n", 0o644)
	s.write("policy/lib/x.star", "x = 1\n", 0o644)
	s.write("services.toml", "[http.api]\nurl = \"http://127.0.0.1:1/\"\n", 0o644)
	s.write("config.toml", s.expand("path = [\"$D/bin\", \"/usr/bin\", \"/bin\"]\nservices_file = \"$D/services.toml\"\n"+configExtra), 0o644)
	return s
}

func (s *strictTree) path(name string) string { return filepath.Join(s.dir, name) }

// policy adds lines to the policy's talon.star (after its four lines).
func (s *strictTree) policy(lines string) {
	s.t.Helper()
	b, err := os.ReadFile(s.path("policy/talon.star"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.write("policy/talon.star", string(b)+s.expand(lines), 0o644)
}

func (s *strictTree) expand(x string) string { return strings.ReplaceAll(x, "$D", s.dir) }

func (s *strictTree) mkdir(name string, mode os.FileMode) {
	s.t.Helper()
	if err := os.MkdirAll(s.path(name), 0o700); err != nil {
		s.t.Fatal(err)
	}
	fspermtest.Chmod(s.t, s.path(name), mode)
}

func (s *strictTree) write(name, body string, mode os.FileMode) {
	s.t.Helper()
	if err := os.WriteFile(s.path(name), []byte(body), 0o600); err != nil {
		s.t.Fatal(err)
	}
	fspermtest.Chmod(s.t, s.path(name), mode)
}

// validate runs `talon validate --json` on the tree, with and without
// --strict, and returns the report of the run without.
func (s *strictTree) validate(strict bool) (validateReport, int) {
	s.t.Helper()
	args := []string{"validate", "--json", "--config", s.path("config.toml"), "--policy", s.path("policy")}
	if strict {
		args = append(args, "--strict")
	}
	out, errOut, code := talon(s.t, args...)
	var rep validateReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		s.t.Fatalf("validate output %q (stderr %q): %v", out, errOut, err)
	}
	return rep, code
}

func errorTexts(rep validateReport) []string {
	var out []string
	for _, e := range rep.Errors {
		out = append(out, e.Error())
	}
	return out
}

// TestStrictModesRefuse is one case per kind of file Talon evaluates or
// runs: each, made changeable by another user, is refused by validate (with
// and without --strict, exit 1) with one line naming the path, its owner and
// mode, and the command that fixes it.
func TestStrictModesRefuse(t *testing.T) {
	fspermtest.NeedRoot(t)
	const nobody = fspermtest.Nobody
	cases := []struct {
		name   string
		config string // appended to config.toml (from line 3)
		setup  func(s *strictTree)
		want   string
	}{
		{
			name:  "policy entry file writable by group and others",
			setup: func(s *strictTree) { fspermtest.Chmod(t, s.path("policy/talon.star"), 0o666) },
			want:  "talon.star: unsafe file $D/policy/talon.star (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w $D/policy/talon.star",
		},
		{
			name:  "policy entry file of another user",
			setup: func(s *strictTree) { fspermtest.Chown(t, s.path("policy/talon.star"), nobody) },
			want:  "talon.star: unsafe file $D/policy/talon.star (owner nobody, uid 65534, mode 0644): owned by a user other than root; fix: chown root $D/policy/talon.star",
		},
		{
			name:  "loaded library of another user",
			setup: func(s *strictTree) { fspermtest.Chown(t, s.path("policy/lib/x.star"), nobody) },
			want:  "talon.star:1:1: cannot load lib/x.star: unsafe file $D/policy/lib/x.star (owner nobody, uid 65534, mode 0644): owned by a user other than root; fix: chown root $D/policy/lib/x.star",
		},
		{
			name:  "library directory writable by group",
			setup: func(s *strictTree) { fspermtest.Chmod(t, s.path("policy/lib"), 0o775) },
			want:  "talon.star:1:1: cannot load lib/x.star: unsafe directory $D/policy/lib (owner root, uid 0, mode 0775): writable by group; fix: chmod go-w $D/policy/lib",
		},
		{
			name:  "policy directory writable by others",
			setup: func(s *strictTree) { fspermtest.Chmod(t, s.path("policy"), 0o777) },
			want:  "talon.star: unsafe directory $D/policy (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/policy",
		},
		{
			name:  "a parent of everything writable by group",
			setup: func(s *strictTree) { fspermtest.Chmod(t, s.dir, 0o770) },
			want:  "$D/config.toml: unsafe directory $D (owner root, uid 0, mode 0770): writable by group; fix: chmod go-w $D",
		},
		{
			name:  "config.toml writable by group",
			setup: func(s *strictTree) { fspermtest.Chmod(t, s.path("config.toml"), 0o664) },
			want:  "$D/config.toml: unsafe file $D/config.toml (owner root, uid 0, mode 0664): writable by group; fix: chmod go-w $D/config.toml",
		},
		{
			name:   "config.toml of another user, even with strict_modes = false in it",
			config: "strict_modes = false\n",
			setup:  func(s *strictTree) { fspermtest.Chown(t, s.path("config.toml"), nobody) },
			want:   "$D/config.toml: unsafe file $D/config.toml (owner nobody, uid 65534, mode 0644): owned by a user other than root; fix: chown root $D/config.toml",
		},
		{
			name:  "services.toml writable by others",
			setup: func(s *strictTree) { fspermtest.Chmod(t, s.path("services.toml"), 0o646) },
			want:  "$D/services.toml: unsafe file $D/services.toml (owner root, uid 0, mode 0646): writable by others; fix: chmod go-w $D/services.toml",
		},
		{
			name:   "heal script writable by group and others",
			config: "heal_script = \"$D/heal.sh\"\n",
			setup:  func(s *strictTree) { s.write("heal.sh", "#!/bin/sh\n", 0o777) },
			want:   "$D/config.toml:3:1: heal_script: unsafe file $D/heal.sh (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/heal.sh",
		},
		{
			name:   "heal script found on the child PATH, of another user",
			config: "heal_script = \"heal\"\n",
			setup: func(s *strictTree) {
				s.write("bin/heal", "#!/bin/sh\n", 0o755)
				fspermtest.Chown(t, s.path("bin/heal"), nobody)
			},
			want: "$D/config.toml:3:1: heal_script: unsafe file $D/bin/heal (owner nobody, uid 65534, mode 0755): owned by a user other than root; fix: chown root $D/bin/heal",
		},
		{
			name:   "agent command string whose first word resolves on the child PATH",
			config: "[agent]\ncloud_command = \"AGENT_MODE=x myagent -p --fast\"\n",
			setup: func(s *strictTree) {
				s.write("bin/myagent", "#!/bin/sh\n", 0o755)
				fspermtest.Chown(t, s.path("bin/myagent"), nobody)
			},
			want: "$D/config.toml:4:1: agent.cloud_command: unsafe file $D/bin/myagent (owner nobody, uid 65534, mode 0755): owned by a user other than root; fix: chown root $D/bin/myagent",
		},
		{
			name:   "agent command by path in a directory writable by group",
			config: "[agent]\nlocal_command = \"$D/agents/local --model x\"\n",
			setup: func(s *strictTree) {
				s.mkdir("agents", 0o775)
				s.write("agents/local", "#!/bin/sh\n", 0o755)
			},
			want: "$D/config.toml:4:1: agent.local_command: unsafe directory $D/agents (owner root, uid 0, mode 0775): writable by group; fix: chmod go-w $D/agents",
		},
		{
			name:   "worker command writable by others",
			config: "[worker]\ncommand = [\"$D/bin/worker\", \"--serve\"]\n",
			setup:  func(s *strictTree) { s.write("bin/worker", "#!/bin/sh\n", 0o757) },
			want:   "$D/config.toml:4:1: worker.command: unsafe file $D/bin/worker (owner root, uid 0, mode 0757): writable by others; fix: chmod go-w $D/bin/worker",
		},
		{
			name:   "worker env file of another user",
			config: "[worker]\nenv_file = \"$D/worker.env\"\n",
			setup: func(s *strictTree) {
				s.write("worker.env", "A=1\n", 0o600)
				fspermtest.Chown(t, s.path("worker.env"), nobody)
			},
			want: "$D/config.toml:4:1: worker.env_file: unsafe file $D/worker.env (owner nobody, uid 65534, mode 0600): owned by a user other than root; fix: chown root $D/worker.env",
		},
		{
			name:   "secrets directory writable by others",
			config: "[secrets]\ndir = \"$D/secrets\"\n",
			setup:  func(s *strictTree) { s.mkdir("secrets", 0o777) },
			want:   "$D/config.toml:4:1: secrets.dir: unsafe directory $D/secrets (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/secrets",
		},
		{
			name:   "secrets directory sticky is still refused: others could add secrets",
			config: "[secrets]\ndir = \"$D/secrets\"\n",
			setup:  func(s *strictTree) { s.mkdir("secrets", os.ModeSticky|0o777) },
			want:   "$D/config.toml:4:1: secrets.dir: unsafe directory $D/secrets (owner root, uid 0, mode 1777): writable by group and others; fix: chmod go-w $D/secrets",
		},
		{
			name:   "lease command on the child PATH writable by group",
			config: "[secrets]\nlease_command = [\"lease\", \"{name}\"]\n",
			setup:  func(s *strictTree) { s.write("bin/lease", "#!/bin/sh\n", 0o775) },
			want:   "$D/config.toml:4:1: secrets.lease_command: unsafe file $D/bin/lease (owner root, uid 0, mode 0775): writable by group; fix: chmod go-w $D/bin/lease",
		},
		{
			name: "a program a probe runs, by path, writable by group",
			setup: func(s *strictTree) {
				s.write("bin/check", "#!/bin/sh\n", 0o775)
				s.policy("probe.exec(\"c\", [\"$D/bin/check\"])\n")
			},
			want: "talon.star:5:11: probe \"c\" runs $D/bin/check: unsafe file $D/bin/check (owner root, uid 0, mode 0775): writable by group; fix: chmod go-w $D/bin/check",
		},
		{
			name: "a program a rung runs, found on the child PATH, of another user",
			setup: func(s *strictTree) {
				s.write("bin/healer", "#!/bin/sh\n", 0o755)
				fspermtest.Chown(t, s.path("bin/healer"), nobody)
				s.write("policy/talon.star", "probe.exec(\"a\", [\"true\"])\nladder(rung(\"heal\", do = exec.cmd([\"healer\", \"--now\"])))\n", 0o644)
			},
			want: "talon.star:2:12: rung \"heal\" runs healer: unsafe file $D/bin/healer (owner nobody, uid 65534, mode 0755): owned by a user other than root; fix: chown root $D/bin/healer",
		},
		{
			name: "a PATH directory searched before the program's, writable by others",
			setup: func(s *strictTree) {
				s.mkdir("open", os.ModeSticky|0o777)
				s.write("config.toml", s.expand("path = [\"$D/open\", \"$D/bin\", \"/usr/bin\", \"/bin\"]\nservices_file = \"$D/services.toml\"\n"), 0o644)
				s.policy("probe.exec(\"t\", [\"true\"])\n")
			},
			want: "talon.star:2:11: probe \"a\" runs true, found on the child PATH after $D/open: unsafe directory $D/open (owner root, uid 0, mode 1777): writable by group and others; fix: chmod go-w $D/open",
		},
		{
			name: "a program a policy function runs, in a directory writable by others",
			setup: func(s *strictTree) {
				s.mkdir("open", 0o777)
				s.write("open/fix", "#!/bin/sh\n", 0o755)
				s.policy("def fix(incident):\n    exec.run([\"$D/open/fix\"])\n")
			},
			want: "talon.star:6:13: exec.run runs $D/open/fix: unsafe directory $D/open (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/open",
		},
		{
			name: "an ssh config a probe hands to ssh, writable by others",
			setup: func(s *strictTree) {
				s.write("ssh.config", "Host vm\n", 0o646)
				s.policy("ssh.probe(\"vm\", \"vm\", \"true\", config = \"$D/ssh.config\")\n")
			},
			want: "talon.star:5:10: probe \"vm\" reads $D/ssh.config: unsafe file $D/ssh.config (owner root, uid 0, mode 0646): writable by others; fix: chmod go-w $D/ssh.config",
		},
		{
			name: "the default kubeconfig, of another user",
			setup: func(s *strictTree) {
				s.mkdir(".kube", 0o755)
				s.write(".kube/config", "apiVersion: v1\n", 0o600)
				fspermtest.Chown(t, s.path(".kube/config"), nobody)
				s.policy("kubectl.probe(\"k\", [\"get\", \"nodes\"])\n")
			},
			want: "talon.star:5:14: probe \"k\" reads $D/.kube/config: unsafe file $D/.kube/config (owner nobody, uid 65534, mode 0600): owned by a user other than root; fix: chown root $D/.kube/config",
		},
		{
			name: "secret file of another user",
			setup: func(s *strictTree) {
				s.write("token", "s3cr3t\n", 0o600)
				fspermtest.Chown(t, s.path("token"), nobody)
				s.write("policy/talon.star", s.expand("probe.exec(\"a\", [\"true\"], critical = True)\nt = secret(\"tok\", file = \"$D/token\")\n"+
					"ladder(rung(\"sos\", do = notify.webhook(\"http://127.0.0.1:9/\")))\n"), 0o644)
			},
			want: "talon.star:2:11: secret tok: unsafe file $D/token (owner nobody, uid 65534, mode 0600): owned by a user other than root; fix: chown root $D/token",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStrictTree(t, tc.config)
			s.t = t
			t.Setenv("HOME", s.dir) // no ~/.config/talon/secrets of the machine's
			tc.setup(s)
			want := s.expand(tc.want)
			for _, strict := range []bool{false, true} {
				rep, code := s.validate(strict)
				if code != 1 || rep.OK {
					t.Errorf("strict=%v: exit %d ok=%v, want exit 1", strict, code, rep.OK)
				}
				if got := errorTexts(rep); !slices.Contains(got, want) {
					t.Errorf("strict=%v: errors\n%s\nwant\n%s", strict, strings.Join(got, "\n"), want)
				}
			}
		})
	}
}

// TestStrictModesAccept: the same tree, safe, validates; a policy under a
// root-owned sticky directory (like /tmp) is safe too.
func TestStrictModesAccept(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	s := newStrictTree(t, "")
	if rep, code := s.validate(true); code != 0 || len(rep.Errors) != 0 || len(rep.Warnings) != 0 {
		t.Fatalf("safe tree: exit %d errors %q warnings %q", code, errorTexts(rep), rep.Warnings)
	}
	sticky := newStrictTree(t, "")
	s.mkdir("tmp", os.ModeSticky|0o777)
	if err := os.Rename(sticky.path("policy"), s.path("tmp/policy")); err != nil {
		t.Fatal(err)
	}
	out, _, code := talon(t, "validate", "--json", "--strict", "--config", s.path("config.toml"), "--policy", s.path("tmp/policy"))
	if code != 0 {
		t.Fatalf("policy in a root-owned sticky directory refused:\n%s", out)
	}
}

// TestStrictModesOff: strict_modes = false loads what strict modes would
// refuse, and says so: a warning at every load, and one per file.
func TestStrictModesOff(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	s := newStrictTree(t, "strict_modes = false\n")
	fspermtest.Chmod(t, s.path("policy/talon.star"), 0o666)
	fspermtest.Chmod(t, s.path("policy/lib"), 0o777)
	rep, code := s.validate(false)
	if code != 0 || len(rep.Errors) != 0 {
		t.Fatalf("exit %d errors %q", code, errorTexts(rep))
	}
	want := []string{
		s.expand("$D/config.toml: strict_modes = false: files other users can change are loaded and run (with a warning each) instead of refused; fix their owners and modes and remove the setting"),
		s.expand("$D/policy/lib/x.star: unsafe directory $D/policy/lib (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w $D/policy/lib (used anyway: strict_modes = false)"),
		s.expand("unsafe file $D/policy/talon.star (owner root, uid 0, mode 0666): writable by group and others; fix: chmod go-w $D/policy/talon.star (used anyway: strict_modes = false)"),
	}
	if !slices.Equal(rep.Warnings, want) {
		t.Fatalf("warnings\n%s\nwant\n%s", strings.Join(rep.Warnings, "\n"), strings.Join(want, "\n"))
	}
	if _, code := s.validate(true); code != 1 {
		t.Fatalf("validate --strict with strict_modes = false: exit %d, want 1", code)
	}
}

// TestStateDirRefused: an existing state directory others can write is
// refused at start with the command that fixes it; a new one is made 0700.
func TestStateDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fspermtest.Chmod(t, dir, 0o777)
	_, _, err := claimStateDir(dir, true)
	if want := "state dir: unsafe directory " + dir + " (owner root, uid 0, mode 0777): writable by group and others; fix: chmod go-w " + dir; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "talon.log")); !os.IsNotExist(err) {
		t.Fatalf("a refused state dir got a log file: %v", err)
	}

	fresh := filepath.Join(t.TempDir(), "a", "state")
	logger, release, err := claimStateDir(fresh, true)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hello")
	release()
	for path, want := range map[string]os.FileMode{fresh: 0o700, filepath.Dir(fresh): 0o700,
		filepath.Join(fresh, "talon.log"): 0o600, filepath.Join(fresh, "talon.lock"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
}
