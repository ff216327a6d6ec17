// Package health is Talon's HTTP endpoint: GET /health (the JSON snapshot
// that `talon status`, the gateway heartbeat and other consumers read),
// POST /reload (what `talon reload` calls), POST /pause, /resume and /ack
// (talon pause, resume and ack; loopback only), and GET /metrics
// (Prometheus text exposition).
//
// It is a plain net/http server with read, write and idle timeouts: every
// connection is served on its own goroutine, so an idle or slow client can
// never hold up another — the predecessor served one connection at a time
// and a single idle client took the endpoint down. Connections are capped
// (MaxConns, derived from the file descriptor limit) so that idle clients can
// never use up the descriptors probes need; past the cap the oldest
// connection that has not sent a request (or sits idle between requests) is
// closed to make room. Routes match exactly (`/healthz` is not `/health`);
// the query string is ignored.
package health

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/log"

	"github.com/talon-dev/talon/engine"
)

// DefaultBind is where the endpoint listens unless the config says otherwise.
const DefaultBind = "127.0.0.1:9999"

// Server timeouts. ReloadTimeout is how long POST /reload waits for the
// daemon before answering; it stays under WriteTimeout so that the client
// always gets an answer.
const (
	ReadHeaderTimeout = 2 * time.Second
	ReadTimeout       = 5 * time.Second
	WriteTimeout      = 5 * time.Second
	IdleTimeout       = 30 * time.Second
	MaxHeaderBytes    = 16 << 10
	ReloadTimeout     = 4 * time.Second
)

// MetricsContentType is the Content-Type of GET /metrics: the Prometheus
// text exposition format, version 0.0.4.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// Options configure a Server.
type Options struct {
	// Bind is the listen address, host:port. Empty means DefaultBind.
	Bind string
	// Snapshot returns the daemon's current health. Required.
	Snapshot func() engine.Snapshot
	// Reload reloads the policy and returns its hash, or an error whose text
	// is "file:line:col: message". Nil: POST /reload answers 501.
	Reload func(ctx context.Context) (hash string, err error)
	// Metrics writes the whole /metrics body in the text exposition format.
	// Nil: metrics are derived from Snapshot (see WriteMetrics).
	Metrics func(w io.Writer)
	// Logger receives server errors at debug level and lifecycle at info.
	// Nil discards.
	Logger *log.Logger
	// AllowedHosts are Host header names beyond loopback that GET and HEAD
	// /health answer to on a loopback bind ([health] allowed_hosts).
	AllowedHosts []string
	// MaxConns caps the open connections; 0 derives it from the process's
	// file descriptor limit (DefaultMaxConns).
	MaxConns int
	// Control carries out POST /pause, /resume and /ack. Nil: they answer 501.
	Control Controller
	// Token is what POST /pause, /resume, /ack and /reload must carry in
	// the Talon-Token header (WriteToken). Empty: they are refused.
	Token string
}

// Server is the health endpoint.
type Server struct {
	opts Options
	log  *log.Logger
	srv  *http.Server

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{}
	// open counts the connections not yet closed.
	open int
	// waiting holds, oldest first, the connections that are not serving a
	// request: new ones that have not sent one yet and idle keep-alives.
	// They are closed first when the cap is reached, and Shutdown closes
	// them at once instead of waiting for their timeouts.
	waiting *list.List
	byConn  map[net.Conn]*list.Element
	// closed are connections closed to make room, counted out of open
	// already; the server reports their end later.
	closed  map[net.Conn]bool
	evicted int

	// The last /health and /metrics bodies, encoded once per published
	// snapshot (engine.Snapshot.Seq) and served from here until the next:
	// at 1,000 probes encoding them is most of a request's cost.
	healthCache, metricsCache atomic.Pointer[cachedBody]
}

// cachedBody is an encoded body and what it was encoded from: a snapshot
// (Seq) as the daemon published it, plus what Snapshot adds on each call
// (ok and stale as of now, the worker's live status).
type cachedBody struct {
	seq       uint64
	ok, stale bool
	worker    []byte
	body      []byte
}

func (c *cachedBody) fits(snap engine.Snapshot, worker []byte) bool {
	return c != nil && snap.Seq != 0 && c.seq == snap.Seq && c.ok == snap.OK && c.stale == snap.Stale && bytes.Equal(c.worker, worker)
}

