package health

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/fsperm"
)

// Controller carries out the operator's commands of POST /pause, /resume
// and /ack: the daemon (engine.Daemon).
type Controller interface {
	// Pause pauses what c covers for d (0: engine.DefaultPause; at most
	// engine.MaxPause).
	Pause(ctx context.Context, c engine.Control, d time.Duration) (engine.Pause, error)
	Resume(ctx context.Context, c engine.Control) ([]engine.Pause, error)
	Ack(ctx context.Context, c engine.Control) (string, error)
}

// ControlRequest is the JSON body of POST /pause, /resume and /ack. At most
// one of Probe, Tag and Rung names what a pause or resume is about; For is
// a pause's length ("30m"; empty: engine.DefaultPause; at most
// engine.MaxPause); Incident is the incident an ack is for (empty: the open
// one); By is who asked, as the CLI knows it ("joel (uid 501)").
type ControlRequest struct {
	Probe    string `json:"probe,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Rung     string `json:"rung,omitempty"`
	For      string `json:"for,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Incident string `json:"incident,omitempty"`
	By       string `json:"by,omitempty"`
}

// ControlAnswer is the JSON answer of the control routes.
type ControlAnswer struct {
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Pause    *engine.Pause  `json:"pause,omitempty"`
	Resumed  []engine.Pause `json:"resumed,omitempty"`
	Incident string         `json:"incident,omitempty"`
}

// maxControlBody bounds a control request's body.
const maxControlBody = 16 << 10

// guard admits a request to a control route (POST /pause, /resume, /ack,
// /reload) only from this machine, by a loopback name, whatever the bind
// and allowed_hosts, and only with the token the daemon wrote in its state
// directory: a pause silences pages, so only the daemon's user (who can
// read that 0600 file) may ask for it, not any local user or program that
// can reach the port.
//
// POST /reload, which only has the daemon read its own files again, keeps
// taking peers beyond loopback on a bind that is not loopback
// (allow_non_loopback), as before the token: local is false for it.
func (s *Server) guard(next http.Handler, local bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if local && (!loopbackHost(r.Host) || !loopbackRemote(r.RemoteAddr)) {
			writeJSON(w, http.StatusForbidden, errorBody("control_needs_loopback"))
			return
		}
		if s.opts.Token == "" {
			writeJSON(w, http.StatusForbidden, errorBody("control_needs_token: this daemon has no control token (it could not write "+TokenFile+" in its state directory; see its log)"))
			return
		}
		if got := r.Header.Get(TokenHeader); subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) != 1 {
			writeJSON(w, http.StatusForbidden, errorBody("control_needs_token: send the "+TokenHeader+" header with the token in the daemon's state directory ("+TokenFile+"), as talon pause, resume, ack and reload do"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// identity serves GET /identity: the proof that this server holds the
// token of its state directory, HMAC-SHA256 of the client's challenge
// under the token, so that a client never sends the token to a program
// that took the daemon's port (see PostControl). The token itself never
// leaves the server.
//
// It answers wherever /reload does: the proof tells nothing of the token.
func (s *Server) identity(w http.ResponseWriter, r *http.Request) {
	if s.opts.Token == "" {
		writeJSON(w, http.StatusNotImplemented, errorBody("identity is not available: this daemon has no control token"))
		return
	}
	ch := r.Header.Get(ChallengeHeader)
	if len(ch) < 16 || len(ch) > 128 {
		writeJSON(w, http.StatusBadRequest, errorBody("identity: send a "+ChallengeHeader+" header of 16 to 128 characters"))
		return
	}
	writeJSON(w, http.StatusOK, identityBody{OK: true, Proof: Proof(s.opts.Token, ch)})
}

type identityBody struct {
	OK    bool   `json:"ok"`
	Proof string `json:"proof"`
}

// control serves POST /pause, /resume and /ack, behind guard.
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	if s.opts.Control == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody(r.URL.Path[1:]+" is not available"))
		return
	}
	var req ControlRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, errorBody("bad request body: "+err.Error()))
		return
	}
	c, dur, err := req.control(r.URL.Path)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ReloadTimeout)
	defer cancel()
	ans := ControlAnswer{OK: true}
	switch r.URL.Path {
	case "/pause":
		var p engine.Pause
		if p, err = s.opts.Control.Pause(ctx, c, dur); err == nil {
			ans.Pause = &p
		}
	case "/resume":
		ans.Resumed, err = s.opts.Control.Resume(ctx, c)
	case "/ack":
		ans.Incident, err = s.opts.Control.Ack(ctx, c)
	}
	if err != nil {
		writeJSON(w, http.StatusConflict, errorBody(err.Error()))
		return
	}
	s.log.Info("operator command", "route", r.URL.Path, "scope", c.Scope, "name", c.Name, "reason", c.Reason, "by", c.By)
	writeJSON(w, http.StatusOK, ans)
}

