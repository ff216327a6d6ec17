package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// monthPolicy writes a policy of 20 probes; after sets the debounce of
// probe-07, the one that fails once a day.
func monthPolicy(b *testing.B, dir string, after int) {
	var s strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&s, "probe.tcp(\"probe-%02d\", \"127.0.0.1:1\", critical = %s, after = %d)\n", i, map[bool]string{true: "True", false: "False"}[i%2 == 0], map[bool]int{true: after, false: 2}[i == 7])
	}
	s.WriteString(`ladder(
    rung("heal", do = exec.shell("systemctl restart api"), cooldown = "10m", timeout = "2m"),
    rung("sos", do = notify.telegram(chat_id = 42, token = "123:abc"), after = "10m", repeat = "1h", state = "sos"),
)
`)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "talon.star"), []byte(s.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// writeMonth writes the journal a daemon running pol would write over 30
// days at a 60 s interval (43,200 cycles of 20 probes, an outage of
// probe-07 every day), by feeding the same facts to the decision core and
// journaling each fact and what it decided, as the daemon does.
func writeMonth(b *testing.B, path string, pol *engine.Policy) int {
	// The daemon's journal, with its default bound: the month must fit.
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	c := engine.NewCore(engine.CoreOptions{})
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	type pending struct {
		end *engine.RungEnd
		at  time.Time
	}
	var ends []pending
	feed := func(f engine.Fact) {
		rec := engine.FactRecord(f)
		rec.Policy = pol.Hash
		if err := j.Append(rec); err != nil {
			b.Fatal(err)
		}
		st := c.Step(context.Background(), f)
		for _, e := range st.Events {
			e := e
			j.Append(engine.Record{Time: e.At, Type: "event", Policy: pol.Hash, Event: &e})
		}
		for _, run := range st.Runs {
			end := &engine.RungEnd{Incident: run.Incident, Rung: run.Rung.Name, OK: true}
			for _, p := range run.Pagers {
				end.Deliveries = append(end.Deliveries, engine.Delivery{Channel: p.Channel(), OK: true})
			}
			ends = append(ends, pending{end, f.At.Add(20 * time.Second)})
		}
	}
	feed(engine.Fact{Kind: engine.FactStart, At: t0, Policy: pol, State: engine.NewState(t0)})
	var names []string
	for _, p := range pol.Probes {
		names = append(names, p.Name)
	}
	const cycles = 30 * 24 * 60
	for i := 0; i < cycles; i++ {
		at := t0.Add(time.Duration(i)*time.Minute + 5*time.Second)
		for len(ends) > 0 && !ends[0].at.After(at) {
			e, endAt := ends[0].end, ends[0].at
			ends = ends[1:]
			for _, p := range pol.Probes {
				if p.Name == "probe-07" {
					e.Verify = []engine.Result{{Name: p.Name, Passed: i%1440 >= 615, Output: "verify", At: endAt}}
				}
			}
			if e.Rung == "sos" {
				e.Verify = nil
			}
			feed(engine.Fact{Kind: engine.FactRungEnd, At: endAt, End: e})
		}
		feed(engine.Fact{Kind: engine.FactLaunch, At: at, Probes: names})
		rs := make([]engine.Result, len(pol.Probes))
		for k, p := range pol.Probes {
			down := p.Name == "probe-07" && i%1440 >= 600 && i%1440 < 615
			rs[k] = engine.Result{Name: p.Name, Passed: !down, Output: "HTTP 200 OK: all good here", DurationMS: 12, Critical: p.Critical, At: at}
			if down {
				rs[k].Output = "dial tcp 127.0.0.1:8080: connect: connection refused"
			}
		}
		feed(engine.Fact{Kind: engine.FactResults, At: at.Add(15 * time.Millisecond), Results: rs})
	}
	return cycles
}

// BenchmarkReplayMonth replays 30 days of a 20-probe policy (43,200
// cycles, faithful: the journal was written by this policy) and, with
// --diff, the same month through a second policy beside it. It reports the
// wall time of each and cycles per second; hack/bench.sh compares them
// with the 2 s and 4 s targets.
func BenchmarkReplayMonth(b *testing.B) {
	dir := b.TempDir()
	polA, polB, cfg, res := monthPolicies(b, dir)
	path := filepath.Join(dir, "journal.jsonl")
	cycles := writeMonth(b, path, res.Policy)
	size := monthFits(b, path)
	b.ResetTimer()
	var replay, diff, replayCPU time.Duration
	for i := 0; i < b.N; i++ {
		start, cpu := time.Now(), cpuTime()
		run := &app{stdout: io.Discard, stderr: io.Discard}
		if err := run.dispatch([]string{"replay", path, "--config", cfg, "--policy", polA, "--json"}); err != nil {
			b.Fatal(err)
		}
		replay += time.Since(start)
		replayCPU += cpuTime() - cpu
		start = time.Now()
		if err := run.dispatch([]string{"replay", path, "--config", cfg, "--policy", polA, "--diff", polB, "--json"}); err != nil {
			b.Fatal(err)
		}
		diff += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(replay.Seconds()/n, "replay_s")
	// CPU time says what the wall time would be on an idle machine (the
	// garbage collector's share included).
	b.ReportMetric(replayCPU.Seconds()/n, "replay_cpu_s")
	b.ReportMetric(diff.Seconds()/n, "diff_s")
	b.ReportMetric(float64(cycles)/(replay.Seconds()/n), "cycles/s")
	b.ReportMetric(float64(size)/(1<<20), "journal_MiB")
	b.ReportMetric(float64(journal.Options{}.Bound())/(1<<20), "bound_MiB")
	b.ReportMetric(float64(len(journal.Files(path))), "files")
	b.StopTimer()
	b.ReportMetric(peakRSS(b, "replay", path, "--config", cfg, "--policy", polA, "--json")/(1<<20), "replay_peak_RSS_MiB")
}

// monthFits checks that the month is all there (its first record, the
// start, is still in the oldest file: the default bound kept everything)
// and returns the bytes the journal takes on disk.
func monthFits(b *testing.B, path string) int64 {
	var size int64
	for _, f := range journal.Files(path) {
		fi, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		size += fi.Size()
	}
	var first *engine.Record
	errFirst := errors.New("first")
	if _, err := journal.Read(path, func(r engine.Record) error { first = &r; return errFirst }); !errors.Is(err, errFirst) {
		b.Fatal(err)
	}
	if first.Type != "start" || !first.Time.Equal(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)) {
		b.Fatalf("a month does not fit in the default journal bound (%d MiB): the oldest record left is a %s at %s",
			journal.Options{}.Bound()>>20, first.Type, first.Time)
	}
	return size
}

// peakRSS runs talon args in a process of its own (this test binary,
// through TestMain) and returns its peak resident set size in bytes.
func peakRSS(b *testing.B, args ...string) float64 {
	cmd := exec.Command(os.Args[0], append([]string{"-talon-main"}, args...)...)
	cmd.Env = append(os.Environ(), "TALON_STATE_DIR="+b.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%v: %v: %s", args, err, stderr.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		b.Skip("no rusage on this platform")
	}
	if runtime.GOOS == "darwin" {
		return float64(ru.Maxrss) // bytes on macOS
	}
	return float64(ru.Maxrss) * 1024 // kilobytes on Linux
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// monthPolicies writes the month's two policies under dir (a: the one that
// wrote the journal, b: the --diff one) and loads a with the replay
// config, as `talon replay` would.
func monthPolicies(b *testing.B, dir string) (polA, polB, cfg string, res *engine.LoadResult) {
	polA, polB = filepath.Join(dir, "a"), filepath.Join(dir, "b")
	monthPolicy(b, polA, 2)
	monthPolicy(b, polB, 5)
	cfg = filepath.Join(testdataDir, "replay", "config.toml")
	a := &app{stdout: io.Discard, stderr: io.Discard}
	a.g.config, a.g.policy = cfg, polA
	e, err := a.loadEnv()
	if err != nil {
		b.Fatal(err)
	}
	res = e.load()
	if res.Err() != nil {
		b.Fatal(res.ErrorText())
	}
	return polA, polB, cfg, res
}
