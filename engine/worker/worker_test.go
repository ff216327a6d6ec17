package worker

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSpawnHealthAndOneSync(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "unhealthy-for=700ms")
	envFile := filepath.Join(h.dir, "worker.env")
	os.WriteFile(envFile, []byte("# secrets\nexport FOO=\"bar baz\"\nWORKER_ROLE=guest\n"), 0o600)
	h.opts.EnvFile = envFile
	h.start()

	syncs := h.waitEvents("sync", 1, 10*time.Second)
	h.waitFor("healthy status", 5*time.Second, func() bool { return h.sup.Status().Healthy })
	time.Sleep(time.Second) // room for a second, wrong sync
	syncs = h.eventsNamed("sync")
	if len(syncs) != 1 || syncs[0].detail != "200" {
		t.Fatalf("syncs = %+v, want exactly one answered 200", syncs)
	}
	var firstOK time.Time
	for _, e := range h.eventsNamed("health") {
		if e.detail == "200" {
			firstOK = e.at
			break
		}
	}
	if firstOK.IsZero() || syncs[0].at.Before(firstOK) {
		t.Fatalf("sync at %v, first healthy answer at %v: sync must follow health", syncs[0].at, firstOK)
	}
	starts := h.eventsNamed("start")
	if len(starts) != 1 {
		t.Fatalf("starts = %+v, want 1", starts)
	}
	if !strings.Contains(starts[0].detail, "role=host foo=bar baz") {
		t.Errorf("worker env: %q, want WORKER_ROLE=host (over the env file) and FOO from the env file", starts[0].detail)
	}
	st := h.sup.Status()
	if !st.Running || st.PID != starts[0].pid || st.Restarts != 0 || st.External != "" {
		t.Errorf("status = %+v", st)
	}
	for path, want := range map[string]string{h.opts.LogStdout: "worker stdout line", h.opts.LogStderr: "worker stderr line"} {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s = %q, %v; want %q", path, b, err, want)
		}
	}
	if pgid, err := syscall.Getpgid(st.PID); err != nil || pgid != st.PID {
		t.Errorf("worker pgid = %d, %v; want its own group %d", pgid, err, st.PID)
	}

	h.stop()
	if terms := h.eventsNamed("term"); len(terms) != 1 {
		t.Errorf("term events = %+v, want the worker to get SIGTERM once", terms)
	}
	if st := h.sup.Status(); st.Running || st.PID != 0 || st.LastExit == "" {
		t.Errorf("status after stop = %+v", st)
	}
}

func TestSyncRetriedUntilAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "healthy+sync-fail=1")
	h.start()
	syncs := h.waitEvents("sync", 2, 10*time.Second)
	time.Sleep(1500 * time.Millisecond)
	syncs = h.eventsNamed("sync")
	if len(syncs) != 2 || syncs[0].detail != "500" || syncs[1].detail != "200" {
		t.Fatalf("syncs = %+v, want 500 then 200 and nothing more", syncs)
	}
	if gap := syncs[1].at.Sub(syncs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retry after %s, want a backoff of ~1s", gap)
	}
}

// checkChosen checks the backoffs the supervisor's log says it chose.
func checkChosen(t *testing.T, h *harness, want []time.Duration) {
	t.Helper()
	var chosen []time.Duration
	for _, m := range backoffRE.FindAllStringSubmatch(h.logs.String(), -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("backoff %q: %v", m[1], err)
		}
		chosen = append(chosen, d)
	}
	if len(chosen) < len(want) {
		t.Fatalf("backoffs chosen %v, want %v", chosen, want)
	}
	for i, w := range want {
		if chosen[i] != w {
			t.Errorf("backoff before restart %d: %s, want %s (all: %v)", i+1, chosen[i], w, chosen)
		}
	}
}

var backoffRE = regexp.MustCompile(`restarting worker .*backoff=(\S+)`)