// control turns a request into the command for path.
func (q ControlRequest) control(path string) (engine.Control, time.Duration, error) {
	if len(q.By) > 200 {
		return engine.Control{}, 0, errors.New("by: at most 200 characters")
	}
	c := engine.Control{Reason: q.Reason, By: q.By}
	var dur time.Duration
	if path == "/ack" {
		if q.Probe != "" || q.Tag != "" || q.Rung != "" || q.For != "" {
			return c, 0, errors.New("ack takes an incident and a reason only")
		}
		c.Incident = q.Incident
		return c, 0, nil
	}
	if q.Incident != "" {
		return c, 0, fmt.Errorf("%s takes no incident", path[1:])
	}
	for _, x := range []struct{ scope, name string }{{engine.ScopeProbe, q.Probe}, {engine.ScopeTag, q.Tag}, {engine.ScopeRung, q.Rung}} {
		if x.name == "" {
			continue
		}
		if c.Scope != "" {
			return c, 0, errors.New("name at most one of probe, tag and rung")
		}
		c.Scope, c.Name = x.scope, x.name
	}
	if q.For != "" {
		if path != "/pause" {
			return c, 0, errors.New("resume takes no duration")
		}
		d, err := time.ParseDuration(q.For)
		if err != nil || d <= 0 {
			return c, 0, fmt.Errorf("for %q: want a positive duration such as 30m", q.For)
		}
		if d > engine.MaxPause {
			return c, 0, fmt.Errorf("for %q: a pause lasts at most %s; pause again when it ends", q.For, engine.MaxPause)
		}
		dur = d
	}
	if q.Reason != "" && path == "/resume" {
		return c, 0, errors.New("resume takes no reason")
	}
	return c, dur, nil
}

// loopbackRemote reports whether a request comes from this machine.
func loopbackRemote(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// PostControl sends an operator's command to the running daemon: path is
// "/pause", "/resume" or "/ack", token the one in the daemon's state
// directory (ReadToken). The server must first prove it holds that token;
// one that cannot is not our daemon (ErrNotOurDaemon) and gets nothing
// else. A command the daemon refused is a *ControlError.
func PostControl(ctx context.Context, bind, token, path string, req ControlRequest) (ControlAnswer, error) {
	var ans ControlAnswer
	ctx, cancel := context.WithTimeout(ctx, ReloadWait)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return ans, err
	}
	resp, err := command(ctx, bind, token, path, body)
	if err != nil {
		return ans, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp)
	if err != nil {
		return ans, err
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return ans, fmt.Errorf("%s via %s: %s: %s", path[1:], bind, resp.Status, oneLine(b))
	}
	if resp.StatusCode != http.StatusOK || !ans.OK {
		return ans, &ControlError{Status: resp.StatusCode, Message: ans.Error}
	}
	return ans, nil
}

// ControlError is a command the daemon refused, with its reason.
type ControlError struct {
	Status  int
	Message string
}

func (e *ControlError) Error() string { return e.Message }

// The control token: TokenFile in the daemon's state directory (0700, its
// user's), written 0600 at every start. Whoever can read it is the
// daemon's user (or root) and may command it.
const (
	TokenFile       = "control.token"
	TokenHeader     = "Talon-Token"
	ChallengeHeader = "Talon-Challenge"
	tokenBytes      = 32
)

// ErrNotOurDaemon is a server on the health address that cannot prove it
// holds the token of the state directory: another program took the port,
// or a daemon of another state directory listens there.
var ErrNotOurDaemon = errors.New("not this state directory's talon daemon")

// ControlFile is what the daemon writes, 0600, to TokenFile in its state
// directory once its endpoint listens: the token its control routes want,
// the address it actually bound and its pid. The CLI finds the daemon
// through it, so that pause, ack and reload need nothing from config.toml
// but the state directory.
type ControlFile struct {
	Token string `json:"token"`
	Addr  string `json:"addr"`
	PID   int    `json:"pid"`
}

// NewToken is a fresh random control token.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// WriteControlFile writes cf to TokenFile in stateDir, 0600 and atomically
// (a reader sees the old file or the new one). It returns the function
// that removes it.
func WriteControlFile(stateDir string, cf ControlFile) (func(), error) {
	b, err := json.Marshal(cf)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(stateDir, TokenFile)
	if err := engine.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("control file: %w", err)
	}
	return func() { os.Remove(path) }, nil
}

