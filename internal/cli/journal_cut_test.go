package cli

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// A cut of a journal written by the policy begins with a checkpoint of the
// state before its first fact, and replays faithfully on its own.
func TestJournalCutBeginsWithACheckpoint(t *testing.T) {
	pdir, cfg := testdata(t, "replay/a"), testdata(t, "replay/config.toml")
	t.Setenv("TALON_STATE_DIR", t.TempDir())
	a := &app{stdout: io.Discard, stderr: io.Discard}
	if _, err := a.flags("replay", []string{"--policy", pdir, "--config", cfg}, nil); err != nil {
		t.Fatal(err)
	}
	e, err := a.loadEnv()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := loadReplayPolicy(e)
	if err != nil {
		t.Fatal(err)
	}
	// A journal as the daemon writes it: api and db fail from 03:03 on;
	// rungs take 20 s and their pages are delivered.
	t0 := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	c := engine.NewCore(engine.CoreOptions{})
	var lines []byte
	emit := func(r engine.Record) {
		r.Policy = pol.Hash
		line, err := journal.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line...)
	}
	var ends []engine.Fact
	feed := func(f engine.Fact) {
		rec := engine.FactRecord(f)
		if f.Kind == engine.FactStart {
			st := *f.State
			rec.State = &st
		}
		emit(rec)
		st := c.Step(context.Background(), f)
		for _, ev := range st.Events {
			ev := ev
			emit(engine.Record{Time: ev.At, Type: "event", Event: &ev})
		}
		for _, run := range st.Runs {
			end := &engine.RungEnd{Incident: run.Incident, Rung: run.Rung.Name, OK: true}
			for _, p := range run.Pagers {
				end.Deliveries = append(end.Deliveries, engine.Delivery{Channel: p.Channel(), OK: true})
			}
			ends = append(ends, engine.Fact{Kind: engine.FactRungEnd, At: f.At.Add(20 * time.Second), End: end})
		}
	}
	feed(engine.Fact{Kind: engine.FactStart, At: t0, Policy: pol, State: engine.NewState(t0)})
	for i := 0; i < 40; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		for len(ends) > 0 && !ends[0].At.After(at) {
			f := ends[0]
			ends = ends[1:]
			feed(f)
		}
		names := []string{"api", "db", "vm:redis"}
		feed(engine.Fact{Kind: engine.FactLaunch, At: at, Probes: names})
		var rs []engine.Result
		for _, n := range names {
			rs = append(rs, engine.Result{Name: n, Passed: i < 3, Critical: n != "vm:redis", Output: "x", At: at})
		}
		feed(engine.Fact{Kind: engine.FactResults, At: at.Add(time.Second), Results: rs})
	}
	src := filepath.Join(t.TempDir(), "journal.jsonl")
	if err := os.WriteFile(src, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := talon(t, "journal", "cut", "--since", "2026-11-23T03:10:30Z", src, "--policy", pdir, "--config", cfg)
	if code != 0 || errOut != "" || !strings.HasPrefix(out, `{"t":"2026-11-23T03:11:00Z","type":"checkpoint"`) {
		t.Fatalf("cut: exit %d %q\n%.300s", code, errOut, out)
	}
	cut := filepath.Join(t.TempDir(), "incident.jsonl")
	if err := os.WriteFile(cut, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	rout, rerr, code := talon(t, "replay", cut, "--policy", pdir, "--config", cfg)
	var r engine.ReplayResult
	if err := json.Unmarshal([]byte(rout), &r); err != nil || code != 0 || r.Mode != engine.ModeFaithful || len(r.Divergences) > 0 {
		t.Fatalf("replay of the cut: exit %d %q %v %s (%s) %+v", code, rerr, err, r.Mode, r.ModeReason, r.Divergences)
	}
}
