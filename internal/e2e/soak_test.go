package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
	"github.com/talon-dev/talon/internal/testpeer"
)

// soakRun says how long a soak test goes on. Under `go test` (and so
// `make test`) it runs a bounded number of rounds; `make soak` sets
// TALON_SOAK to a duration, and the test then runs until that has passed
// and at least min rounds are done. The rounds' random choices come from a
// seed that a failure prints; TALON_SOAK_SEED=N makes them again.
type soakRun struct {
	bounded, min int
	until        time.Time
	seed         uint64
	rnd          *rand.Rand
}

func newSoakRun(t *testing.T, bounded, min int) *soakRun {
	t.Helper()
	s := &soakRun{bounded: bounded, min: min, seed: uint64(time.Now().UnixNano())}
	if v := os.Getenv("TALON_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TALON_SOAK=%q: %v", v, err)
		}
		s.until = time.Now().Add(d)
	}
	if v := os.Getenv("TALON_SOAK_SEED"); v != "" {
		if _, err := fmt.Sscan(v, &s.seed); err != nil {
			t.Fatalf("TALON_SOAK_SEED=%q: %v", v, err)
		}
	}
	s.rnd = rand.New(rand.NewPCG(s.seed, s.seed^0x9e3779b97f4a7c15))
	name := t.Name()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: TALON_SOAK_SEED=%d go test -count=1 -run '^%s$' -v ./internal/e2e/", s.seed, s.seed, name)
		}
	})
	return s
}

// long says whether this is `make soak`.
func (s *soakRun) long() bool { return !s.until.IsZero() }

// more says whether to start another round after done rounds.
func (s *soakRun) more(done int) bool {
	if !s.long() {
		return done < s.bounded
	}
	return done < s.min || time.Now().Before(s.until)
}

// between is a random duration in [lo, hi].
func (s *soakRun) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rnd.Int64N(int64(hi-lo)+1))
}

// soakProc is one `talon run` of a soak test: killed and started again many
// times, so it registers no cleanup of its own (the test kills the last one).
type soakProc struct {
	cmd  *exec.Cmd
	out  *lockedBuf
	done chan error
}

func spawnTalon(t *testing.T, bind string, args ...string) *soakProc {
	t.Helper()
	p := &soakProc{cmd: exec.Command(talonBin, append([]string{"run"}, args...)...), out: &lockedBuf{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := soakHealth(bind); err == nil {
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("talon run exited (%v) before answering /health:\n%s", err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill9()
			t.Fatalf("talon run did not answer /health within 20 s:\n%s", p.out.String())
		}
	}
}

// kill9 kills the daemon the hard way and waits for it (not its children:
// they are what a real kill -9 leaves behind too).
func (p *soakProc) kill9() {
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	err := <-p.done
	p.done <- err
}

// stop sends SIGTERM and waits for the exit.
func (p *soakProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("talon exited with %v after SIGTERM:\n%s", err, p.out.String())
		}
	case <-time.After(15 * time.Second):
		p.kill9()
		t.Fatalf("talon did not stop within 15 s of SIGTERM:\n%s", p.out.String())
	}
}

// soakHealth asks /health on a connection of its own that it closes, so
// the daemon's descriptors count no idle client of the test.
func soakHealth(bind string) (engine.Snapshot, error) {
	var s engine.Snapshot
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + bind + "/health")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func soakWait(t *testing.T, p *soakProc, bind, what string, limit time.Duration, cond func(engine.Snapshot) bool) engine.Snapshot {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last engine.Snapshot
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := soakHealth(bind)
		if err == nil && cond(s) {
			return s
		}
		last, lastErr = s, err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s; last health %+v err %v\ndaemon output:\n%s", limit, what, last, lastErr, p.out.String())
	return last
}