// ReadControlFile reads the file the daemon of stateDir wrote, never
// through a symbolic link.
func ReadControlFile(stateDir string) (ControlFile, error) {
	var cf ControlFile
	path := filepath.Join(stateDir, TokenFile)
	b, err := fsperm.ReadPrivate(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return cf, fmt.Errorf("no control token in %s: %w", stateDir, err)
	case errors.Is(err, os.ErrPermission):
		return cf, fmt.Errorf("control token %s: %w; run this as the daemon's user", path, err)
	case err != nil:
		return cf, fmt.Errorf("control token: %w", err)
	}
	if json.Unmarshal(b, &cf) != nil || len(cf.Token) != 2*tokenBytes {
		return cf, fmt.Errorf("%s is not a control token; restart the daemon to write a new one", path)
	}
	if _, err := hex.DecodeString(cf.Token); err != nil {
		return cf, fmt.Errorf("%s is not a control token; restart the daemon to write a new one", path)
	}
	return cf, nil
}

// Proof is the server's answer to a challenge: HMAC-SHA256 under the token.
func Proof(token, challenge string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("talon-identity\x00" + challenge))
	return hex.EncodeToString(m.Sum(nil))
}

// command sends one command to the daemon at bind: GET /identity with a
// fresh challenge, then, only if the proof matches the token and on that
// same connection, the POST with the token. The connection is dialled once
// and never again, so the server that proved itself is the one that gets
// the token.
func command(ctx context.Context, bind, token, path string, body []byte) (*http.Response, error) {
	return verified(ctx, bind, token, http.MethodPost, path, body)
}

// verified is command with any method: the request goes only to a server
// that proved it holds token, on the connection it proved it on.
func verified(ctx context.Context, bind, token, method, path string, body []byte) (*http.Response, error) {
	addr, err := dialAddr(bind)
	if err != nil {
		return nil, err
	}
	var dialed atomic.Bool
	var d net.Dialer
	tr := &http.Transport{Proxy: nil, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if dialed.Swap(true) {
				return nil, errors.New("the connection to the daemon closed between its identity check and the command; try again")
			}
			return d.DialContext(ctx, network, a)
		}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	ch := make([]byte, 24)
	if _, err := rand.Read(ch); err != nil {
		return nil, err
	}
	challenge := hex.EncodeToString(ch)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/identity", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(ChallengeHeader, challenge)
	resp, err := c.Do(req)
	if err != nil {
		return nil, clientError(addr, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	var id identityBody
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &id) != nil ||
		!hmac.Equal([]byte(id.Proof), []byte(Proof(token, challenge))) {
		return nil, fmt.Errorf("%w: the server on %s cannot prove it holds the state directory's %s (%s: %s); another program may have taken the port, or a daemon of another state directory listens there",
			ErrNotOurDaemon, addr, TokenFile, resp.Status, oneLine(b))
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err = http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(TokenHeader, token)
	resp, err = c.Do(req)
	if err != nil {
		return nil, clientError(addr, err)
	}
	return resp, nil
}

// MaxBindBackoff is the longest wait between two attempts to listen.
const MaxBindBackoff = time.Minute

// Listen makes the server listen, and while it cannot (the port is taken:
// another program, or the previous daemon not gone yet) tries again after
// 1 s, 2 s, 4 s … up to MaxBindBackoff, logging every failure with the
// next attempt, until it listens or ctx ends. The daemon watches on
// meanwhile, and says so: it never runs without its endpoint silently.
// onListen gets the address bound. after is the clock (nil: time.After).
// It returns once the server listens or ctx ends; whether it listens is
// Shutdown's business.
func (s *Server) Listen(ctx context.Context, after func(time.Duration) <-chan time.Time, onListen func(addr string)) {
	if after == nil {
		after = time.After
	}
	wait := time.Second
	for attempt := 1; ; attempt++ {
		addr, err := s.Start()
		if err == nil {
			if attempt > 1 {
				s.log.Info("health endpoint listening after all", "bind", addr, "attempts", attempt)
			}
			if onListen != nil {
				onListen(addr)
			}
			return
		}
		s.log.Error("health endpoint not listening; probes and the ladder run on, but /health, talon status, pause, ack and reload cannot reach this daemon until it does",
			"bind", s.opts.Bind, "err", err, "attempt", attempt, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-after(wait):
		}
		wait = min(2*wait, MaxBindBackoff)
	}
}
