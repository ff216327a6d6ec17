package probe_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
)

func TestHTTPProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "healthy ✓\n")
		case "/idle":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "no workers registered")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/auth":
			if r.Header.Get("Authorization") != "Bearer t0k" || r.Method != http.MethodPost {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, "welcome")
		case "/big":
			w.Write([]byte(strings.Repeat("x", 200<<10) + "TAIL"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	u := srv.URL
	cases := []probeCase{
		{"pass", `probe.http("ok", "` + u + `/ok")`, true, "HTTP 200: healthy ✓"},
		{"fail", `probe.http("idle", "` + u + `/idle")`, false, "HTTP 503: no workers registered"},
		{"2xx passes", `probe.http("empty", "` + u + `/empty")`, true, "HTTP 204"},
		{"expect_status", `probe.http("idle", "` + u + `/idle", expect_status = 503)`, true, "HTTP 503"},
		{"expect_status list", `probe.http("ok", "` + u + `/ok", expect_status = [204, 503])`, false, "HTTP 200"},
		{"redirect not followed", `probe.http("moved", "` + u + `/moved")`, false, "HTTP 302 (redirect to /ok not followed)"},
		{"not found", `probe.http("nf", "` + u + `/nope")`, false, "HTTP 404: 404 page not found"},
		{"body expect", `probe.http("ok", "` + u + `/ok", expect = "healthy")`, true, "HTTP 200"},
		{"empty body matched as empty", `probe.http("empty", "` + u + `/empty", expect_regex = "^$")`, true, "HTTP 204"},
		{"empty body is not the status line", `probe.http("empty", "` + u + `/empty", expect = "204")`, false, `expected "204", got ""`},
		{"body expect miss", `probe.http("ok", "` + u + `/ok", expect_exact = "ready")`, false, `expected == "ready", got "healthy ✓\n"`},
		{"headers and method", `probe.http("auth", "` + u + `/auth", method = "post", headers = {"Authorization": "Bearer t0k"})`, true, "HTTP 200: welcome"},
		{"headers missing", `probe.http("auth", "` + u + `/auth")`, false, "HTTP 401"},
		{"body capped at 64 KiB", `probe.http("big", "` + u + `/big", expect = "TAIL")`, false, `expected "TAIL", got "xxxx`},
		{"refused", `probe.http("down", "http://` + closedAddr(t) + `/")`, false, "connection refused"},
	}
	runCases(t, cases)
}

func TestHTTPProbeTimeout(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	res, took := probetest.Run(t, probetest.MustDeclare(t, `probe.http("silent", "http://`+addr+`/health", timeout = "1s")`))
	if res.Passed || !res.TimedOut || res.Output != "timeout after 1s" {
		t.Fatalf("got %+v", res)
	}
	if took < 900*time.Millisecond || took > 2*time.Second {
		t.Fatalf("1s timeout took %v", took)
	}
}

func TestHTTPProbeSlowBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	res, took := probetest.Run(t, probetest.MustDeclare(t, `probe.http("slow", "`+srv.URL+`", timeout = "1s")`))
	if res.Passed || !res.TimedOut || took > 2*time.Second {
		t.Fatalf("got %+v after %v", res, took)
	}
}

func TestHTTPProbeBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{`probe.http("x", "localhost:8080/health")`, `probe.http: x: url "localhost:8080/health": want an absolute http:// or https:// URL`},
		{`probe.http("x", "ftp://host/")`, `want an absolute http:// or https:// URL`},
		{`probe.http("x", "http:///path")`, `want an absolute http:// or https:// URL`},
		{`probe.http("x", "http://a/", expect_status = 600)`, `probe.http: x: expect_status: want status codes between 100 and 599, got 600`},
		{`probe.http("x", "http://a/", expect_status = "200")`, `expect_status: want a status code or a list of them, got string`},
		{`probe.http("x", "http://a/", expect_status = [])`, `expect_status: want at least one status code`},
		{`probe.http("x", "http://a/", headers = {"X": "a\nb"})`, `probe.http: x: bad header "X"`},
		{`probe.http("x", "http://a/", method = "")`, `probe.http: x: bad method ""`},
		{`probe.http("x", "http://a/", body = "x")`, `probe.http: unexpected keyword argument "body"`},
		{`probe.http("x", "http://a/", timeout = "soon")`, `want a duration such as "30s" or "5m", got "soon"`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
