package builtins_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// testConfig is the default config with a services file that does not exist.
func testConfig(t testing.TB) *config.Config {
	c := config.Default()
	c.ServicesFile = filepath.Join(t.TempDir(), "services.toml")
	return c
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	badServices := filepath.Join(t.TempDir(), "services.toml")
	if err := os.WriteFile(badServices, []byte("[http.api]\nurl = \"http://127.0.0.1:1/\"\ntimeout = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files map[string]string
		steps uint64
		want  []string
	}{
		{
			name:  "syntax error on line 3",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\n\nprobe.exec(\"b\", [\"true\"] critical = True)\n"},
			want:  []string{"talon.star:3:34: got identifier, want ','"},
		},
		{
			name:  "undefined names are all reported",
			files: map[string]string{"talon.star": "prob.exec(\"a\", [\"true\"])\nladdr()\n"},
			want:  []string{"talon.star:1:1: undefined: prob", "talon.star:2:1: undefined: laddr"},
		},
		{
			name: "runtime error in a loaded file",
			files: map[string]string{
				"talon.star": "load(\"lib/x.star\", \"f\")\nf()\n",
				"lib/x.star": "def f():\n    return 1 // 0\n",
			},
			want: []string{"lib/x.star:2:14: floored division by zero"},
		},
		{
			name: "error at the top level of a loaded file",
			files: map[string]string{
				"talon.star": "load(\"lib/x.star\", \"y\")\n",
				"lib/x.star": "y = 1\nprobe.exec(\"x\", [])\n",
			},
			want: []string{"lib/x.star:2:11: probe.exec: x: argv must name a program"},
		},
		{
			name:  "load escaping the policy dir",
			files: map[string]string{"talon.star": "load(\"../x.star\", \"y\")\n"},
			want:  []string{"talon.star:1:1: cannot load ../x.star: the path leaves the policy directory; keep loaded files inside it"},
		},
		{
			name:  "load escaping through a subdir",
			files: map[string]string{"talon.star": "load(\"lib/../../x.star\", \"y\")\n"},
			want:  []string{"talon.star:1:1: cannot load lib/../../x.star: the path leaves the policy directory; keep loaded files inside it"},
		},
		{
			name:  "load of an absolute path",
			files: map[string]string{"talon.star": "load(\"/etc/talon/x.star\", \"y\")\n"},
			want:  []string{"talon.star:1:1: cannot load /etc/talon/x.star: absolute paths are not allowed; load files by their path inside the policy directory"},
		},
		{
			name:  "load of a missing file",
			files: map[string]string{"talon.star": "\nload(\"lib/none.star\", \"y\")\n"},
			want:  []string{"talon.star:2:1: cannot load lib/none.star: no file lib/none.star in the policy directory"},
		},
		{
			name:  "load of a non-star file",
			files: map[string]string{"talon.star": "load(\"services.toml\", \"y\")\n"},
			want:  []string{"talon.star:1:1: cannot load services.toml: only .star files can be loaded"},
		},
		{
			name: "load cycle",
			files: map[string]string{
				"talon.star": "load(\"lib/a.star\", \"a\")\n",
				"lib/a.star": "load(\"lib/b.star\", \"b\")\na = 1\n",
				"lib/b.star": "load(\"lib/a.star\", \"a\")\nb = 2\n",
			},
			want: []string{"lib/b.star:1:1: cannot load lib/a.star: load cycle: talon.star → lib/a.star → lib/b.star → lib/a.star"},
		},
		{
			name:  "self load",
			files: map[string]string{"talon.star": "load(\"talon.star\", \"y\")\nx = 1\n"},
			want:  []string{"talon.star:1:1: cannot load talon.star: load cycle: talon.star → talon.star"},
		},
		{
			name:  "step budget",
			files: map[string]string{"talon.star": "def spin():\n    for i in range(1000000000):\n        pass\n\nspin()\n"},
			steps: 100_000,
			want:  []string{"talon.star:2:5: step budget of 100000 steps exhausted: a loop runs too long; shorten it or move the work into a probe.func"},
		},
		{
			name:  "step budget at top level",
			files: map[string]string{"talon.star": "x = [i for i in range(1000000000)]\n"},
			steps: 100_000,
			want:  []string{"talon.star:1:8: step budget of 100000 steps exhausted: a loop runs too long; shorten it or move the work into a probe.func"},
		},
		{
			name:  "side effect at the top level",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nr = exec.run([\"true\"])\n"},
			want:  []string{"talon.star:2:13: exec.run: side effects are not allowed while the policy loads; call it from a probe.func or rung function"},
		},
		{
			name:  "global reassignment",
			files: map[string]string{"talon.star": "x = 1\nx = 2\n"},
			want:  []string{"talon.star:2:1: cannot reassign global x declared at talon.star:1:1"},
		},
		{
			name:  "recursion",
			files: map[string]string{"talon.star": "def f(n):\n    return f(n - 1) if n else 0\n\nf(3)\n"},
			want:  []string{"talon.star:2:24: function f called recursively"},
		},
		{
			name:  "while",
			files: map[string]string{"talon.star": "def f():\n    while True:\n        pass\n"},
			want:  []string{"talon.star:2:5: this Starlark dialect does not support while loops"},
		},
		{
			name:  "duplicate probe",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nprobe.tcp(\"a\", \"127.0.0.1:1\")\n"},
			want:  []string{`talon.star:2:10: probe.tcp: probe "a" is already declared at talon.star:1:11; probe names must be unique`},
		},
		{
			name:  "depends_on an unknown probe",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nprobe.exec(\"b\", [\"true\"], depends_on = \"c\")\n"},
			want:  []string{`talon.star:2:11: probe "b" depends on "c", which is not declared`},
		},
		{
			name: "depends_on cycle",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"], depends_on = [\"b\"])\n" +
				"probe.exec(\"b\", [\"true\"], depends_on = [\"c\"])\nprobe.exec(\"c\", [\"true\"], depends_on = [\"a\"])\n"},
			want: []string{`talon.star:1:11: depends_on cycle: a → b → c → a`},
		},
		{
			name: "ladder naming an unknown probe",
			files: map[string]string{"talon.star": "probe.exec(\"colima\", [\"true\"])\nprobe.exec(\"docker\", [\"true\"])\n" +
				"def split(incident):\n    return incident.passed(\"colima\") and incident.failing(\"dokcer\")\n" +
				"ladder(rung(\"bridge\", when = split, do = exec.shell(\"true\")))\n"},
			want: []string{`talon.star:4:58: incident.failing: no probe named "dokcer" in this policy (when= of rung "bridge")`},
		},
		{
			name:  "rung with an empty do",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nladder(\n    rung(\"heal\", do = []),\n)\n"},
			want:  []string{`talon.star:3:9: rung: heal: do must name at least one action`},
		},
		{
			name:  "ladder twice",
			files: map[string]string{"talon.star": "ladder(rung(\"a\", notify.log()))\nladder(rung(\"b\", notify.log()))\n"},
			want:  []string{`talon.star:2:7: ladder: the ladder is already declared at talon.star:1:7; call ladder() once with every rung`},
		},
		{
			name:  "duplicate rung",
			files: map[string]string{"talon.star": "ladder(\n    rung(\"a\", notify.log()),\n    rung(\"a\", exec.shell(\"true\")),\n)\n"},
			want:  []string{`talon.star:1:7: ladder: rung "a" appears twice (talon.star:2:9 and talon.star:3:9); rung names must be unique`},
		},
		{
			name:  "one channel twice in a rung",
			files: map[string]string{"talon.star": "probe.none(\"x\")\nladder(\n    rung(\"sos\", [notify.telegram(chat_id = 42, token = \"t\"), notify.telegram(chat_id = 42, token = \"u\")]),\n)\n"},
			want:  []string{`talon.star:3:9: rung "sos" pages channel telegram:42 twice; name each channel once in a rung`},
		},
		{
			name: "one channel identity for two destinations",
			files: map[string]string{"talon.star": "probe.none(\"x\")\nladder(\n    rung(\"a\", notify.webhook(\"http://h.test/one\")),\n" +
				"    rung(\"b\", notify.webhook(\"http://h.test/two\")),\n)\n"},
			want: []string{`talon.star:4:9: rung "b" pages channel webhook:h.test, which rung "a" (talon.star:3:9) names for another destination; use the same channel in both, or tell them apart with name=`},
		},
		{
			name:  "thresholds twice",
			files: map[string]string{"talon.star": "state.thresholds(failed_after = 3)\nstate.thresholds(recover_after = 2)\n"},
			want:  []string{`talon.star:2:17: state.thresholds: thresholds are already set at talon.star:1:17; call state.thresholds once`},
		},
		{
			name:  "bad services file",
			files: map[string]string{"talon.star": "services(\"" + badServices + "\")\n"},
			want:  []string{badServices + `:3:1: unknown key "timeout" in [http.api]; known keys: critical, critical_after_consecutive_failures, on_failure, timeout_secs, url`},
		},
		{
			name:  "empty entry file",
			files: map[string]string{"talon.star": ""},
			want:  []string{"talon.star: the file is empty; a policy must declare at least one probe, or call probe.none(reason) to run without any"},
		},
		{
			name:  "entry file of blanks",
			files: map[string]string{"talon.star": "\n  \n\t\n"},
			want:  []string{"talon.star: the file is empty; a policy must declare at least one probe, or call probe.none(reason) to run without any"},
		},
		{
			name:  "entry file of NULs",
			files: map[string]string{"talon.star": "\x00\x00\x00\x00"},
			want:  []string{"talon.star:1:1: NUL byte: the file is damaged or not text; restore it from a good copy"},
		},
		{
			name:  "NUL byte in the middle",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\n# ünïcode\x00probe.exec(\"b\", [\"true\"])\n"},
			want:  []string{"talon.star:2:10: NUL byte: the file is damaged or not text; restore it from a good copy"},
		},
		{
			name: "NUL byte in a loaded file",
			files: map[string]string{
				"talon.star": "load(\"lib/x.star\", \"x\")\nprobe.exec(\"a\", [\"true\"])\n",
				"lib/x.star": "x = 1\x00\n",
			},
			want: []string{"lib/x.star:1:6: NUL byte: the file is damaged or not text; restore it from a good copy"},
		},
		{
			name:  "invalid UTF-8",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nprobe.exec(\"caf\xe9\", [\"true\"])\n"},
			want:  []string{"talon.star:2:16: byte 0xe9 is not UTF-8: save the file as UTF-8 text"},
		},
		{
			name:  "no probe",
			files: map[string]string{"talon.star": "ladder(rung(\"log\", do = notify.log()))\n"},
			want:  []string{"talon.star: the policy declares no probe; declare at least one, or call probe.none(reason) to run without any"},
		},
		{
			name:  "only comments",
			files: map[string]string{"talon.star": "# probes go here\n"},
			want:  []string{"talon.star: the policy declares no probe; declare at least one, or call probe.none(reason) to run without any"},
		},
		{
			name:  "no probe for this system",
			files: map[string]string{"talon.star": "probe.launchd(\"gw\", \"com.x.gw\")\nprobe.launchd(\"gw2\", \"com.x.gw2\")\n"},
			want:  []string{"talon.star: the policy declares no probe that runs on linux (all 2 are for other systems); declare one that does"},
		},
		{
			name:  "probe.none and probes",
			files: map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nprobe.none(\"nothing to watch\")\n"},
			want:  []string{`talon.star:2:11: probe.none: the policy also declares probe "a" at talon.star:1:11; remove probe.none or the probes`},
		},
		{
			name:  "probe.none without a reason",
			files: map[string]string{"talon.star": "probe.none(\" \")\n"},
			want:  []string{`talon.star:1:11: probe.none: say why the policy declares no probe: probe.none("the worker is all this host runs")`},
		},
		{
			name:  "entry file missing",
			files: map[string]string{"lib/x.star": "x = 1\n"},
			want:  []string{"talon.star: no talon.star in policy directory /policy; create it or point policy_dir elsewhere"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(tc.files), MaxSteps: tc.steps, GOOS: "linux"})
			if res.Policy != nil {
				t.Fatalf("loaded a policy; want errors %q", tc.want)
			}
			var got []string
			for _, e := range res.Errors {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("errors:\n got %q\nwant %q", got, tc.want)
			}
			if res.Hash == "" {
				t.Error("a failed load has no hash")
			}
		})
	}
}

func TestLoadFromDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	services := filepath.Join(dir, "services.toml")
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("policy/talon.star", `
load("lib/probes.star", "local_probes")
local_probes()
services("../services.toml")
state.thresholds(failed_after = 3, critical_after = "10m")
ladder(rung("log", do = notify.log(prefix = "page: "), state = "sos"))
`)
	write("policy/lib/probes.star", `
def local_probes():
    probe.exec("true", ["true"], critical = True)
    probe.script("echo", "echo hi", after = 2)
`)
	write("services.toml", "[script.ok]\ncommand = \"true\"\ncritical = true\n")
	cfg := testConfig(t)
	res := builtins.Load(filepath.Join(dir, "policy"), builtins.Options{Config: cfg, Environ: []string{"HOME=/home/x", "SECRET=1"}})
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	wantFiles := []string{filepath.Join(dir, "policy/lib/probes.star"), filepath.Join(dir, "policy/talon.star"), services}
	if !slices.Equal(res.Files, wantFiles) {
		t.Errorf("files %q, want %q", res.Files, wantFiles)
	}
	if len(res.Hash) != 64 || res.Policy.Hash != res.Hash {
		t.Errorf("hash %q / %q", res.Hash, res.Policy.Hash)
	}
	var names []string
	for _, p := range res.Policy.Probes {
		names = append(names, p.Name+"@"+p.Pos)
	}
	wantNames := []string{"true@lib/probes.star:3:15", "echo@lib/probes.star:4:17", "script:ok@" + services + ":1:9"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("probes %q, want %q", names, wantNames)
	}
	pol := res.Policy
	if pol.Thresholds.FailedAfter != 3 || pol.Thresholds.CriticalAfter != 10*time.Minute || pol.Thresholds.RecoverAfter != 1 {
		t.Errorf("thresholds %+v", pol.Thresholds)
	}
	if len(pol.Ladder) != 1 || pol.Ladder[0].State != "sos" || !pol.Ladder[0].Pages() || !pol.Ladder[0].Verify {
		t.Errorf("ladder %+v", pol.Ladder)
	}
	if pol.Interval != time.Minute || !slices.Equal(pol.Env, []string{"HOME=/home/x", "PATH=" + cfg.PathList()}) {
		t.Errorf("interval %v env %q", pol.Interval, pol.Env)
	}
	if p := pol.Probe("script:ok"); p == nil || !p.Critical || p.Timeout != 5*time.Second {
		t.Errorf("services probe %+v", p)
	}

	// The same content loads to the same hash; a change changes it.
	again := builtins.Load(filepath.Join(dir, "policy"), builtins.Options{Config: cfg})
	if again.Hash != res.Hash {
		t.Error("hash is not stable")
	}
	write("services.toml", "[script.ok]\ncommand = \"true\"\n")
	if changed := builtins.Load(filepath.Join(dir, "policy"), builtins.Options{Config: cfg}); changed.Hash == res.Hash {
		t.Error("hash ignores the services file")
	}

	// A bad services file fails the load and is still in Files.
	write("services.toml", "[script.ok]\ncommand = 1\n")
	bad := builtins.Load(filepath.Join(dir, "policy"), builtins.Options{Config: cfg})
	if bad.Policy != nil || !slices.Contains(bad.Files, services) || !strings.Contains(bad.ErrorText(), "script.ok.command: want a string, got an integer") {
		t.Errorf("bad services: policy=%v files=%q errors=%s", bad.Policy != nil, bad.Files, bad.ErrorText())
	}
}

