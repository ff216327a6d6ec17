package probe_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/builtins/probe/probetest"
)

// silentServer accepts connections and never answers: an HTTP request to it
// only ends at the probe's deadline.
func silentServer(t *testing.T) string {
	t.Helper()
	return silentListener(t, "tcp", "127.0.0.1:0")
}

// silentListener listens on network/addr, accepts connections and never
// answers; the connections are closed when the test ends.
func silentListener(t *testing.T, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// unansweredAddr is a loopback address whose listen queue is full, so that
// a TCP connect to it hangs until its deadline.
func unansweredAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 20 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr // the queue is full: the next connect hangs too
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("could not fill the listen queue of %s", addr)
	return ""
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	// 127.0.0.3, not 127.0.0.1: parallel tests listen on 127.0.0.1 and
	// could be handed this port again the moment it is closed.
	ln, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// probeCase is one row of a probe kind's table test: Starlark declaring one
// probe, and whether running it must pass with output in its output.
type probeCase struct {
	name, src string
	passed    bool
	output    string // substring of the result's output
}

// runCases declares and runs each case's probe for real, in parallel.
func runCases(t *testing.T, cases []probeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, _ := probetest.Run(t, probetest.MustDeclare(t, tc.src))
			if res.Passed != tc.passed || !strings.Contains(res.Output, tc.output) {
				t.Fatalf("got passed=%v output=%q; want passed=%v output containing %q", res.Passed, res.Output, tc.passed, tc.output)
			}
		})
	}
}

// acceptAndClose listens on loopback and closes every connection at once:
// a port that is open, for probes that only need to connect.
func acceptAndClose(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
	return l.Addr().(*net.TCPAddr).Port
}
