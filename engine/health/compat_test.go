package health

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/talon-dev/talon/engine"
)

// The gateway heartbeat reaches /health through a VM address and a cluster
// DNS name, forwarded to the loopback bind: with [health] allowed_hosts
// those names may read /health, and nothing else changes: other routes,
// other names and every POST still answer to loopback names only.
func TestAllowedHosts(t *testing.T) {
	t.Parallel()
	srv := New(Options{Bind: "127.0.0.1:0", Snapshot: func() engine.Snapshot { return engine.Snapshot{OK: true, State: engine.Healthy} },
		Reload: func(context.Context) (string, error) { return "h", nil }, Token: testToken,
		AllowedHosts: []string{"192.168.5.2", "talon.joelclaw.svc.cluster.local", "HOST.lima.internal:9999"}})
	addr, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	_, port, _ := net.SplitHostPort(addr)
	for _, c := range []struct {
		method, path, host string
		want               int
	}{
		{"GET", "/health", "192.168.5.2:" + port, 200},
		{"HEAD", "/health", "192.168.5.2:" + port, 200},
		{"GET", "/health", "talon.joelclaw.svc.cluster.local:9999", 200},
		{"GET", "/health", "talon.joelclaw.svc.cluster.local.:9999", 200}, // a fully qualified name
		{"GET", "/health", "host.lima.internal", 200},
		{"GET", "/health", "evil.example:" + port, 403},
		{"GET", "/health", "192.168.5.3:" + port, 403},
		{"GET", "/metrics", "192.168.5.2:" + port, 403},
		{"POST", "/reload", "192.168.5.2:" + port, 403},
		{"POST", "/health", "192.168.5.2:" + port, 403},
		{"POST", "/reload", "127.0.0.1:" + port, 200},
	} {
		req, _ := http.NewRequest(c.method, "http://"+addr+c.path, nil)
		req.Host = c.host
		req.Header.Set(TokenHeader, testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s Host %s: %d, want %d", c.method, c.path, c.host, resp.StatusCode, c.want)
		}
	}
}

// state_compat spells the state as the predecessor did, for consumers that
// compare "Healthy" case-sensitively; state keeps Talon's spelling.
func TestStateCompat(t *testing.T) {
	t.Parallel()
	want := map[engine.Phase]string{engine.Healthy: "Healthy", engine.Degraded: "Degraded", engine.Failed: "Failed",
		engine.Investigating: "Investigating", engine.Critical: "Critical", engine.SOS: "SOS"}
	if len(want) != len(engine.Phases) {
		t.Fatal("a phase without its predecessor spelling")
	}
	for _, p := range engine.Phases {
		snap := engine.Snapshot{State: p}
		_, base := start(t, Options{Snapshot: func() engine.Snapshot { return snap }})
		resp, err := client().Get(base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["state_compat"] != want[p] || m["state"] != string(p) {
			t.Errorf("%s: state %v, state_compat %v", p, m["state"], m["state_compat"])
		}
	}
}
