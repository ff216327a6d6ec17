//go:build linux

package testpeer

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis is a real redis-server (Debian's redis-server package) on 127.0.0.1
// with persistence off and its data in a temporary directory.
type Redis struct {
	// Addr is host:port; Port is the port alone.
	Addr string
	Port int
	// Password is the requirepass password, "" for none.
	Password string
	// Dir is the working directory; the log is Dir/redis-server.log.
	Dir string
}

const redisReadyTimeout = 15 * time.Second

// StartRedis runs `redis-server --port N --bind 127.0.0.1 --save "" --appendonly no`
// in a temporary directory (with --requirepass when password is not empty),
// waits until it answers PING and stops it in t.Cleanup.
func StartRedis(t testing.TB, password string) *Redis {
	t.Helper()
	bins := Need(t, "redis-server")
	dir := t.TempDir()
	r := &Redis{Password: password, Dir: dir}
	var proc *peerProc
	t.Cleanup(func() {
		if proc != nil {
			proc.stop()
			if t.Failed() {
				t.Logf("testpeer: last lines of %s:\n%s", proc.logPath, tail(proc.logPath, 30))
			}
		}
	})
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		r.Addr, r.Port = net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--logfile", ""}
		if password != "" {
			args = append(args, "--requirepass", password)
		}
		var err error
		proc, err = startProc(dir, "redis-server", bins["redis-server"], args...)
		if err != nil {
			t.Fatalf("testpeer: starting redis-server: %v", err)
		}
		err = waitFor(proc, redisReadyTimeout, func() error { return redisPing(r.Addr, password) })
		if err == nil {
			return r
		}
		proc.stop()
		if attempt == startAttempts || !strings.Contains(tail(proc.logPath, 20), "already in use") {
			t.Logf("testpeer: last lines of %s:\n%s", proc.logPath, tail(proc.logPath, 30))
			t.Fatalf("testpeer: redis-server not ready at %s: %v", r.Addr, err)
		}
	}
}

// redisPing sends AUTH (with a password) and PING in RESP and wants +PONG.
func redisPing(addr, password string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	rd := bufio.NewReader(c)
	if password != "" {
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
		if line, err := rd.ReadString('\n'); err != nil || line != "+OK\r\n" {
			return fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	fmt.Fprint(c, "*1\r\n$4\r\nPING\r\n")
	line, err := rd.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}