// TestCrashRestartsWithBackoff: a worker that crashes is restarted after a
// backoff that doubles up to BackoffMax, and each restart is counted on
// from the persisted total. On a fake clock the backoffs are read off the
// timer the supervisor waits on; each worker crashes by itself, in real
// time, before any health poll (the test never moves the clock to one).
func TestCrashRestartsWithBackoff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "unhealthy+crash-after=100ms")
	h.opts.Restarts = 5 // persisted by a previous run
	var mu sync.Mutex
	var totals []int
	h.opts.OnRestart = func(n int) { mu.Lock(); totals = append(totals, n); mu.Unlock() }
	clk := h.fakeClock()
	h.start()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} // BackoffMax 4s
	for i, backoff := range want {
		h.waitEvents("crash", i+1, 10*time.Second)
		h.waitLog(backoffRE, i+1)
		if d := h.armed("restart backoff"); d != backoff {
			t.Errorf("backoff before restart %d: %s, want %s", i+1, d, backoff)
		}
		if n := len(h.eventsNamed("start")); n != i+1 {
			t.Fatalf("%d starts before the backoff of restart %d passed", n, i+1)
		}
		clk.Advance(backoff)
		h.waitEvents("start", i+2, 10*time.Second)
	}
	h.stop()
	checkChosen(t, h, want)
	mu.Lock()
	defer mu.Unlock()
	// The fifth worker may crash too before the stop: 10 may follow.
	if len(totals) < 4 || !slices.Equal(totals[:4], []int{6, 7, 8, 9}) {
		t.Errorf("OnRestart totals = %v, want 6, 7, 8, 9, …", totals)
	}
	if st := h.sup.Status(); st.Restarts != totals[len(totals)-1] || !strings.Contains(st.LastError, "exit status 3") {
		t.Errorf("status = %+v", st)
	}
}

// TestBackoffResetsAfterHealthyRun: the backoff before a restart doubles
// with each worker that crashed without passing a health check, and starts
// over once one has passed. On a fake clock the test decides when each
// worker is polled and when it crashes (SIGUSR1), and reads each backoff
// off the timer the supervisor waits on before the next start.
func TestBackoffResetsAfterHealthyRun(t *testing.T) {
	t.Parallel()
	plan := []string{"unhealthy", "unhealthy", "healthy", "unhealthy", "healthy"}
	h := newHarness(t, strings.Join(plan, ","))
	h.opts.BackoffMax = 8 * time.Second
	clk := h.fakeClock()
	h.start()
	want := []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second}
	healthyRuns := 0
	for i, backoff := range want {
		n := i + 1
		pid := h.waitEvents("start", n, 10*time.Second)[i].pid
		h.waitEvents("listening", n, 10*time.Second)
		if d := h.armed("first health poll"); d != 200*time.Millisecond {
			t.Fatalf("worker %d: first poll %s ahead, want 200ms", n, d)
		}
		clk.Advance(200 * time.Millisecond)
		answer := h.waitEvents("health", n, 10*time.Second)[i].detail
		// Crash the worker only once the supervisor has taken the answer.
		if plan[i] == "healthy" {
			healthyRuns++
			if answer != "200" {
				t.Fatalf("worker %d answered %s, want 200", n, answer)
			}
			h.waitFor("healthy status", 10*time.Second, func() bool { return h.sup.Status().Healthy })
			h.waitLog(regexp.MustCompile("worker sync succeeded"), healthyRuns)
		} else {
			if answer != "503" {
				t.Fatalf("worker %d answered %s, want 503", n, answer)
			}
			h.armed("next health poll")
		}
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		h.waitLog(backoffRE, n)
		if d := h.armed("restart backoff"); d != backoff {
			t.Errorf("backoff before restart %d: %s, want %s", n, d, backoff)
		}
		if starts := len(h.eventsNamed("start")); starts != n {
			t.Fatalf("%d starts before the backoff of restart %d passed", starts, n)
		}
		clk.Advance(backoff)
	}
	h.waitEvents("start", len(want)+1, 10*time.Second)
	checkChosen(t, h, want) // and the log says the same
	if st := h.sup.Status(); st.Restarts != len(want) || st.LastExit != "exit status 3" {
		t.Errorf("status = %+v", st)
	}
}

func TestHealthFailuresRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "unhealthy-after=600ms,healthy")
	h.opts.FailuresBeforeRestart = 2
	h.start()
	starts := h.waitEvents("start", 2, 10*time.Second)
	terms := h.eventsNamed("term")
	if len(terms) != 1 || terms[0].pid != starts[0].pid {
		t.Fatalf("terms = %+v, want the first worker drained with SIGTERM", terms)
	}
	failed := 0
	for _, e := range h.eventsNamed("health") {
		if e.pid == starts[0].pid && e.detail == "503" {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("first worker answered 503 %d times before its restart, want 2", failed)
	}
	h.waitFor("second worker healthy", 5*time.Second, func() bool { return h.sup.Status().Healthy })
	if st := h.sup.Status(); st.Restarts != 1 || st.PID != starts[1].pid {
		t.Errorf("status = %+v", st)
	}
}

// TestNeverHealthyIsRestarted: a worker that has not passed a health check
// by the end of its startup grace (StartupSyncDelay + 3 health intervals) is
// restarted, after the backoff; the next one is synced once healthy. On a
// fake clock the test steps through every poll.
func TestNeverHealthyIsRestarted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "unhealthy,healthy")
	h.opts.StartupSyncDelay = 200 * time.Millisecond // grace: 0.2s + 3×0.2s
	clk := h.fakeClock()
	t0 := clk.Now()
	h.start()
	h.waitEvents("listening", 1, 10*time.Second)
	for poll := 1; poll <= 4; poll++ {
		if d := h.armed(fmt.Sprintf("health poll %d", poll)); d != 200*time.Millisecond {
			t.Fatalf("health poll %d is %s ahead, want 200ms", poll, d)
		}
		if strings.Contains(h.logs.String(), "never became healthy") {
			t.Fatalf("restarted before poll %d at %s, within the grace of 0.8s", poll, clk.Now().Sub(t0))
		}
		clk.Advance(200 * time.Millisecond)
		h.waitEvents("health", poll, 10*time.Second)
	}
	// The fourth failed poll is at 0.8s, the end of the grace.
	h.waitLog(regexp.MustCompile("restarting worker that never became healthy"), 1)
	h.waitLog(backoffRE, 1)
	if d := h.armed("restart backoff"); d != time.Second {
		t.Fatalf("backoff %s, want 1s", d)
	}
	for _, e := range h.eventsNamed("health") {
		if e.detail != "503" {
			t.Fatalf("first worker answered %s; it never is healthy", e.detail)
		}
	}
	if terms := h.eventsNamed("term"); len(terms) != 1 {
		t.Fatalf("terms = %+v, want the first worker drained with SIGTERM", terms)
	}
	clk.Advance(time.Second)
	h.waitEvents("start", 2, 10*time.Second)
	if st := h.sup.Status(); !st.StartedAt.Equal(t0.Add(1800*time.Millisecond)) || st.Restarts != 1 {
		t.Errorf("status = %+v, want the second worker started at 1.8s (grace 0.8s + backoff 1s)", st)
	}
	h.waitEvents("listening", 2, 10*time.Second)
	if d := h.armed("first poll of the second worker"); d != 200*time.Millisecond {
		t.Fatalf("first poll of the second worker is %s ahead, want 200ms", d)
	}
	clk.Advance(200 * time.Millisecond)
	h.waitLog(regexp.MustCompile("worker sync succeeded"), 1)
	if syncs := h.eventsNamed("sync"); len(syncs) != 1 || syncs[0].detail != "200" {
		t.Errorf("syncs = %+v, want one, of the second worker", syncs)
	}
}

