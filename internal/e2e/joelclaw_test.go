package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm/fspermtest"
)

// joelclaw is the joelclaw example policy running against stand-ins for
// colima, docker, kubectl, ssh, the secrets lease command and the heal
// script (testdata/standins/standin), with loopback HTTP services and a
// loopback Telegram Bot API.
type joelclaw struct {
	t        *testing.T
	dir      string
	world    string
	cfg      string
	policy   string
	stateDir string
	tg       *telegram
	d        *daemon
}

func startJoelclaw(t *testing.T, criticalAfter time.Duration) *joelclaw {
	t.Helper()
	j := &joelclaw{t: t, dir: t.TempDir(), tg: &telegram{}}
	bin := filepath.Join(j.dir, "bin")
	j.world = filepath.Join(j.dir, "world")
	for _, d := range []string{"down", "slow"} {
		if err := os.MkdirAll(filepath.Join(j.world, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	standin, err := os.ReadFile(filepath.Join("testdata", "standins", "standin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"colima", "docker", "kubectl", "ssh", "secrets", "heal"} {
		writeFile(t, filepath.Join(bin, name), string(standin), 0o755)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	var urls []string
	for range 3 {
		srv := httptest.NewServer(ok)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	tgSrv := httptest.NewServer(j.tg)
	t.Cleanup(tgSrv.Close)

	// The example policy as a user installs it, with lib/site.star edited
	// (as its README says) to point at this machine's services.
	j.policy = filepath.Join(j.dir, "policy")
	if err := fspermtest.CopyTree(filepath.Join("..", "..", "policies", "examples", "joelclaw"), j.policy); err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(j.policy, "lib", "site.star")
	b, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, new := range map[string]string{
		`INNGEST_URL = "http://localhost:%d/health" % INNGEST_PORT`:     fmt.Sprintf("INNGEST_URL = %q", urls[0]+"/health"),
		`TYPESENSE_URL = "http://localhost:%d/health" % TYPESENSE_PORT`: fmt.Sprintf("TYPESENSE_URL = %q", urls[1]+"/health"),
		`TELEGRAM_API = "https://api.telegram.org"`:                     fmt.Sprintf("TELEGRAM_API = %q", tgSrv.URL),
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("site.star no longer has %s", old)
		}
		s = strings.ReplaceAll(s, old, new)
	}
	writeFile(t, site, s, 0o644)
	_, workerPort, _ := strings.Cut(strings.TrimPrefix(urls[2], "http://"), ":")

	j.stateDir = filepath.Join(j.dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	j.cfg = filepath.Join(j.dir, "config.toml")
	writeFile(t, j.cfg, fmt.Sprintf(`check_interval_secs = 2
state_dir = %q
services_file = %q
heal_script = %q
heal_timeout_secs = 30
path = [%q, "/usr/bin", "/bin"]

[worker]
port = %s

[probes]
colima_timeout_secs = 5
k8s_timeout_secs = 5
service_timeout_secs = 5

[escalation]
critical_threshold_secs = %d
sos_telegram_chat_id = "42"
sos_telegram_secret_name = "telegram_bot_token"

[health]
bind = %q
`, j.stateDir, filepath.Join(j.dir, "services.toml"), filepath.Join(bin, "heal"), bin, workerPort, int(criticalAfter/time.Second), bind), 0o644)
	j.d = startDaemon(t, j.cfg, j.policy, bind, j.stateDir)
	j.d.waitFor("every probe passing", 60*time.Second, func(s engine.Snapshot) bool { return s.OK && s.ProbeCount >= 17 })
	return j
}

// cyclesWith counts the cycle records that carry probe name's result.
func cyclesWith(recs []engine.Record, name string) int {
	n := 0
	for _, r := range recs {
		for _, x := range r.Results {
			if r.Type == "cycle" && x.Name == name {
				n++
			}
		}
	}
	return n
}

func (j *joelclaw) touch(names ...string) {
	for _, n := range names {
		writeFile(j.t, filepath.Join(j.world, n), "", 0o644)
	}
}

func (j *joelclaw) calls() string {
	b, _ := os.ReadFile(filepath.Join(j.world, "calls.log"))
	return string(b)
}

// Case 2 of issue 11 with the joelclaw policy: Redis is down on the host and
// inside the VM alike. The bridge heal (force-cycling Colima) must not run
// on the witness's pass from before the outage: the heal script runs, then
// the page goes out.
func TestJoelclawPlainRedisOutageIsNotASplitBrain(t *testing.T) {
	j := startJoelclaw(t, 10*time.Second)
	// The witness inside the VM is slow (3 s a run, as ssh on a busy
	// laptop): when the incident opens, its last word is from before.
	writeFile(t, filepath.Join(j.world, "slow", "vm-redis"), "3\n", 0o644)
	j.d.waitFor("a few cycles with the slow witness", 30*time.Second, func(s engine.Snapshot) bool {
		return len(readJournal(t, j.stateDir)) > 0 && cyclesWith(readJournal(t, j.stateDir), "vm:redis") >= 2
	})
	j.touch("down/redis", "down/vm-redis")
	waitUntil(t, "the heal script", 60*time.Second, func() bool { return strings.Contains(j.calls(), "heal run") })
	waitUntil(t, "the page", 60*time.Second, func() bool { return len(j.tg.texts()) == 1 })
	if strings.Contains(j.calls(), "colima stop") {
		t.Fatalf("the bridge heal force-cycled Colima on a plain Redis outage:\n%s", j.calls())
	}
	if page := j.tg.texts()[0]; !strings.Contains(page, "redis") {
		t.Fatalf("the page: %q", page)
	}
	os.Remove(filepath.Join(j.world, "down", "redis"))
	os.Remove(filepath.Join(j.world, "down", "vm-redis"))
	j.d.waitFor("recovery", 60*time.Second, func(s engine.Snapshot) bool { return s.OK })
	waitUntil(t, "\"resolved\"", 30*time.Second, func() bool { return len(j.tg.texts()) == 2 })
	j.d.stop()
	recs := readJournal(t, j.stateDir)
	if starts := journalEvents(recs, "rung_start", "bridge-heal"); len(starts) != 0 {
		t.Fatalf("bridge-heal started: %+v", starts)
	}
	skips := journalEvents(recs, "rung_skip", "bridge-heal")
	if len(skips) == 0 || skips[0].Reason != "when= is false" {
		t.Fatalf("bridge-heal skips: %+v", skips)
	}
	assertReplayMatches(t, j.cfg, j.policy, j.stateDir)
}

// Case 3 with the joelclaw policy: a dead port forward. The bridge heal
// stops and starts Colima (every probe of the VM fails meanwhile) and the
// host's Redis answers only 3 s after `colima start` returned: the settle
// window sees it come back, and the heal script never runs.
func TestJoelclawBridgeHealSettles(t *testing.T) {
	j := startJoelclaw(t, 5*time.Minute)
	j.touch("split", "down/redis")
	waitUntil(t, "the bridge heal", 60*time.Second, func() bool { return strings.Contains(j.calls(), "colima start") })
	j.d.waitFor("the incident resolved", 60*time.Second, func(s engine.Snapshot) bool { return s.OK && s.Incident == nil })
	j.d.stop()
	if c := j.calls(); strings.Contains(c, "heal run") || strings.Count(c, "colima stop") != 1 {
		t.Fatalf("calls:\n%s", c)
	}
	recs := readJournal(t, j.stateDir)
	if starts := journalEvents(recs, "rung_start", ""); len(starts) != 1 || starts[0].Rung != "bridge-heal" {
		t.Fatalf("rungs started: %+v", starts)
	}
	if s := journalEvents(recs, "settle_start", "bridge-heal"); len(s) != 1 {
		t.Fatalf("settle: %+v", s)
	}
	if len(j.tg.texts()) != 0 {
		t.Fatalf("paged: %q", j.tg.texts())
	}
	assertReplayMatches(t, j.cfg, j.policy, j.stateDir)
}
