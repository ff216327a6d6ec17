//go:build linux

package probe_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/testpeer"
)

// TestCheckAllKinds is `talon check` on a policy that mixes every probe kind
// of issue 3 against live peers: one concurrent run with engine.Runner, each
// result as expected, and the cycle about as long as its slowest probe, not
// the sum of them.
func TestCheckAllKinds(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "check_tcp", "check_disk", "docker", "python3")
	sshd := testpeer.StartSSHD(t)
	redis := testpeer.StartRedis(t, "")
	kube := testpeer.StartKube(t)
	sd := testpeer.StartSystemdUser(t, map[string]string{"talon-worker.service": "[Service]\nExecStart=/bin/sleep infinity\n"})
	sd.Systemctl(t, "start", "talon-worker.service")
	dockerSock, _ := fakeDockerEngine(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	t.Cleanup(web.Close)
	webPort := web.Listener.Addr().(*net.TCPAddr).Port
	hang := hangingListener(t)

	// A single-node cluster, the predecessor's shape: one control-plane node
	// with its normal NoSchedule taint, flannel, redis-0.
	kubeNode(t, kube, "joelclaw-controlplane-1", "  taints:\n  - key: node-role.kubernetes.io/control-plane\n    effect: NoSchedule\n", "True", "KubeletReady")
	kube.Kubectl(t, "create", "namespace", "joelclaw")
	kubeDaemonSet(t, kube, "kube-system", "kube-flannel", 1, 1)
	kubePod(t, kube, "joelclaw", "redis-0", "joelclaw-controlplane-1", "Running", "True")

	kc := fmt.Sprintf("kubeconfig = %q", kube.Kubeconfig)
	ssh := fmt.Sprintf("host = %q, config = %q", sshd.Alias, sshd.Config)
	src := strings.Join([]string{
		`probe.exec("colima", ["sh", "-c", "echo colima is running"], critical = True, timeout = "5s")`,
		fmt.Sprintf(`probe.docker("talos_container", "joelclaw-controlplane-1", host = %q, critical = True)`, dockerSock),
		fmt.Sprintf(`probe.docker("gone_container", "joelclaw-exited", host = %q)`, dockerSock),
		`kubectl.probe("k8s_api", ["get", "nodes", "--no-headers"], critical = True, ` + kc + `)`,
		`kubectl.node_ready("node_ready", critical = True, ` + kc + `)`,
		`kubectl.node_schedulable("node_schedulable", critical = True, ` + kc + `)`,
		`kubectl.daemonset_available("flannel", "kube-flannel", "kube-system", ` + kc + `)`,
		`kubectl.pod_ready("redis_pod", "redis-0", "joelclaw", ` + kc + `)`,
		fmt.Sprintf(`probe.redis("redis", %q, info = {"aof_enabled": "0"}, critical = True)`, redis.Addr),
		fmt.Sprintf(`probe.redis("redis_hang", "127.0.0.1:%d", timeout = "2s")`, hang),
		`ssh.probe("vm:docker", command = "echo PONG", expect = "PONG", witness = True, ` + ssh + `)`,
		fmt.Sprintf(`ssh.probe("vm:redis", command = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", %d), 2); print(\"open\")'", witness = True, %s)`, redis.Port, ssh),
		`ssh.probe("vm:slow", command = "sleep 1; echo done", witness = True, ` + ssh + `)`,
		fmt.Sprintf(`probe.nagios("http:inngest", ["check_http", "-H", "127.0.0.1", "-p", "%d", "-u", "/health"])`, webPort),
		`probe.nagios("root_disk", ["check_disk", "-w", "0%", "-c", "0%", "-p", "/"])`,
		`probe.systemd("worker", "talon-worker.service", user = True)`,
		`probe.launchd("gateway", "com.joel.gateway")`,
	}, "\n")
	probes, err := probetest.Declare(src)
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]struct {
		passed bool
		output string // regexp
	}{
		"colima":           {true, `^colima is running$`},
		"talos_container":  {true, `^running$`},
		"gone_container":   {false, `^container joelclaw-exited is exited$`},
		"k8s_api":          {true, `^joelclaw-controlplane-1 +Ready`},
		"node_ready":       {true, `^joelclaw-controlplane-1 Ready$`},
		"node_schedulable": {true, `^joelclaw-controlplane-1 schedulable \(normal node-role.kubernetes.io/control-plane:NoSchedule ignored\)$`},
		"flannel":          {true, `^1/1 available$`},
		"redis_pod":        {true, `^pod redis-0 Ready \(Running\)$`},
		"redis":            {true, `^PONG; aof_enabled=0$`},
		"redis_hang":       {false, `^timeout after 2s: no answer from 127\.0\.0\.1:\d+ to PING$`},
		"vm:docker":        {true, `^PONG$`},
		"vm:redis":         {true, `^open$`},
		"vm:slow":          {true, `^done$`},
		"http:inngest":     {true, `^HTTP OK: HTTP/1\.1 200 OK`},
		"root_disk":        {true, `^DISK OK`},
		"worker":           {true, `^active \(running\) pid \d+ restarts 0$`},
		"gateway":          {false, `^probe.launchd: launchd exists only on macOS; use probe.systemd$`},
	}
	if len(probes) != len(want) {
		t.Fatalf("declared %d probes, want %d", len(probes), len(want))
	}

	env := append(probetest.Env(), "HOME="+t.TempDir())
	env = append(env, sd.Env()...)
	r := &engine.Runner{Effects: effect.NewLive(), Env: env}
	start := time.Now()
	results := r.Run(context.Background(), probes)
	wall := time.Since(start)

	var sum, slowest time.Duration
	for i, res := range results {
		d := time.Duration(res.DurationMS) * time.Millisecond
		sum += d
		slowest = max(slowest, d)
		w := want[res.Name]
		if res.Name != probes[i].Name {
			t.Errorf("result %d is %s, want %s: results must keep the probes' order", i, res.Name, probes[i].Name)
		}
		if res.Passed != w.passed || !regexp.MustCompile(w.output).MatchString(res.Output) {
			t.Errorf("%s: got passed=%v output=%q; want passed=%v output matching %s", res.Name, res.Passed, res.Output, w.passed, w.output)
		}
		t.Logf("%-17s %-5v %5dms %s", res.Name, res.Passed, res.DurationMS, strings.ReplaceAll(res.Output, "\n", " | "))
	}
	t.Logf("wall %v, slowest probe %v, sum of probes %v", wall.Round(time.Millisecond), slowest, sum)
	if slowest < 2*time.Second {
		t.Errorf("the slowest probe (the 2s timeout) took %v", slowest)
	}
	if wall > slowest+time.Second {
		t.Errorf("the cycle took %v, more than its slowest probe (%v) plus 1s: probes did not run concurrently", wall, slowest)
	}
	if sum < wall+2*time.Second {
		t.Errorf("sum of probe times %v is not well above the wall time %v: the test does not show concurrency", sum, wall)
	}
}
