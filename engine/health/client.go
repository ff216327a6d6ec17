package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/internal/text"
)

// Client timeouts: a status query must never hang the CLI; a reload may take
// as long as the server allows it plus a margin.
const (
	GetTimeout    = 2 * time.Second
	ReloadWait    = ReloadTimeout + 2*time.Second
	maxClientBody = 8 << 20
)

// ErrNotRunning means nothing listens on the health address: the daemon is
// not running (or runs without its endpoint). `talon status` then falls back
// to the state file.
var ErrNotRunning = errors.New("talon is not running")

// ReloadError is a reload the daemon attempted and refused: the message is
// the policy error, "file:line:col: message".
type ReloadError struct{ Message string }

func (e *ReloadError) Error() string { return e.Message }

// Get fetches the running daemon's snapshot from the health endpoint at bind.
// Unknown fields are ignored, so a CLI can read a newer daemon.
func Get(ctx context.Context, bind string) (engine.Snapshot, error) {
	return getHealth(ctx, bind, "")
}

// GetVerified is Get from a server that first proved it holds token (the
// state directory's control file), so that a program that took the port
// cannot pass for the daemon (ErrNotOurDaemon).
func GetVerified(ctx context.Context, bind, token string) (engine.Snapshot, error) {
	return getHealth(ctx, bind, token)
}

func getHealth(ctx context.Context, bind, token string) (engine.Snapshot, error) {
	var snap engine.Snapshot
	ctx, cancel := context.WithTimeout(ctx, GetTimeout)
	defer cancel()
	var resp *http.Response
	var err error
	if token == "" {
		resp, err = do(ctx, http.MethodGet, bind, "/health")
	} else {
		resp, err = verified(ctx, bind, token, http.MethodGet, "/health", nil)
	}
	if err != nil {
		return snap, err
	}
	defer resp.Body.Close()
	body, err := readBody(resp)
	if err != nil {
		return snap, err
	}
	if resp.StatusCode != http.StatusOK {
		return snap, fmt.Errorf("health endpoint %s: %s: %s", bind, resp.Status, oneLine(body))
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		return snap, fmt.Errorf("health endpoint %s: bad snapshot: %w", bind, err)
	}
	return snap, nil
}

// PostReload asks the running daemon to reload its policy and returns the
// hash now in force; token and the identity check are as for PostControl.
// A policy the daemon refused is a *ReloadError.
func PostReload(ctx context.Context, bind, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ReloadWait)
	defer cancel()
	resp, err := command(ctx, bind, token, "/reload", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := readBody(resp)
	if err != nil {
		return "", err
	}
	var out struct {
		OK         bool   `json:"ok"`
		PolicyHash string `json:"policy_hash"`
		Error      string `json:"error"`
	}
	if jerr := json.Unmarshal(body, &out); jerr != nil {
		return "", fmt.Errorf("reload via %s: %s: %s", bind, resp.Status, oneLine(body))
	}
	switch {
	case resp.StatusCode == http.StatusOK && out.OK:
		return out.PolicyHash, nil
	case resp.StatusCode == http.StatusInternalServerError && out.Error != "":
		return "", &ReloadError{Message: out.Error}
	}
	return "", fmt.Errorf("reload via %s: %s: %s", bind, resp.Status, out.Error)
}

func do(ctx context.Context, method, bind, path string) (*http.Response, error) {
	return doBody(ctx, method, bind, path, nil)
}

// doBody sends a request with a JSON body (nil: none).
func doBody(ctx context.Context, method, bind, path string, body []byte) (*http.Response, error) {
	addr, err := dialAddr(bind)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// A private transport: no proxy from the environment, no pooled
	// connections outliving the call.
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, clientError(addr, err)
	}
	return resp, nil
}

func clientError(addr string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (nothing listens on %s)", ErrNotRunning, addr)
	}
	return fmt.Errorf("health endpoint %s: %w", addr, err)
}

// dialAddr turns a bind address into one to connect to: an unspecified host
// (":9999", "0.0.0.0:9999", "[::]:9999") is reached on loopback.
func dialAddr(bind string) (string, error) {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("health bind %q: %w", bind, err)
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

func readBody(resp *http.Response) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxClientBody))
	if err != nil {
		return nil, fmt.Errorf("health endpoint: read response: %w", err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("health endpoint: %s with Content-Type %q: %s (is something else listening there?)",
			resp.Status, resp.Header.Get("Content-Type"), oneLine(body))
	}
	return body, nil
}

func oneLine(b []byte) string { return text.FirstLine(string(b), 200) }