func TestLoadRejectsSymlinkEscape(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside.star")
	os.WriteFile(outside, []byte("x = 1\n"), 0o600)
	os.MkdirAll(filepath.Join(dir, "policy"), 0o755)
	os.WriteFile(filepath.Join(dir, "policy", "talon.star"), []byte("load(\"lib.star\", \"x\")\n"), 0o600)
	if err := os.Symlink(outside, filepath.Join(dir, "policy", "lib.star")); err != nil {
		t.Skip(err)
	}
	res := builtins.Load(filepath.Join(dir, "policy"), builtins.Options{Config: testConfig(t)})
	if res.Policy != nil || !strings.HasPrefix(res.ErrorText(), "talon.star:1:1: cannot load lib.star: cannot read lib.star: ") {
		t.Fatalf("got %s", res.ErrorText())
	}
}

func TestLoadWarnings(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Path = []string{"/usr/bin", "/bin"}
	src := `probe.exec("missing", ["talon-no-such-program"])
probe.script("shell", "talon-no-such-tool --flag | grep x")
probe.script("builtin", "! true")
ladder(rung("heal", do = [exec.cmd(["/nonexistent/heal.sh"]), exec.shell("sh -c true")]))
`
	res := builtins.Load("/policy", builtins.Options{Config: cfg, FS: mapFS(map[string]string{"talon.star": src})})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`talon.star:1:11: program "talon-no-such-program" not found on PATH (probe "missing"); install it or add its directory to path in config.toml`,
		`talon.star:2:13: program "talon-no-such-tool" not found on PATH (probe "shell"); install it or add its directory to path in config.toml`,
		`talon.star:4:12: program "/nonexistent/heal.sh" (rung "heal") cannot run: /nonexistent/heal.sh: stat /nonexistent/heal.sh: no such file or directory`,
		`talon.star:4:7: no rung of the ladder pages a person (notify.log only writes to talon's log): set sos_telegram_chat_id or sos_recipient in [escalation] of config.toml, or add a notify.* channel to a rung`,
	}
	if !slices.Equal(res.Warnings, want) {
		t.Fatalf("warnings:\n got %q\nwant %q", res.Warnings, want)
	}
}