func TestShutdownKillsGroupThatIgnoresTerm(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "healthy+ignore-term+grandchild")
	h.start()
	gc := h.waitEvents("grandchild", 1, 10*time.Second)
	h.waitFor("healthy", 5*time.Second, func() bool { return h.sup.Status().Healthy })
	took := h.stop()
	// The worker ignores SIGTERM: the supervisor must have given it the
	// whole drain timeout, then killed the group. (How much longer Run
	// took depends on the machine; stop fails if it never returns.)
	if took < h.opts.DrainTimeout {
		t.Errorf("Run returned %s after cancel, before the drain timeout (%s) was up", took, h.opts.DrainTimeout)
	}
	if !strings.Contains(h.logs.String(), "worker did not stop within the drain timeout; killing its process group") {
		t.Errorf("the group was not killed after the drain timeout:\n%s", h.logs.String())
	}
	gpid, _ := strconv.Atoi(strings.TrimSpace(gc[0].detail))
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(gpid) + "/cmdline"); err == nil && len(b) > 0 {
		t.Errorf("grandchild %d still alive: %q", gpid, b)
	}
	// the harness cleanup asserts no process with the marker is left
}

func TestPortCleanupKillsOnlyStaleWorker(t *testing.T) {
	t.Parallel()
	python := lookPython(t)
	h := newHarness(t, "healthy")
	h.opts.DrainTimeout = 500 * time.Millisecond

	// A stale copy of the worker (Talon died and left it), in its own
	// group like a worker Talon started, that ignores SIGTERM.
	stale := exec.Command(h.opts.Command[0], h.opts.Command[1:]...)
	stale.Env = []string{"TW_PORT=" + strconv.Itoa(h.port), "TW_PLAN=healthy+ignore-term", "TW_EVENTS=" + filepath.Join(h.dir, "stale-events")}
	stale.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	staleExited := background(t, stale)
	waitListening(t, h.port)

	// A plain client connected to the port.
	client := exec.Command(python, "-c", "import socket,sys,time\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\nprint('connected',flush=True)\ntime.sleep(60)", strconv.Itoa(h.port), "twclient-"+h.marker[7:])
	out, _ := client.StdoutPipe()
	clientExited := background(t, client)
	buf := make([]byte, 16)
	if n, _ := out.Read(buf); !strings.HasPrefix(string(buf[:n]), "connected") {
		t.Fatalf("client: %q", buf[:n])
	}

	h.start()
	h.waitEvents("start", 1, 10*time.Second)
	select {
	case <-staleExited:
	case <-time.After(5 * time.Second):
		t.Fatal("stale worker still running")
	}
	h.waitFor("new worker healthy", 5*time.Second, func() bool { return h.sup.Status().Healthy })
	if !alive(clientExited) {
		t.Error("the client connected to the worker port was killed")
	}
	if !strings.Contains(h.logs.String(), "stopping a stale copy of the worker") {
		t.Error("no log line about the stale worker")
	}
}

func TestPortHeldByUnrelatedListener(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cmd  func(h *harness) *exec.Cmd
	}{
		{"python http.server", func(h *harness) *exec.Cmd {
			c := exec.Command(lookPython(t), "-m", "http.server", strconv.Itoa(h.port), "--bind", "127.0.0.1")
			c.Dir = h.dir
			return c
		}},
		{"worker program with other args", func(h *harness) *exec.Cmd {
			c := exec.Command(helperBin, "-marker=other-"+h.marker)
			c.Env = []string{"TW_PORT=" + strconv.Itoa(h.port), "TW_PLAN=healthy"}
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, "healthy")
			h.opts.BackoffMax = time.Second
			c := tc.cmd(h)
			exited := background(t, c)
			waitListening(t, h.port)
			h.start()
			want := "port " + strconv.Itoa(h.port) + " is held by pid " + strconv.Itoa(c.Process.Pid) + " ("
			h.waitFor("refusal", 5*time.Second, func() bool { return strings.Contains(h.sup.Status().LastError, want) })
			if !strings.Contains(h.sup.Status().LastError, "not a copy of the worker; not touching it") {
				t.Errorf("last error = %q", h.sup.Status().LastError)
			}
			time.Sleep(1500 * time.Millisecond)
			if !alive(exited) {
				t.Fatal("the unrelated listener was killed")
			}
			if n := len(h.eventsNamed("start")); n != 0 {
				t.Fatalf("worker started %d times while the port was held", n)
			}
			if st := h.sup.Status(); st.Running {
				t.Errorf("status running while the port is held: %+v", st)
			}
			// Once the holder goes, the supervisor starts the worker.
			c.Process.Kill()
			<-exited
			h.waitEvents("start", 1, 5*time.Second)
			h.waitFor("healthy", 5*time.Second, func() bool { return h.sup.Status().Healthy })
		})
	}
}

