//go:build linux

package logging

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/talon-dev/talon/internal/testpeer"
)

// On a real terminal (a pty from script(1)) the default mode is pretty:
// coloured, info and up, time of day.
func TestAutoOnATerminalIsPretty(t *testing.T) {
	t.Parallel()
	script := testpeer.Need(t, "script")["script"]
	dir := t.TempDir()
	cmd := exec.Command(script, "-qec", "'"+strings.ReplaceAll(os.Args[0], "'", `'\''`)+"' -test.run='^TestHelperTTY$'", "/dev/null")
	// The colour library turns colours off when CI is set, as CI runs this
	// test with CI=true; the child is an interactive terminal, so drop it.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CI=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TALON_LOGGING_TTY_DIR="+dir, "TERM=xterm-256color", "NO_COLOR=", "CLICOLOR_FORCE=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "INFO\x1b[0m cycle") || !strings.Contains(s, "\x1b[") {
		t.Errorf("no coloured INFO line on the terminal:\n%q", s)
	}
	if !strings.Contains(s, "rung failed") {
		t.Errorf("no error line:\n%q", s)
	}
	if n := len(readLines(t, dir+"/"+FileName)); n != 2 {
		t.Errorf("file has %d lines, want 2", n)
	}
}

// A terminal under a service manager (systemd sets INVOCATION_ID; a unit
// may have a TTY) gets the service manager's format, not colours.
func TestAutoUnderAServiceManagerIsLogfmt(t *testing.T) {
	t.Parallel()
	script := testpeer.Need(t, "script")["script"]
	dir := t.TempDir()
	cmd := exec.Command(script, "-qec", "'"+strings.ReplaceAll(os.Args[0], "'", `'\''`)+"' -test.run='^TestHelperTTY$'", "/dev/null")
	cmd.Env = append(os.Environ(), "TALON_LOGGING_TTY_DIR="+dir, "TERM=xterm-256color", "INVOCATION_ID=0123456789abcdef")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "level=info msg=cycle state=degraded") || strings.Contains(s, "\x1b[") {
		t.Errorf("want logfmt without colours:\n%q", s)
	}
}

func TestHelperTTY(t *testing.T) {
	dir := os.Getenv("TALON_LOGGING_TTY_DIR")
	if dir == "" {
		t.Skip("helper for TestAutoOnATerminalIsPretty")
	}
	logger, closer, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("cycle", KeyState, "degraded")
	logger.Error("rung failed", KeyRung, "heal", KeyErr, errors.New("exit status 1"))
	closer.Close()
}
