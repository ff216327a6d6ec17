package builtins_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
)

// Shared pieces of the policies below.
const (
	okProbe  = "probe.exec(\"a\", [\"true\"], critical = True)\n"
	logOnly  = "ladder(rung(\"log\", do = notify.log()))\n"
	webhook  = "ladder(rung(\"sos\", do = notify.webhook(\"http://127.0.0.1:9/\")))\n"
	noPerson = "no rung of the ladder pages a person (notify.log only writes to talon's log): set sos_telegram_chat_id or sos_recipient in [escalation] of config.toml, or add a notify.* channel to a rung"
)

// TestValidateWarnings: every warning validate adds for what would leave
// an operator blind or unpaged, each on a policy that has only that problem.
func TestValidateWarnings(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	legacy := filepath.Join(home, builtins.LegacyServicesFile)
	os.MkdirAll(filepath.Dir(legacy), 0o755)
	os.WriteFile(legacy, []byte("[script.old]\ncommand = \"true\"\n"), 0o644)
	cases := []struct {
		name   string
		config string // config.toml; "" for the defaults
		policy string
		want   []string // "$CONFIG" is the config file, "$LEGACY" the predecessor's services file
	}{
		{name: "no ladder", policy: okProbe,
			want: []string{"talon.star: the policy declares no ladder: failures are shown on /health and in talon status, but nothing acts on them and nobody is paged"}},
		{name: "a ladder that only logs", policy: okProbe + logOnly,
			want: []string{"talon.star:2:7: " + noPerson}},
		{name: "pages that no probe may cause", policy: "probe.exec(\"a\", [\"true\"])\n" + webhook,
			want: []string{`talon.star:2:7: the ladder pages, but no probe's failure may page (on_failure = "page", or critical = True): its pages are never sent`}},
		{name: "a Telegram chat without its secret", config: "[escalation]\nsos_telegram_chat_id = \"42\"\nsos_telegram_secret_name = \"\"\n", policy: okProbe + webhook,
			want: []string{"$CONFIG:2:1: escalation.sos_telegram_chat_id is set but sos_telegram_secret_name is empty: no Telegram page can be sent; name the secret that holds the bot token"}},
		{name: "a Telegram secret without its chat", config: "[escalation]\nsos_telegram_secret_name = \"tg\"\n", policy: okProbe + webhook,
			want: []string{"$CONFIG:2:1: escalation.sos_telegram_secret_name is set but sos_telegram_chat_id is empty: no Telegram page is sent; set the chat id"}},
		{name: "exec.run in a probe.func", policy: okProbe + webhook + "def f():\n    return exec.run([\"talon-no-such-tool\", \"-x\"]).ok\nprobe.func(\"f\", f)\n",
			want: []string{`talon.star:4:20: program "talon-no-such-tool" not found on PATH (exec.run); install it or add its directory to path in config.toml`}},
		{name: "a pipeline in exec.run", policy: okProbe + webhook + "def f():\n    return exec.run(argv = [\"sh\", \"-c\", \"true | talon-no-such-filter\"]).ok\nprobe.func(\"f\", f)\n",
			want: []string{`talon.star:4:20: program "talon-no-such-filter" not found on PATH (exec.run); install it or add its directory to path in config.toml`}},
		{name: "kubectl.run and ssh.run in a do= function", config: "path = [\"/nonexistent/bin\"]\n",
			policy: "probe.tcp(\"a\", \"127.0.0.1:1\", critical = True)\n" + "def heal(incident):\n    kubectl.run([\"get\", \"nodes\"])\n    ssh.run(\"vm\", \"true\")\nladder(rung(\"heal\", do = heal), rung(\"sos\", do = notify.webhook(\"http://127.0.0.1:9/\")))\n",
			want: []string{
				`talon.star:3:16: program "kubectl" not found on PATH (kubectl.run); install it or add its directory to path in config.toml`,
				`talon.star:4:12: program "ssh" not found on PATH (ssh.run); install it or add its directory to path in config.toml`,
			}},
		{name: "an optional program", policy: okProbe + webhook + "def f():\n    return exec.run([\"talon-no-such-tool\"], optional = True).ok\nprobe.func(\"f\", f)\n"},
		{name: "the later members of a pipeline", policy: okProbe + webhook + "probe.script(\"s\", \"true && talon-no-such-b | talon-no-such-c\")\n",
			want: []string{
				`talon.star:3:13: program "talon-no-such-b" not found on PATH (probe "s"); install it or add its directory to path in config.toml`,
				`talon.star:3:13: program "talon-no-such-c" not found on PATH (probe "s"); install it or add its directory to path in config.toml`,
			}},
		{name: "the worker command", config: "[worker]\ncommand = [\"talon-no-such-bun\", \"run\", \"serve.ts\"]\n", policy: okProbe + webhook,
			want: []string{`$CONFIG:2:1: worker.command: program "talon-no-such-bun" not found on PATH; install it or add its directory to path in config.toml`}},
		{name: "a services file named but missing", config: "services_file = \"nope.toml\"\n", policy: okProbe + webhook + "services()\n",
			want: []string{"$CONFIG:1:1: services_file names $DIR/nope.toml, which does not exist: no service is watched; create it or fix the path"}},
		{name: "a services file named but not read", config: "services_file = \"nope.toml\"\n", policy: okProbe + webhook,
			want: []string{"$CONFIG:1:1: services_file is set, but the policy does not call services(): the services in $DIR/nope.toml are not watched"}},
		{name: "the predecessor's services file, not used", policy: okProbe + webhook + "services()\n", want: []string{
			"the predecessor's services file $LEGACY exists, but this policy does not read it: its services are not watched; to keep them, set services_file = \"$LEGACY\" in config.toml (the schema is the same)"}},
		{name: "the predecessor's services file, used", config: "services_file = \"$LEGACY\"\n", policy: okProbe + webhook + "services()\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "config.toml")
			body := tc.config
			if body == "" {
				body = "# defaults\n"
			}
			os.WriteFile(path, []byte(strings.ReplaceAll(body, "$LEGACY", legacy)), 0o644)
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(tc.config, "path =") {
				cfg.Path = append(cfg.Path, filepath.Dir(os.Args[0])) // what the machine has, nothing more
			}
			// Only the predecessor's cases have its file in their home.
			h := t.TempDir()
			if strings.Contains(tc.name, "predecessor") {
				h = home
			}
			environ := []string{"HOME=" + h, "PATH=/usr/bin:/bin"}
			res := builtins.Load("/policy", builtins.Options{Config: cfg, Environ: environ, FS: mapFS(map[string]string{"talon.star": tc.policy})})
			if err := res.Err(); err != nil {
				t.Fatal(res.ErrorText())
			}
			var want []string
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "$CONFIG", path)
				w = strings.ReplaceAll(w, "$LEGACY", legacy)
				want = append(want, strings.ReplaceAll(w, "$DIR", dir))
			}
			if !slices.Equal(res.Warnings, want) {
				t.Fatalf("warnings:\n got %q\nwant %q", res.Warnings, want)
			}
		})
	}
}

