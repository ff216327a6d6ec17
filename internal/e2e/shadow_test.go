package e2e

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// shadowPolicy fails at once and has a heal and a Telegram page.
func shadowPolicy(t *testing.T, dir, tgURL string) (policy, marker string) {
	marker = filepath.Join(dir, "healed")
	heal := filepath.Join(dir, "heal.sh")
	writeFile(t, heal, "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	policy = filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.exec("down", ["false"], critical = True, after = 1)
state.thresholds(critical_after = "1s")
ladder(
    rung("heal", do = exec.cmd([%q]), cooldown = "1h"),
    rung("sos", do = notify.telegram(chat_id = "42", token = secret("tg", env = "TG_TOKEN"), base_url = %q), state = "sos"),
)
`, heal, tgURL), 0o644)
	return policy, marker
}

func TestDryRunRecordsInsteadOfActing(t *testing.T) {
	dir := t.TempDir()
	tg := &telegram{}
	srv := httptest.NewServer(tg)
	defer srv.Close()
	policy, marker := shadowPolicy(t, dir, srv.URL)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")

	// A shadow has no /health unless --bind names one (the live daemon owns [health] bind).
	cmd := exec.Command(talonBin, "run", "--dry-run", "--bind", bind, "--config", cfg, "--policy", policy)
	cmd.Env = append(os.Environ(), "TG_TOKEN=123:abc")
	d := &daemon{t: t, cmd: cmd, bind: bind, stateDir: stateDir, stderr: &lockedBuf{}, done: make(chan error, 1)}
	cmd.Stderr, cmd.Stdout = d.stderr, d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	defer d.stop()
	s := d.waitFor("the shadow page", 20*time.Second, func(s engine.Snapshot) bool { return s.State == engine.SOS })
	if !s.DryRun {
		t.Fatal("/health does not say dry_run")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the heal script ran under --dry-run")
	}
	if n := len(tg.texts()); n != 0 {
		t.Fatalf("telegram received %d messages under --dry-run", n)
	}
	// Shadow mode keeps its own state: the live state dir has no state.json
	// whose cooldowns and "sent" pages would silence the real daemon.
	if _, err := os.Stat(filepath.Join(stateDir, "state.json")); !os.IsNotExist(err) {
		t.Fatal("--dry-run wrote the live state.json")
	}
	var intents []string
	for _, r := range readJournal(t, filepath.Join(stateDir, "dry-run")) {
		if r.Type == "intent" {
			if r.Policy == "" {
				t.Fatalf("intent without the policy hash: %+v", r)
			}
			intents = append(intents, r.Intent)
		}
	}
	want := []string{"exec: " + filepath.Join(dir, "heal.sh"), "secret: resolve secret tg", "http: telegram sendMessage chat 42"}
	if strings.Join(intents, "|") != strings.Join(want, "|") {
		t.Fatalf("intents %q\nwant    %q", intents, want)
	}
	d.stop()
	assertReplayMatches(t, cfg, policy, filepath.Join(stateDir, "dry-run"), "TG_TOKEN=123:abc")
}

func TestDrillPagesThroughTheRealChannelOnly(t *testing.T) {
	dir := t.TempDir()
	tg := &telegram{}
	srv := httptest.NewServer(tg)
	defer srv.Close()
	policy, marker := shadowPolicy(t, dir, srv.URL)
	cfg := writeConfig(t, dir, "127.0.0.1:1", filepath.Join(dir, "state"), "")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(talonBin, append(args, "--config", cfg, "--policy", policy)...)
		cmd.Env = append(os.Environ(), "TG_TOKEN=123:abc")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("drill", "sos")
	if err != nil || !strings.Contains(out, "telegram:42\tdelivered") {
		t.Fatalf("drill: %v\n%s", err, out)
	}
	if got := tg.texts(); len(got) != 1 || !strings.Contains(got[0], "DRILL") {
		t.Fatalf("telegram got %q", got)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("a drill ran the heal")
	}
	if out, err := run("drill", "heal"); err == nil || !strings.Contains(out, `no rung "heal" with a notify channel`) {
		t.Fatalf("drill of a rung without channels: %v %s", err, out)
	}
	// One broken channel fails the drill even when another took the page.
	writeFile(t, filepath.Join(policy, "talon.star"), `
probe.exec("ok", ["true"])
ladder(rung("sos", do = [notify.log(), notify.webhook("http://127.0.0.3:1/hook")]))
`, 0o644)
	out, err = run("drill")
	if err == nil || !strings.Contains(out, "log\tdelivered") || !strings.Contains(out, "FAILED") || !strings.Contains(out, "1 of 2 channels failed") {
		t.Fatalf("drill with a broken channel: %v\n%s", err, out)
	}
}
