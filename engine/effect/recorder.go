package effect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Intent is an action that a Recorder was asked to perform and did not.
type Intent struct {
	Kind   string `json:"kind"` // exec, http, dial
	Detail string `json:"detail"`
}

type descKey struct{}

// WithDescription attaches a human description of the effect about to be
// performed under ctx. Recorders use it instead of the raw request, so that
// a URL carrying a token (Telegram's) is never written down.
func WithDescription(ctx context.Context, desc string) context.Context {
	return context.WithValue(ctx, descKey{}, desc)
}

func description(ctx context.Context, fallback string) string {
	if d, ok := ctx.Value(descKey{}).(string); ok && d != "" {
		return d
	}
	return fallback
}

// Recorder performs nothing: every effect becomes an Intent handed to Record
// and reports success, so a policy runs in shadow mode exactly as it would live.
type Recorder struct {
	mu      sync.Mutex
	intents []Intent
	// OnIntent, when set, is called for each intent as it is recorded.
	OnIntent func(Intent)
}

func (r *Recorder) record(in Intent) {
	r.mu.Lock()
	r.intents = append(r.intents, in)
	f := r.OnIntent
	r.mu.Unlock()
	if f != nil {
		f(in)
	}
}

// Intents returns what was recorded so far.
func (r *Recorder) Intents() []Intent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Intent(nil), r.intents...)
}

// Exec records the command line.
func (r *Recorder) Exec(ctx context.Context, c Command) ExecResult {
	r.record(Intent{Kind: "exec", Detail: description(ctx, strings.Join(c.Argv, " "))})
	return ExecResult{ExitCode: 0, Stdout: "dry run: not executed", Duration: time.Millisecond}
}

// Do records the method and URL (without credentials or query) and answers
// 200 with {"ok":true,"dry_run":true}.
func (r *Recorder) Do(req *http.Request) (*http.Response, error) {
	u := *req.URL
	u.User, u.RawQuery = nil, ""
	r.record(Intent{Kind: "http", Detail: description(req.Context(), req.Method+" "+u.String())})
	body := `{"ok":true,"dry_run":true}`
	return &http.Response{
		StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    io.NopCloser(bytes.NewBufferString(body)),
		Request: req, ContentLength: int64(len(body)),
	}, nil
}

// Dial records the address and fails: nothing can be spoken to in shadow mode.
func (r *Recorder) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.record(Intent{Kind: "dial", Detail: description(ctx, network+" "+addr)})
	return nil, errors.New("dry run: connection not opened")
}

// Fake answers effects from functions set by a test. A nil function fails the
// effect with a clear error, so a test never passes on an effect it did not expect.
type Fake struct {
	ExecFunc func(ctx context.Context, c Command) ExecResult
	DoFunc   func(req *http.Request) (*http.Response, error)
	DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Exec calls ExecFunc.
func (f *Fake) Exec(ctx context.Context, c Command) ExecResult {
	if f.ExecFunc == nil {
		return ExecResult{ExitCode: -1, Err: errors.New("fake: unexpected exec " + strings.Join(c.Argv, " "))}
	}
	return f.ExecFunc(ctx, c)
}

// Do calls DoFunc.
func (f *Fake) Do(req *http.Request) (*http.Response, error) {
	if f.DoFunc == nil {
		return nil, errors.New("fake: unexpected http " + req.URL.String())
	}
	return f.DoFunc(req)
}

// Dial calls DialFunc.
func (f *Fake) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if f.DialFunc == nil {
		return nil, errors.New("fake: unexpected dial " + addr)
	}
	return f.DialFunc(ctx, network, addr)
}

var (
	_ Effects = (*Live)(nil)
	_ Effects = (*Recorder)(nil)
	_ Effects = (*Fake)(nil)
)

// SecretPlaceholder lets secret resolution stand in for a value in shadow
// mode: the lease is recorded as an intent and never performed, and the
// placeholder is shaped like a real token so the rest of the path runs.
func (r *Recorder) SecretPlaceholder(_ context.Context, name string) string {
	r.record(Intent{Kind: "secret", Detail: "resolve secret " + name})
	return "0:dry-run-" + name
}
