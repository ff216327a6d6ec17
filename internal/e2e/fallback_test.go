package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// TestBrokenFileAtStartRunsTheLastGoodPolicy is the acceptance test of
// "never blind, never silent": a daemon that starts with a broken services
// file, a broken policy or a broken config.toml (three runs) runs the probes
// of its last known good policy, is never ok or healthy-looking on /health,
// says why as file:line:col on /health, /metrics and in talon status, and
// pages once, through the Telegram wire, saying why; a restart with the same
// broken file does not page again.
func TestBrokenFileAtStartRunsTheLastGoodPolicy(t *testing.T) {
	for _, c := range []struct {
		name  string
		file  string // relative to the test's directory
		body  string
		where string // the start of the error as shown
	}{
		{"services file", "services.toml", "[script.svc]\ncommand = \"true\"\ncritcal = true\n", "services.toml:3:1: unknown key \"critcal\""},
		{"policy", "policy/talon.star", "probe.exec(\"a\", [\"true\"], critical = True\n", "talon.star:2:1: got end of file, want ')'"},
		{"config.toml", "config.toml", "", "config.toml:"},
		{"config.toml that is not TOML", "config.toml", "syntax", "config.toml:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			testFallback(t, c.file, c.body, c.where)
		})
	}
}

func testFallback(t *testing.T, file, broken, where string) {
	dir := t.TempDir()
	tg := &telegram{}
	tgSrv := httptest.NewServer(tg)
	defer tgSrv.Close()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`probe.exec("a", ["true"], critical = True)
services()
ladder(rung("sos", do = notify.telegram(chat_id = "42", token = secret("tg", env = "TG_TOKEN"), base_url = %q), after = "1h"))
`, tgSrv.URL), 0o644)
	writeFile(t, filepath.Join(dir, "services.toml"), "[script.svc]\ncommand = \"true\"\ncritical = true\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	env := "TG_TOKEN=123456:fake-token"

	d := startDaemon(t, cfg, policy, bind, stateDir, env)
	good := d.waitFor("the good policy's first cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.OK && len(s.Probes) == 2 })
	d.stop()

	switch broken {
	case "": // config.toml: a typo in a key, the daemon's own settings intact
		b, _ := os.ReadFile(cfg)
		broken = strings.Replace(string(b), "check_interval_secs", "check_intervall_secs", 1)
	case "syntax": // config.toml cut short in the middle of a value
		b, _ := os.ReadFile(cfg)
		broken = string(b) + "[escalation]\nsos_recipient = \""
	}
	writeFile(t, filepath.Join(dir, file), broken, 0o644)

	d = startDaemon(t, cfg, policy, bind, stateDir, env)
	// Never healthy-looking, from the first answer to the page.
	var s engine.Snapshot
	waitUntil(t, "the fallback page", 20*time.Second, func() bool {
		var err error
		s, err = d.health()
		if err == nil && (s.OK || s.State == engine.Healthy) {
			t.Fatalf("a daemon running its fallback looks healthy: %+v", s)
		}
		return len(tg.texts()) == 1
	})
	if s.Fallback == nil || s.Fallback.Source != engine.FallbackLastGood || s.Fallback.Hash != good.PolicyHash || s.PolicyHash != good.PolicyHash ||
		s.PolicyError == nil || !strings.Contains(*s.PolicyError, where) {
		t.Fatalf("/health does not say it runs the last good policy (%s) because of %q: %+v", good.PolicyHash, where, s)
	}
	s = d.waitFor("the last good policy's probes to run", 10*time.Second, func(s engine.Snapshot) bool { return len(s.Probes) == 2 })
	if names := probeNames(s); strings.Join(names, ",") != "a,script:svc" {
		t.Fatalf("probes %v, want those of the last good policy", names)
	}
	page := tg.texts()[0]
	if !strings.Contains(page, "running the last good policy, loaded cleanly on ") || !strings.Contains(page, where) {
		t.Fatalf("the page does not say why: %q", page)
	}
	resp, err := http.Get("http://" + bind + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`talon_policy_fallback{source="last_good"} 1`, "talon_policy_error 1"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	out, err := talonCmd(t, d, "status", "--json")
	if err != nil {
		t.Fatalf("talon status: %v\n%s", err, out)
	}
	var st struct {
		Health *engine.Snapshot `json:"health"`
	}
	if i := strings.Index(out, "{"); i < 0 || json.Unmarshal([]byte(out[i:]), &st) != nil || st.Health == nil || st.Health.Fallback == nil {
		t.Fatalf("talon status does not show the fallback:\n%s", out)
	}

	// The same broken file at the next start: the page is not sent again.
	d.stop()
	d = startDaemon(t, cfg, policy, bind, stateDir, env)
	waitUntil(t, "the daemon to know it paged already", 20*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "the page about the fallback went out at an earlier start; not sending it again")
	})
	if n := len(tg.texts()); n != 1 {
		t.Fatalf("%d pages after a restart with the same broken file", n)
	}
	if s, _ := d.health(); s.OK || s.Fallback == nil {
		t.Fatalf("after the restart: %+v", s)
	}
}
