//go:build linux

package probe_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/internal/testpeer"
)

func TestSSHProbe(t *testing.T) {
	t.Parallel()
	s := testpeer.StartSSHD(t)
	testpeer.Need(t, "python3") // the remote side is this host: it runs python3 too

	// A listener for the remote python one-liner to connect to.
	port := acceptAndClose(t)

	q := func(v string) string { return fmt.Sprintf("%q", v) }
	alias := fmt.Sprintf("host = %s, config = %s", q(s.Alias), q(s.Config))
	explicit := fmt.Sprintf("host = %s, port = %d, user = %s, config = %s", q(s.Host), s.Port, q(s.User), q(s.Config))

	cases := []struct {
		name, src string
		env       []string
		passed    bool
		output    string
	}{
		{"pass", `ssh.probe("pong", ` + alias + `, command = "echo PONG", expect = "PONG")`, nil, true, "PONG"},
		{"explicit port user identity", `ssh.probe("pong", ` + explicit + `, identity = ` + q(s.Key) + `, command = "echo PONG", expect_exact = "PONG")`, nil, true, "PONG"},
		{"quoted python one-liner", `ssh.probe("vm:tcp", ` + alias + `, command = "python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", ` + fmt.Sprint(port) + `), 2); print(\"open\", s.getpeername()[1])'")`, nil, true, fmt.Sprintf("open %d", port)},
		{"list command keeps words", `ssh.probe("argv", ` + alias + `, command = ["python3", "-c", "import sys; print(sys.argv[1:])", "a b", "it's", "$HOME"])`, nil, true, `['a b', "it's", '$HOME']`},
		// HOME differs locally, so only a remote expansion prints the remote home.
		{"remote expansion", `ssh.probe("home", ` + alias + `, command = "echo home=$HOME conn=${SSH_CONNECTION:+yes}")`, []string{"HOME=/nonexistent/local-home"}, true, "home=" + s.Home + " conn=yes"},
		{"fail", `ssh.probe("bad", ` + alias + `, command = "echo out; echo err >&2; exit 1")`, nil, false, "exit status 1: out\nerr"},
		{"expect miss", `ssh.probe("e", ` + alias + `, command = "echo PANG", expect = "PONG")`, nil, false, `expected "PONG", got "PANG"`},
		{"wrong key", `ssh.probe("auth", ` + explicit + `, identity = ` + q(s.WrongKey) + `, command = "echo PONG")`, nil, false, "ssh to 127.0.0.1 failed (exit 255): " + s.User + "@127.0.0.1: Permission denied (publickey)."},
		{"tilde config", `ssh.probe("tilde", host = ` + q(s.Alias) + `, config = "~/ssh_config", command = "echo PONG")`, []string{"HOME=" + s.Dir}, true, "PONG"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.RunWithEnv(t, probetest.MustDeclare(t, tc.src), tc.env...)
			if res.Passed != tc.passed || !strings.Contains(res.Output, tc.output) {
				t.Fatalf("got passed=%v output=%q; want passed=%v output containing %q", res.Passed, res.Output, tc.passed, tc.output)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		p := probetest.MustDeclare(t, `ssh.probe("slow", `+alias+`, command = "echo started; sleep 30", timeout = "2s")`)
		res, took := probetest.Run(t, p)
		if res.Passed || !res.TimedOut || !strings.HasPrefix(res.Output, "timeout after 2s") {
			t.Fatalf("got %+v", res)
		}
		if took < 2*time.Second || took > 3*time.Second {
			t.Fatalf("2s timeout took %v", took)
		}
		if left := procsWithArg("ssh", s.Config, "sleep 30"); len(left) > 0 {
			t.Fatalf("ssh processes left behind after the timeout: %v", left)
		}
	})

	t.Run("server never answers", func(t *testing.T) {
		t.Parallel()
		hang := hangingListener(t)
		src := fmt.Sprintf(`ssh.probe("hang", host = "127.0.0.1", port = %d, config = %q, command = "true", timeout = "2s")`, hang, s.Config)
		res, took := probetest.Run(t, probetest.MustDeclare(t, src))
		// Either ssh's ConnectTimeout (taken from the deadline) or the
		// deadline itself ends it; both say so.
		timedOut := res.TimedOut || strings.Contains(res.Output, "Connection timed out during banner exchange")
		if res.Passed || !timedOut || took > 3*time.Second {
			t.Fatalf("took %v, got %+v", took, res)
		}
	})

	t.Run("run", func(t *testing.T) {
		t.Parallel()
		src := `r = ssh.run(host = ` + q(s.Alias) + `, config = ` + q(s.Config) + `, command = "echo hi; echo oops >&2; exit 3")
slow = ssh.run(` + q(s.Alias) + `, "sleep 30", config = ` + q(s.Config) + `, timeout = "1s")`
		start := time.Now()
		g, err := probetest.Call(src, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r := g["r"].(*starlarkstruct.Struct)
		want := map[string]starlark.Value{"code": starlark.MakeInt(3), "stdout": starlark.String("hi\n"), "stderr": starlark.String("oops\n"), "ok": starlark.False}
		for k, v := range want {
			got, _ := r.Attr(k)
			if eq, _ := starlark.Equal(got, v); !eq {
				t.Errorf("r.%s = %v, want %v", k, got, v)
			}
		}
		slow := g["slow"].(*starlarkstruct.Struct)
		ok, _ := slow.Attr("ok")
		to, _ := slow.Attr("timed_out")
		if ok != starlark.False || to != starlark.True {
			t.Errorf("slow: got %v", slow)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("ssh.run with a 1s timeout: calls took %v", took)
		}
	})
}

func TestSSHBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct{ src, err string }{
		{"\nssh.probe(\"x\", host = \"\", command = \"true\")", "talon.star:2:10: in <toplevel>\nError in ssh.probe: ssh.probe: x: host must not be empty"},
		{`ssh.probe("x", host = "h", command = "  ")`, "ssh.probe: x: command must not be empty"},
		{`ssh.probe("x", host = "h", command = 3)`, "ssh.probe: x: command: want a string or a list of strings, got int"},
		{`ssh.probe("x", host = "-oProxyCommand=sh", command = "true")`, `ssh.probe: x: host "-oProxyCommand=sh" is not a host name`},
		{`ssh.probe("x", host = "h", command = "true", port = 70000)`, "ssh.probe: x: port 70000 is out of range"},
		{`ssh.probe("x", host = "h")`, "ssh.probe: missing argument for command"},
		{`ssh.probe("x", host = "h", command = "true", timeout = "soon")`, `ssh.probe: for parameter "timeout": want a duration`},
		{`ssh.run(host = "h", command = "true")`, "ssh.run: side effects are not allowed while the policy loads"},
	}
	for _, tc := range cases {
		_, err := probetest.Declare(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want it to contain %q", tc.src, err, tc.err)
		}
	}
}

// hangingListener accepts connections and never writes a byte; it returns the port.
func hangingListener(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(silentListener(t, "tcp", "127.0.0.1:0"))
	n, _ := strconv.Atoi(port)
	return n
}

// procsWithArg lists live processes named prog whose command line contains
// every one of args, as "pid: cmdline".
func procsWithArg(prog string, args ...string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(argv[0]) != prog {
			continue
		}
		line := strings.Join(argv, " ")
		all := true
		for _, a := range args {
			all = all && strings.Contains(line, a)
		}
		if all {
			out = append(out, e.Name()+": "+line)
		}
	}
	return out
}