// New builds a server; Start makes it listen.
func New(opts Options) *Server {
	if opts.Bind == "" {
		opts.Bind = DefaultBind
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.New(io.Discard)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns()
	}
	s := &Server{opts: opts, log: logger, waiting: list.New(), byConn: map[net.Conn]*list.Element{}, closed: map[net.Conn]bool{}}
	s.srv = &http.Server{
		ConnState:         s.connState,
		Handler:           s.Handler(),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          logger.StandardLog(log.StandardLogOptions{ForceLevel: log.DebugLevel}),
	}
	return s
}

// Start listens on the bind address and serves in the background. It
// returns the address actually bound (useful with port 0).
func (s *Server) Start() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return "", errors.New("health server already started")
	}
	if s.opts.Snapshot == nil {
		return "", errors.New("health server: no Snapshot function")
	}
	ln, err := net.Listen("tcp", s.opts.Bind)
	if err != nil {
		return "", fmt.Errorf("health endpoint: %w", err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("health endpoint stopped", "err", err)
		}
	}()
	addr := ln.Addr().String()
	s.log.Info("health endpoint listening", "bind", addr, "max_conns", s.opts.MaxConns)
	return addr, nil
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.ln != nil
	done := s.done
	s.mu.Unlock()
	if !started {
		return nil
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.srv.Shutdown(ctx) }()
	// Connections that never sent a request have nothing to finish; without
	// this, Shutdown would wait for their header timeout.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for waiting := true; waiting; {
		s.closeWaiting()
		select {
		case err = <-stopped:
			waiting = false
		case <-tick.C:
		}
	}
	if err != nil {
		s.srv.Close()
	}
	<-done
	return err
}

func (s *Server) closeWaiting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.waiting.Front(); e != nil; e = e.Next() {
		e.Value.(net.Conn).Close()
	}
}

// connState keeps the count of open connections and the list of those not
// serving a request, and enforces the cap: a new connection past it closes
// the oldest waiting one (itself when no other waits), which costs one
// accept and one close, never a descriptor held.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byConn[c]; e != nil {
		s.waiting.Remove(e)
		delete(s.byConn, c)
	}
	switch st {
	case http.StateNew:
		s.open++
		s.byConn[c] = s.waiting.PushBack(c)
		if s.open > s.opts.MaxConns {
			oldest := s.waiting.Front().Value.(net.Conn)
			s.waiting.Remove(s.waiting.Front())
			delete(s.byConn, oldest)
			oldest.Close()
			s.closed[oldest] = true
			s.open--
			s.evicted++
			if s.evicted&(s.evicted-1) == 0 { // 1, 2, 4, 8, ...: say it, not every time
				s.log.Warn("health endpoint at its connection cap; closing the oldest idle connections", "max_conns", s.opts.MaxConns, "closed", s.evicted)
			}
		}
	case http.StateIdle:
		s.byConn[c] = s.waiting.PushBack(c)
	case http.StateClosed, http.StateHijacked:
		if s.closed[c] {
			delete(s.closed, c)
		} else {
			s.open--
		}
	}
}

// Handler is the endpoint's routing, for tests and for embedding.
func (s *Server) Handler() http.Handler {
	reload := http.NewCrossOriginProtection()
	reload.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, errorBody("cross_origin_request_refused"))
	}))
	reloadHandler := reload.Handler(s.guard(http.HandlerFunc(s.reload), false))
	controlHandler := reload.Handler(s.guard(http.HandlerFunc(s.control), true))
	loopback := RefuseNonLoopback(s.opts.Bind, false) == nil
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// On a loopback bind, only loopback names may be asked for: a web
		// page that rebinds its own host name to 127.0.0.1 (DNS rebinding)
		// must not read probe outputs or trigger reloads.
		if loopback && !loopbackHost(r.Host) && !s.allowedHost(r) {
			writeJSON(w, http.StatusForbidden, errorBody("host_not_allowed"))
			return
		}
		switch r.URL.Path {
		case "/health":
			if !allow(w, r, http.MethodGet, http.MethodHead) {
				return
			}
			s.health(w, r)
		case "/reload":
			if !allow(w, r, http.MethodPost) {
				return
			}
			reloadHandler.ServeHTTP(w, r)
		case "/pause", "/resume", "/ack":
			if !allow(w, r, http.MethodPost) {
				return
			}
			controlHandler.ServeHTTP(w, r)
		case "/identity":
			if !allow(w, r, http.MethodGet) {
				return
			}
			s.identity(w, r)
		case "/metrics":
			if !allow(w, r, http.MethodGet, http.MethodHead) {
				return
			}
			s.metrics(w, r)
		default:
			writeJSON(w, http.StatusNotFound, errorBody("not_found"))
		}
	})
}

