package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// BenchmarkReloadLatency edits a running daemon's policy 20 times per
// iteration and measures the time from the file being written to the new
// policy hash showing on /health. It reports the median and the worst.
func BenchmarkReloadLatency(b *testing.B) {
	dir := b.TempDir()
	policy := filepath.Join(dir, "policy")
	entry := filepath.Join(policy, "talon.star")
	os.MkdirAll(policy, 0o755)
	os.WriteFile(entry, []byte(onePass), 0o644)
	stateDir := filepath.Join(dir, "state")
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	cfgPath := filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("check_interval_secs = 5\nstate_dir = %q\n[health]\nbind = %q\n", stateDir, bind)), 0o644)
	d := startBenchDaemon(b, cfgPath, policy, bind)
	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		for e := 0; e < 20; e++ {
			before, _ := d.health()
			body := fmt.Sprintf("%sprobe.exec(\"edit%d_%d\", [\"true\"])\n", onePass, i, e)
			start := time.Now()
			if err := os.WriteFile(entry, []byte(body), 0o644); err != nil {
				b.Fatal(err)
			}
			for {
				s, err := d.health()
				if err == nil && s.PolicyHash != before.PolicyHash {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatalf("edit %d not picked up in 10 s", e)
				}
				time.Sleep(2 * time.Millisecond)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(100 * time.Millisecond) // let the debounce window close
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median_ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "worst_ms")
	b.ReportMetric(float64(len(lat)), "edits")
}

func startBenchDaemon(b *testing.B, cfg, policy, bind string) *benchDaemon {
	d := &benchDaemon{bind: bind}
	d.cmd = exec.Command(talonBin, "run", "--config", cfg, "--policy", policy)
	if err := d.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, err := d.health(); err == nil && s.LastCycle.Unix() > 0 {
			return d
		}
		if time.Now().After(deadline) {
			b.Fatal("daemon did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type benchDaemon struct {
	cmd  *exec.Cmd
	bind string
}

func (d *benchDaemon) health() (engine.Snapshot, error) {
	return (&daemon{bind: d.bind}).health()
}
