package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// runTalon runs the talon binary and returns its combined output.
func runTalon(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(talonBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("talon %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// journalWait waits until the daemon's journal holds a record for which
// cond is true, and returns the records.
func journalWait(t *testing.T, stateDir, what string, limit time.Duration, cond func([]engine.Record) bool) []engine.Record {
	t.Helper()
	var recs []engine.Record
	waitUntil(t, what, limit, func() bool {
		recs = readJournal(t, stateDir)
		return cond(recs)
	})
	return recs
}

// events lists the journaled events of type typ (and rung, when set).
func journalEvents(recs []engine.Record, typ, rung string) []engine.Event {
	var out []engine.Event
	for _, r := range recs {
		if e := r.Event; e != nil && e.Type == typ && (rung == "" || e.Rung == rung) {
			out = append(out, *e)
		}
	}
	return out
}

// Issue 10's acceptance: during a scripted outage, `talon pause --for`
// stops every rung and page until it expires, then the ladder resumes;
// `talon ack` stops the repeat page; both survive a restart and show on
// /health; replay of the journal shows the pause.
func TestPauseAndAckDuringAnOutage(t *testing.T) {
	dir := t.TempDir()
	var healthy atomic.Bool
	healthy.Store(true)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if healthy.Load() {
			io.WriteString(w, "ok")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer api.Close()
	tg := &telegram{}
	tgSrv := httptest.NewServer(tg)
	defer tgSrv.Close()
	heal := filepath.Join(dir, "heal.sh")
	writeFile(t, heal, "#!/bin/sh\necho heal >> "+dir+"/heal.log\nexit 1\n", 0o755)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.http("api", %q, critical = True, after = 1, timeout = "1s")
ladder(
    rung("heal", do = exec.cmd([%q]), timeout = "10s", cooldown = "1h", settle = "1s"),
    rung("sos", do = notify.telegram(chat_id = "42", token = "123:abc", base_url = %q),
         after = "2s", repeat = "2s", state = "sos"),
)
`, api.URL, heal, tgSrv.URL), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("healthy", 10*time.Second, func(s engine.Snapshot) bool { return s.OK })

	// The operator pauses everything for 8 s, then the outage begins.
	out := runTalon(t, "pause", "--for", "8s", "--reason", "maintenance", "--config", cfg, "--format", "table")
	if !strings.HasPrefix(out, "paused everything until ") || !strings.Contains(out, "(maintenance; by ") || !strings.HasSuffix(out, "); probes keep running and recording\n") {
		t.Fatalf("talon pause: %q", out)
	}
	s := d.waitFor("the pause on /health", 5*time.Second, func(s engine.Snapshot) bool { return len(s.Paused) == 1 })
	until := s.Paused[0].Until
	// Who asked is recorded, and a daemon that watches nothing is not ok.
	if s.Paused[0].Reason != "maintenance" || until.IsZero() || !strings.Contains(s.Paused[0].Text, "everything until") ||
		!strings.Contains(s.Paused[0].By, fmt.Sprintf("(uid %d)", os.Getuid())) || s.OK {
		t.Fatalf("/health paused: %+v", s.Paused)
	}
	healthy.Store(false)
	d.waitFor("the incident", 10*time.Second, func(s engine.Snapshot) bool { return s.Incident != nil })

	// kill -9 and start again while paused: the pause is kept.
	d.kill9()
	d = startDaemon(t, cfg, policy, bind, stateDir)
	s = d.waitFor("the pause after a restart", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })
	if len(s.Paused) != 1 || !s.Paused[0].Until.Equal(until) {
		t.Fatalf("the pause did not survive a restart: %+v", s.Paused)
	}
	// The ladder resumes when the pause expires: the heal runs, the page
	// goes out, neither before.
	recs := journalWait(t, stateDir, "the page after the pause", 20*time.Second, func(recs []engine.Record) bool {
		return len(journalEvents(recs, "rung_start", "sos")) > 0
	})
	for _, rung := range []string{"heal", "sos"} {
		starts := journalEvents(recs, "rung_start", rung)
		if len(starts) == 0 || starts[0].At.Before(until) {
			t.Fatalf("%s started %+v, during the pause (until %s)", rung, starts, until)
		}
	}
	if exp := journalEvents(recs, "pause_expired", ""); len(exp) != 1 || !exp[0].At.Equal(until) {
		t.Fatalf("pause_expired: %+v", exp)
	}
	waitUntil(t, "the page", 10*time.Second, func() bool { return len(tg.texts()) >= 1 })

	// talon ack: the repeat page (every 2 s) stops.
	out = runTalon(t, "ack", "--reason", "on it", "--config", cfg, "--format", "table")
	s = d.waitFor("the ack on /health", 5*time.Second, func(s engine.Snapshot) bool { return s.Incident != nil && s.Incident.Acked != nil })
	if !strings.HasPrefix(out, "acknowledged incident "+s.Incident.ID) || s.Incident.Acked.Reason != "on it" {
		t.Fatalf("talon ack: %q; /health %+v", out, s.Incident.Acked)
	}
	acked := s.Incident.Acked.At
	cycles := func(recs []engine.Record, after time.Time) int {
		n := 0
		for _, r := range recs {
			if r.Type == "cycle" && r.Time.After(after) {
				n++
			}
		}
		return n
	}
	journalWait(t, stateDir, "5 cycles after the ack", 20*time.Second, func(recs []engine.Record) bool { return cycles(recs, acked) >= 5 })
	d.stop()
	d = startDaemon(t, cfg, policy, bind, stateDir)
	s = d.waitFor("a cycle after the restart", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(acked) })
	if s.Incident == nil || s.Incident.Acked == nil || !s.Incident.Acked.At.Equal(acked) {
		t.Fatalf("the ack did not survive a restart: %+v", s.Incident)
	}
	recs = journalWait(t, stateDir, "5 more cycles", 20*time.Second, func(recs []engine.Record) bool { return cycles(recs, acked) >= 10 })
	for _, e := range journalEvents(recs, "rung_start", "") {
		if e.At.After(acked) {
			t.Fatalf("%s started at %s, after the ack at %s", e.Rung, e.At, acked)
		}
	}
	// The status command shows it too.
	if out := runTalon(t, "status", "--format", "table", "--config", cfg); !strings.Contains(out, "acknowledged at ") || !strings.Contains(out, ": on it") {
		t.Fatalf("talon status:\n%s", out)
	}
	pages := len(tg.texts())
	healthy.Store(true)
	d.waitFor("recovery", 10*time.Second, func(s engine.Snapshot) bool { return s.OK })
	waitUntil(t, "the resolved message", 10*time.Second, func() bool { return len(tg.texts()) == pages+1 })
	d.stop()

	// Replay of that journal is faithful and shows the pause and the ack.
	assertReplayMatches(t, cfg, policy, stateDir)
	rep, err := exec.Command(talonBin, "replay", stateDir, "--config", cfg, "--policy", policy, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var r engine.ReplayResult
	if err := json.Unmarshal(rep, &r); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, st := range r.Timeline {
		kinds[st.Kind]++
	}
	if kinds["pause"] != 1 || kinds["pause_expired"] != 1 || kinds["ack"] != 1 {
		t.Fatalf("replay timeline: %v", kinds)
	}
	text := runTalon(t, "replay", stateDir, "--config", cfg, "--policy", policy, "--format", "table")
	if !strings.Contains(text, "paused: everything until ") || !strings.Contains(text, "pause over: ") || !strings.Contains(text, "acknowledged: on it") {
		t.Fatalf("talon replay:\n%s", text)
	}
}

// The health port is taken when the daemon starts (another program, or the
// previous daemon not gone yet): the daemon says so, watches on, tries
// again, and once the port is free answers /health and talon pause.
func TestBusyHealthPortAtStart(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"ok\", [\"true\"])\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	bind := squatter.Addr().String()
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := launchDaemon(t, []string{talonBin, "run", "--config", cfg, "--policy", policy}, bind, stateDir)
	waitUntil(t, "the daemon to say its endpoint is not listening", 10*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "health endpoint not listening")
	})
	if !strings.Contains(d.stderr.String(), "address already in use") {
		t.Fatalf("the log does not say why:\n%s", d.stderr.String())
	}
	// It watches meanwhile: cycles are journaled.
	journalWait(t, stateDir, "a cycle without the endpoint", 10*time.Second, func(recs []engine.Record) bool {
		for _, r := range recs {
			if r.Type == "cycle" {
				return true
			}
		}
		return false
	})
	squatter.Close()
	d.waitFor("/health once the port is free", 20*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })
	out := runTalon(t, "pause", "--for", "1m", "--config", cfg, "--format", "table")
	if !strings.HasPrefix(out, "paused everything until ") {
		t.Fatalf("talon pause: %q", out)
	}
}

// talon resume records who asked, as talon pause does: in the journal's
// resume record, the daemon's log line, talon status and talon events.
func TestResumeRecordsWhoAsked(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), "probe.exec(\"ok\", [\"true\"])\n", 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("a cycle", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.Unix() > 0 })
	// Who runs the commands: this user, without a sudo to name.
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	who := fmt.Sprintf("%s (uid %d)", u.Username, os.Getuid())
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(talonBin, append(args, "--config", cfg, "--format", "table")...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "SUDO_USER=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("talon %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("pause", "--for", "10m", "--reason", "maintenance")
	if out := run("resume"); !strings.HasPrefix(out, "resumed everything until ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("talon resume: %q", out)
	}
	d.waitFor("no pause on /health", 5*time.Second, func(s engine.Snapshot) bool { return len(s.Paused) == 0 })

	var resumes []engine.Control
	for _, r := range readJournal(t, stateDir) {
		if r.Type == "resume" && r.Control != nil {
			resumes = append(resumes, *r.Control)
		}
	}
	if len(resumes) != 1 || resumes[0].By != who {
		t.Fatalf("the journal's resume records: %+v; want one by %q", resumes, who)
	}
	log, err := os.ReadFile(filepath.Join(stateDir, "talon.log"))
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for _, line := range strings.Split(string(log), "\n") {
		var rec struct {
			Msg   string `json:"msg"`
			Route string `json:"route"`
			By    string `json:"by"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "operator command" && rec.Route == "/resume" {
			logged = append(logged, rec.By)
		}
	}
	if len(logged) != 1 || logged[0] != who {
		t.Fatalf("the log's resume lines say by %q; want %q\n%s", logged, who, log)
	}
	// talon status shows it where it shows the pauses, for a day.
	out := run("status")
	if !regexp.MustCompile(`(?m)^resumed (just now|.+ ago) by ` + regexp.QuoteMeta(who) + `: everything until \S+ \(maintenance; by ` + regexp.QuoteMeta(who) + `\)$`).MatchString(out) {
		t.Fatalf("talon status:\n%s", out)
	}
	js, err := exec.Command(talonBin, "status", "--json", "--config", cfg).Output()
	var st struct {
		LastResume *struct {
			By     string   `json:"by"`
			Lifted []string `json:"lifted"`
		} `json:"last_resume"`
	}
	if err != nil || json.Unmarshal(js, &st) != nil || st.LastResume == nil || st.LastResume.By != who || len(st.LastResume.Lifted) != 1 {
		t.Fatalf("talon status --json: %v\n%s", err, js)
	}
	out = run("events")
	if !strings.Contains(out, "  paused: everything until ") ||
		!regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d +resumed by `+regexp.QuoteMeta(who)+`: everything until \S+ \(maintenance; by `+regexp.QuoteMeta(who)+`\)$`).MatchString(out) {
		t.Fatalf("talon events:\n%s", out)
	}
}
