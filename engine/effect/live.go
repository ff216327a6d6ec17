package effect

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// Live performs real side effects.
type Live struct {
	// Instance, when set (the daemon's), marks and records every command
	// run, for the sweep after a crash (Instance.Sweep).
	Instance *Instance

	client *http.Client
	dialer net.Dialer
}

// NewLive returns effects that act on the real world. HTTP redirects are not
// followed: a probe sees the status the server actually sent.
func NewLive() *Live {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{KeepAlive: -1}).DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  0, // the request context bounds every request
		MaxResponseHeaderBytes: 1 << 20,
	}
	return &Live{client: &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Exec runs c; see Command.
func (l *Live) Exec(ctx context.Context, c Command) ExecResult { return run(ctx, c, l.Instance) }

// Do sends req with a client that has no global timeout: req's context bounds it.
func (l *Live) Do(req *http.Request) (*http.Response, error) {
	if _, ok := req.Context().Deadline(); !ok {
		return nil, errors.New("http request without a deadline")
	}
	return l.client.Do(req)
}

// Dial connects to addr; ctx bounds the connection attempt.
func (l *Live) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := l.dialer
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	} else {
		d.Timeout = 10 * time.Second
	}
	return d.DialContext(ctx, network, addr)
}
