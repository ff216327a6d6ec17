//go:build linux

package testpeer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRepoRootAndFreePort(t *testing.T) {
	root := RepoRoot()
	if root == "" {
		t.Fatal("RepoRoot found no go.mod for github.com/talon-dev/talon")
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testpeer", "need.go")); err != nil {
		t.Fatalf("RepoRoot = %s, which has no internal/testpeer/need.go: %v", root, err)
	}
	if p := FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
}

// TestKubeCluster starts a real kube-apiserver and shows how tests fake what
// the missing kubelet and controllers would do: create objects, then write
// their status through the status subresource.
func TestKubeCluster(t *testing.T) {
	k := StartKube(t)

	t.Run("NodeReadyAndTainted", func(t *testing.T) {
		k.Apply(t, `
apiVersion: v1
kind: Node
metadata:
  name: cp-1
  labels:
    node-role.kubernetes.io/control-plane: ""
spec:
  taints:
  - key: node-role.kubernetes.io/control-plane
    effect: NoSchedule
`)
		now := time.Now().UTC().Format(time.RFC3339)
		k.Kubectl(t, "patch", "node", "cp-1", "--subresource=status", "--type=merge", "-p",
			`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady",`+
				`"message":"kubelet is posting ready status","lastHeartbeatTime":"`+now+`","lastTransitionTime":"`+now+`"}]}}`)

		ready := k.Kubectl(t, "get", "nodes", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if strings.TrimSpace(ready) != "cp-1=True" {
			t.Errorf("Ready condition: got %q, want cp-1=True", ready)
		}
		taints := k.Kubectl(t, "get", "nodes", "cp-1", "-o",
			`jsonpath={range .spec.taints[*]}{.key}:{.effect}{"\n"}{end}`)
		if strings.TrimSpace(taints) != "node-role.kubernetes.io/control-plane:NoSchedule" {
			t.Errorf("taints: got %q, want only node-role.kubernetes.io/control-plane:NoSchedule", taints)
		}
	})

	t.Run("DaemonSetStatus", func(t *testing.T) {
		k.Apply(t, `
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: kube-system
spec:
  selector:
    matchLabels: {app: node-agent}
  template:
    metadata:
      labels: {app: node-agent}
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      containers:
      - name: agent
        image: registry.example/node-agent:1.0
        securityContext: {privileged: true}
`)
		// Without a controller manager the status stays zero until a test
		// writes it.
		k.Kubectl(t, "-n", "kube-system", "patch", "daemonset", "node-agent", "--subresource=status", "--type=merge", "-p",
			`{"status":{"desiredNumberScheduled":3,"currentNumberScheduled":3,"numberReady":2,"numberAvailable":2,"numberUnavailable":1,"numberMisscheduled":0,"updatedNumberScheduled":3,"observedGeneration":1}}`)
		got := k.Kubectl(t, "-n", "kube-system", "get", "daemonset", "node-agent", "-o",
			`jsonpath={.status.numberAvailable}/{.status.desiredNumberScheduled}`)
		if got != "2/3" {
			t.Errorf("numberAvailable/desiredNumberScheduled: got %q, want 2/3", got)
		}
	})

	t.Run("PodWithoutServiceAccountController", func(t *testing.T) {
		// The ServiceAccount admission plugin is off, so a pod can be created
		// although no controller made the "default" service account.
		k.Apply(t, `
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  nodeName: cp-1
  containers:
  - name: web
    image: registry.example/web:1.0
`)
		k.Kubectl(t, "patch", "pod", "web", "--subresource=status", "--type=merge", "-p",
			`{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`)
		if got := k.Kubectl(t, "get", "pod", "web", "-o", "jsonpath={.status.phase}"); got != "Running" {
			t.Errorf("pod phase: got %q, want Running", got)
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		if got := strings.TrimSpace(k.Kubectl(t, "auth", "can-i", "*", "*", "--all-namespaces")); got != "yes" {
			t.Errorf("admin auth can-i * *: got %q, want yes", got)
		}
		out, _, err := k.RunKubectl("", "auth", "can-i", "list", "secrets", "-n", "kube-system", "--as=nobody")
		if err == nil || strings.TrimSpace(out) != "no" {
			t.Errorf("nobody auth can-i list secrets: got %q (err %v), want no and a non-zero exit", out, err)
		}
	})
}
