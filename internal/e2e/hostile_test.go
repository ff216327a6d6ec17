package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
)

// hostileGood is a policy that runs, with a memory bomb in a when= predicate
// and a quadratic str() in a probe.func: both are errors of those calls.
const hostileGood = `probe.exec("ok", ["true"])
probe.exec("down", ["false"], critical = True, after = 1)

def bomb(incident):
    x = list(range(1 << 40))
    return True

def deep():
    x = []
    for i in range(50000):
        x = [x]
    return str(x)

probe.func("deep", deep)

ladder(
    rung("guarded", when = bomb, do = exec.shell("true")),
    rung("log", do = notify.log()),
)
`

// latencies polls /health until stop is closed and records how long each
// answer took; an error is recorded as a failure.
type latencies struct {
	mu    sync.Mutex
	took  []time.Duration
	fails []string
	stop  chan struct{}
	done  chan struct{}
}

func measureHealth(bind string) *latencies {
	l := &latencies{stop: make(chan struct{}), done: make(chan struct{})}
	c := http.Client{Timeout: time.Second}
	tick := time.NewTicker(5 * time.Millisecond)
	go func() {
		defer close(l.done)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			resp, err := c.Get("http://" + bind + "/health")
			if err == nil {
				var s engine.Snapshot
				err = json.NewDecoder(resp.Body).Decode(&s)
				resp.Body.Close()
			}
			l.mu.Lock()
			if err != nil {
				l.fails = append(l.fails, err.Error())
			} else {
				l.took = append(l.took, time.Since(start))
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// end stops polling and returns the median and the slowest answer.
func (l *latencies) end(t *testing.T) (median, worst time.Duration) {
	t.Helper()
	close(l.stop)
	<-l.done
	if len(l.fails) > 0 {
		t.Fatalf("/health failed %d times while the policy was refused: %v", len(l.fails), l.fails[0])
	}
	if len(l.took) == 0 {
		t.Fatal("no /health answer measured")
	}
	s := slices.Clone(l.took)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}

// A policy that tries to take the daemon's memory or hold it in one step —
// arriving by hot reload, or running inside when= and probe.func — is an
// error at its file:line:col; the daemon keeps answering /health, keeps the
// last good policy and keeps probing, and `talon validate` says why in one
// line.
func TestHostilePolicy(t *testing.T) {
	r := newReloadRig(t, hostileGood)
	d := r.d

	// Run phase: the probe.func fails with the position of its str(), the
	// when= is skipped with the position of its list(), and the ladder goes
	// on to the next rung.
	s := d.waitFor("the deep probe to fail", 10*time.Second, func(s engine.Snapshot) bool {
		return slices.Contains(s.FailedProbes, "deep")
	})
	for _, p := range s.Probes {
		if p.Name == "deep" && p.Output != "talon.star:12:15: str: value nested more than 1000 levels deep" {
			t.Fatalf("deep probe output %q", p.Output)
		}
	}
	d.waitFor("the log rung to run", 15*time.Second, func(s engine.Snapshot) bool { return s.RungRuns["log"] > 0 })
	var skip *engine.Event
	for _, rec := range readJournal(t, d.stateDir) {
		if rec.Event != nil && rec.Event.Type == "rung_skip" && rec.Event.Rung == "guarded" {
			skip = rec.Event
		}
	}
	wantSkip := "when= failed: talon.star:5:13: memory budget of 32 MiB exhausted: list of 1099511627776 elements; build smaller values (join a list rather than adding strings in a loop)"
	if skip == nil || skip.Reason != wantSkip {
		t.Fatalf("rung_skip of guarded: %+v\nwant reason %q", skip, wantSkip)
	}
	good, _ := d.health()

	// Load phase, by hot reload: each bomb is refused with its position
	// while /health answers, and the last good policy keeps running.
	for _, bomb := range []struct{ src, want string }{
		{"X = list(range(1 << 40))\n", "talon.star:20:9: memory budget of 64 MiB exhausted: list of 1099511627776 elements"},
		{"Y = {i: i for i in range(1 << 40)}\n", "talon.star:20:11: memory budget of 64 MiB exhausted: dict comprehension"},
		{"Z = deep()\n", "talon.star:12:15: str: value nested more than 1000 levels deep"},
		{"W = \"x\" * (1 << 50)\n", "talon.star:20:9: memory budget of 64 MiB exhausted: string of 1 elements repeated 1125899906842624 times"},
	} {
		lat := measureHealth(d.bind)
		r.edit(hostileGood + bomb.src)
		s := r.policyError("the refused bomb", bomb.want)
		median, worst := lat.end(t)
		t.Logf("%s: /health median %s, slowest %s over %d answers", strings.TrimSpace(bomb.src), median, worst, len(lat.took))
		if median > 100*time.Millisecond {
			t.Errorf("/health median %s while refusing %s", median, bomb.src)
		}
		if s.PolicyHash != good.PolicyHash || s.ProbeCount != good.ProbeCount {
			t.Fatalf("the refused policy replaced the good one: %+v", s)
		}
		if strings.Contains(*s.PolicyError, "\n") {
			t.Fatalf("policy error is not one line: %q", *s.PolicyError)
		}
		cycle := s.LastCycle
		d.waitFor("probes to go on", 10*time.Second, func(s engine.Snapshot) bool { return s.LastCycle.After(cycle) })
	}

	// talon validate: exit 1, one error, one line each, no stack dump.
	cmd := exec.Command(talonBin, "validate", "--config", filepath.Join(r.dir, "config.toml"), "--policy", r.policy)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("validate: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var rep struct {
		Errors []engine.PosError `json:"errors"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatalf("validate output %q: %v", stdout.String(), err)
	}
	if len(rep.Errors) != 1 || !strings.HasPrefix(rep.Errors[0].Error(), "talon.star:20:9: memory budget of 64 MiB exhausted") ||
		strings.Contains(rep.Errors[0].Error(), "\n") || stderr.Len() > 0 {
		t.Fatalf("validate: %+v\nstderr %q", rep.Errors, stderr.String())
	}
}
