package health

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestConnsFor(t *testing.T) {
	t.Parallel()
	for fds, want := range map[uint64]int{0: 16, 40: 16, 256: 64, 1024: 256, 4096: 1024, 1 << 20: 1024} {
		if got := connsFor(fds); got != want {
			t.Errorf("connsFor(%d) = %d, want %d", fds, got, want)
		}
	}
}

// TestConnectionCap: idle clients past the cap cost the server no
// descriptor: the oldest idle connections are closed to make room, and a
// client that sends its request is answered.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	s, url := start(t, Options{MaxConns: 8})
	addr := strings.TrimPrefix(url, "http://")
	var idle []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The server accepts in order: when this request is answered, all the
	// idle connections have been accepted and counted.
	resp, body := get(t, http.MethodGet, url+"/health")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"policy_hash"`) {
		t.Fatalf("/health at the cap: %d %s", resp.StatusCode, body)
	}
	s.mu.Lock()
	open, evicted := s.open, s.evicted
	s.mu.Unlock()
	if evicted != 13 || open > 8 {
		t.Fatalf("21 connections with a cap of 8: %d closed, %d open", evicted, open)
	}
	// The oldest idle connection was closed by the server.
	if n, err := idle[0].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("oldest idle connection: read %d, %v; want EOF", n, err)
	}
}
