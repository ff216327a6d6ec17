package policies_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
	"github.com/talon-dev/talon/policies"
)

// testConfig is the default configuration with a services file that does not exist.
func testConfig(t *testing.T) *config.Config {
	c := config.Default()
	c.ServicesFile = filepath.Join(t.TempDir(), "services.toml")
	return c
}

// TestShippedPolicies loads every shipped policy: the embedded default and
// every directory under policies/ with a talon.star. Examples may name
// programs this machine lacks (warnings); they must not fail to load.
func TestShippedPolicies(t *testing.T) {
	t.Parallel()
	res := builtins.Load("default", builtins.Options{Config: testConfig(t), FS: policies.Default})
	if err := res.Err(); err != nil {
		t.Fatalf("default.star: %s", res.ErrorText())
	}
	// With no channel in config.toml, the default ladder only logs: that
	// is the one thing validate must say about it on a fresh machine.
	noPerson := `talon.star:106:7: no rung of the ladder pages a person (notify.log only writes to talon's log): set sos_telegram_chat_id or sos_recipient in [escalation] of config.toml, or add a notify.* channel to a rung`
	if len(res.Warnings) != 1 || res.Warnings[0] != noPerson {
		t.Errorf("default.star warns on this machine:\n%s\nwant only:\n%s", strings.Join(res.Warnings, "\n"), noPerson)
	}
	// With a channel (the sos rung needs a lease command here), it pages a person.
	cfg := testConfig(t)
	cfg.Escalation.SOSTelegramChatID = "12345"
	cfg.Secrets.LeaseCommand = []string{"true"}
	if res := builtins.Load("default", builtins.Options{Config: cfg, FS: policies.Default}); res.Err() != nil || len(res.Warnings) != 0 {
		t.Errorf("default.star with a Telegram chat: %s %q", res.ErrorText(), res.Warnings)
	}
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == builtins.EntryFile {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			// A copy: strict modes refuse files others can change, and
			// the checkout's modes and owner depend on how it was made.
			res := builtins.Load(fspermtest.Copy(t, dir), builtins.Options{Config: testConfig(t)})
			if err := res.Err(); err != nil {
				t.Fatalf("%s:\n%s", dir, res.ErrorText())
			}
			for _, w := range res.Warnings {
				t.Logf("warning: %s", w)
			}
		})
	}
}

// TestDefaultPolicyPassesHere runs one check cycle of the default policy on
// this machine: a fresh machine must be healthy under it.
func TestDefaultPolicyPassesHere(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	res := builtins.Load("default", builtins.Options{Config: cfg, FS: policies.Default})
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	pol := res.Policy
	want := []string{"root_disk", "memory", "load", "resolver"}
	if len(pol.Probes) != len(want) {
		t.Fatalf("probes: got %d, want %v", len(pol.Probes), want)
	}
	for i, p := range pol.Probes {
		if p.Name != want[i] {
			t.Errorf("probe %d is %q, want %q", i, p.Name, want[i])
		}
	}
	if len(pol.Ladder) != 1 || pol.Ladder[0].Name != "log" || !pol.Ladder[0].Pages() {
		t.Errorf("default ladder must only log, got %d rungs", len(pol.Ladder))
	}
	r := &engine.Runner{Effects: effect.NewLive(), Env: pol.Env, Parallel: cfg.Parallel}
	for _, res := range r.Run(context.Background(), pol.Probes) {
		t.Logf("%s: passed=%v %dms %s", res.Name, res.Passed, res.DurationMS, res.Output)
		if res.Name == "load" {
			// How busy this machine is (a CI box running other builds)
			// is not what the test is about: the probe must read the load
			// and the cores and judge them by its own rule.
			checkLoadVerdict(t, res)
			continue
		}
		if !res.Passed {
			t.Errorf("%s failed: %s", res.Name, res.Output)
		}
	}
}