// readJournalStrict reads the journal with the journal reader (every
// generation, strictly): a line it cannot read fails the test. Warnings
// (a partial last line) are returned.
func readJournalStrict(t *testing.T, stateDir string) ([]engine.Record, []journal.Warning) {
	t.Helper()
	var recs []engine.Record
	warns, err := journal.Read(filepath.Join(stateDir, "journal.jsonl"), func(r engine.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("the journal does not read back: %v", err)
	}
	return recs, warns
}

// pageLog is a fake paging channel: an HTTP server that records every
// message notify.webhook posts to it as it arrives, before it answers.
type pageLog struct {
	rnd   func() (delay time.Duration, fail bool, kill int)
	mu    chan struct{}
	pages []page
	// kill is where the test kills the daemon: a message on it asks for
	// a kill -9 now (a page just arrived, or was just answered).
	kill chan struct{}
}

type page struct {
	Channel, Kind, Incident string
	At                      time.Time
}

func newPageLog(rnd func() (time.Duration, bool, int)) *pageLog {
	return &pageLog{rnd: rnd, mu: make(chan struct{}, 1), kill: make(chan struct{}, 1)}
}

func (l *pageLog) askKill() {
	select {
	case l.kill <- struct{}{}:
	default:
	}
}

func (l *pageLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var m struct{ Kind, Incident string }
	if err != nil || json.Unmarshal(body, &m) != nil {
		w.WriteHeader(http.StatusBadRequest) // cut off mid-body: never reached anyone
		return
	}
	l.mu <- struct{}{}
	l.pages = append(l.pages, page{Channel: "webhook:" + r.Host, Kind: m.Kind, Incident: m.Incident, At: time.Now()})
	delay, fail, kill := l.rnd()
	<-l.mu
	if kill == 1 { // the page is out, its answer is not
		l.askKill()
	}
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	if fail {
		w.WriteHeader(http.StatusBadGateway)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if kill == 2 { // the answer is on its way: the crash window of docs/journal.md
		w.(http.Flusher).Flush()
		l.askKill()
	}
}

func (l *pageLog) all() []page {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return append([]page(nil), l.pages...)
}

// TestSoakKill9DuringIncidents runs the real daemon through scripted
// incidents (two probes that fail and recover as the test flips files, a
// heal rung, a page rung to two webhook channels that answer slowly and
// sometimes fail) and kill -9s it at random moments, then starts it again.
// After every kill:
//
//   - state.json is valid: engine.LoadState reads it (or there is none yet);
//   - the journal reads back with the journal reader;
//   - the next process starts from that very state: the incident it held
//     is the one the `start` record carries (an open incident is never
//     forgotten), and the temp files of a save the kill cut short are gone.
//
// At the end (every probe up again) and throughout:
//
//   - no channel receives a page (or a "resolved") for an incident after its
//     acceptance of that message is on record: the only repeats are those
//     the documented crash windows allow (the channel's answer not yet on
//     record when the kill came) and retries of a channel that failed;
//   - every incident that was persisted or paged is resolved, and every
//     channel whose page is on record hears "resolved";
//   - the heal rung never starts twice inside its cooldown without a kill
//     between the two starts.
func TestSoakKill9DuringIncidents(t *testing.T) {
	run := newSoakRun(t, 6, 200)
	dir := t.TempDir()
	// The channels' choices have a generator of their own: they are made
	// on the server's goroutines (one at a time, under the log's lock).
	chRnd := rand.New(rand.NewPCG(run.seed+1, run.seed))
	pages := newPageLog(func() (time.Duration, bool, int) {
		return time.Duration(chRnd.Int64N(int64(200 * time.Millisecond))), chRnd.IntN(8) == 0, chRnd.IntN(4) % 3
	})
	ch1, ch2 := newLoopback(t, pages), newLoopback(t, pages)
	heal := filepath.Join(dir, "heal.sh")
	writeFile(t, heal, "#!/bin/sh\necho heal >> "+dir+"/heal.log\nexit 1\n", 0o755)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.exec("a", ["test", "!", "-e", %[1]q], critical = True, every = "200ms", timeout = "2s")
probe.exec("b", ["test", "!", "-e", %[2]q], critical = True, every = "200ms", timeout = "2s")
state.thresholds(failed_after = 2, critical_after = "1s", recover_after = 1, flap_start = 0)
ladder(
    rung("heal", do = exec.cmd([%[3]q]), timeout = "5s", cooldown = "3s", settle = "1s"),
    rung("sos", do = [notify.webhook(%[4]q, timeout = "5s"), notify.webhook(%[5]q, timeout = "5s")],
         after = "1s", repeat = "1h", state = "sos"),
)
`, filepath.Join(dir, "down-a"), filepath.Join(dir, "down-b"), heal, ch1+"/page", ch2+"/page"), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	stateFile := filepath.Join(stateDir, "state.json")
	args := []string{"--config", cfg, "--policy", policy}

	setDown := func(name string, down bool) {
		path := filepath.Join(dir, "down-"+name)
		if down {
			writeFile(t, path, "", 0o644)
		} else if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	var p *soakProc
	t.Cleanup(func() {
		if p != nil {
			p.kill9()
		}
	})
	var kills []time.Time
	persisted := map[string]bool{} // incidents seen open in state.json after a kill
	downA, downB := false, false
	var prevState *engine.State
	rounds, killsAtPages, tempsLeft := 0, 0, 0
	for ; run.more(rounds); rounds++ {
		// Temp files of a save the kill interrupted are removed at start,
		// before the `start` record is written (/health may answer sooner).
		left, _ := filepath.Glob(filepath.Join(stateDir, ".state.json.tmp-*"))
		starts := countStarts(t, stateDir)
		p = spawnTalon(t, bind, args...)
		waitUntil(t, "the start record", 20*time.Second, func() bool { return countStarts(t, stateDir) > starts })
		for _, f := range left {
			if _, err := os.Lstat(f); err == nil {
				t.Fatalf("round %d: %s, left by the kill, is still there after the start", rounds, filepath.Base(f))
			}
		}
		tempsLeft += len(left)
		if run.rnd.IntN(3) == 0 || rounds == 0 {
			// Mostly outages (both, or one), sometimes all well.
			switch run.rnd.IntN(5) {
			case 0:
				downA, downB = false, false
			case 1, 2:
				downA, downB = true, true
			case 3:
				downA, downB = true, false
			default:
				downA, downB = false, true
			}
			setDown("a", downA)
			setDown("b", downB)
		}
		select {
		case <-pages.kill:
		default:
		}
		// A random moment, or the moment a channel gets a page or answers.
		hold := run.between(100*time.Millisecond, 3*time.Second)
		if run.rnd.IntN(4) == 0 {
			hold = run.between(3*time.Second, 8*time.Second) // long enough to page
		}
		select {
		case <-time.After(hold):
		case <-pages.kill:
			killsAtPages++
		}
		p.kill9()
		kills = append(kills, time.Now())

		st, err := engine.LoadState(stateFile)
		if err != nil && !errors.Is(err, engine.ErrNoState) {
			t.Fatalf("round %d: after kill -9 the state file does not load: %v", rounds, err)
		}
		recs, warns := readJournalStrict(t, stateDir)
		for _, w := range warns {
			t.Logf("round %d: %s", rounds, w)
		}
		if st != nil && st.Incident != nil {
			persisted[st.Incident.ID] = true
		}
		if rounds > 0 {
			// The process before this one started from the state the
			// one before it left.
			assertStartedFrom(t, recs, prevState, rounds)
		}
		prevState = st
	}

	// Everything recovers: every incident resolves, every channel paged
	// hears "resolved".
	setDown("a", false)
	setDown("b", false)
	starts := countStarts(t, stateDir)
	p = spawnTalon(t, bind, args...)
	waitUntil(t, "the start record", 20*time.Second, func() bool { return countStarts(t, stateDir) > starts })
	recs, _ := readJournalStrict(t, stateDir)
	assertStartedFrom(t, recs, prevState, rounds)
	soakWait(t, p, bind, "recovery", 30*time.Second, func(s engine.Snapshot) bool { return s.OK && s.Incident == nil })
	var want []page
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, _ = readJournalStrict(t, stateDir)
		want = resolvedOwed(recs)
		if missing := missingPages(pages.all(), want); len(missing) == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no \"resolved\" reached %+v\ndaemon output:\n%s", missing, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop(t)
	p = nil
	recs, _ = readJournalStrict(t, stateDir)
	if st, err := engine.LoadState(stateFile); err != nil || st.Incident != nil {
		t.Fatalf("after recovery and a clean stop: state %+v, %v", st, err)
	}

	got := pages.all()
	assertNoRepeatAfterRecord(t, got, recs)
	resolved := map[string]bool{}
	for _, r := range recs {
		if e := r.Event; e != nil && e.Type == "incident_resolved" {
			resolved[e.Incident] = true
		}
	}
	paged := map[string]bool{}
	for _, pg := range got {
		paged[pg.Incident] = true
		persisted[pg.Incident] = true
	}
	for id := range persisted {
		if !resolved[id] {
			t.Errorf("incident %s (persisted or paged) never resolved", id)
		}
	}
	assertCooldownAcrossKills(t, recs, "heal", 3*time.Second, kills)
	heals := lines(t, filepath.Join(dir, "heal.log"))
	if starts := len(journalEvents(recs, "rung_start", "heal")); heals > starts {
		t.Errorf("heal ran %d times, the journal has %d starts of it", heals, starts)
	}
	events := map[string]int{}
	for _, r := range recs {
		if e := r.Event; e != nil {
			events[e.Type]++
		}
	}
	t.Logf("%d rounds of kill -9 (seed %d), %d of them as a channel got or answered a page, %d temp files left by kills: %d incidents persisted, %d paged, %d messages received, %d heal runs, %d journal records, events %v",
		rounds, run.seed, killsAtPages, tempsLeft, len(persisted), len(paged), len(got), heals, len(recs), events)
	if len(paged) == 0 && run.long() {
		t.Errorf("no incident paged in %d rounds: the soak exercised no page", rounds)
	}
}

// countStarts counts the `start` records of the journal (0 without one).
func countStarts(t *testing.T, stateDir string) int {
	t.Helper()
	if _, err := os.Stat(filepath.Join(stateDir, "journal.jsonl")); err != nil {
		return 0
	}
	recs, _ := readJournalStrict(t, stateDir)
	n := 0
	for _, r := range recs {
		if r.Type == "start" {
			n++
		}
	}
	return n
}

// assertStartedFrom checks that the last `start` record of the journal
// carries want, the state file the previous process left.
func assertStartedFrom(t *testing.T, recs []engine.Record, want *engine.State, round int) {
	t.Helper()
	var last *engine.Record
	lastAt := 0
	for i := range recs {
		if recs[i].Type == "start" {
			last, lastAt = &recs[i], i
		}
	}
	if last == nil || last.State == nil {
		t.Fatalf("round %d: no start record with a state", round)
	}
	got := last.State
	wantID, gotID := "", ""
	var wantPhase engine.Phase = engine.Healthy
	if want != nil {
		wantPhase = want.Phase
		if want.Incident != nil {
			wantID = want.Incident.ID
		}
	}
	if got.Incident != nil {
		gotID = got.Incident.ID
	}
	if gotID == wantID && got.Phase != wantPhase && want != nil && recoveredPage(recs[:lastAt], want, got) {
		// A page's acceptance journaled after the save was applied at the
		// start (engine.RecoverAnswers): its rung's state= raised the phase.
		return
	}
	if gotID != wantID || got.Phase != wantPhase {
		t.Fatalf("round %d: the state file held incident %q in %s; the next process started with incident %q in %s",
			round, wantID, wantPhase, gotID, got.Phase)
	}
}

// recoveredPage says whether the journal before the start holds a page's
// acceptance for the saved incident, written after the state was saved,
// that the start applied (the channel is among the paged).
func recoveredPage(recs []engine.Record, saved, started *engine.State) bool {
	for _, r := range recs {
		a := r.Answer
		if r.Type == "delivery" && a != nil && a.OK && a.Kind == "sos" && !r.Time.Before(saved.UpdatedAt) &&
			saved.Incident != nil && a.Incident == saved.Incident.ID && started.Incident != nil &&
			slices.Contains(started.Incident.Paged, a.Channel) && !slices.Contains(saved.Incident.Paged, a.Channel) {
			return true
		}
	}
	return false
}

// accepted are the channels' acceptances on record: channel, kind and
// incident to the time of the first one.
func accepted(recs []engine.Record) map[page]time.Time {
	out := map[page]time.Time{}
	for _, r := range recs {
		if a := r.Answer; r.Type == "delivery" && a != nil && a.OK {
			k := page{Channel: a.Channel, Kind: a.Kind, Incident: a.Incident}
			if _, ok := out[k]; !ok {
				out[k] = r.Time
			}
		}
	}
	return out
}

// resolvedOwed are the "resolved" messages owed: one per channel whose
// acceptance of an incident's page is on record in the journal. A kill
// between that record and the state save does not lose it: the next start
// applies the answers journaled after the save (engine.RecoverAnswers).
func resolvedOwed(recs []engine.Record) []page {
	var out []page
	seen := map[page]bool{}
	for _, r := range recs {
		a := r.Answer
		if r.Type != "delivery" || a == nil || !a.OK || a.Kind != "sos" {
			continue
		}
		k := page{Channel: a.Channel, Kind: "resolved", Incident: a.Incident}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func missingPages(got, want []page) []page {
	have := map[page]bool{}
	for _, p := range got {
		have[page{Channel: p.Channel, Kind: p.Kind, Incident: p.Incident}] = true
	}
	var out []page
	for _, w := range want {
		if !have[w] {
			out = append(out, w)
		}
	}
	return out
}

// assertNoRepeatAfterRecord: once a channel's acceptance of a message
// (kind, incident) is on record, the channel never receives it again (the
// page rung's repeat is longer than the test). Before that, a message may
// arrive more than once: a channel that failed (5xx) is retried, and one
// whose answer a kill cut off gets it again, as docs/journal.md says.
func assertNoRepeatAfterRecord(t *testing.T, got []page, recs []engine.Record) {
	t.Helper()
	acc := accepted(recs)
	for _, p := range got {
		k := page{Channel: p.Channel, Kind: p.Kind, Incident: p.Incident}
		if at, ok := acc[k]; ok && p.At.After(at) {
			t.Errorf("%s received %s of incident %s at %s, after its acceptance was on record at %s",
				p.Channel, p.Kind, p.Incident, p.At.Format(time.StampMicro), at.Format(time.StampMicro))
		}
	}
}

func killBetween(kills []time.Time, from, to time.Time) bool {
	for _, k := range kills {
		if k.After(from) && k.Before(to) {
			return true
		}
	}
	return false
}

// assertCooldownAcrossKills: two starts of rung closer than cooldown have
// a kill between them (a start journaled but not yet saved is a documented
// crash window), and never two without.
func assertCooldownAcrossKills(t *testing.T, recs []engine.Record, rung string, cooldown time.Duration, kills []time.Time) {
	t.Helper()
	starts := journalEvents(recs, "rung_start", rung)
	for i := 1; i < len(starts); i++ {
		a, b := starts[i-1].At, starts[i].At
		if b.Sub(a) < cooldown && !killBetween(kills, a, b) {
			t.Errorf("%s started at %s and again at %s, inside its cooldown of %s, with no kill between",
				rung, a.Format(time.StampMilli), b.Format(time.StampMilli), cooldown)
		}
	}
}

// newLoopback serves h on 127.0.0.1 and returns its base URL.
func newLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestSoakHostileProbes runs hanging, chatty and fork-bombing probes through
// the real daemon, each every 100 ms: one that hangs past its timeout with
// a grandchild holding its pipe, one that writes megabytes, one that starts
// children, some of them in sessions of their own. The daemon's open
// descriptors and threads are counted on a quiet policy before, after a
// warm-up and at the end (the runtime keeps threads it made, so the end is
// compared with the warm-up); no process of a probe may be left, nor a
// zombie. `make test` runs 20 cycles, `make soak` at least 1,000.
func TestSoakHostileProbes(t *testing.T) {
	run := newSoakRun(t, 20, 1000)
	dir := t.TempDir()
	token := "talon-soak-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	runs := filepath.Join(dir, "runs")
	quiet := `probe.exec("quiet", ["true"])` + "\n"
	hostile := fmt.Sprintf(`
probe.exec("hang", ["bash", "-c", "(exec -a %[1]s-pipe sleep 1000 &); exec -a %[1]s-hang sleep 1000"], every = "100ms", timeout = "300ms")
probe.exec("chatty", ["bash", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero >&2; echo"], every = "100ms", timeout = "5s")
probe.exec("forks", ["bash", "-c", "printf x >> %[2]s; for i in 1 2 3 4 5 6; do (exec -a %[1]s-fork sleep 1000 &); setsid bash -c 'exec -a %[1]s-setsid sleep 1000' & done; echo ok"], every = "100ms", timeout = "2s")
`, token, runs)
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), quiet, 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := spawnTalon(t, bind, "--config", writeConfig(t, dir, bind, stateDir, ""), "--policy", policy)
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.kill9()
		for _, pid := range procsMatching(token) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	pid := p.cmd.Process.Pid
	current := quiet
	swap := func(body string, want func(engine.Snapshot) bool) {
		t.Helper()
		if body == current {
			return
		}
		current = body
		h := soakWait(t, p, bind, "/health", 10*time.Second, func(engine.Snapshot) bool { return true })
		writeFile(t, filepath.Join(policy, "talon.star"), body, 0o644)
		soakWait(t, p, bind, "the policy swap", 15*time.Second, func(s engine.Snapshot) bool { return s.PolicyHash != h.PolicyHash && want(s) })
	}
	ran := func() int {
		fi, err := os.Stat(runs)
		if err != nil {
			return 0
		}
		return int(fi.Size())
	}
	// settled swaps to the quiet policy, waits for every probe process to
	// exit (on its pidfd) and for a quiet cycle, then counts.
	settled := func(what string) (fds, threads int) {
		t.Helper()
		swap(quiet, func(s engine.Snapshot) bool { return hasProbe(s, "quiet") && !hasProbe(s, "forks") })
		if left := waitExit(t, procsMatching(token), 10*time.Second); len(left) > 0 {
			t.Fatalf("%s: %d processes of probes outlived them: %v", what, len(left), left)
		}
		s, _ := soakHealth(bind)
		soakWait(t, p, bind, "a quiet cycle", 10*time.Second, func(n engine.Snapshot) bool { return n.LastCycle.After(s.LastCycle) })
		if z := zombiesOf(pid); z > 0 {
			t.Fatalf("%s: %d zombies of the daemon", what, z)
		}
		// The fewest over a second of samples: a quiet probe in flight
		// holds a few descriptors for a moment; a leak holds them always.
		fds, threads = openFDs(t, pid), threadsOf(t, pid)
		for range 10 {
			time.Sleep(100 * time.Millisecond)
			fds, threads = min(fds, openFDs(t, pid)), min(threads, threadsOf(t, pid))
		}
		return fds, threads
	}
	fds0, thr0 := settled("before")
	// hostileOn runs the hostile policy while more(cycles done) holds.
	hostileOn := func(more func(int) bool) int {
		t.Helper()
		swap(hostile, func(s engine.Snapshot) bool { return hasProbe(s, "forks") })
		from := ran()
		for more(ran() - from) {
			if err := p.cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("the daemon died: %v\n%s", err, p.out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return ran() - from
	}
	warm := 6
	if run.long() {
		warm = 100
	}
	warm = hostileOn(func(n int) bool { return n < warm })
	fds1, thr1 := settled("after the warm-up")
	total := warm + hostileOn(func(n int) bool { return run.more(warm + n) })
	fds2, thr2 := settled("at the end")
	t.Logf("%d cycles of each hostile probe: descriptors %d before, %d after the warm-up, %d at the end; threads %d, %d, %d",
		total, fds0, fds1, fds2, thr0, thr1, thr2)
	if fds2 > fds0+4 || fds2 > fds1+4 {
		t.Errorf("descriptors grew: %d before, %d after the warm-up, %d at the end", fds0, fds1, fds2)
	}
	if thr2 > thr1+4 {
		t.Errorf("threads grew: %d after the warm-up, %d at the end", thr1, thr2)
	}
	// What each probe said, from the journal: the hang always timed out,
	// every output was capped, the chatty and forking probes passed (not
	// every time: on a loaded host one may time out, which is no leak).
	recs, _ := readJournalStrict(t, stateDir)
	count := map[string]int{}
	for _, r := range recs {
		for _, res := range r.Results {
			if len(res.Output) > engine.MaxResultOutput {
				t.Fatalf("%s: %d bytes of output kept", res.Name, len(res.Output))
			}
			if res.Name == "hang" && (res.Passed || !res.TimedOut) {
				t.Fatalf("hang: %+v", res)
			}
			if res.Passed {
				count[res.Name+" passed"]++
			} else {
				count[res.Name+" failed"]++
			}
		}
	}
	if count["hang failed"] < total/2 || count["chatty passed"] < total/2 || count["forks passed"] < total/2 {
		t.Errorf("runs journaled: %v for %d cycles of forks", count, total)
	}
	t.Logf("outcomes: %v", count)

	// kill -9 while the hostile probes run: what their runs in flight
	// started outlives the daemon; the next daemon of the state dir has
	// killed all of it by the time it answers /health.
	swap(hostile, func(s engine.Snapshot) bool { return hasProbe(s, "forks") })
	waitUntil(t, "hostile probes in flight", 10*time.Second, func() bool { return len(procsMatching(token)) >= 4 })
	p.kill9()
	left := procsMatching(token)
	if len(left) == 0 {
		t.Fatal("kill -9 during the hostile probes left no process of theirs: the sweep is not tested")
	}
	writeFile(t, filepath.Join(policy, "talon.star"), quiet, 0o644)
	p = spawnTalon(t, bind, "--config", writeConfig(t, dir, bind, stateDir, ""), "--policy", policy)
	if still := procsMatching(token); len(still) > 0 {
		t.Fatalf("%d processes of probes survived kill -9 and the restart: %v (%d were left by the kill)", len(still), still, len(left))
	}
	t.Logf("kill -9 during the hostile probes left %d of their processes; the restart swept them all", len(left))
}

func threadsOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no Threads: in /proc/%d/status", pid)
	return 0
}

// zombiesOf counts the zombie children of pid.
func zombiesOf(pid int) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		stat, err := os.ReadFile(p + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) {
			continue
		}
		f := strings.Fields(string(stat[i+2:]))
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// faultProxy is a userspace TCP proxy in front of a peer that adds latency
// to each new connection or black-holes it (accepts and never answers).
type faultProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   string // "pass", "delay" or "blackhole"
	delay  time.Duration
	held   int // black-holed connections the client has not closed yet
}

func startProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, mode: "pass"}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			mode, delay := p.mode, p.delay
			if mode == "blackhole" {
				p.held++
			}
			p.mu.Unlock()
			conns.Add(1)
			go func() {
				defer conns.Done()
				p.serve(c, mode, delay)
			}()
		}
	}()
	return p
}

func (p *faultProxy) set(mode string, delay time.Duration) {
	p.mu.Lock()
	p.mode, p.delay = mode, delay
	p.mu.Unlock()
}

func (p *faultProxy) heldConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

func (p *faultProxy) serve(c net.Conn, mode string, delay time.Duration) {
	defer c.Close()
	if mode == "blackhole" {
		io.Copy(io.Discard, c) // until the client gives up and closes
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
		return
	}
	time.Sleep(delay)
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// TestSoakNetworkFaults puts a fault proxy between the daemon and a real
// HTTP server and a real redis-server, and switches it between passing,
// adding latency (under and over the probes' timeouts) and black-holing.
// From the journal's own records (a result's duration, and the time from
// its `launch` record to the `cycle` record that brought it): no probe run
// takes longer than its timeout plus a quarter of it, and no launch waits
// for its last result longer than the slowest timeout plus that slack.
// The faults must have shown: runs that timed out and runs that passed,
// for both probes. No black-holed connection stays open once the probe
// that made it has given up.
func TestSoakNetworkFaults(t *testing.T) {
	run := newSoakRun(t, 1, 1)
	redis := testpeer.StartRedis(t, "")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer web.Close()
	webProxy, redisProxy := startProxy(t, web.Listener.Addr().String()), startProxy(t, redis.Addr)
	timeouts := map[string]time.Duration{"web": time.Second, "cache": 2 * time.Second}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), fmt.Sprintf(`
probe.http("web", "http://%s/health", timeout = "1s")
probe.redis("cache", %q, timeout = "2s")
`, webProxy.ln.Addr(), redisProxy.ln.Addr().String()), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := spawnTalon(t, bind, "--config", writeConfig(t, dir, bind, stateDir, ""), "--policy", policy)
	t.Cleanup(p.kill9)

	type phase struct {
		mode  string
		delay time.Duration
		hold  time.Duration
	}
	script := []phase{{"pass", 0, 2 * time.Second}, {"delay", 300 * time.Millisecond, 3 * time.Second},
		{"delay", 1500 * time.Millisecond, 4 * time.Second}, {"blackhole", 0, 4 * time.Second}, {"pass", 0, 2 * time.Second}}
	if run.long() {
		for time.Now().Add(10 * time.Second).Before(run.until) {
			ph := phase{mode: []string{"pass", "delay", "blackhole"}[run.rnd.IntN(3)], hold: run.between(time.Second, 5*time.Second)}
			if ph.mode == "delay" {
				ph.delay = run.between(10*time.Millisecond, 3*time.Second)
			}
			applyPhase(webProxy, redisProxy, ph.mode, ph.delay, run)
			time.Sleep(ph.hold)
		}
	} else {
		for _, ph := range script {
			webProxy.set(ph.mode, ph.delay)
			redisProxy.set(ph.mode, ph.delay)
			time.Sleep(ph.hold)
		}
	}
	webProxy.set("pass", 0)
	redisProxy.set("pass", 0)
	soakWait(t, p, bind, "both probes passing", 15*time.Second, func(s engine.Snapshot) bool { return s.OK && s.ProbeCount == 2 })
	waitUntil(t, "the black-holed connections closed", 10*time.Second, func() bool {
		return webProxy.heldConns() == 0 && redisProxy.heldConns() == 0
	})
	p.stop(t)

	recs, _ := readJournalStrict(t, stateDir)
	launched := map[string]time.Time{} // probe → its launch in flight
	type flight struct {
		at      time.Time
		waiting int
		slowest time.Duration
	}
	var launches []*flight
	in := map[string]*flight{}
	seen := map[string]map[string]int{"web": {}, "cache": {}}
	slowestTimeout := max(timeouts["web"], timeouts["cache"])
	for _, r := range recs {
		switch r.Type {
		case "launch":
			f := &flight{at: r.Time, waiting: len(r.Probes)}
			launches = append(launches, f)
			for _, name := range r.Probes {
				launched[name], in[name] = r.Time, f
			}
		case "cycle":
			for _, res := range r.Results {
				limit := timeouts[res.Name] + timeouts[res.Name]/4
				if d := time.Duration(res.DurationMS) * time.Millisecond; d > limit {
					t.Errorf("%s ran %v (timeout %v) at %s: %s", res.Name, d, timeouts[res.Name], res.At.Format(time.StampMilli), res.Output)
				}
				at, ok := launched[res.Name]
				if !ok {
					t.Fatalf("result of %s with no launch before it: %+v", res.Name, res)
				}
				if d := r.Time.Sub(at); d > limit {
					t.Errorf("%s launched at %s came back %v later (timeout %v): %s", res.Name, at.Format(time.StampMilli), d, timeouts[res.Name], res.Output)
				}
				if f := in[res.Name]; f != nil {
					f.waiting--
					f.slowest = max(f.slowest, r.Time.Sub(f.at))
					delete(in, res.Name)
				}
				delete(launched, res.Name)
				switch {
				case res.Passed:
					seen[res.Name]["passed"]++
				case res.TimedOut:
					seen[res.Name]["timed out"]++
				default:
					seen[res.Name]["failed"]++
				}
			}
		}
	}
	var worst time.Duration
	for _, f := range launches {
		worst = max(worst, f.slowest)
		if f.slowest > slowestTimeout+slowestTimeout/4 {
			t.Errorf("the launch at %s waited %v for its last result (slowest timeout %v)", f.at.Format(time.StampMilli), f.slowest, slowestTimeout)
		}
	}
	for name, s := range seen {
		if s["passed"] == 0 || s["timed out"] == 0 {
			t.Errorf("%s: %v; the faults did not show", name, s)
		}
	}
	t.Logf("%d launches, slowest launch-to-last-result %v; outcomes %v", len(launches), worst, seen)
}

func applyPhase(a, b *faultProxy, mode string, delay time.Duration, run *soakRun) {
	a.set(mode, delay)
	if run.rnd.IntN(3) == 0 { // sometimes only one peer is hurt
		mode, delay = "pass", 0
	}
	b.set(mode, delay)
}
