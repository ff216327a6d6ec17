//go:build linux

package probe_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/internal/testpeer"
)

// kubeNode creates a node with the given spec (YAML under "spec:", already
// indented) and sets its Ready condition through the status subresource.
func kubeNode(t *testing.T, k *testpeer.KubeCluster, name, spec, ready, reason string) {
	t.Helper()
	k.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata:\n  name: %s\nspec:\n%s", name, spec))
	now := time.Now().UTC().Format(time.RFC3339)
	k.Kubectl(t, "patch", "node", name, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":%q,"reason":%q,"message":"set by the test","lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`, ready, reason, now, now))
}

// kubeDaemonSet creates a daemonset and writes its status counts.
func kubeDaemonSet(t *testing.T, k *testpeer.KubeCluster, ns, name string, desired, available int) {
	t.Helper()
	k.Apply(t, fmt.Sprintf(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      containers:
      - name: main
        image: registry.example/%[2]s:1.0
`, ns, name))
	k.Kubectl(t, "-n", ns, "patch", "daemonset", name, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"desiredNumberScheduled":%d,"currentNumberScheduled":%d,"numberReady":%d,"numberAvailable":%d,"numberMisscheduled":0,"updatedNumberScheduled":%d,"observedGeneration":1}}`,
			desired, desired, available, available, desired))
}

// kubePod creates a pod bound to node and writes its phase and Ready condition.
func kubePod(t *testing.T, k *testpeer.KubeCluster, ns, name, node, phase, ready string) {
	t.Helper()
	k.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
spec:
  nodeName: %s
  containers:
  - name: main
    image: registry.example/%s:1.0
`, name, ns, node, name))
	reason := ""
	if ready != "True" {
		reason = `,"reason":"ContainersNotReady","message":"containers with unready status: [main]"`
	}
	k.Kubectl(t, "-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
		fmt.Sprintf(`{"status":{"phase":%q,"conditions":[{"type":"Ready","status":%q%s}]}}`, phase, ready, reason))
}

// hangingKubeconfig is a kubeconfig whose server accepts connections and never answers.
func hangingKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: hang
  cluster:
    server: https://127.0.0.1:%d
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: t
contexts:
- name: hang
  context: {cluster: hang, user: u}
