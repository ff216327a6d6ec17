package worker

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/talon-dev/talon/engine/effect"
)

// FuzzProcNet feeds mutated /proc/net/tcp tables to parseProcNet: never a
// panic, and every inode it returns is the inode field of a LISTEN line.
// Round trip: a LISTEN line written for an address and port is found
// exactly when the address is loopback or wildcard and the port matches.
func FuzzProcNet(f *testing.F) {
	f.Add("   0: 0100007F:0C27 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n",
		[]byte{127, 0, 0, 1}, uint16(3111), uint16(3111), uint64(111))
	f.Add("   0: 0000000000000000FFFF00000100007F:0C27 00000000000000000000000000000000:0000 0A 0 0 0 0 0 999\n",
		[]byte(net.ParseIP("::ffff:127.0.0.1").To16()), uint16(3111), uint16(3112), uint64(999))
	f.Add("x: zz:0C27 0 0A 0 0 0 0 0 1\n", []byte{192, 168, 1, 5}, uint16(1), uint16(1), uint64(1))
	f.Fuzz(func(t *testing.T, table string, ip []byte, port, want uint16, inode uint64) {
		for _, got := range parseProcNet(table, int(want)) {
			if got == "" || strings.ContainsAny(got, " \t\n") {
				t.Fatalf("inode %q is not one field", got)
			}
		}
		if len(ip) != 4 && len(ip) != 16 {
			return
		}
		// procfs writes each 32-bit word of the address in host order.
		word := make([]byte, len(ip))
		for i := 0; i < len(ip); i += 4 {
			word[i], word[i+1], word[i+2], word[i+3] = ip[i+3], ip[i+2], ip[i+1], ip[i]
		}
		line := fmt.Sprintf("   0: %s:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0 100 0 0 10 0\n",
			strings.ToUpper(hex.EncodeToString(word)), port, inode)
		got := parseProcNet(line, int(want))
		addr := net.IP(ip)
		found := port == want && (addr.IsLoopback() || addr.IsUnspecified())
		if found != (len(got) == 1) || found && got[0] != strconv.FormatUint(inode, 10) {
			t.Fatalf("%v port %d (looking for %d): got %v from %q", addr, port, want, got, line)
		}
	})
}

// FuzzLsof feeds mutated `lsof -t` answers (output, status, stderr) to
// lsofListeners: never a panic; listeners with positive PIDs (one `ps` per
// PID) or one error that is one line.
func FuzzLsof(f *testing.F) {
	f.Add("123\n456\n", 0, "")
	f.Add("", 1, "")
	f.Add("", 1, "lsof: WARNING: can't stat() fuse.gvfsd-fuse file system /run/user/1000/gvfs\n      Output information may be incomplete.\n")
	f.Add("12x\n", 0, "")
	f.Add("-5 0\n", 0, "")
	f.Fuzz(func(t *testing.T, stdout string, code int, stderr string) {
		fx := &effect.Fake{ExecFunc: func(_ context.Context, c effect.Command) effect.ExecResult {
			if c.Argv[0] == "lsof" {
				return effect.ExecResult{Stdout: stdout, Stderr: stderr, ExitCode: code}
			}
			return effect.ExecResult{Stdout: "cmd " + c.Argv[len(c.Argv)-1] + "\n"}
		}}
		ls, err := lsofListeners(context.Background(), fx, nil, 3111)
		if err != nil {
			if ls != nil {
				t.Fatalf("listeners %+v with error %v", ls, err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > 1000 {
				t.Fatalf("error is not one bounded line: %q", msg)
			}
			return
		}
		for _, l := range ls {
			if l.PID <= 0 || !slices.Contains(strings.Fields(stdout), strconv.Itoa(l.PID)) || l.Cmdline != "cmd "+strconv.Itoa(l.PID) {
				t.Fatalf("listener %+v is not a process lsof printed (output %q)", l, stdout)
			}
		}
	})
}
