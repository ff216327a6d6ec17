package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/talon-dev/talon/engine"
	"github.com/talon-dev/talon/engine/journal"
)

// BenchmarkReplayMonthBinary writes the month of BenchmarkReplayMonth (30
// days x 20 probes at 60 s) through the journal writer with the daemon's
// default file size and enough generations to keep all of it — what a
// daemon would leave on disk — and replays it with the real `talon replay`
// binary as a child process. Reported, medians of 3 x b.N runs:
//   - month_MiB: the month on disk (every generation, compressed or not),
//     and default_bound_MiB, what the daemon's default journal bound keeps;
//   - wc_s and wc_cpu_s: `wc -l` over the same files (decompressing those
//     that are compressed), the floor of reading them: the baseline of
//     replay_s and replay_cpu_s (CPU time is what a busy machine changes
//     least);
//   - replay_s, replay_cpu_s and replay_maxrss_MiB: wall time, CPU time and
//     peak resident memory (the child's rusage) of `talon replay`;
//   - diff_s: `talon replay --diff` against a second policy.
func BenchmarkReplayMonthBinary(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "talon")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/talon-dev/talon/cmd/talon")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build` builds it
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build talon: %v\n%s", err, out)
	}
	polA, polB, cfg, res := monthPolicies(b, dir)
	flat := filepath.Join(dir, "flat", "journal.jsonl")
	if err := os.MkdirAll(filepath.Dir(flat), 0o755); err != nil {
		b.Fatal(err)
	}
	writeMonth(b, flat, res.Policy)
	path := filepath.Join(dir, "rotated", "journal.jsonl")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	j, err := journal.Open(path, journal.Options{Keep: 1000})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := journal.Read(flat, func(r engine.Record) error { return j.Append(r) }); err != nil {
		b.Fatal(err)
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(filepath.Dir(flat))
	files, _ := filepath.Glob(path + "*")
	sort.Strings(files)
	var size int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		size += fi.Size()
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	// run runs cmd and returns its wall time, CPU time (user and system,
	// its waited-for children included) and peak resident memory in MiB.
	run := func(cmd *exec.Cmd) (wall, cpu float64, rss float64) {
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = devnull, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, errb.String())
		}
		wall = time.Since(start).Seconds()
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		return wall, time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	child := func(argv ...string) *exec.Cmd {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "TALON_STATE_DIR="+filepath.Join(dir, "state"))
		return cmd
	}
	b.ResetTimer()
	if out, err := wcCommand(b, files).Output(); err != nil {
		b.Fatal(err)
	} else if f := strings.Fields(string(out)); len(f) < 2 {
		b.Fatalf("wc -l: %q", out)
	} else if n, err := strconv.Atoi(f[len(f)-2]); err != nil || n < 43200 {
		b.Fatalf("wc -l of the month's journal: %q: want at least one line per cycle", out)
	}
	var wcS, wcCPU, replayS, replayCPU, rss, diffS, diffRSS []float64
	// Three samples per iteration, side by side in turn: the floor,
	// replay, diff (the setup above is most of the time).
	for i := 0; i < 3*b.N; i++ {
		w, c, _ := run(wcCommand(b, files))
		wcS, wcCPU = append(wcS, w), append(wcCPU, c)
		w, c, m := run(child(bin, "replay", path, "--config", cfg, "--policy", polA, "--json"))
		replayS, replayCPU, rss = append(replayS, w), append(replayCPU, c), append(rss, m)
		w, _, m = run(child(bin, "replay", path, "--config", cfg, "--policy", polA, "--diff", polB, "--json"))
		diffS, diffRSS = append(diffS, w), append(diffRSS, m)
	}
	med := func(xs []float64) float64 { sort.Float64s(xs); return xs[len(xs)/2] }
	b.ReportMetric(float64(size)/(1<<20), "month_MiB")
	b.ReportMetric(float64(len(files)), "files")
	b.ReportMetric(float64(journal.Options{}.Bound())/(1<<20), "default_bound_MiB")
	b.ReportMetric(med(wcS), "wc_s")
	b.ReportMetric(med(wcCPU), "wc_cpu_s")
	b.ReportMetric(med(replayS), "replay_s")
	b.ReportMetric(med(replayCPU), "replay_cpu_s")
	b.ReportMetric(med(rss), "replay_maxrss_MiB")
	b.ReportMetric(med(diffS), "diff_s")
	b.ReportMetric(med(diffRSS), "diff_maxrss_MiB")
}

// wcCommand counts the lines of files with wc -l, decompressing the ones
// that are gzip or zstd compressed; the last line of its output ends in
// the total followed by the word "total".
func wcCommand(b *testing.B, files []string) *exec.Cmd {
	plain := true
	var parts []string
	for _, f := range files {
		head := make([]byte, 4)
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		io.ReadFull(fh, head)
		fh.Close()
		switch {
		case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
			plain = false
			parts = append(parts, fmt.Sprintf("gzip -dc %q", f))
		case bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
			plain = false
			parts = append(parts, fmt.Sprintf("zstd -dcq %q", f))
		default:
			parts = append(parts, fmt.Sprintf("cat %q", f))
		}
	}
	if plain {
		return exec.Command("wc", append([]string{"-l"}, append(files, "/dev/null")...)...)
	}
	return exec.Command("sh", "-c", "{ "+strings.Join(parts, "; ")+"; } | wc -l; echo total")
}
