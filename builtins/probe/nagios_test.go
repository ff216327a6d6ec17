//go:build linux

package probe_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/internal/testpeer"
)

func TestNagiosProbe(t *testing.T) {
	t.Parallel()
	testpeer.Need(t, "check_tcp", "check_disk", "check_http")

	open := acceptAndClose(t)
	closed := testpeer.FreePort(t)

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(web.Close)
	webPort := web.Listener.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name, src string
		passed    bool
		warning   bool
		output    string // regexp
		detail    map[string]string
	}{
		{"tcp ok", fmt.Sprintf(`probe.nagios("tcp", ["check_tcp", "-H", "127.0.0.1", "-p", "%d"])`, open),
			true, false, fmt.Sprintf(`^TCP OK - [0-9.]+ second response time on 127\.0\.0\.1 port %d$`, open),
			map[string]string{"status": "OK", "perf.time": `^[0-9.]+s$`}},
		{"tcp closed", fmt.Sprintf(`probe.nagios("tcp", ["check_tcp", "-H", "127.0.0.1", "-p", "%d"])`, closed),
			false, false, fmt.Sprintf(`^connect to address 127\.0\.0\.1 and port %d: Connection refused`, closed),
			map[string]string{"status": "CRITICAL"}},
		{"disk ok", `probe.nagios("disk", ["check_disk", "-w", "0%", "-c", "0%", "-p", "/"])`,
			true, false, `^DISK OK - free space: / `, map[string]string{"status": "OK", "perf./": `^[0-9]+B$`}},
		{"disk warning", `probe.nagios("disk", ["check_disk", "-w", "100%", "-c", "0%", "-p", "/"])`,
			true, true, `^DISK WARNING - free space: / `, map[string]string{"status": "WARNING"}},
		{"disk warning fails", `probe.nagios("disk", ["check_disk", "-w", "100%", "-c", "0%", "-p", "/"], warning_fails = True)`,
			false, true, `^DISK WARNING`, nil},
		{"disk critical", `probe.nagios("disk", ["check_disk", "-w", "100%", "-c", "100%", "-p", "/"])`,
			false, false, `^DISK CRITICAL - free space: / `, map[string]string{"status": "CRITICAL", "perf./": `^[0-9]+B$`}},
		{"http 200", fmt.Sprintf(`probe.nagios("http", ["check_http", "-H", "127.0.0.1", "-p", "%d", "-u", "/ok"])`, webPort),
			true, false, `^HTTP OK: HTTP/1\.1 200 OK - \d+ bytes in [0-9.]+ second response time$`,
			map[string]string{"perf.time": `^[0-9.]+s$`, "perf.size": `^\d+B$`}},
		{"http 500", fmt.Sprintf(`probe.nagios("http", ["check_http", "-H", "127.0.0.1", "-p", "%d", "-u", "/fail"])`, webPort),
			false, false, `^HTTP CRITICAL: HTTP/1\.1 500 Internal Server Error`, map[string]string{"status": "CRITICAL"}},
		{"expect on text", fmt.Sprintf(`probe.nagios("http", ["check_http", "-H", "127.0.0.1", "-p", "%d", "-u", "/ok"], expect = "200 OK")`, webPort),
			true, false, `^HTTP OK`, nil},
		{"unknown", `probe.nagios("bad", ["check_disk", "--no-such-option"])`,
			false, false, ``, map[string]string{"status": "UNKNOWN"}},
		{"missing plugin", `probe.nagios("m", ["check_talon_no_such_plugin"])`,
			false, false, `check_talon_no_such_plugin: not found on PATH`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.Run(t, probetest.MustDeclare(t, tc.src))
			if res.Passed != tc.passed || res.Warning != tc.warning || !regexp.MustCompile(tc.output).MatchString(res.Output) {
				t.Fatalf("got passed=%v warning=%v output=%q; want passed=%v warning=%v output matching %s",
					res.Passed, res.Warning, res.Output, tc.passed, tc.warning, tc.output)
			}
			for k, re := range tc.detail {
				if !regexp.MustCompile(re).MatchString(res.Detail[k]) {
					t.Errorf("detail[%q] = %q, want it to match %s (detail %v)", k, res.Detail[k], re, res.Detail)
				}
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		// check_tcp waits up to its own 10 s for a banner that never comes;
		// the probe's 1 s deadline ends it first.
		src := fmt.Sprintf(`probe.nagios("hang", ["check_tcp", "-H", "127.0.0.1", "-p", "%d", "-e", "hello", "-t", "10"], timeout = "1s")`, hangingListener(t))
		res, took := probetest.Run(t, probetest.MustDeclare(t, src))
		if res.Passed || !res.TimedOut || !strings.HasPrefix(res.Output, "timeout after 1s") {
			t.Fatalf("got %+v", res)
		}
		if took > 2*time.Second {
			t.Fatalf("1s timeout took %v", took)
		}
	})
}

func TestNagiosBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\nprobe.nagios(\"n\", [])", "talon.star:2:13: in <toplevel>\nError in probe.nagios: probe.nagios: n: argv must name a plugin"},
		{`probe.nagios("n", "check_disk -w 10%")`, "probe.nagios: for parameter argv: want a list of strings, got string"},
		{`probe.nagios("n", ["check_disk"], warning_fails = "yes")`, `probe.nagios: for parameter "warning_fails": got string, want bool`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
