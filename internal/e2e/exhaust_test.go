package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// 2,000 idle /health clients at a 1,024 descriptor limit: the endpoint keeps
// its connections under its cap (closing the oldest idle ones), so probes —
// which need pipes and sockets every cycle — never fail for want of a
// descriptor, and /health keeps answering.
func TestIdleHealthClientsDoNotStarveProbes(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var policy strings.Builder
	for i := range 8 {
		fmt.Fprintf(&policy, "probe.exec(\"exec%d\", [\"sh\", \"-c\", \"echo ok\"])\n", i)
	}
	fmt.Fprintf(&policy, "probe.tcp(\"port\", %q)\n", ln.Addr().String())
	writeFile(t, filepath.Join(dir, "policy", "talon.star"), policy.String(), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemonArgv(t, []string{"sh", "-c", `ulimit -n 1024 && exec "$0" "$@"`,
		talonBin, "run", "--config", cfg, "--policy", filepath.Join(dir, "policy")}, bind, stateDir)
	if lim := nofile(t, d.cmd.Process.Pid); lim != "1024" {
		t.Fatalf("daemon's open files limit is %s, want 1024", lim)
	}
	d.waitFor("first cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })

	// 2,000 clients: 1,500 ask once with keep-alive and stay idle, 500
	// connect and never say anything.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 2000 {
		c, err := net.Dial("tcp", bind)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%4 != 0 {
			fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", bind)
		}
	}
	flooded := time.Now()
	t.Logf("2000 clients connected; daemon holds %d descriptors", openFDs(t, d.cmd.Process.Pid))

	// Every probe ran three times after the flood and passed, and /health
	// answered every time it was asked.
	deadline := time.Now().Add(30 * time.Second)
	var last time.Time
	for {
		runs := map[string]int{}
		for _, rec := range readJournal(t, d.stateDir) {
			if rec.Type != "cycle" || !rec.Time.After(flooded) {
				continue
			}
			for _, r := range rec.Results {
				runs[r.Name]++
				if !r.Passed {
					t.Fatalf("probe %s failed at %s during the flood: %s", r.Name, rec.Time.Format(time.StampMilli), r.Output)
				}
			}
		}
		enough := len(runs) == 9
		for _, n := range runs {
			enough = enough && n >= 3
		}
		if enough {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe runs after the flood: %v", runs)
		}
		s := d.waitFor("the next cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(last) })
		last = s.LastCycle
	}
	fds := openFDs(t, d.cmd.Process.Pid)
	t.Logf("after 3 cycles the daemon holds %d descriptors", fds)
	if fds > 512 {
		t.Errorf("daemon holds %d descriptors with a cap of 256 connections", fds)
	}
	if out := d.stderr.String(); strings.Contains(out, "too many open files") {
		t.Errorf("the daemon ran out of descriptors:\n%s", out)
	}
	// A fresh client is answered while the idle ones are still there.
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + bind + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/health after the flood: %v %v", resp, err)
	}
	resp.Body.Close()
}

// nofile is the soft open files limit of a process.
func nofile(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[0] == "Max" && fields[1] == "open" {
			return fields[3]
		}
	}
	return "?"
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
