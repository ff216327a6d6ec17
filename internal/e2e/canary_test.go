package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// A lease command that fails and prints the secret on stderr: the page fails
// and says that the lease failed, but nothing the command printed, and so
// not the secret in any case, appears in any log, journal, state file,
// /health answer or `talon drill` output.
func TestFailingLeaseCanary(t *testing.T) {
	canary := fmt.Sprintf("tln-canary-%d-7Hq2xK9pLm", time.Now().UnixNano())
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the webhook was called without its secret: %s", r.Header.Get("Authorization"))
	}))
	defer hook.Close()
	dir := t.TempDir()
	policy := fmt.Sprintf(`probe.exec("down", ["false"], critical = True, after = 1)
token = secret("hook", command = ["sh", "-c", "echo 'lease refused: %s is revoked' | tr a-z A-Z >&2; exit 1"])
ladder(rung("sos", do = notify.webhook(%q, headers = {"Authorization": "Bearer " + token}), state = "sos"))
`, canary, hook.URL)
	policyDir := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policyDir, "talon.star"), policy, 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policyDir, bind, stateDir)
	d.waitFor("the page to be tried", 20*time.Second, func(s engine.Snapshot) bool { return s.RungRuns["sos"] > 0 && s.Rung == nil })

	var failure string
	for _, rec := range readJournal(t, stateDir) {
		if rec.Type == "action" && rec.Rung == "sos" && rec.OK != nil && !*rec.OK {
			failure = rec.Output
		}
	}
	if !strings.Contains(failure, "secret hook: lease command sh exited 1 (what it printed is not shown") {
		t.Fatalf("the failed page does not say why: %q", failure)
	}

	drill := exec.Command(talonBin, "drill", "--config", cfg, "--policy", policyDir)
	out, err := drill.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAILED") {
		t.Fatalf("drill: %v\n%s", err, out)
	}
	resp, err := http.Get("http://" + bind + "/health")
	if err != nil {
		t.Fatal(err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	places := map[string]string{"drill output": string(out), "/health": string(health), "daemon output": d.stderr.String()}
	files, _ := filepath.Glob(filepath.Join(stateDir, "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			places[filepath.Base(f)] = string(b)
		}
	}
	if _, ok := places["journal.jsonl"]; !ok {
		t.Fatalf("no journal among %v", files)
	}
	// The last good policy is a private copy (0600) of the policy's own
	// files, whose text holds the canary only because this test wrote it
	// into the lease command; what it must not hold is anything more.
	if lg, ok := places["last-good.json"]; !ok || strings.Count(lg, canary) != strings.Count(policy, canary) {
		t.Errorf("last-good.json is not the policy's text: %q", lg)
	} else if fi, err := os.Stat(filepath.Join(stateDir, "last-good.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("last-good.json: %v %v, want a private file", fi, err)
	}
	delete(places, "last-good.json")
	// Case-insensitively: the lease command prints it upper-cased, and a
	// copy in any case is a leak.
	for where, text := range places {
		if strings.Contains(strings.ToLower(text), strings.ToLower(canary)) {
			t.Errorf("the secret is in the %s", where)
		}
	}
	// A page that failed on its secret is still the page the daemon tried:
	// replay of the journal through the same policy decides the same.
	d.stop()
	assertReplayMatches(t, cfg, policyDir, stateDir)
}