// allow answers 405 unless the request uses one of the methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorBody("method_not_allowed"))
	return false
}

type errBody struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

func errorBody(msg string) errBody { return errBody{OK: false, Error: msg} }

type reloadBody struct {
	OK         bool   `json:"ok"`
	PolicyHash string `json:"policy_hash"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody("encode: " + err.Error()))
	}
	writeBody(w, code, append(b, '\n'))
}

// writeBody writes an encoded JSON body.
func writeBody(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	snap := s.opts.Snapshot()
	var worker []byte
	if snap.Worker != nil {
		worker, _ = json.Marshal(snap.Worker)
	}
	if c := s.healthCache.Load(); c.fits(snap, worker) {
		writeBody(w, http.StatusOK, c.body)
		return
	}
	if snap.FailedProbes == nil {
		snap.FailedProbes = []string{} // consumers read an array, never null
	}
	b, err := json.Marshal(healthBody{Snapshot: snap, StateCompat: StateCompat(snap.State)})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody("encode: "+err.Error()))
		return
	}
	b = append(b, '\n')
	if snap.Seq != 0 {
		s.healthCache.Store(&cachedBody{seq: snap.Seq, ok: snap.OK, stale: snap.Stale, worker: worker, body: b})
	}
	writeBody(w, http.StatusOK, b)
}

// healthBody is GET /health: the snapshot and state_compat.
type healthBody struct {
	engine.Snapshot
	// StateCompat is the state as the predecessor spelled it, for consumers
	// that compare it case-sensitively.
	StateCompat string `json:"state_compat"`
}

// StateCompat spells a phase as the predecessor's /health did: "Healthy",
// "Degraded", "Failed", "Investigating", "Critical", "SOS".
func StateCompat(p engine.Phase) string {
	switch p {
	case engine.SOS:
		return "SOS"
	case "":
		return ""
	}
	return strings.ToUpper(string(p[:1])) + string(p[1:])
}

// allowedHost reports whether a request that names a non-loopback host may
// be answered: only a read of /health, and only for a configured name.
func (s *Server) allowedHost(r *http.Request) bool {
	if r.URL.Path != "/health" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	for _, a := range s.opts.AllowedHosts {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		if host != "" && strings.EqualFold(host, strings.TrimSuffix(strings.Trim(a, "[]"), ".")) {
			return true
		}
	}
	return false
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reload == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody("reload is not available"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ReloadTimeout)
	defer cancel()
	type result struct {
		hash string
		err  error
	}
	ch := make(chan result, 1)
	go func() { // answer in time even if the reload itself does not honour ctx
		h, err := s.opts.Reload(ctx)
		ch <- result{h, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		res.err = fmt.Errorf("reload did not finish within %s; it may still complete", ReloadTimeout)
	}
	if res.err != nil {
		s.log.Debug("reload via health endpoint failed", "err", res.err)
		writeJSON(w, http.StatusInternalServerError, errorBody(res.err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, reloadBody{OK: true, PolicyHash: res.hash})
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", MetricsContentType)
	w.Header().Set("Cache-Control", "no-store")
	if s.opts.Metrics != nil {
		s.opts.Metrics(w)
		return
	}
	snap := s.opts.Snapshot()
	if c := s.metricsCache.Load(); c.fits(snap, nil) {
		w.Write(c.body)
		return
	}
	var b bytes.Buffer
	if err := WriteMetrics(&b, snap); err != nil {
		s.log.Error("metrics exposition failed", "err", err)
		return
	}
	if snap.Seq != 0 {
		s.metricsCache.Store(&cachedBody{seq: snap.Seq, ok: snap.OK, stale: snap.Stale, body: b.Bytes()})
	}
	w.Write(b.Bytes())
}

// RefuseNonLoopback returns an error for a bind address that is not on the
// loopback interface, unless allow is set. Only loopback IP literals
// (127.0.0.0/8, ::1) and "localhost" count as loopback: a host name is never
// resolved here, and an empty host (":9999") means every interface.
func RefuseNonLoopback(bind string, allow bool) error {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("health bind %q: %w", bind, err)
	}
	if allow || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("health bind %s is not a loopback address; set [health] allow_non_loopback = true to expose it", bind)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a Host header names this machine's loopback:
// a loopback IP or "localhost", with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
