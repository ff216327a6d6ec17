package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/health"
)

// The benchmarks in this file drive the real daemon binary and read what
// it costs from the kernel (/proc), as an operator would: resident memory,
// CPU time, wake-ups, garbage collections (GODEBUG=gctrace=1 on its
// stderr) and the latency of /health. hack/bench.sh prints each figure
// against its baseline or goal. Windows are long enough for the kernel's
// accounting to resolve the goals (0.1 % of a core over 60 s is 60 ms);
// TALON_BENCH_SCALE (a float, default 1) shortens or lengthens them.

// steadyDaemon is a `talon run` started by a benchmark.
type steadyDaemon struct {
	cmd  *exec.Cmd
	bind string
	dir  string
	gcs  atomic.Int64 // the number of the last GC the runtime traced
	mu   sync.Mutex
	tail []string // the last lines of its stderr that are not GC traces
	done chan struct{}
}

// benchScale scales a measuring window by TALON_BENCH_SCALE.
func benchScale(d time.Duration) time.Duration {
	if s, err := strconv.ParseFloat(os.Getenv("TALON_BENCH_SCALE"), 64); err == nil && s > 0 {
		return time.Duration(float64(d) * s)
	}
	return d
}

// startSteady starts a daemon that runs policy (the body of talon.star)
// every interval seconds and waits until its first cycle is on /health.
func startSteady(b *testing.B, policy string, interval int) *steadyDaemon {
	b.Helper()
	dir := b.TempDir()
	pol := filepath.Join(dir, "policy")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pol, "talon.star"), []byte(policy), 0o644); err != nil {
		b.Fatal(err)
	}
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf("check_interval_secs = %d\nstate_dir = %q\nservices_file = %q\npath = [\"/usr/bin\", \"/bin\"]\n[health]\nbind = %q\n",
		interval, filepath.Join(dir, "state"), filepath.Join(dir, "services.toml"), bind)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	d := &steadyDaemon{bind: bind, dir: pol, done: make(chan struct{})}
	d.cmd = exec.Command(talonBin, "run", "--config", cfg, "--policy", pol)
	d.cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	d.cmd.Stdout = io.Discard
	if err := d.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go d.readStderr(stderr)
	b.Cleanup(func() {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		d.cmd.Wait()
		if b.Failed() {
			b.Logf("daemon stderr (last lines):\n%s", d.stderrTail())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s, err := d.health(); err == nil && !s.LastCycle.IsZero() {
			return d
		}
		if time.Now().After(deadline) {
			b.Fatalf("the daemon showed no cycle on /health in 30 s; stderr:\n%s", d.stderrTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *steadyDaemon) readStderr(r io.Reader) {
	defer close(d.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// "gc 12 @3.456s 0%: ..."
		if f := strings.Fields(line); len(f) > 2 && f[0] == "gc" && strings.HasPrefix(f[2], "@") {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				d.gcs.Store(n)
				continue
			}
		}
		d.mu.Lock()
		d.tail = append(d.tail, line)
		if len(d.tail) > 40 {
			d.tail = d.tail[len(d.tail)-40:]
		}
		d.mu.Unlock()
	}
}

func (d *steadyDaemon) stderrTail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.tail, "\n")
}

func (d *steadyDaemon) health() (engine.Snapshot, error) {
	return (&daemon{bind: d.bind}).health()
}

func (d *steadyDaemon) pid() int { return d.cmd.Process.Pid }

// procUsage is what the kernel accounts to a process at one moment.
type procUsage struct {
	at       time.Time
	cpuNS    int64 // on-CPU time of its threads (schedstat, nanoseconds)
	ticks    int64 // utime+stime (stat, clock ticks of 10 ms)
	switches int64 // context switches of its threads: wake-ups
	gcs      int64
}

func (d *steadyDaemon) usage(b *testing.B) procUsage {
	b.Helper()
	pid := d.pid()
	u := procUsage{at: time.Now(), gcs: d.gcs.Load()}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no threads of pid %d in /proc: %v", pid, err)
	}
	for _, t := range tasks {
		if s, err := os.ReadFile(filepath.Join(t, "schedstat")); err == nil {
			if f := strings.Fields(string(s)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				u.cpuNS += n
			}
		}
		if s, err := os.ReadFile(filepath.Join(t, "status")); err == nil {
			for _, line := range strings.Split(string(s), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					u.switches += n
				}
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after "(comm) ": state is field 3, utime 14, stime 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.ticks = ut + st
	return u
}

// rssMiB is the process's resident memory (VmRSS) in MiB.
func (d *steadyDaemon) rssMiB(b *testing.B) float64 {
	b.Helper()
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid()))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// window is what a process used between two readings.
type window struct {
	secs, cpuPct, tickPct, wakeups, gcs float64
}

func between(a, z procUsage) window {
	s := z.at.Sub(a.at).Seconds()
	return window{
		secs:    s,
		cpuPct:  float64(z.cpuNS-a.cpuNS) / 1e9 / s * 100,
		tickPct: float64(z.ticks-a.ticks) / 100 / s * 100,
		wakeups: float64(z.switches-a.switches) / s,
		gcs:     float64(z.gcs-a.gcs) / s,
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// quantile is the q-quantile of xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// healthLatency GETs path n times (or until the time until, when it is
// not zero) on one kept-alive connection, a gap apart, and returns each
// request's time to the last byte in ms.
func healthLatency(b *testing.B, bind, path string, n int, gap time.Duration, until time.Time) []float64 {
	b.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	defer c.CloseIdleConnections()
	get := func() time.Duration {
		start := time.Now()
		resp, err := c.Get("http://" + bind + path)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s %v", path, resp.Status, err)
		}
		return time.Since(start)
	}
	for i := 0; i < 5; i++ {
		get()
	}
	ms := make([]float64, 0, n)
	for i := 0; i < n && (until.IsZero() || time.Now().Before(until)); i++ {
		ms = append(ms, float64(get().Microseconds())/1000)
		time.Sleep(gap)
	}
	return ms
}

// sink is a loopback TCP listener that accepts and closes connections: the
// peer of the benchmarks' probe.tcp probes, the cheapest real probe kind.
type sink struct {
	l        net.Listener
	accepted atomic.Int64
}

func newSink(b *testing.B) *sink {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &sink{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			c.Close()
		}
	}()
	b.Cleanup(func() { l.Close() })
	return s
}

func tcpPolicy(n int, addr string) string {
	var s strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&s, "probe.tcp(\"tcp%04d\", %q)\n", i, addr)
	}
	return s.String()
}