// TestComputedProgramIsLoggedAtFirstRun: a program validate cannot name
// (its argv is computed) that is missing when a probe.func runs it is
// logged once, with the call's position.
func TestComputedProgramIsLoggedAtFirstRun(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var logs []string
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": `
TOOL = "talon-no-such-" + "computed"
def f():
    return exec.run([TOOL]).ok
probe.func("f", f)
def g():
    return exec.run([TOOL + "-optional"], optional = True).ok
probe.func("g", g)
`}), Log: func(msg string, kv ...any) {
		mu.Lock()
		defer mu.Unlock()
		line := msg
		for _, v := range kv {
			line += " " + fmt.Sprint(v)
		}
		logs = append(logs, line)
	}})
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	for _, w := range res.Warnings {
		if strings.Contains(w, "computed") {
			t.Errorf("validate named a computed program: %s", w)
		}
	}
	r := &engine.Runner{Effects: effect.NewLive(), Env: []string{"PATH=/usr/bin:/bin"}}
	for i := 0; i < 3; i++ {
		for _, out := range r.Run(context.Background(), res.Policy.Probes) {
			if out.Passed {
				t.Fatalf("%s passed", out.Name)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := "a policy function runs a program that is not on the child PATH; install it or add its directory to path in config.toml (talon validate could not see it: its argv is computed) program talon-no-such-computed at talon.star:4:20"
	if len(logs) != 1 || logs[0] != want {
		t.Fatalf("logs %q\nwant one: %q", logs, want)
	}
}

// TestComputedProgramOthersCanChangeIsRefused: a program validate cannot
// name (its argv is computed) that another user can change is refused
// when a policy function runs it, with the fix, and never runs.
func TestComputedProgramOthersCanChangeIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	prog := filepath.Join(dir, "tool")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(prog, 0o777); err != nil {
		t.Fatal(err)
	}
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": fmt.Sprintf(`
TOOL = %q + ""
def f():
    return exec.run([TOOL]).ok
probe.func("f", f)
`, prog)})})
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	r := &engine.Runner{Effects: effect.NewLive(), Env: []string{"PATH=/usr/bin:/bin"}}
	out := r.Run(context.Background(), res.Policy.Probes)
	want := "exec.run: runs " + prog + ": unsafe file " + prog + " ("
	if len(out) != 1 || out[0].Passed || !strings.Contains(out[0].Output, want) || !strings.Contains(out[0].Output, "mode 0777): writable by group and others; fix: chmod go-w "+prog) {
		t.Fatalf("%+v\nwant an output with %q", out, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the program ran")
	}
	os.Chmod(prog, 0o755)
	if out := r.Run(context.Background(), res.Policy.Probes); !out[0].Passed {
		t.Fatalf("a safe program: %+v", out)
	}
}
