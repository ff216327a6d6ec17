package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/talon-dev/talon/engine"
)

// Controller carries out the operator's commands of POST /pause, /resume
// and /ack: the daemon (engine.Daemon).
type Controller interface {
	// Pause pauses what c covers for d (0: until resumed).
	Pause(ctx context.Context, c engine.Control, d time.Duration) (engine.Pause, error)
	Resume(ctx context.Context, c engine.Control) ([]engine.Pause, error)
	Ack(ctx context.Context, c engine.Control) (string, error)
}

// ControlRequest is the JSON body of POST /pause, /resume and /ack. At most
// one of Probe, Tag and Rung names what a pause or resume is about; For is
// a pause's length ("30m"; empty: until resumed); Incident is the incident
// an ack is for (empty: the open one).
type ControlRequest struct {
	Probe    string `json:"probe,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Rung     string `json:"rung,omitempty"`
	For      string `json:"for,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Incident string `json:"incident,omitempty"`
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

// control serves POST /pause, /resume and /ack: loopback only, whatever
// the bind and allowed_hosts (a pause silences pages: only someone on this
// machine may ask for it).
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	if !loopbackHost(r.Host) || !loopbackRemote(r.RemoteAddr) {
		writeJSON(w, http.StatusForbidden, errorBody("control_needs_loopback"))
		return
	}
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
	s.log.Info("operator command", "route", r.URL.Path, "scope", c.Scope, "name", c.Name, "reason", c.Reason)
	writeJSON(w, http.StatusOK, ans)
}

// control turns a request into the command for path.
func (q ControlRequest) control(path string) (engine.Control, time.Duration, error) {
	c := engine.Control{Reason: q.Reason}
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
// "/pause", "/resume" or "/ack". A command the daemon refused is a
// *ControlError.
func PostControl(ctx context.Context, bind, path string, req ControlRequest) (ControlAnswer, error) {
	var ans ControlAnswer
	ctx, cancel := context.WithTimeout(ctx, ReloadWait)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return ans, err
	}
	resp, err := doBody(ctx, http.MethodPost, bind, path, body)
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