// raiseNoFile lifts this process's open-file limit to its hard limit (the
// daemon inherits it, so its connection cap of a quarter of it, at most
// 1,024, is not what refuses the idle connections).
func raiseNoFile(b *testing.B, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Fatal(err)
		}
	}
	if rl.Cur < need {
		b.Fatalf("open-file limit %d, this benchmark needs %d: raise the hard limit (ulimit -Hn)", rl.Cur, need)
	}
}

// BenchmarkSteadyIdle runs a daemon with 50 probe.tcp probes at a 60 s
// interval and reports, after a warm-up, its resident memory, the share of
// one core it used over a 60 s window (which holds one cycle), its
// wake-ups per second, and the latency of /health first with no other
// client and then with 1,000 idle connections open (the baseline of that
// row is the first, measured on the same daemon a moment before).
func BenchmarkSteadyIdle(b *testing.B) {
	raiseNoFile(b, 4200)
	sk := newSink(b)
	d := startSteady(b, tcpPolicy(50, sk.l.Addr().String()), 60)
	if s, _ := d.health(); s.ProbeCount != 50 || s.FailedProbeCount != 0 {
		b.Fatalf("want 50 passing probes, /health says %d with %d failing", s.ProbeCount, s.FailedProbeCount)
	}
	time.Sleep(benchScale(3 * time.Second)) // warm-up: start-up work done
	var cpu, ticks, wake, rss, p50, p99, i50, i99, open []float64
	for i := 0; i < b.N; i++ {
		a := d.usage(b)
		time.Sleep(benchScale(60 * time.Second))
		w := between(a, d.usage(b))
		cpu, ticks, wake = append(cpu, w.cpuPct), append(ticks, w.tickPct), append(wake, w.wakeups)
		rss = append(rss, d.rssMiB(b))

		lat := healthLatency(b, d.bind, "/health", 1000, 2*time.Millisecond, time.Time{})
		p50, p99 = append(p50, quantile(lat, 0.5)), append(p99, quantile(lat, 0.99))
		// Silent connections: the server closes them after its
		// ReadHeaderTimeout (2 s), so the sample ends 1.5 s after the
		// first was opened and then checks how many were still open.
		until := time.Now().Add(1500 * time.Millisecond)
		var idle []net.Conn
		for k := 0; k < 1000; k++ {
			c, err := net.Dial("tcp", d.bind)
			if err != nil {
				b.Fatalf("idle connection %d: %v", k, err)
			}
			idle = append(idle, c)
		}
		lat = healthLatency(b, d.bind, "/health", 400, time.Millisecond, until)
		if len(lat) < 100 {
			b.Fatalf("only %d requests within 1.5 s of opening the idle connections", len(lat))
		}
		i50, i99 = append(i50, quantile(lat, 0.5)), append(i99, quantile(lat, 0.99))
		var n atomic.Int64
		var wg sync.WaitGroup
		for _, c := range idle {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); err != nil && os.IsTimeout(err) {
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		for _, c := range idle {
			c.Close()
		}
		open = append(open, float64(n.Load()))
	}
	b.ReportMetric(median(rss), "rss_MiB")
	b.ReportMetric(median(cpu), "cpu_%")
	b.ReportMetric(median(ticks), "cpu_ticks_%")
	b.ReportMetric(median(wake), "wakeups/s")
	b.ReportMetric(median(p50), "health_p50_ms")
	b.ReportMetric(median(p99), "health_p99_ms")
	b.ReportMetric(median(i50), "idle1k_p50_ms")
	b.ReportMetric(median(i99), "idle1k_p99_ms")
	b.ReportMetric(median(open), "idle_open")
}

// BenchmarkSteadyBusy runs a daemon with 1,000 probe.tcp probes at a 1 s
// interval against a loopback listener and reports, over ten 3 s windows
// after a warm-up (medians), the share of one core it used, garbage
// collections per second and probe runs per second (the listener's
// accepts: 1,000/s when the daemon keeps up), then its resident memory
// and the latency of /health and /metrics.
func BenchmarkSteadyBusy(b *testing.B) {
	raiseNoFile(b, 4200)
	sk := newSink(b)
	d := startSteady(b, tcpPolicy(1000, sk.l.Addr().String()), 1)
	time.Sleep(benchScale(5 * time.Second))
	if s, _ := d.health(); s.ProbeCount != 1000 || s.FailedProbeCount != 0 {
		b.Fatalf("want 1000 passing probes, /health says %d with %d failing", s.ProbeCount, s.FailedProbeCount)
	}
	var cpu, ticks, gcs, runs, wake, rss, p50, p99, m50 []float64
	for i := 0; i < b.N; i++ {
		for k := 0; k < 10; k++ {
			a, acc := d.usage(b), sk.accepted.Load()
			time.Sleep(benchScale(3 * time.Second))
			z, acc2 := d.usage(b), sk.accepted.Load()
			w := between(a, z)
			cpu, ticks, gcs, wake = append(cpu, w.cpuPct), append(ticks, w.tickPct), append(gcs, w.gcs), append(wake, w.wakeups)
			runs = append(runs, float64(acc2-acc)/w.secs)
		}
		rss = append(rss, d.rssMiB(b))
		lat := healthLatency(b, d.bind, "/health", 1000, 2*time.Millisecond, time.Time{})
		p50, p99 = append(p50, quantile(lat, 0.5)), append(p99, quantile(lat, 0.99))
		m50 = append(m50, quantile(healthLatency(b, d.bind, "/metrics", 200, 2*time.Millisecond, time.Time{}), 0.5))
	}
	if s, _ := d.health(); s.FailedProbeCount != 0 {
		b.Fatalf("%d probes failed during the measurement: %v", s.FailedProbeCount, s.FailedProbes)
	}
	b.ReportMetric(median(cpu), "cpu_%")
	b.ReportMetric(median(ticks), "cpu_ticks_%")
	b.ReportMetric(median(gcs), "gcs/s")
	b.ReportMetric(median(runs), "probes/s")
	b.ReportMetric(median(wake), "wakeups/s")
	b.ReportMetric(median(rss), "rss_MiB")
	b.ReportMetric(median(p50), "health_p50_ms")
	b.ReportMetric(median(p99), "health_p99_ms")
	b.ReportMetric(median(m50), "metrics_p50_ms")
}

// cycleWatch polls a daemon's /health and, for each launch, measures the
// time from its probes' start (their results' "at") to the moment the last
// of them shows on /health.
func cycleWatch(b *testing.B, d *steadyDaemon, nProbes, cycles int, done <-chan struct{}) []float64 {
	seen := map[string]time.Time{}
	var out []float64
	var groupStart time.Time
	var arrived int
	first := true
	for len(out) < cycles {
		select {
		case <-done:
			return out
		default:
		}
		s, err := d.health()
		now := time.Now()
		if err != nil {
			b.Errorf("health: %v", err)
			return out
		}
		for _, p := range s.Probes {
			if seen[p.Name].Equal(p.At) {
				continue
			}
			seen[p.Name] = p.At
			if first {
				continue // the results there before the watch began
			}
			if arrived > 0 && p.At.Sub(groupStart) > time.Second {
				arrived = 0 // a launch whose first results came before the watch
			}
			if arrived == 0 || p.At.Before(groupStart) {
				groupStart = p.At
			}
			arrived++
			if arrived == nProbes {
				out = append(out, now.Sub(groupStart).Seconds()*1000)
				arrived = 0
			}
		}
		first = false
		time.Sleep(5 * time.Millisecond)
	}
	return out
}

// BenchmarkDaemonCycle runs four daemons side by side at a 4 s interval
// and measures each cycle inside the daemon (from its probes' start to the
// last result on /health): ten probes sleeping 0.1 to 0.5 s against the
// slowest of them alone; a probe whose grandchild (setsid, cleared
// environment) holds its output pipe, timeout 2 s, against its timeout;
// and that probe among the ten sleepers against it alone. Medians of seven
// cycles each.
func BenchmarkDaemonCycle(b *testing.B) {
	var sleepers strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&sleepers, "probe.exec(\"sleep%d\", [\"sleep\", \"0.%d\"])\n", i, 1+i%5)
	}
	const held = "probe.exec(\"held\", [\"sh\", \"-c\", \"(env -i setsid sh -c 'exec sleep 4' &); sleep 30\"], timeout = \"2s\")\n"
	rigs := []struct {
		name   string
		policy string
		n      int
	}{
		{"sleepers", sleepers.String(), 10},
		{"slowest", "probe.exec(\"sleep\", [\"sleep\", \"0.5\"])\n", 1},
		{"held", held, 1},
		{"held+sleepers", held + sleepers.String(), 11},
	}
	ds := make([]*steadyDaemon, len(rigs))
	for i, r := range rigs {
		ds[i] = startSteady(b, r.policy, 4)
	}
	for i := 0; i < b.N; i++ {
		res := make([][]float64, len(rigs))
		var wg sync.WaitGroup
		done := make(chan struct{})
		for k := range rigs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[k] = cycleWatch(b, ds[k], rigs[k].n, 7, done)
			}()
		}
		wg.Wait()
		close(done)
		med := make([]float64, len(rigs))
		for k := range rigs {
			if len(res[k]) == 0 {
				b.Fatalf("%s: no complete cycle seen", rigs[k].name)
			}
			med[k] = median(res[k])
		}
		b.ReportMetric(med[0], "sleepers_ms")
		b.ReportMetric(med[1], "slowest_ms")
		b.ReportMetric(med[0]/med[1], "cycle/slowest")
		b.ReportMetric(med[2], "held_ms")
		b.ReportMetric(med[2]/2000, "held/timeout")
		b.ReportMetric(med[3], "held+sleepers_ms")
		b.ReportMetric(med[3]/med[2], "mixed/held")
	}
}

