package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// talon status shows every probe like monit summary: name, state, since
// when (from the journal), last output; --watch keeps redrawing.
func TestStatusShowsTheProbes(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	writeFile(t, filepath.Join(policy, "talon.star"), `
probe.exec("ok", ["echo", "all good"])
probe.exec("bad", ["sh", "-c", "echo 'connection refused'; exit 1"], critical = True, after = 1)
`, 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := writeConfig(t, dir, bind, stateDir, "")
	d := startDaemon(t, cfg, policy, bind, stateDir)
	d.waitFor("bad down", 15*time.Second, func(s engine.Snapshot) bool { return s.Incident != nil })

	out, err := exec.Command(talonBin, "status", "--format", "table", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, re := range []string{
		`(?m)^PROBE\s+STATE\s+SINCE\s+CHECKED\s+LAST OUTPUT$`,
		`(?m)^bad\s+down ×\d+ critical\s+\w{3} \d\d \d\d:\d\d:\d\d \(.+\)\s+(just now|.+ ago)\s+exit status 1: connection refused$`,
		`(?m)^ok\s+ok\s+-\s+(just now|.+ ago)\s+all good$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("status lacks %s:\n%s", re, out)
		}
	}

	// --watch streams one JSON object per refresh until interrupted.
	cmd := exec.Command(talonBin, "status", "--watch", "--interval", "300ms", "--format", "json", "--config", cfg)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for i := 0; i < 2; i++ {
		if !sc.Scan() {
			t.Fatalf("frame %d missing: %v", i, sc.Err())
		}
		var rep struct {
			Source string `json:"source"`
			Probes []struct {
				Name  string     `json:"name"`
				State string     `json:"state"`
				Since *time.Time `json:"since"`
			} `json:"probes"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil || rep.Source != "daemon" || len(rep.Probes) != 2 ||
			rep.Probes[0].Name != "bad" || rep.Probes[0].State != "down" || rep.Probes[0].Since == nil {
			t.Fatalf("frame %d: %v %s", i, err, sc.Text())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("status --watch after SIGTERM: %v", err)
	}
	if strings.Contains(string(out), "\x1b[") {
		t.Fatal("escape codes on a pipe")
	}
}