func lookPython(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	return p
}

// fakeSystemctl writes a systemctl that answers, for the system scope, what
// the state file says; the user scope has no unit.
func fakeSystemctl(t *testing.T, dir string) (state func(string)) {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	stateFile := filepath.Join(dir, "systemd-state")
	script := `#!/bin/sh
if [ "$1" = "--user" ]; then echo inactive; exit 3; fi
case "$(cat ` + stateFile + `)" in
active) echo active; exit 0;;
inactive) echo inactive; exit 3;;
*) echo "Failed to query unit: bus went away" >&2; exit 1;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return func(s string) {
		if err := os.WriteFile(stateFile+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Rename(stateFile+".tmp", stateFile)
	}
}

func TestExternalSystemdOwnerStepsBackAndReturns(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "healthy")
	set := fakeSystemctl(t, h.dir)
	h.opts.Env[0] = "PATH=" + filepath.Join(h.dir, "bin") + ":/usr/bin:/bin"
	h.opts.ExternalSystemdUnit = "talon-test-worker.service"
	const owner = "systemd unit talon-test-worker.service (system)"

	set("active")
	h.start()
	time.Sleep(time.Second)
	if n := len(h.eventsNamed("start")); n != 0 {
		t.Fatalf("worker started %d times while systemd runs it", n)
	}
	if st := h.sup.Status(); st.External != owner || st.Running {
		t.Fatalf("status = %+v, want external %q", st, owner)
	}

	set("inactive")
	starts := h.waitEvents("start", 1, 5*time.Second)
	h.waitFor("healthy", 5*time.Second, func() bool { return h.sup.Status().Healthy })
	if st := h.sup.Status(); st.External != "" {
		t.Fatalf("status = %+v, want no external owner", st)
	}

	// A failing check is no proof either way: ours keeps running.
	set("broken")
	time.Sleep(time.Second)
	if st := h.sup.Status(); !st.Running || st.PID != starts[0].pid || len(h.eventsNamed("term")) != 0 {
		t.Fatalf("status = %+v after an unsure check; the running worker must be kept", st)
	}
	if !strings.Contains(h.sup.Status().LastError, "bus went away") {
		t.Errorf("last error %q does not report the failed check", h.sup.Status().LastError)
	}

	// systemd takes over: ours is drained gracefully, not restarted.
	set("active")
	h.waitEvents("term", 1, 5*time.Second)
	h.waitFor("stepped back", 5*time.Second, func() bool {
		st := h.sup.Status()
		return !st.Running && st.External == owner
	})
	set("broken")
	time.Sleep(time.Second)
	if n := len(h.eventsNamed("start")); n != 1 {
		t.Fatalf("worker started while the check is unsure after systemd owned it (%d starts)", n)
	}
	if st := h.sup.Status(); st.Restarts != 0 {
		t.Errorf("stepping back counted as a restart: %+v", st)
	}

	set("inactive")
	h.waitEvents("start", 2, 5*time.Second)
	h.waitFor("healthy again", 5*time.Second, func() bool { return h.sup.Status().Healthy })
}

func TestExternalCheckUnsureAtStartIsFailClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "healthy")
	set := fakeSystemctl(t, h.dir)
	h.opts.Env[0] = "PATH=" + filepath.Join(h.dir, "bin") + ":/usr/bin:/bin"
	h.opts.ExternalSystemdUnit = "talon-test-worker.service"
	set("broken")
	h.start()
	time.Sleep(time.Second)
	if n := len(h.eventsNamed("start")); n != 0 {
		t.Fatalf("worker started %d times before any conclusive check", n)
	}
	if st := h.sup.Status(); st.External == "" || !strings.Contains(st.LastError, "external supervisor check") {
		t.Fatalf("status = %+v", st)
	}
	set("inactive")
	h.waitEvents("start", 1, 5*time.Second)
}
