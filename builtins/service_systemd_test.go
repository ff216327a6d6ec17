//go:build linux

package builtins_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/engine/worker"
	"github.com/talon-dev/talon/internal/testpeer"
)

// serveScript listens on the port of its first argument and, under
// systemd (Type=notify), says READY=1 once it does: systemctl restart
// returns when the new instance listens, or fails when it cannot bind.
const serveScript = `import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
print("listening", flush=True)
addr = os.environ.get("NOTIFY_SOCKET")
if addr:
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.sendto(b"READY=1", "\0" + addr[1:] if addr[0] == "@" else addr)
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)
`

const clientScript = `import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
time.sleep(3600)
`

// pythonBinary is the real python3 executable (not a pyenv shim, which
// needs the caller's HOME): the units run it under the test manager.
func pythonBinary(t *testing.T) string {
	t.Helper()
	py := testpeer.Need(t, "python3")["python3"]
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProc starts argv in its own process group (as a service's stale copy
// would be) and waits for its first output line, want.
func startProc(t *testing.T, want string, argv ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when it exits
	line, _ := bufio.NewReader(out).ReadString('\n')
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-exited })
	if strings.TrimSpace(line) != want {
		t.Fatalf("%v: first line %q, want %q", argv, line, want)
	}
	return cmd, exited
}

func alivePID(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(b[strings.LastIndexByte(string(b), ')'):]), ") Z ")
}

// TestServiceRestartSystemd restarts a unit of a real systemd user manager
// whose port a stale copy of the service still holds: the stale copy is
// stopped, a client connected to the port is not, the unit is restarted and
// its new instance listens. With an unrelated program on the port, nothing
// is stopped and the restart still goes ahead.
func TestServiceRestartSystemd(t *testing.T) {
	t.Parallel()
	py := pythonBinary(t)
	dir := t.TempDir()
	serve, client := filepath.Join(dir, "serve.py"), filepath.Join(dir, "client.py")
	os.WriteFile(serve, []byte(serveScript), 0o644)
	os.WriteFile(client, []byte(clientScript), 0o644)
	squat := filepath.Join(dir, "squat.py") // another program, the same code
	os.WriteFile(squat, []byte(serveScript), 0o644)
	port, other := freeTCPPort(t), freeTCPPort(t)
	unit := func(p int) string {
		return fmt.Sprintf("[Service]\nType=notify\nNotifyAccess=main\nExecStart=%s %s %d\n", py, serve, p)
	}
	sd := testpeer.StartSystemdUser(t, map[string]string{"talon-svc.service": unit(port), "talon-other.service": unit(other)})
	env := append(probetest.Env(), sd.Env()...)

	// The unit is down, a stale copy of it holds its port, and a client
	// is connected to that port.
	stale, staleExited := startProc(t, "listening", py, serve, strconv.Itoa(port))
	clientCmd, _ := startProc(t, "connected", py, client, strconv.Itoa(port))

	a := a2(t, fmt.Sprintf(`service.restart("talon-svc.service", manager = "systemd", port = %d, stale = ["serve.py", "%d"])`, port, port))
	res := runAction(a, effect.NewLive(), env, nil)
	want := fmt.Sprintf("port %d: stopped stale copies of talon-svc.service: pid %d (%s %s %d)\nsystemctl --user restart talon-svc.service: ok", port, stale.Process.Pid, py, serve, port)
	if !res.OK || res.Output != want {
		t.Fatalf("ok=%v output:\n%s\nwant:\n%s", res.OK, res.Output, want)
	}
	select {
	case <-staleExited:
	case <-time.After(10 * time.Second):
		t.Fatal("the stale copy is still running")
	}
	if !alivePID(clientCmd.Process.Pid) {
		t.Fatal("the client connected to the port was stopped")
	}
	if st := sd.WaitProperty(t, "talon-svc.service", "ActiveState", 10*time.Second, func(v string) bool { return v == "active" }); st != "active" {
		t.Fatalf("after the restart the unit is %s", st)
	}
	// Type=notify: the restart returned once the new instance listened.
	mainPID, _ := strconv.Atoi(sd.Property(t, "talon-svc.service", "MainPID"))
	if ls, err := worker.Listeners(t.Context(), nil, nil, port); err != nil || len(ls) != 1 || ls[0].PID != mainPID {
		t.Fatalf("listeners on %d: %+v, %v; want the unit's main pid %d", port, ls, err, mainPID)
	}

	// Something that is not a copy of the service holds the other port:
	// it is left alone and the output says so; the restart still runs, and
	// fails, since the service cannot bind.
	squatter, _ := startProc(t, "listening", py, squat, strconv.Itoa(other))
	a = a2(t, fmt.Sprintf(`service.restart("talon-other.service", manager = "systemd", port = %d, stale = ["serve.py", "%d"])`, other, other))
	res = runAction(a, effect.NewLive(), env, nil)
	lines := strings.Split(res.Output, "\n")
	if res.OK || len(lines) < 2 ||
		lines[0] != fmt.Sprintf("port %d is held by pid %d (%s %s %d), not a copy of talon-other.service; not touching it; restarting anyway", other, squatter.Process.Pid, py, squat, other) ||
		!strings.HasPrefix(lines[1], "systemctl --user restart talon-other.service: exit status 1") {
		t.Fatalf("ok=%v output:\n%s", res.OK, res.Output)
	}
	if !alivePID(squatter.Process.Pid) {
		t.Fatal("a program that is not the service was stopped")
	}
}
