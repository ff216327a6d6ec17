package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// The argument errors of pause, resume and ack, and how they say that no
// daemon can be reached. (Their talk with a daemon: internal/e2e.)
func TestControlCommandErrors(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bind := ln.Addr().String()
	ln.Close() // nothing listens there now
	on := filepath.Join(dir, "on.toml")
	off := filepath.Join(dir, "off.toml")
	os.WriteFile(on, []byte(fmt.Sprintf("[health]\nbind = %q\n", bind)), 0o600)
	os.WriteFile(off, []byte("[health]\nenabled = false\n"), 0o600)
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"pause", "--probe", "a", "--tag", "b"}, 2, "talon: name at most one of --probe, --tag and --rung\n"},
		{[]string{"resume", "--rung", "a", "--probe", "b"}, 2, "talon: name at most one of --probe, --tag and --rung\n"},
		{[]string{"pause", "--for", "-5m"}, 2, "talon: pause --for -5m0s: want a positive duration such as 30m\n"},
		{[]string{"pause", "--for", "soon"}, 2, "talon: pause: invalid value \"soon\" for flag -for: parse error; see talon help pause\n"},
		{[]string{"pause", "redis"}, 2, "talon: pause takes no arguments, got \"redis\"; see talon help pause\n"},
		{[]string{"ack", "a", "b"}, 2, "talon: ack takes at most one incident, got [\"a\" \"b\"]; see talon help ack\n"},
		{[]string{"pause", "--config", off}, 1, "talon: pause needs the daemon's health endpoint, and " + off + " turns it off ([health] enabled = false)\n"},
		{[]string{"ack", "--config", on}, 1, "talon: ack: talon is not running (nothing listens on " + bind + ")\n"},
	}
	for _, tc := range cases {
		_, stderr, code := talon(t, tc.args...)
		if code != tc.code || stderr != tc.err {
			t.Errorf("talon %q: exit %d %q\nwant exit %d %q", tc.args, code, stderr, tc.code, tc.err)
		}
	}
}