current-context: hang
`, hangingListener(t))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubectlProbe(t *testing.T) {
	t.Parallel()
	k := testpeer.StartKube(t)
	home := "HOME=" + t.TempDir() // kubectl's discovery cache goes here, not into the real home

	kubeNode(t, k, "cp-1", "  taints:\n  - key: node-role.kubernetes.io/control-plane\n    effect: NoSchedule\n", "True", "KubeletReady")
	kubeNode(t, k, "master-1", "  taints:\n  - key: node-role.kubernetes.io/master\n    effect: NoSchedule\n  - key: example.com/soft\n    effect: PreferNoSchedule\n", "True", "KubeletReady")
	kubeNode(t, k, "disk-1", "  taints:\n  - key: node.kubernetes.io/disk-pressure\n    effect: NoSchedule\n", "True", "KubeletReady")
	kubeNode(t, k, "cp-evict-1", "  taints:\n  - key: node-role.kubernetes.io/control-plane\n    effect: NoExecute\n", "True", "KubeletReady")
	kubeNode(t, k, "cordoned-1", "  unschedulable: true\n", "True", "KubeletReady")
	kubeNode(t, k, "down-1", "  {}\n", "False", "KubeletNotReady")
	k.Kubectl(t, "create", "namespace", "joelclaw")
	kubeDaemonSet(t, k, "kube-system", "kube-flannel", 1, 1)
	kubeDaemonSet(t, k, "kube-system", "node-agent", 3, 2)
	kubeDaemonSet(t, k, "kube-system", "nowhere", 0, 0)
	kubePod(t, k, "joelclaw", "redis-0", "cp-1", "Running", "True")
	kubePod(t, k, "joelclaw", "web", "cp-1", "Pending", "False")

	kc := fmt.Sprintf("kubeconfig = %q", k.Kubeconfig)
	cases := []struct {
		name, src string
		passed    bool
		output    string // regexp
	}{
		{"get nodes", `kubectl.probe("k8s_api", ["get", "nodes", "--no-headers"], ` + kc + `)`, true, `(?m)^cp-1 +Ready`},
		{"jsonpath", `kubectl.probe("node_ready", ["get", "node", "cp-1"], jsonpath = '{.status.conditions[?(@.type=="Ready")].status}', expect_exact = "True", ` + kc + `)`, true, `^True$`},
		{"jsonpath miss", `kubectl.probe("node_ready", ["get", "node", "down-1"], jsonpath = '{.status.conditions[?(@.type=="Ready")].status}', expect_exact = "True", ` + kc + `)`, false, `^expected == "True", got "False"$`},
		{"namespace", `kubectl.probe("pods", ["get", "pods", "--no-headers"], namespace = "joelclaw", ` + kc + `)`, true, `(?m)^redis-0 `},
		{"not found", `kubectl.probe("x", ["get", "node", "nope"], ` + kc + `)`, false, `^exit status 1: Error from server \(NotFound\): nodes "nope" not found$`},
		{"context", `kubectl.probe("x", ["get", "nodes"], context = "testpeer", ` + kc + `)`, true, `cp-1`},
		{"unknown context", `kubectl.probe("x", ["get", "nodes"], context = "nope", ` + kc + `)`, false, `context was not found for specified context: nope`},

		{"ready", `kubectl.node_ready("node_ready", node = "cp-1", ` + kc + `)`, true, `^cp-1 Ready$`},
		{"not ready", `kubectl.node_ready("node_ready", node = "down-1", ` + kc + `)`, false, `^node down-1 not Ready \(Ready=False: KubeletNotReady: set by the test\)$`},
		{"all nodes ready", `kubectl.node_ready("node_ready", ` + kc + `)`, false, `^node down-1 not Ready`},
		{"no such node", `kubectl.node_ready("node_ready", node = "nope", ` + kc + `)`, false, `NotFound`},

		{"control-plane taint is normal", `kubectl.node_schedulable("sched", node = "cp-1", ` + kc + `)`, true, `^cp-1 schedulable \(normal node-role.kubernetes.io/control-plane:NoSchedule ignored\)$`},
		{"master taint is normal", `kubectl.node_schedulable("sched", node = "master-1", ` + kc + `)`, true, `^master-1 schedulable \(normal node-role.kubernetes.io/master:NoSchedule ignored\)$`},
		{"disk pressure", `kubectl.node_schedulable("sched", node = "disk-1", ` + kc + `)`, false, `^node disk-1: taint node.kubernetes.io/disk-pressure:NoSchedule$`},
		{"control-plane NoExecute", `kubectl.node_schedulable("sched", node = "cp-evict-1", ` + kc + `)`, false, `^node cp-evict-1: taint node-role.kubernetes.io/control-plane:NoExecute$`},
		{"cordoned", `kubectl.node_schedulable("sched", node = "cordoned-1", ` + kc + `)`, false, `^node cordoned-1: cordoned \(spec.unschedulable\)$`},
		{"all nodes schedulable", `kubectl.node_schedulable("sched", ` + kc + `)`, false, `^node cordoned-1: cordoned \(spec.unschedulable\); node cp-evict-1: taint node-role.kubernetes.io/control-plane:NoExecute; node disk-1: taint node.kubernetes.io/disk-pressure:NoSchedule$`},

		{"daemonset", `kubectl.daemonset_available("flannel", "kube-flannel", "kube-system", ` + kc + `)`, true, `^1/1 available$`},
		{"daemonset short", `kubectl.daemonset_available("agent", "node-agent", "kube-system", ` + kc + `)`, false, `^2/3 available$`},
		{"daemonset nowhere", `kubectl.daemonset_available("agent", "nowhere", "kube-system", ` + kc + `)`, false, `^no pods desired \(0/0\)`},
		{"daemonset missing", `kubectl.daemonset_available("agent", "kube-flannel", "default", ` + kc + `)`, false, `daemonsets.apps "kube-flannel" not found`},

		{"pod ready", `kubectl.pod_ready("redis", "redis-0", "joelclaw", ` + kc + `)`, true, `^pod redis-0 Ready \(Running\)$`},
		{"pod not ready", `kubectl.pod_ready("web", "web", "joelclaw", ` + kc + `)`, false, `^pod web not Ready \(phase Pending: ContainersNotReady: containers with unready status: \[main\]\)$`},
		{"pod missing", `kubectl.pod_ready("web", "redis-1", "joelclaw", ` + kc + `)`, false, `pods "redis-1" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.RunWithEnv(t, probetest.MustDeclare(t, tc.src), home)
			if res.Passed != tc.passed || !regexp.MustCompile(tc.output).MatchString(res.Output) {
				t.Fatalf("got passed=%v output=%q; want passed=%v output matching %s", res.Passed, res.Output, tc.passed, tc.output)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		hang := hangingKubeconfig(t)
		for _, src := range []string{
			`kubectl.probe("k8s_api", ["get", "nodes"], timeout = "2s", kubeconfig = %q)`,
			`kubectl.node_ready("node_ready", timeout = "2s", kubeconfig = %q)`,
		} {
			res, took := probetest.RunWithEnv(t, probetest.MustDeclare(t, fmt.Sprintf(src, hang)), home)
			if res.Passed || !strings.Contains(strings.ToLower(res.Output), "timeout") {
				t.Errorf("%s: got %+v", src, res)
			}
			t.Logf("%s: %v: %s", src, took, res.Output)
			if took > 2500*time.Millisecond {
				t.Errorf("%s: 2s timeout took %v", src, took)
			}
		}
	})

	t.Run("run", func(t *testing.T) {
		t.Parallel()
		src := fmt.Sprintf(`r = kubectl.run(["get", "node", "cp-1"], jsonpath = "{.metadata.name}", kubeconfig = %q)
missing = kubectl.run(["get", "pod", "nope"], namespace = "joelclaw", kubeconfig = %q)`, k.Kubeconfig, k.Kubeconfig)
		g, err := probetest.Call(src, 30*time.Second, home)
		if err != nil {
			t.Fatal(err)
		}
		r := g["r"].(*starlarkstruct.Struct)
		for name, want := range map[string]starlark.Value{"stdout": starlark.String("cp-1"), "code": starlark.MakeInt(0), "ok": starlark.True} {
			if got, _ := r.Attr(name); got != want && got.String() != want.String() {
				t.Errorf("r.%s = %v, want %v", name, got, want)
			}
		}
		m := g["missing"].(*starlarkstruct.Struct)
		stderr, _ := m.Attr("stderr")
		ok, _ := m.Attr("ok")
		if ok != starlark.False || !strings.Contains(stderr.String(), `pods \"nope\" not found`) {
			t.Errorf("missing: %v", m)
		}
	})
}

func TestKubectlBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\n\nkubectl.probe(\"k\", [])", "talon.star:3:14: in <toplevel>\nError in kubectl.probe: kubectl.probe: k: args must not be empty"},
		{`kubectl.probe("k", ["kubectl", "get", "nodes"])`, `kubectl.probe: k: args are kubectl's arguments: leave out "kubectl"`},
		{`kubectl.probe("k", "get nodes")`, `kubectl.probe: for parameter args: want a list of strings, got string`},
		{`kubectl.node_schedulable("k", node = "-A")`, `kubectl.node_schedulable: k: node "-A" is not an object name`},
		{`kubectl.node_ready("k", namespace = "x")`, `kubectl.node_ready: unexpected keyword argument "namespace"`},
		{`kubectl.daemonset_available("k", "kube-flannel")`, `kubectl.daemonset_available: missing argument for namespace`},
		{`kubectl.pod_ready("k", "redis-0", "")`, `kubectl.pod_ready: k: namespace "" is not an object name`},
		{`kubectl.run(["get", "nodes"])`, `kubectl.run: side effects are not allowed while the policy loads`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}

// kubectl.run and ssh.run hold their configuration files to strict modes
// when they run, as validate does for probes: a kubeconfig or ssh config
// another user can write can run any command.
func TestRunRefusesConfigOthersCanWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg, 0o646); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		fmt.Sprintf(`r = kubectl.run(["get", "nodes"], kubeconfig = %q)`, cfg),
		fmt.Sprintf(`r = ssh.run("vm", "true", config = %q)`, cfg),
	} {
		_, err := probetest.Call(src, 10*time.Second, dir)
		if err == nil || !strings.Contains(err.Error(), "reads "+cfg+": unsafe file "+cfg) || !strings.Contains(err.Error(), "fix: chmod go-w "+cfg) {
			t.Errorf("%s: %v", src, err)
		}
	}
}