// TestLoadRefusesSpecialFiles: a named pipe in place of the entry file, a
// loaded file or the services file fails the load at once (nothing opens
// it for a blocking read) and stays watched.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, fifo string
		files      map[string]string
		want       string
	}{
		{"entry file", "talon.star", nil, "talon.star: is a named pipe, not a regular file; replace it with the file itself"},
		{"loaded file", "lib/x.star", map[string]string{"talon.star": "load(\"lib/x.star\", \"x\")\n"},
			"talon.star:1:1: cannot load lib/x.star: lib/x.star is a named pipe, not a regular file; replace it with the file itself"},
		{"services file", "services.toml", map[string]string{"talon.star": "probe.exec(\"a\", [\"true\"])\nservices(\"services.toml\")\n"},
			"%s/services.toml: is a named pipe, not a regular file; replace it with the file itself"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
			for name, body := range c.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			fifo := filepath.Join(dir, c.fifo)
			fspermtest.Mkfifo(t, fifo)
			var res *engine.LoadResult
			fspermtest.Within(t, 10*time.Second, "loading a policy with a named pipe", func() {
				res = builtins.Load(dir, builtins.Options{Config: testConfig(t)})
			})
			want := c.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, dir)
			}
			if res.Policy != nil || res.ErrorText() != want {
				t.Fatalf("got %q, want %q", res.ErrorText(), want)
			}
			if !slices.Contains(res.Files, fifo) {
				t.Errorf("the named pipe is not watched: files %q", res.Files)
			}
		})
	}
}

