package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

var sighup = syscall.SIGHUP

// talonCmd runs a talon command against a running daemon's config.
func talonCmd(t *testing.T, d *daemon, args ...string) (string, error) {
	t.Helper()
	cfg := d.cmd.Args[3]
	out, err := exec.Command(talonBin, append(args, "--config", cfg)...).CombinedOutput()
	return string(out), err
}

// Every command piped into `head -c 1` ends with status 0 and nothing on
// stderr, however much it had left to write (the predecessor aborted).
func TestClosedPipeIsQuiet(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p")
	var body strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&body, "probe.exec(\"probe_%03d\", [\"echo\", %q])\n", i, strings.Repeat("x", 200))
	}
	writeFile(t, filepath.Join(policy, "talon.star"), body.String(), 0o644)
	stateDir := filepath.Join(dir, "state")
	st := engine.NewState(time.Now())
	for i := 0; i < 300; i++ {
		st.Probes[fmt.Sprintf("probe_%03d", i)] = &engine.ProbeState{Last: &engine.Result{Name: "x", Output: strings.Repeat("y", 200)}}
	}
	if err := engine.SaveState(engine.StatePath(stateDir), st); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, "127.0.0.1:1", stateDir, "")
	for _, args := range [][]string{{"check"}, {"check", "--json"}, {"validate"}, {"--check"}, {"--dry-run"}, {"status"}, {"--status"}, {"--help"}} {
		cmd := exec.Command("bash", "-c", `set -o pipefail; "$0" "$@" | head -c 1 >/dev/null`, talonBin)
		cmd.Args = append(cmd.Args, append(args, "--config", cfg, "--policy", policy)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 {
			t.Errorf("talon %v | head -c 1: %v, stderr %q", args, err, stderr.String())
		}
	}
}