// BenchmarkReloadPolicy measures reloads of a 1-probe and a 500-probe
// policy (probe.tcp at a 60 s interval), one daemon each: saving an edit
// until its hash is on /health (watch -> debounce -> load -> swap), and
// POST /reload of the unchanged files (load -> compare); 20 of each,
// medians. hack/bench.sh compares a save with the watcher's debounce.
func BenchmarkReloadPolicy(b *testing.B) {
	sk := newSink(b)
	for _, n := range []int{1, 500} {
		base := tcpPolicy(n, sk.l.Addr().String())
		d := startSteady(b, base, 60)
		entry := filepath.Join(d.dir, "talon.star")
		var save, post []float64
		for i := 0; i < b.N; i++ {
			for e := 0; e < 20; e++ {
				before, err := d.health()
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := os.WriteFile(entry, []byte(fmt.Sprintf("%sprobe.tcp(\"edit%d_%d\", %q)\n", base, i, e, sk.l.Addr().String())), 0o644); err != nil {
					b.Fatal(err)
				}
				for {
					s, err := d.health()
					if err == nil && s.PolicyHash != before.PolicyHash {
						break
					}
					if time.Since(start) > 10*time.Second {
						b.Fatalf("%d probes: edit %d not on /health in 10 s", n, e)
					}
					time.Sleep(time.Millisecond)
				}
				save = append(save, float64(time.Since(start).Microseconds())/1000)
				time.Sleep(150 * time.Millisecond) // the debounce window closes
			}
			cf, err := health.ReadControlFile(filepath.Join(filepath.Dir(d.dir), "state")) // beside the policy directory
			if err != nil {
				b.Fatal(err)
			}
			for e := 0; e < 20; e++ {
				start := time.Now()
				if _, err := health.PostReload(context.Background(), cf.Addr, cf.Token); err != nil {
					b.Fatal(err)
				}
				post = append(post, float64(time.Since(start).Microseconds())/1000)
				time.Sleep(50 * time.Millisecond)
			}
		}
		b.ReportMetric(median(save), fmt.Sprintf("save%d_median_ms", n))
		b.ReportMetric(quantile(save, 1), fmt.Sprintf("save%d_worst_ms", n))
		b.ReportMetric(median(post), fmt.Sprintf("post%d_median_ms", n))
	}
}
