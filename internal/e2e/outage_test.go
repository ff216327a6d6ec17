package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// telegram is a loopback server speaking the Bot API's sendMessage wire format.
type telegram struct {
	mu    sync.Mutex
	paths []string
	msgs  []map[string]any
}

func (tg *telegram) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/sendMessage") || json.Unmarshal(body, &m) != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"ok":false,"error_code":400,"description":"Bad Request: message text is empty"}`)
		return
	}
	tg.mu.Lock()
	tg.paths = append(tg.paths, r.URL.Path)
	tg.msgs = append(tg.msgs, m)
	n := len(tg.msgs)
	tg.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"ok":true,"result":{"message_id":%d,"from":{"id":1,"is_bot":true,"first_name":"talon"},"chat":{"id":42,"type":"private"},"date":%d,"text":%q}}`,
		n, time.Now().Unix(), m["text"])
}

func (tg *telegram) texts() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var out []string
	for _, m := range tg.msgs {
		out = append(out, fmt.Sprint(m["text"]))
	}
	return out
}

func lines(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// scanCmdlines watches every process's arguments for secret until stop is closed.
func scanCmdlines(secret string, stop <-chan struct{}) <-chan string {
	found := make(chan string, 1)
	go func() {
		defer close(found)
		for {
			select {
			case <-stop:
				return
			default:
			}
			procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range procs {
				if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), secret) {
					found <- p + ": " + strings.ReplaceAll(string(b), "\x00", " ")
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return found
}

func TestScriptedOutageWalksTheLadder(t *testing.T) {
	dir := t.TempDir()
	var healthy atomic.Bool
	healthy.Store(true)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if healthy.Load() {
			io.WriteString(w, "ok")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "overloaded")
	}))
	defer api.Close()
	tg := &telegram{}
	tgSrv := httptest.NewServer(tg)
	defer tgSrv.Close()

	const token = "123456:SECRET-token-never-in-argv"
	heal := filepath.Join(dir, "heal.sh")
	writeFile(t, heal, "#!/bin/sh\necho heal >> "+dir+"/heal.log\necho 'heal: restarted nothing'\nexit 1\n", 0o755)
	agent := filepath.Join(dir, "agent.sh")
	writeFile(t, agent, "#!/bin/sh\ncat > "+dir+"/prompt.txt\necho agent >> "+dir+"/agent.log\necho 'agent: looked around'\n", 0o755)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.http("api", %q, critical = True, timeout = "1s")
state.thresholds(failed_after = 2, critical_after = "4s", recover_after = 1)

def recovery_prompt(incident):
    return agent.prompt(incident)

ladder(
    rung("heal", do = exec.cmd([%q]), timeout = "10s", cooldown = "1h"),
    rung("agent", do = agent.run([%q], prompt = recovery_prompt), state = "investigating", timeout = "10s", cooldown = "1h"),
    rung("sos", do = notify.telegram(chat_id = "42", token = secret("tg_token", env = "TG_TOKEN"), base_url = %q),
         after = "4s", repeat = "4h", state = "sos"),
)
`, api.URL, heal, agent, tgSrv.URL), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")

	d := startDaemon(t, cfg, policy, bind, stateDir, "TG_TOKEN="+token)
	d.waitFor("healthy", 10*time.Second, func(s engine.Snapshot) bool { return s.OK && s.ProbeCount == 1 })
	follow := followEvents(t, "--config", cfg)

	stopScan := make(chan struct{})
	leak := scanCmdlines(token, stopScan)
	healthy.Store(false)
	s := d.waitFor("sos", 40*time.Second, func(s engine.Snapshot) bool { return s.State == engine.SOS })
	incident := s.Incident.ID
	if got := tg.texts(); len(got) != 1 || !strings.Contains(got[0], "api") {
		t.Fatalf("telegram messages %q", got)
	}
	tg.mu.Lock()
	chat, path := tg.msgs[0]["chat_id"], tg.paths[0]
	tg.mu.Unlock()
	if chat != "42" || !strings.HasPrefix(path, "/bot"+token+"/") {
		t.Fatalf("wire format: chat_id %v path %q", chat, path)
	}
	if lines(t, dir+"/heal.log") != 1 || lines(t, dir+"/agent.log") != 1 {
		t.Fatalf("heal ran %d times, agent %d", lines(t, dir+"/heal.log"), lines(t, dir+"/agent.log"))
	}
	prompt, _ := os.ReadFile(dir + "/prompt.txt")
	for _, want := range []string{"api", "503", "heal: restarted nothing"} {
		if !strings.Contains(string(prompt), want) {
			t.Fatalf("agent prompt lacks %q:\n%s", want, prompt)
		}
	}

	// kill -9 in the middle of the incident, then start again: the incident
	// is remembered, nothing is re-run or re-paged inside its cooldown.
	d.kill9()
	d = startDaemon(t, cfg, policy, bind, stateDir, "TG_TOKEN="+token)
	s = d.waitFor("the resumed incident", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })
	time.Sleep(3 * time.Second)
	s, _ = d.health()
	if s.State != engine.SOS || s.Incident == nil || s.Incident.ID != incident {
		t.Fatalf("after kill -9 the daemon forgot the incident: %+v", s)
	}
	if n := len(tg.texts()); n != 1 || lines(t, dir+"/heal.log") != 1 || lines(t, dir+"/agent.log") != 1 {
		t.Fatalf("after restart: %d pages, %d heals, %d agents", n, lines(t, dir+"/heal.log"), lines(t, dir+"/agent.log"))
	}

	healthy.Store(true)
	d.waitFor("recovery", 10*time.Second, func(s engine.Snapshot) bool { return s.OK })
	waitUntil(t, "the resolved message", 10*time.Second, func() bool { return len(tg.texts()) == 2 })
	if got := tg.texts()[1]; !strings.Contains(got, "resolved") || !strings.Contains(got, incident) {
		t.Fatalf("resolved message %q", got)
	}
	// The ladder's work shows in /metrics (this daemon ran no rung itself
	// after the restart; it sent the resolved message).
	var metrics []byte
	scrape := func() bool {
		resp, err := http.Get("http://" + bind + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		metrics, _ = io.ReadAll(resp.Body)
		return strings.Contains(string(metrics), "talon_pages_total 1\n")
	}
	deadline := time.Now().Add(3 * time.Second)
	for !scrape() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"talon_pages_total 1\n", `talon_state{state="healthy"} 1`, `talon_probe_up{probe="api"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	d.stop()
	close(stopScan)
	if p, ok := <-leak; ok {
		t.Fatalf("the token appeared in a process's arguments: %s", p)
	}

	// talon events tells the night as a story, afterwards and as it happened.
	story, err := exec.Command(talonBin, "events", "--since", "1h", "--format", "table", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("talon events: %v\n%s", err, story)
	}
	assertStory(t, string(story), incident)
	assertStory(t, follow.stop(t), incident)

	// The journal shows each step once.
	count := map[string]int{}
	for _, r := range readJournal(t, stateDir) {
		if e := r.Event; e != nil {
			switch e.Type {
			case "transition":
				count[string(e.From)+">"+string(e.To)]++
			case "rung_start":
				count["run:"+e.Rung]++
			}
		}
		if r.Policy == "" {
			t.Fatalf("journal record without a policy hash: %+v", r)
		}
	}
	for _, step := range []string{"healthy>degraded", "degraded>failed", "run:heal", "failed>investigating", "run:agent", "investigating>critical", "run:sos", "critical>sos", "sos>healthy"} {
		if count[step] != 1 {
			t.Errorf("journal: %s happened %d times, want once (all: %v)", step, count[step], count)
		}
	}
	// No secret anywhere on disk or in the output.
	for _, f := range []string{"talon.log", "journal.jsonl", "state.json"} {
		b, err := os.ReadFile(filepath.Join(stateDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), token) || strings.Contains(string(b), "SECRET-token") {
			t.Fatalf("%s contains the token", f)
		}
	}
	if strings.Contains(d.stderr.String(), "SECRET-token") {
		t.Fatal("daemon output contains the token")
	}
	assertReplayMatches(t, cfg, policy, stateDir, "TG_TOKEN="+token)
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
