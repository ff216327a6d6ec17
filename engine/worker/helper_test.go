package worker

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
)

// helperBin is the stand-in worker built from testdata/worker.
var helperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "talon-worker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helperBin = filepath.Join(dir, "tworker")
	build := exec.Command("go", "build", "-o", helperBin, "./testdata/worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build test worker:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs a Supervisor over the stand-in worker, on its own port, with
// a marker in the worker's argv so that leftovers can be found with pgrep.
type harness struct {
	t      *testing.T
	dir    string
	port   int
	marker string
	events string
	logs   *syncBuffer
	opts   Options
	clock  *engine.FakeClock // set by fakeClock
	sup    *Supervisor
	cancel context.CancelFunc
	done   chan error
}

// ports are the ports freePort gave out in this process.
var ports = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// freePort returns a port of 127.0.0.1 that is free now and that no other
// test of this process was given. It binds a socket without listening on
// it: a LISTEN socket, however brief, on a port that happens to be another
// test's (free while its worker restarts) makes that test's supervisor
// refuse to start its worker ("held by an unknown process").
func freePort(t *testing.T) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	for range 100 {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		sa, _ := syscall.Getsockname(fd)
		syscall.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		if p := sa.(*syscall.SockaddrInet4).Port; !ports.given[p] {
			ports.given[p] = true
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func newHarness(t *testing.T, plan string) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t:      t,
		dir:    dir,
		port:   freePort(t),
		marker: fmt.Sprintf("twmark-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())),
		events: filepath.Join(dir, "events"),
		logs:   &syncBuffer{},
	}
	h.opts = Options{
		Dir:     dir,
		Command: []string{helperBin, "-marker=" + h.marker},
		Env: []string{
			"PATH=/usr/bin:/bin",
			"TW_PORT=" + strconv.Itoa(h.port),
			"TW_EVENTS=" + h.events,
			"TW_PLAN=" + plan,
		},
		LogStdout:             filepath.Join(dir, "logs", "worker.log"),
		LogStderr:             filepath.Join(dir, "logs", "worker.err.log"),
		Port:                  h.port,
		HealthPath:            "/health",
		SyncPath:              "/sync",
		DrainTimeout:          time.Second,
		HealthInterval:        200 * time.Millisecond,
		FailuresBeforeRestart: 3,
		BackoffMax:            4 * time.Second,
		StartupSyncDelay:      time.Second,
		HTTPTimeout:           time.Second,
		Logger:                log.NewWithOptions(h.logs, log.Options{Level: log.DebugLevel, ReportTimestamp: true, TimeFormat: "15:04:05.000"}),
	}
	t.Cleanup(func() {
		if h.cancel != nil {
			h.stop()
		}
		if t.Failed() {
			t.Logf("supervisor log:\n%s", h.logs.String())
			b, _ := os.ReadFile(h.events)
			t.Logf("events:\n%s", b)
		}
		h.assertNoLeftovers()
	})
	return h
}

// fakeClock puts the supervisor on a fake clock that moves only when the
// test moves it: its backoffs, health polls and grace are then decided by
// the test's steps, whatever the load of the machine. Call it before start.
func (h *harness) fakeClock() *engine.FakeClock {
	h.clock = engine.NewFakeClock(time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC))
	h.opts.Clock = h.clock
	return h.clock
}

// armed waits until a timer of the fake clock is armed, that is until the
// supervisor waits for time to pass, and returns how far ahead it fires.
func (h *harness) armed(what string) time.Duration {
	h.t.Helper()
	var d time.Duration
	h.waitFor(what+" (a timer on the fake clock)", 10*time.Second, func() bool {
		next := h.clock.Next()
		d = next.Sub(h.clock.Now())
		return !next.IsZero()
	})
	return d
}

// waitLog waits until the supervisor's log holds n matches of re.
func (h *harness) waitLog(re *regexp.Regexp, n int) []string {
	h.t.Helper()
	var lines []string
	h.waitFor(fmt.Sprintf("%d log lines matching %s", n, re), 10*time.Second, func() bool {
		lines = re.FindAllString(h.logs.String(), -1)
		return len(lines) >= n
	})
	return lines
}

// start runs the supervisor in the background.
func (h *harness) start() {
	h.t.Helper()
	h.sup = New(h.opts)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.sup.Run(ctx) }()
}

// stop cancels Run and returns how long it took to return.
func (h *harness) stop() time.Duration {
	h.t.Helper()
	begin := time.Now()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Fatal("Run did not return after cancel")
	}
	return time.Since(begin)
}

// assertNoLeftovers fails the test if any process carrying the marker is
// alive, and kills those it finds (they are this test's).
func (h *harness) assertNoLeftovers() {
	out, _ := exec.Command("pgrep", "-f", h.marker).Output()
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		if pid > 0 {
			h.t.Errorf("leftover process %d carries marker %s", pid, h.marker)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

type event struct {
	name   string
	pid    int
	at     time.Time
	detail string
}

func (h *harness) eventsNamed(name string) []event {
	b, _ := os.ReadFile(h.events)
	var out []event
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) < 3 || (name != "" && f[0] != name) {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		ev := event{name: f[0], pid: pid, at: time.Unix(0, ns)}
		if len(f) == 4 {
			ev.detail = f[3]
		}
		out = append(out, ev)
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) waitEvents(name string, n int, timeout time.Duration) []event {
	h.t.Helper()
	var evs []event
	h.waitFor(fmt.Sprintf("%d %q events", n, name), timeout, func() bool {
		evs = h.eventsNamed(name)
		return len(evs) >= n
	})
	return evs
}

// background starts a helper process (not the supervisor's) and reaps it;
// the returned channel closes when it exits. It is killed at cleanup.
func background(t *testing.T, cmd *exec.Cmd) chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	return exited
}

func waitListening(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on port %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func alive(exited chan struct{}) bool {
	select {
	case <-exited:
		return false
	default:
		return true
	}
}
