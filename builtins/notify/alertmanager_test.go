package notify_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/effect"
	"github.com/talon-dev/talon/internal/testpeer"
)

// startAlertmanager runs the real Alertmanager on loopback, without
// clustering, and returns its base URL.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := testpeer.Need(t, "prometheus-alertmanager")["prometheus-alertmanager"]
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testpeer.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type gettableAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func alerts(t *testing.T, base string) []gettableAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAlertmanagerReal pages the real Alertmanager, sees the alert in its
// API, then resolves it.
func TestAlertmanagerReal(t *testing.T) {
	t.Parallel()
	base := startAlertmanager(t)
	p := pager(t, fmt.Sprintf(`notify.alertmanager(%q, labels = {"team": "infra"})`, base))
	env := actionEnv(effect.NewLive())
	// Real clocks here: Alertmanager drops alerts that ended in the past.
	env.Incident.Started = time.Now().Add(-17 * time.Minute).Truncate(time.Second)
	env.Incident.Now = time.Now()
	if r := p.Run(t.Context(), env); !r.OK {
		t.Fatalf("run: %+v", r)
	}
	got := alerts(t, base)
	if len(got) != 1 {
		t.Fatalf("alerts %+v", got)
	}
	a := got[0]
	host, _ := os.Hostname()
	wantLabels := fmt.Sprint(map[string]string{"alertname": "TalonSOS", "instance": host, "incident": "inc-20260302-0300", "severity": "critical", "team": "infra"})
	if fmt.Sprint(a.Labels) != wantLabels || a.Status.State != "active" || !a.StartsAt.Equal(env.Incident.Started) ||
		a.Annotations["summary"] != env.Message.Text {
		t.Fatalf("alert %+v", a)
	}

	env.Incident.Now = time.Now()
	if err := p.Send(t.Context(), env, engine.Message{Kind: "resolved", Text: "resolved", Incident: "inc-20260302-0300"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := alerts(t, base); len(got) != 0 {
		t.Fatalf("after resolved, still listed: %+v", got)
	}
}
