//go:build linux

package testpeer

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHD is a real OpenSSH server (Debian's openssh-server) listening on
// 127.0.0.1, running as the current user with key-only authentication.
type SSHD struct {
	// Host and Port are where the server listens.
	Host string
	Port int
	// User is the current user, the only one who can log in.
	User string
	// Home is $HOME in remote commands: a directory of its own (the server
	// sets it with SetEnv), so the user's shell start-up files are not run
	// and tests can tell a remote expansion from a local one.
	Home string
	// Alias is a Host entry in Config that carries HostName, Port, User and
	// IdentityFile, so `ssh -F Config Alias cmd` just works.
	Alias string
	// Config is a client ssh config file: the Alias entry, and for every host
	// a private known-hosts file with StrictHostKeyChecking=accept-new.
	Config string
	// Key is a private key whose public half is authorized on the server.
	Key string
	// WrongKey is a private key the server does not accept.
	WrongKey string
	// Dir is the scratch directory; the server's log is Dir/sshd.log.
	Dir string

	marker string
}

// sshdMarkerVar is set in the environment of the server and, through its
// SetEnv option, of every session it starts, so that cleanup can find and
// kill them all: sshd puts each connection in a session of its own, out of
// reach of a process-group kill.
const sshdMarkerVar = "TALON_TESTPEER_SSHD"

const sshdReadyTimeout = 15 * time.Second

// StartSSHD generates a host key and two client keys, writes an sshd config
// (127.0.0.1, a free port, AuthorizedKeysFile in the scratch directory,
// PermitRootLogin prohibit-password, UsePAM no, StrictModes no), runs
// `sshd -D -e -f CONFIG` until it greets clients and stops it, with every
// session it started, in t.Cleanup. It needs sshd (openssh-server),
// ssh-keygen and ssh; see Need.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	bins := Need(t, "sshd", "ssh-keygen", "ssh", "env")
	u, err := user.Current()
	if err != nil {
		t.Fatalf("testpeer: current user: %v", err)
	}
	dir := t.TempDir()
	s := &SSHD{
		Host:     "127.0.0.1",
		User:     u.Username,
		Home:     filepath.Join(dir, "home"),
		Alias:    "talon-testpeer",
		Config:   filepath.Join(dir, "ssh_config"),
		Key:      filepath.Join(dir, "client_key"),
		WrongKey: filepath.Join(dir, "wrong_key"),
		Dir:      dir,
		marker:   randomHex(8),
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	for _, k := range []string{hostKey, s.Key, s.WrongKey} {
		out, err := exec.Command(bins["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", "talon-testpeer", "-f", k).CombinedOutput()
		if err != nil {
			t.Fatalf("testpeer: ssh-keygen %s: %v\n%s", k, err, out)
		}
	}
	pub, err := os.ReadFile(s.Key + ".pub")
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	if err := os.Mkdir(s.Home, 0o700); err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root wants its privilege-separation directory,
		// which the Debian service unit normally creates.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("testpeer: sshd privilege separation directory: %v", err)
		}
	}

	var proc *peerProc
	t.Cleanup(func() {
		if proc != nil {
			proc.stop()
		}
		killMarked(sshdMarkerVar, s.marker)
		if t.Failed() && proc != nil {
			t.Logf("testpeer: last lines of %s:\n%s", proc.logPath, tail(proc.logPath, 40))
		}
	})
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		cfg := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfg, []byte(s.serverConfig(hostKey, authorized)), 0o600); err != nil {
			t.Fatalf("testpeer: %v", err)
		}
		// env puts the marker into sshd's environment; sshd re-executes
		// itself for every connection and so passes it on.
		proc, err = startProc(dir, "sshd", bins["env"], sshdMarkerVar+"="+s.marker, bins["sshd"], "-D", "-e", "-f", cfg)
		if err != nil {
			t.Fatalf("testpeer: starting sshd: %v", err)
		}
		err = waitFor(proc, sshdReadyTimeout, func() error { return sshGreets(s.Addr()) })
		if err == nil {
			break
		}
		proc.stop()
		if attempt == startAttempts || !strings.Contains(tail(proc.logPath, 20), "Address already in use") {
			t.Logf("testpeer: last lines of %s:\n%s", proc.logPath, tail(proc.logPath, 40))
			t.Fatalf("testpeer: sshd not ready at %s: %v", s.Addr(), err)
		}
	}
	if err := os.WriteFile(s.Config, []byte(s.clientConfig()), 0o600); err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	return s
}

// Addr is host:port.
func (s *SSHD) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

func (s *SSHD) serverConfig(hostKey, authorized string) string {
	return fmt.Sprintf(`ListenAddress %s
HostKey %s
PidFile none
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
SetEnv %s=%s HOME=%s
LogLevel VERBOSE
`, s.Addr(), hostKey, authorized, sshdMarkerVar, s.marker, s.Home)
}

func (s *SSHD) clientConfig() string {
	return fmt.Sprintf(`Host %s
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes

Host *
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking accept-new
  ControlMaster no
  ControlPath none
  LogLevel ERROR
`, s.Alias, s.Host, s.Port, s.User, s.Key, filepath.Join(s.Dir, "known_hosts"))
}

// sshGreets reports whether an SSH server answers at addr with its banner.
func sshGreets(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// Sessions lists the processes the server started for remote commands that
// are still alive (their environment carries the marker).
func (s *SSHD) Sessions() []int {
	var out []int
	for _, pid := range markedProcs(sshdMarkerVar, s.marker) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); !bytes.HasPrefix(comm, []byte("sshd")) {
			out = append(out, pid)
		}
	}
	return out
}

// markedProcs lists processes whose environment has name=value.
func markedProcs(name, value string) []int {
	want := []byte(name + "=" + value + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMarked SIGKILLs every process whose environment has name=value,
// until none is left or five seconds pass.
func killMarked(name, value string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := markedProcs(name, value)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
