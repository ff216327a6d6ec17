package heartbeat

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
)

// fakeClock hands each wait to the test: the pinger has finished what it
// does in an interval when its After call arrives, and goes on only when
// the test fires it.
type fakeClock struct{ waits chan wait }

type wait struct {
	d  time.Duration
	ch chan time.Time
}

func newClock() *fakeClock { return &fakeClock{waits: make(chan wait)} }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.waits <- wait{d, ch}
	return ch
}

// next waits for the pinger to wait, checks how long, and returns the wait.
func (c *fakeClock) next(t *testing.T, want time.Duration) wait {
	t.Helper()
	select {
	case w := <-c.waits:
		if w.d != want {
			t.Fatalf("the pinger waits %v, want %v", w.d, want)
		}
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the pinger never waited")
	}
	return wait{}
}

func (w wait) fire() { w.ch <- time.Time{} }

// server is a loopback ping endpoint that records what it gets.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	got    []string // "METHOD PATH BODY"
	status atomic.Int32
	block  atomic.Bool
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.status.Store(200)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.block.Load() {
			<-r.Context().Done()
			return
		}
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(b)))
		s.mu.Unlock()
		w.WriteHeader(int(s.status.Load()))
		io.WriteString(w, "OK")
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type rig struct {
	clk  *fakeClock
	snap atomic.Pointer[engine.Snapshot]
	hb   atomic.Pointer[engine.Heartbeat]
	logs *logBuf
	stop context.CancelFunc
	done chan struct{}
}

func start(t *testing.T, hb *engine.Heartbeat) *rig {
	r := &rig{clk: newClock(), logs: &logBuf{}, done: make(chan struct{})}
	r.setState(engine.Healthy)
	r.hb.Store(hb)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	logger := log.NewWithOptions(r.logs, log.Options{Level: log.DebugLevel})
	go func() {
		defer close(r.done)
		Run(ctx, Options{Current: r.hb.Load, Snapshot: func() engine.Snapshot { return *r.snap.Load() },
			Effects: effect.NewLive(), Host: "mac-mini", Version: "test", Logger: logger, After: r.clk.After, Idle: 30 * time.Second})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case w := <-r.clk.waits: // a wait begun as we cancelled
			w.fire()
		case <-r.done:
		}
		<-r.done
	})
	return r
}

func (r *rig) setState(p engine.Phase) {
	s := engine.Snapshot{State: p, ProbeCount: 3}
	if p != engine.Healthy {
		s.FailedProbes, s.FailedProbeCount = []string{"api"}, 1
		s.Incident = &engine.IncidentInfo{ID: "20261123T031200Z-1"}
	}
	r.snap.Store(&s)
}

func literal(u string) func(context.Context, effect.Effects, []string) (string, error) {
	return func(context.Context, effect.Effects, []string) (string, error) { return u, nil }
}

const secretPath = "/0f1e2d3c-4b5a-6978-secret"

func TestPingsEveryIntervalAndFailWhileNotHealthy(t *testing.T) {
	srv := newServer(t)
	hb := &engine.Heartbeat{URL: literal(srv.URL + secretPath), Every: time.Minute, Method: "GET", Timeout: 5 * time.Second, Target: srv.URL}
	r := start(t, hb)
	steps := []struct {
		set  func()
		want string
	}{
		{func() {}, "GET " + secretPath},
		{func() {}, "GET " + secretPath},
		{func() { r.setState(engine.Failed) }, "GET " + secretPath + "/fail"},
		{func() { r.setState(engine.SOS) }, "GET " + secretPath + "/fail"},
		{func() {
			r.setState(engine.Healthy)
			pe := "talon.star:3:1: undefined: prob"
			s := *r.snap.Load()
			s.PolicyError = &pe
			r.snap.Store(&s)
		}, "GET " + secretPath + "/fail"},
		{func() { s := *r.snap.Load(); s.PolicyError = nil; s.Stale = true; r.snap.Store(&s) }, "GET " + secretPath + "/fail"},
		{func() { r.setState(engine.Healthy) }, "GET " + secretPath},
		{func() {
			r.setState(engine.Healthy)
			s := *r.snap.Load()
			s.WriteError = &engine.WriteError{State: "write state.json: no space left on device"}
			r.snap.Store(&s)
		}, "GET " + secretPath + "/fail"},
		{func() { r.setState(engine.Healthy) }, "GET " + secretPath},
	}
	var w wait
	for i, st := range steps {
		if i > 0 {
			st.set()
			w.fire()
		}
		w = r.clk.next(t, time.Minute) // the ping of this step is done
		if got := srv.requests(); len(got) != i+1 || got[i] != st.want {
			t.Fatalf("step %d: requests %q, want %q last", i, got, st.want)
		}
	}
	logs := r.logs.String()
	for _, want := range []string{"heartbeat: pinging", "heartbeat: reporting failure", "reason=\"state failed\"", "no space left on device", "heartbeat: reporting healthy again"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "secret") {
		t.Errorf("the URL's secret path is in the logs:\n%s", logs)
	}
}

