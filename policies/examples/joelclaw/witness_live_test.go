//go:build linux

package joelclaw_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/testpeer"
)

// TestWitnessProbesLive runs the policy's VM witness probes, as declared,
// over a real ssh: HOME points at a directory whose
// .colima/_lima/colima/ssh.config sends "lima-colima" to a test sshd on this
// host. The remote python one-liner must arrive intact: against a port with
// a listener it passes, against a closed one python itself reports the
// refused connection in one line (a mangled command would be a shell or
// syntax error).
func TestWitnessProbesLive(t *testing.T) {
	sshd := testpeer.StartSSHD(t)
	testpeer.Need(t, "python3")
	home := t.TempDir()
	cfgDir := filepath.Join(home, ".colima", "_lima", "colima")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("Host lima-colima\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n",
		sshd.Host, sshd.Port, sshd.User, sshd.Key, filepath.Join(home, "known_hosts"))
	if err := os.WriteFile(filepath.Join(cfgDir, "ssh.config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// Typesense's port (8108) gets a listener when it is free here.
	listening := false
	if l, err := net.Listen("tcp", "127.0.0.1:8108"); err == nil {
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		listening = true
	}

	p := load(t, "linux")
	var probes []*engine.Probe
	for _, name := range []string{"vm:k8s_api", "vm:redis", "vm:inngest", "vm:typesense"} {
		pr := p.Probe(name)
		if pr == nil {
			t.Fatalf("no probe %s", name)
		}
		probes = append(probes, pr)
	}
	r := &engine.Runner{Effects: effect.NewLive(), Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}}
	for _, res := range r.Run(context.Background(), probes) {
		t.Logf("%s: passed=%v %s", res.Name, res.Passed, res.Output)
		switch {
		case res.Passed:
		case regexp.MustCompile(`^exit status 1: port \d+: \[Errno 111\] Connection refused$`).MatchString(res.Output):
		default:
			t.Errorf("%s: want a pass or python's refused connection, got %q", res.Name, res.Output)
		}
		if res.Passed && !regexp.MustCompile(`^port \d+ open$`).MatchString(res.Output) {
			t.Errorf("%s: passed with output %q", res.Name, res.Output)
		}
		if res.Name == "vm:typesense" && listening && !res.Passed {
			t.Errorf("vm:typesense: a listener is on 127.0.0.1:8108, got %q", res.Output)
		}
	}
}
