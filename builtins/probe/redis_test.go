//go:build linux

package probe_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/internal/testpeer"
)

func TestRedisProbe(t *testing.T) {
	t.Parallel()
	open := testpeer.StartRedis(t, "")
	locked := testpeer.StartRedis(t, "s3cret pass")
	closed := fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))

	cases := []probeCase{
		{"pass", `probe.redis("redis", "` + open.Addr + `")`, true, "PONG"},
		{"expect", `probe.redis("redis", "` + open.Addr + `", expect_exact = "PONG")`, true, "PONG"},
		{"info", `probe.redis("aof", "` + open.Addr + `", info = {"aof_last_bgrewrite_status": "ok", "aof_enabled": "0"})`, true, "PONG; aof_enabled=0 aof_last_bgrewrite_status=ok"},
		{"info mismatch", `probe.redis("aof", "` + open.Addr + `", info = {"aof_enabled": "1", "loading": "0"})`, false, `INFO aof_enabled = "0", want "1"`},
		{"info missing", `probe.redis("aof", "` + open.Addr + `", info = {"no_such_field": "x"})`, false, `INFO no_such_field is missing, want "x"`},
		{"password", `probe.redis("redis", "` + locked.Addr + `", password = "s3cret pass", info = {"role": "master"})`, true, "PONG; role=master"},
		{"password required", `probe.redis("redis", "` + locked.Addr + `")`, false, "redis " + locked.Addr + ": PING: NOAUTH Authentication required."},
		{"wrong password", `probe.redis("redis", "` + locked.Addr + `", password = "guess")`, false, "redis " + locked.Addr + ": AUTH: WRONGPASS invalid username-password pair or user is disabled."},
		{"password not configured", `probe.redis("redis", "` + open.Addr + `", password = "guess")`, false, "redis " + open.Addr + ": AUTH: ERR AUTH <password> called without any password configured"},
		{"closed port", `probe.redis("redis", "` + closed + `")`, false, "redis " + closed + ": connect: dial tcp " + closed + ": connect: connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.Run(t, probetest.MustDeclare(t, tc.src))
			if res.Passed != tc.passed || !strings.Contains(res.Output, tc.output) {
				t.Fatalf("got passed=%v output=%q; want passed=%v output containing %q", res.Passed, res.Output, tc.passed, tc.output)
			}
			if strings.Contains(res.Output, "s3cret") {
				t.Fatalf("password in output %q", res.Output)
			}
		})
	}

	// A secret password is resolved when the probe runs, from the probe's
	// environment, and never shows in the output.
	secretCases := []struct {
		name, env string
		passed    bool
		output    string
	}{
		{"secret password", "REDIS_PW=s3cret pass", true, "PONG; role=master"},
		{"secret wrong password", "REDIS_PW=s3cret guess", false, "redis " + locked.Addr + ": AUTH: WRONGPASS invalid username-password pair or user is disabled."},
		{"secret unset", "", false, "redis " + locked.Addr + ": password: secret x: environment variable REDIS_PW is not set"},
	}
	for _, tc := range secretCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := probetest.MustDeclare(t, `probe.redis("redis", "`+locked.Addr+`", password = secret("x", env = "REDIS_PW"), info = {"role": "master"})`)
			var extra []string
			if tc.env != "" {
				extra = append(extra, tc.env)
			}
			res, _ := probetest.RunWithEnv(t, p, extra...)
			if res.Passed != tc.passed || res.Output != tc.output {
				t.Fatalf("got passed=%v output=%q; want passed=%v output %q", res.Passed, res.Output, tc.passed, tc.output)
			}
			if strings.Contains(res.Output, "s3cret") {
				t.Fatalf("password in output %q", res.Output)
			}
		})
	}

	t.Run("detail", func(t *testing.T) {
		t.Parallel()
		res, _ := probetest.Run(t, probetest.MustDeclare(t, `probe.redis("r", "`+open.Addr+`", info = {"aof_enabled": "0"})`))
		if res.Detail["info.aof_enabled"] != "0" || res.Detail["role"] != "master" || res.Detail["redis_version"] == "" {
			t.Fatalf("detail %v", res.Detail)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		addr := fmt.Sprintf("127.0.0.1:%d", hangingListener(t))
		res, took := probetest.Run(t, probetest.MustDeclare(t, `probe.redis("hang", "`+addr+`", timeout = "1s")`))
		if res.Passed || !res.TimedOut || res.Output != "timeout after 1s: no answer from "+addr+" to PING" {
			t.Fatalf("got %+v", res)
		}
		if took < time.Second || took > 2*time.Second {
			t.Fatalf("1s timeout took %v", took)
		}
	})
}

func TestRedisBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\n\nprobe.redis(\"r\", \"localhost\")", "talon.star:3:12: in <toplevel>\nError in probe.redis: probe.redis: r: addr \"localhost\": want \"host:port\""},
		{`probe.redis("r", "127.0.0.1:0")`, `probe.redis: r: addr "127.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{`probe.redis("r", ":6379")`, `probe.redis: r: addr ":6379": missing host`},
		{`probe.redis("r", "h:1", info = ["aof_enabled"])`, `probe.redis: for parameter "info": want a dict of strings, got list`},
		{`probe.redis("r", "h:1", info = {"a:b": "1"})`, `probe.redis: r: info field "a:b" is not an INFO field name`},
		{`probe.redis("r", "h:1", username = "u")`, `probe.redis: r: username needs a password`},
		{`probe.redis("r")`, `probe.redis: missing argument for addr`},
		{`probe.redis("r", "h:1", password = 3)`, `probe.redis: for parameter "password": want a secret or a string, got int`},
		{`probe.redis("r", "h:1", password = "")`, `probe.redis: for parameter "password": must not be empty`},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}