// A failing endpoint gets one request per interval, and each failure is
// logged with the URL's secret part left out.
func TestFailuresAreLoggedNeverRetriedSooner(t *testing.T) {
	srv := newServer(t)
	srv.status.Store(500)
	hb := &engine.Heartbeat{URL: literal(srv.URL + secretPath), Every: 2 * time.Minute, Method: "HEAD", Timeout: 5 * time.Second, Target: srv.URL}
	r := start(t, hb)
	for i := 0; i < 3; i++ {
		r.clk.next(t, 2*time.Minute).fire()
	}
	r.clk.next(t, 2*time.Minute).fire()
	if n := len(srv.requests()); n != 4 {
		t.Fatalf("%d requests for 4 intervals", n)
	}
	srv.Close() // now nothing listens: connection refused
	r.clk.next(t, 2*time.Minute)
	logs := r.logs.String()
	if c := strings.Count(logs, "heartbeat not delivered"); c != 5 || !strings.Contains(logs, `err="HTTP 500 Internal Server Error"`) ||
		!strings.Contains(logs, "failures=5") || !strings.Contains(logs, "connection refused") {
		t.Fatalf("%d failures logged:\n%s", c, logs)
	}
	if strings.Contains(logs, "secret") {
		t.Fatalf("the URL's secret path is in the logs:\n%s", logs)
	}
}

func TestPostCarriesTheStateAndFailURL(t *testing.T) {
	srv := newServer(t)
	hb := &engine.Heartbeat{URL: literal(srv.URL + "/ping/abc"), FailURL: literal(srv.URL + "/custom-fail"),
		Every: time.Minute, Method: "POST", Timeout: 5 * time.Second, Target: srv.URL}
	r := start(t, hb)
	w := r.clk.next(t, time.Minute)
	r.setState(engine.Critical)
	w.fire()
	r.clk.next(t, time.Minute)
	got := srv.requests()
	if len(got) != 2 || got[0] != "POST /ping/abc talon on mac-mini: healthy; 3 probes, 0 failing" ||
		got[1] != "POST /custom-fail talon on mac-mini: state critical; 3 probes, 1 failing: api; incident 20261123T031200Z-1" {
		t.Fatalf("requests %q", got)
	}
}

// A ping that gets no answer ends at its timeout, and the loop goes on.
func TestTimeout(t *testing.T) {
	srv := newServer(t)
	srv.block.Store(true)
	hb := &engine.Heartbeat{URL: literal(srv.URL + secretPath), Every: time.Minute, Method: "GET", Timeout: 100 * time.Millisecond, Target: srv.URL}
	r := start(t, hb)
	r.clk.next(t, time.Minute)
	if logs := r.logs.String(); !strings.Contains(logs, `err="no answer within the timeout"`) {
		t.Fatalf("logs:\n%s", logs)
	}
}

// Without a heartbeat it pings nothing, and looks again: a reload may add one.
func TestNoHeartbeatUntilAReloadDeclaresOne(t *testing.T) {
	srv := newServer(t)
	r := start(t, nil)
	r.clk.next(t, 30*time.Second).fire()
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("%d requests without a heartbeat", n)
	}
	w := r.clk.next(t, 30*time.Second)
	r.hb.Store(&engine.Heartbeat{URL: literal(srv.URL + "/x"), Every: time.Minute, Method: "GET", Timeout: time.Second, Target: srv.URL})
	w.fire()
	r.clk.next(t, time.Minute)
	if got := srv.requests(); len(got) != 1 || got[0] != "GET /x" {
		t.Fatalf("after a reload declared one: %q", got)
	}
}