// TestProbeNone: a policy may declare no probe when it says so.
func TestProbeNone(t *testing.T) {
	t.Parallel()
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{
		"talon.star": "probe.none(\"this host only runs the worker\")\nladder(rung(\"log\", do = notify.log()))\n"})})
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	if p := res.Policy; len(p.Probes) != 0 || p.NoProbes != "this host only runs the worker" {
		t.Fatalf("probes %d, reason %q", len(p.Probes), p.NoProbes)
	}
}

// One channel in several rungs is fine; two destinations of one host are
// told apart by name=, and each gets its own identity.
func TestChannelIdentities(t *testing.T) {
	t.Parallel()
	files := map[string]string{"talon.star": "probe.none(\"x\")\nladder(\n" +
		"    rung(\"a\", [notify.webhook(\"http://h.test/one\"), notify.log()]),\n" +
		"    rung(\"b\", [notify.webhook(\"http://h.test/one\"), notify.webhook(\"http://h.test/two\", name = \"ops\")]),\n" +
		"    rung(\"c\", [notify.command([\"ntfy\", \"a\"]), notify.command([\"ntfy\", \"b\"], name = \"ntfy-b\")]),\n)\n"}
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(files), GOOS: "linux"})
	if res.Policy == nil {
		t.Fatalf("errors %v", res.Errors)
	}
	var got []string
	for _, r := range res.Policy.Ladder {
		got = append(got, r.Name+"="+strings.Join(r.Channels(), ","))
	}
	want := []string{"a=webhook:h.test,log", "b=webhook:h.test,webhook:ops", "c=command:ntfy,command:ntfy-b"}
	if !slices.Equal(got, want) {
		t.Fatalf("channels %q, want %q", got, want)
	}
	bad := map[string]string{"talon.star": "probe.none(\"x\")\nladder(rung(\"a\", notify.webhook(\"http://h.test/\", name = \"a b\")))\n"}
	res = builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(bad), GOOS: "linux"})
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), `talon.star:2:32: notify.webhook: name: "a b" is not a channel name`) {
		t.Fatalf("errors %v", res.Errors)
	}
}
