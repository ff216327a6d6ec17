package probe_test

import (
	"testing"

	"github.com/talon-dev/talon/builtins/probe/probetest"
)

// TestNoneMeansDefault: the signatures document optional arguments as
// `x=None`, so passing None must mean leaving the argument out.
func TestNoneMeansDefault(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`ssh.probe("a", host = "h", command = "true", config = None, port = None, user = None, identity = None, timeout = None)`,
		`kubectl.probe("a", ["get", "nodes"], kubeconfig = None, context = None, namespace = None, jsonpath = None)`,
		`kubectl.node_ready("a", node = None, kubeconfig = None)`,
		`kubectl.node_schedulable("a", None)`,
		`probe.redis("a", "127.0.0.1:6379", password = None, username = None, info = None)`,
		`probe.docker("a", "c", host = None)`,
		`probe.nagios("a", ["check_disk"], warning_fails = None)`,
		`probe.systemd("a", "u", user = None)`,
		`probe.launchd("a", "com.x", critical = None)`,
	} {
		if _, err := probetest.Declare(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}
