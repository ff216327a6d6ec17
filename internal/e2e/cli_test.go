package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var sighup = syscall.SIGHUP

// talonCmd runs a talon command against a running daemon's config.
func talonCmd(t *testing.T, d *daemon, args ...string) (string, error) {
	t.Helper()
	cfg := d.cmd.Args[3]
	out, err := exec.Command(talonBin, append(args, "--config", cfg)...).CombinedOutput()
	return string(out), err
}

func TestClosedPipeIsQuiet(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p")
	writeFile(t, filepath.Join(policy, "talon.star"), strings.Repeat("probe.exec(\"p%d\", [\"true\"])\n", 1), 0o644)
	var body strings.Builder
	for i := 0; i < 200; i++ {
		body.WriteString("probe.exec(\"p" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i) + "\", [\"true\"])\n")
	}
	writeFile(t, filepath.Join(policy, "talon.star"), body.String(), 0o644)
	cfg := writeConfig(t, dir, "127.0.0.1:1", filepath.Join(dir, "state"), "")
	for _, args := range [][]string{{"check"}, {"validate"}, {"--check"}, {"--dry-run"}, {"status"}, {"--help"}} {
		cmd := exec.Command("bash", "-c", "set -o pipefail; \"$0\" \"$@\" | head -c 1 >/dev/null", talonBin)
		cmd.Args = append(cmd.Args, append(args, "--config", cfg, "--policy", policy)...)
		cmd.Env = append(os.Environ(), "TALON_STATE_DIR="+filepath.Join(dir, "state"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		if args[0] == "status" {
			continue // no daemon and no state file: exits 1 by design, tested elsewhere
		}
		if err != nil || stderr.Len() != 0 {
			t.Errorf("talon %v | head -c 1: %v, stderr %q", args, err, stderr.String())
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