// checkLoadVerdict checks that the load probe read real figures (the
// cores getconf reports) and that its verdict follows from them.
func checkLoadVerdict(t *testing.T, res engine.Result) {
	t.Helper()
	var load, limit float64
	var cores int
	if _, err := fmt.Sscanf(res.Output, "15-minute load %g on %d cores (limit %g per core)", &load, &cores, &limit); err != nil {
		t.Fatalf("load: output %q: %v", res.Output, err)
	}
	out, err := exec.Command("getconf", "_NPROCESSORS_ONLN").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := strconv.Atoi(strings.TrimSpace(string(out))); cores != want || load < 0 || limit != 4 {
		t.Fatalf("load: read %v on %d cores, limit %v; getconf says %d cores", load, cores, limit, want)
	}
	if want := load/float64(cores) <= limit; res.Passed != want {
		t.Fatalf("load: passed=%v for %v on %d cores (limit %v per core)", res.Passed, load, cores, limit)
	}
}

// TestDefaultPolicyUsesConfig loads the default policy with every optional
// part of the ladder configured: heal, agents, Telegram and iMessage pages.
func TestDefaultPolicyUsesConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.HealScript = filepath.Join(dir, "heal.sh")
	cfg.Agent.CloudCommand = "pi -p --model cloud"
	cfg.Agent.LocalCommand = "pi -p --model local"
	cfg.Escalation.SOSTelegramChatID = "12345"
	cfg.Escalation.SOSRecipient = "me@example.com"
	services := filepath.Join(dir, "services.toml")
	if err := os.WriteFile(services, []byte("[http.api]\nurl = \"http://127.0.0.1:1/health\"\ncritical = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ServicesFile = services
	res := builtins.Load("default", builtins.Options{Config: cfg, FS: policies.Default})
	if err := res.Err(); err != nil {
		t.Fatal(res.ErrorText())
	}
	var rungs []string
	for _, r := range res.Policy.Ladder {
		rungs = append(rungs, r.Name)
	}
	if got := strings.Join(rungs, " "); got != "log heal agent agent-local sos" {
		t.Errorf("rungs %q", got)
	}
	if res.Policy.Probe("http:api") == nil {
		t.Error("services.toml probes are not declared")
	}
	found := false
	for _, f := range res.Files {
		found = found || f == services
	}
	if !found {
		t.Errorf("files %q lack the services file", res.Files)
	}
}

func TestDefaultFS(t *testing.T) {
	t.Parallel()
	b, err := fs.ReadFile(policies.Default, "talon.star")
	if err != nil || string(b) != string(policies.DefaultSource()) || len(b) == 0 {
		t.Fatalf("read talon.star: %v", err)
	}
	if _, err := policies.Default.Open("lib/x.star"); err == nil {
		t.Fatal("opened a file the default policy does not have")
	}
}

// TestShippedPolicyTests runs the *_test.star files of the shipped
// policies as `talon test` does: they all pass.
func TestShippedPolicyTests(t *testing.T) {
	t.Parallel()
	cases := []struct {
		dir  string
		fsys fs.FS
		want int
	}{
		{"(embedded default)", policies.DefaultWithTests(), 6},
		// A copy: strict modes refuse files others can change.
		{fspermtest.Copy(t, "examples/joelclaw"), nil, 3},
	}
	for _, tc := range cases {
		var out strings.Builder
		rep, err := builtins.RunTests(tc.dir, builtins.TestOptions{Options: builtins.Options{Config: testConfig(t), FS: tc.fsys}, Out: &out})
		if err != nil || rep.Failed != 0 || rep.Passed != tc.want {
			t.Errorf("%s: %d passed, %d failed, %v\n%s", tc.dir, rep.Passed, rep.Failed, err, out.String())
		}
		if !strings.HasSuffix(out.String(), fmt.Sprintf("%d passed, 0 failed\n", tc.want)) {
			t.Errorf("%s: report %q", tc.dir, out.String())
		}
	}
}
