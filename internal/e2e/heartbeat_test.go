package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// The daemon pings the policy's heartbeat at once, and its fail URL once a
// broken policy edit leaves it running the last good one.
func TestHeartbeatFromTheDaemon(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+strings.TrimSpace(string(b)))
		mu.Unlock()
	}))
	defer srv.Close()
	requests := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }

	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	const uuid = "/ping/5bf1c9a2-secret-uuid"
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.exec("ok", ["true"])
heartbeat(%q, every = "10s", method = "POST")
`, srv.URL+uuid), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	waitUntil(t, "the first ping", 10*time.Second, func() bool { return len(requests()) >= 1 })
	host, _ := os.Hostname()
	if r := requests()[0]; !strings.HasPrefix(r, "POST "+uuid+" talon on "+host+": healthy; 1 probes") {
		t.Fatalf("first ping %q", r)
	}

	// A broken edit: the last good policy (and its heartbeat) keeps running,
	// and the heartbeat now reports the failure.
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"ok\", [\"true\"]\n", 0o644)
	d.waitFor("the policy error", 10*time.Second, func(s engine.Snapshot) bool { return s.PolicyError != nil })
	waitUntil(t, "a ping to the fail URL", 25*time.Second, func() bool {
		rs := requests()
		return strings.HasPrefix(rs[len(rs)-1], "POST "+uuid+"/fail talon on "+host+": policy error: ")
	})
	d.stop()
	b, _ := os.ReadFile(filepath.Join(stateDir, "talon.log"))
	if !strings.Contains(string(b), `"msg":"heartbeat: pinging","target":"`+srv.URL+`"`) || strings.Contains(string(b), "secret-uuid") {
		t.Fatalf("talon.log must name the target by host only:\n%s", b)
	}
}
