package builtins_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins"
	"github.com/talon-dev/talon/engine/effect"
)

func TestHeartbeatErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, want string }{
		{`heartbeat("hc-ping.com/abc")`, `talon.star:1:10: heartbeat: url "hc-ping.…": want an http or https URL with a host`},
		{`heartbeat("ftp://hc-ping.com/5ecret-uuid")`, `talon.star:1:10: heartbeat: url "ftp://hc-ping.com/…": want an http or https URL with a host`},
		{`heartbeat("https://hc-ping.com/x", every = "5s")`, `talon.star:1:10: heartbeat: every 5s: want between 10s and 24h0m0s`},
		{`heartbeat("https://hc-ping.com/x", every = "30s", timeout = "1m")`, `talon.star:1:10: heartbeat: timeout 1m0s: want more than 0 and at most every (30s)`},
		{`heartbeat("https://hc-ping.com/x", method = "PUT")`, `talon.star:1:10: heartbeat: method "PUT": want GET, HEAD or POST`},
		{`heartbeat("https://hc-ping.com/x", fail_url = "nope")`, `talon.star:1:10: heartbeat: fail_url "nope": want an http or https URL with a host`},
		{`heartbeat(42)`, `talon.star:1:10: heartbeat: for parameter url: want a secret or a string, got int`},
		{"heartbeat(\"https://a.example/x\")\nheartbeat(\"https://b.example/y\")", `talon.star:2:10: heartbeat: already declared at talon.star:1:10; declare one heartbeat`},
	} {
		res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": tc.src})})
		var got []string
		for _, e := range res.Errors {
			got = append(got, e.Error())
		}
		if !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s:\n got %q\nwant %q", tc.src, got, tc.want)
		}
	}
}

func TestHeartbeatDeclared(t *testing.T) {
	t.Setenv("HC_PING_URL", "https://hc-ping.com/0f1e2d3c-secret")
	res := builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": `
heartbeat(secret("hc", env = "HC_PING_URL"), every = "2m", method = "post", timeout = "5s")
probe.exec("a", ["true"])
`})})
	if res.Err() != nil {
		t.Fatal(res.ErrorText())
	}
	hb := res.Policy.Heartbeat
	if hb == nil || hb.Every != 2*time.Minute || hb.Method != "POST" || hb.Timeout != 5*time.Second || hb.Target != "<secret hc>" || hb.Pos != "talon.star:2:10" || hb.FailURL != nil {
		t.Fatalf("heartbeat %+v", hb)
	}
	u, err := hb.URL(context.Background(), effect.NewLive(), []string{"HC_PING_URL=https://hc-ping.com/0f1e2d3c-secret"})
	if err != nil || u != "https://hc-ping.com/0f1e2d3c-secret" {
		t.Fatalf("url %q %v", u, err)
	}
	res = builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": `
heartbeat("https://hc-ping.com/abc", fail_url = "https://hc-ping.com/abc/fail-custom")
probe.exec("a", ["true"])
`})})
	if res.Err() != nil {
		t.Fatal(res.ErrorText())
	}
	hb = res.Policy.Heartbeat
	if hb.Every != time.Minute || hb.Method != "GET" || hb.Timeout != 10*time.Second || hb.Target != "https://hc-ping.com" || hb.FailURL == nil {
		t.Fatalf("defaults %+v", hb)
	}
	res = builtins.Load("/policy", builtins.Options{Config: testConfig(t), FS: mapFS(map[string]string{"talon.star": `probe.exec("a", ["true"])`})})
	if res.Policy.Heartbeat != nil {
		t.Fatal("a policy without heartbeat() has one")
	}
}
