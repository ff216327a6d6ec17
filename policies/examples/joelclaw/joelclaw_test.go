// Package joelclaw_test loads the joelclaw example policy, checks that it
// declares the predecessor's probe set with its pass rules, critical flags
// and debounce read from config.toml, and drives its split_brain predicate.
package joelclaw_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/config"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// testConfig is a config.toml with values unlike the defaults, so the test
// sees that the policy reads them instead of repeating them.
const testConfig = `
heal_script = "/opt/heal/k8s-reboot-heal.sh"
heal_timeout_secs = 120
services_file = "services.toml"

[worker]
command = ["bun", "run", "src/serve.ts"]
port = 4111
health_endpoint = "/api/inngest"

[probes]
colima_timeout_secs = 4
k8s_timeout_secs = 7
service_timeout_secs = 3
critical_after_consecutive_failures = 5
consecutive_failures_before_escalate = 6

[agent]
cloud_command = "pi -p --no-session"
local_command = "pi -p --no-session --model local"
timeout_secs = 200
`

func load(t *testing.T, goos string) *engine.Policy { return loadWith(t, goos, "") }

// loadWith loads the policy with services (a services.toml; "" for none).
func loadWith(t *testing.T, goos, services string) *engine.Policy {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(testConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServicesFile = filepath.Join(dir, "services.toml") // none: only the built-in probes
	if services != "" {
		if err := os.WriteFile(cfg.ServicesFile, []byte(services), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A copy: strict modes refuse files others can change, and the
	// checkout's modes and owner depend on how it was made.
	res := builtins.Load(fspermtest.Copy(t, "."), builtins.Options{Config: cfg, GOOS: goos})
	if err := res.Err(); err != nil {
		t.Fatalf("load: %s", res.ErrorText())
	}
	for _, w := range res.Warnings {
		t.Logf("warning: %s", w)
	}
	return res.Policy
}

// want is the predecessor's probe list (PREDECESSOR.md §3.2) as this policy
// declares it, with testConfig's timeouts and debounce.
var want = map[string]struct {
	kind     string
	critical bool
	witness  bool
	after    int
	timeout  time.Duration
	programs string
}{
	"colima":             {"exec", true, false, 5, 4 * time.Second, "colima"},
	"docker":             {"script", true, false, 5, 7 * time.Second, "docker"},
	"talos_container":    {"docker", true, false, 5, 7 * time.Second, "docker"},
	"k8s_api":            {"kubectl", true, false, 5, 7 * time.Second, "kubectl"},
	"node_ready":         {"kubectl.node_ready", true, false, 5, 7 * time.Second, "kubectl"},
	"node_schedulable":   {"kubectl.node_schedulable", true, false, 5, 7 * time.Second, "kubectl"},
	"flannel":            {"kubectl.daemonset_available", false, false, 6, 7 * time.Second, "kubectl"},
	"redis":              {"kubectl", true, false, 5, 3 * time.Second, "kubectl"},
	"kubelet_proxy_rbac": {"func", true, false, 5, 7 * time.Second, ""},
	"vm:docker":          {"ssh", false, true, 0, 7 * time.Second, "ssh"},
	"vm:k8s_api":         {"ssh", false, true, 0, 7 * time.Second, "ssh"},
	"vm:redis":           {"ssh", false, true, 0, 3 * time.Second, "ssh"},
	"vm:inngest":         {"ssh", false, true, 0, 3 * time.Second, "ssh"},
	"vm:typesense":       {"ssh", false, true, 0, 3 * time.Second, "ssh"},
	"http:inngest":       {"http", false, false, 6, 3 * time.Second, ""},
	"http:typesense":     {"http", false, false, 6, 3 * time.Second, ""},
	"http:worker":        {"http", false, false, 6, 3 * time.Second, ""},
}

func TestPolicyDeclaresThePredecessorsProbes(t *testing.T) {
	for _, goos := range []string{"darwin", "linux"} {
		t.Run(goos, func(t *testing.T) {
			p := load(t, goos)
			var names []string
			for _, pr := range p.Probes {
				names = append(names, pr.Name)
				w, ok := want[pr.Name]
				if !ok {
					t.Errorf("unexpected probe %s (%s)", pr.Name, pr.Pos)
					continue
				}
				if pr.Kind != w.kind || pr.Critical != w.critical || pr.Witness != w.witness || pr.After != w.after || pr.Timeout != w.timeout {
					t.Errorf("%s: kind %s critical %v witness %v after %d timeout %v; want %s %v %v %d %v",
						pr.Name, pr.Kind, pr.Critical, pr.Witness, pr.After, pr.Timeout, w.kind, w.critical, w.witness, w.after, w.timeout)
				}
				if w.programs != "" && strings.Join(pr.Programs, ",") != w.programs {
					t.Errorf("%s: programs %q, want %q", pr.Name, pr.Programs, w.programs)
				}
				if !strings.HasPrefix(pr.Pos, "talon.star:") {
					t.Errorf("%s declared at %q", pr.Name, pr.Pos)
				}
			}
			if len(names) != len(want) {
				sort.Strings(names)
				t.Errorf("probes %v, want the %d of the predecessor", names, len(want))
			}
			if p.Thresholds.FailedAfter != 6 {
				t.Errorf("failed_after %d, want config.probes.consecutive_failures_before_escalate", p.Thresholds.FailedAfter)
			}
			var rungs []string
			for _, r := range p.Ladder {
				rungs = append(rungs, r.Name)
			}
			if got := strings.Join(rungs, ","); got != "bridge-heal,heal,agent,agent-local,sos" {
				t.Errorf("ladder %s", got)
			}
			if bh := p.Ladder[0]; bh.When == nil || bh.Timeout != 240*time.Second || bh.Cooldown != 15*time.Minute {
				t.Errorf("bridge-heal: when %v timeout %v cooldown %v", bh.When != nil, bh.Timeout, bh.Cooldown)
			}
		})
	}
}

// TestNothingHardCoded: no file of the policy names one user's home.
func TestNothingHardCoded(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".star") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, bad := range []string{"/Users/", "/home/"} {
			if strings.Contains(string(data), bad) {
				t.Errorf("%s contains %q: read it from config or lib/site.star with a ~ path", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSplitBrain(t *testing.T) {
	p := load(t, "darwin")
	var bridge *engine.Rung
	for _, r := range p.Ladder {
		if r.Name == "bridge-heal" {
			bridge = r
		}
	}
	if bridge == nil || bridge.When == nil {
		t.Fatal("no bridge-heal rung with a when= predicate")
	}
	all := make([]string, 0, len(want))
	for name := range want {
		all = append(all, name)
	}
	// incident builds a view where the named probes fail and all others pass.
	incident := func(failing ...string) *engine.IncidentView {
		v := &engine.IncidentView{ID: "t", Started: time.Unix(0, 0), Now: time.Unix(60, 0), State: "failed"}
		down := map[string]bool{}
		for _, f := range failing {
			down[f] = true
		}
		for _, name := range all {
			r := engine.Result{Name: name, Passed: !down[name]}
			if down[name] {
				v.Failing = append(v.Failing, r)
			} else {
				v.Passing = append(v.Passing, r)
			}
		}
		return v
	}
	cases := []struct {
		name    string
		failing []string
		want    bool
	}{
		{"docker bridge dead", []string{"docker", "talos_container"}, true},
		{"api bridge dead", []string{"k8s_api", "node_ready", "node_schedulable", "flannel"}, true},
		{"node_schedulable alone", []string{"node_schedulable"}, true},
		{"redis bridge dead", []string{"redis"}, true},
		{"inngest bridge dead", []string{"http:inngest"}, true},
		{"typesense bridge dead", []string{"http:typesense"}, true},
		{"colima down", []string{"colima", "docker", "k8s_api"}, false},
		{"docker down in the VM too", []string{"docker", "vm:docker"}, false},
		{"api down in the VM too", []string{"k8s_api", "vm:k8s_api"}, false},
		{"worker has no witness", []string{"http:worker"}, false},
		{"flannel has no witness", []string{"flannel"}, false},
		{"only a witness fails", []string{"vm:redis"}, false},
	}
	for _, tc := range cases {
		got, err := bridge.When(context.Background(), incident(tc.failing...))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: split_brain = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// servicesTOML has the services the predecessor's own file had, plus an
// idle service that is only watched.
const servicesTOML = `
[launchd.gateway]
label = "com.joel.gateway"
critical = true

[http.gateway_slack]
url = "http://127.0.0.1:3018/health/slack"
critical = true

[launchd.voice_agent]
label = "com.joel.voice-agent"
critical = true

[http.voice_agent]
url = "http://127.0.0.1:8081/"

[launchd.idle]
label = "com.joel.idle"
`

// TestServiceHeal: the predecessor's service heal (PREDECESSOR.md §5.3) as a
// rung: when only services.toml's services fail, the launchd job of each
// failing one is restarted; a failing [http.NAME] restarts [launchd.NAME];
// the voice agent's port is first cleared of its stale copies; a service
// that is only watched is never restarted.
func TestServiceHeal(t *testing.T) {
	p := loadWith(t, "darwin", servicesTOML)
	var rungs []string
	for _, r := range p.Ladder {
		rungs = append(rungs, r.Name)
	}
	if got := strings.Join(rungs, ","); got != "service-heal,bridge-heal,heal,agent,agent-local,sos" {
		t.Fatalf("ladder %s", got)
	}
	heal := p.Ladder[0]
	var do []string
	for _, a := range heal.Do {
		do = append(do, a.Describe())
	}
	want := []string{
		"launchctl kickstart -k (its domain)/com.joel.gateway, if launchd:gateway fails",
		"launchctl kickstart -k (its domain)/com.joel.voice-agent, after clearing port 8081 of stale copies, if launchd:voice_agent or http:voice_agent fails",
	}
	if strings.Join(do, "\n") != strings.Join(want, "\n") {
		t.Fatalf("service-heal does:\n%s\nwant:\n%s", strings.Join(do, "\n"), strings.Join(want, "\n"))
	}
	for name, on := range map[string]string{"launchd:gateway": "page", "http:gateway_slack": "page", "http:voice_agent": "show", "launchd:idle": "show"} {
		if pr := p.Probe(name); pr == nil || pr.OnFailure() != on {
			t.Errorf("%s: on_failure %v, want %s", name, pr, on)
		}
	}
	view := func(failing ...string) *engine.IncidentView {
		v := &engine.IncidentView{ID: "t", Started: time.Unix(0, 0), Now: time.Unix(60, 0)}
		for _, f := range failing {
			v.Failing = append(v.Failing, engine.Result{Name: f})
		}
		return v
	}
	for _, c := range []struct {
		failing []string
		want    bool
	}{
		{[]string{"launchd:gateway"}, true},
		{[]string{"http:voice_agent", "launchd:voice_agent"}, true},
		{[]string{"launchd:gateway", "redis"}, false}, // the cluster too: the heal script's job
		{[]string{"http:worker"}, false},              // a built-in, not a service
		{[]string{"http:gateway_slack", "colima"}, false},
	} {
		if got, err := heal.When(context.Background(), view(c.failing...)); err != nil || got != c.want {
			t.Errorf("failing %v: services_only = %v, %v; want %v", c.failing, got, err, c.want)
		}
	}
	// Without a services file there is nothing to restart, and no rung.
	if p := load(t, "darwin"); p.Ladder[0].Name != "bridge-heal" {
		t.Errorf("without services the ladder starts with %s", p.Ladder[0].Name)
	}
}
