#!/usr/bin/env bash
# Prints Talon's speed figures as ratios measured side by side in one run
# (the machine is small and noisy: only same-run comparisons mean anything).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

go test -run '^$' -bench 'CheckCycle' -benchtime 5x -count 1 ./engine/ | tee -a "$out"
go test -run '^$' -bench 'Observe' -benchmem -count 1 ./engine/ | tee -a "$out"
go test -run '^$' -bench 'ReloadLatency' -benchtime 1x -count 1 ./internal/e2e/ | tee -a "$out"
go test -run '^$' -bench 'BenchmarkEvents' -benchtime 5x -count 1 ./internal/cli/ | tee -a "$out"
go test -run '^$' -bench 'ReplayMonth' -benchtime 2x -count 1 ./internal/cli/ | tee -a "$out"
go test -run '^$' -bench 'TimeoutPipeHolder' -benchtime 3x -count 1 ./engine/ | tee -a "$out"
go test -run '^$' -bench 'RefuseBombs' -benchtime 3x -count 1 ./builtins/ | tee -a "$out"

metric() { # metric BENCH UNIT
  awk -v b="^$1-" -v u="$2" '$1 ~ b { for (i = 3; i < NF; i++) if ($(i+1) == u) print $i }' "$out" | head -1
}
conc=$(metric BenchmarkCheckCycle wall_ms)
seq=$(metric BenchmarkCheckCycleSequential wall_ms)
frac=$(metric BenchmarkCheckCycle wall/sum)
med=$(metric BenchmarkReloadLatency median_ms)
worst=$(metric BenchmarkReloadLatency worst_ms)
obs=$(awk '$1 ~ /^BenchmarkObserve-/ { print $3 }' "$out" | head -1)
ev_all=$(awk '$1 ~ /^BenchmarkEvents\/all-/ { print $3 }' "$out" | head -1)
ev_since=$(awk '$1 ~ /^BenchmarkEvents\/since2h-/ { print $3 }' "$out" | head -1)
ev_mib=$(metric 'BenchmarkEvents/all' journal_MiB)
rs=$(metric BenchmarkReplayMonth replay_s)
rcpu=$(metric BenchmarkReplayMonth replay_cpu_s)
ds=$(metric BenchmarkReplayMonth diff_s)
cps=$(metric BenchmarkReplayMonth cycles/s)
mib=$(metric BenchmarkReplayMonth journal_MiB)
held=$(metric BenchmarkTimeoutPipeHolder wall_ms)
heldr=$(metric BenchmarkTimeoutPipeHolder of_timeout)
bombl=$(metric BenchmarkRefuseBombs worst_load_ms)
bombc=$(metric BenchmarkRefuseBombs worst_call_ms)

echo
echo "== Talon figures (one run) =="
printf 'check cycle, 10 probes x sleep 0.3 s: %s ms concurrent vs %s ms sequential -> %.2fx faster; wall/sum of probe times = %s\n' \
  "$conc" "$seq" "$(awk -v a="$seq" -v b="$conc" 'BEGIN{print a/b}')" "$frac"
printf 'reload latency, file written -> new hash on /health, 20 edits: median %s ms, worst %s ms -> median is %.2f of the 250 ms target\n' \
  "$med" "$worst" "$(awk -v a="$med" 'BEGIN{print a/250}')"
printf 'state machine, 50 probes per Observe: %s ns/op -> %.5f of a 1 s cycle\n' "$obs" "$(awk -v a="$obs" 'BEGIN{print a/1e9}')"
printf 'talon events on a full %s MiB journal: all of it in %.0f ms (%.0f MiB/s); --since 2h in %.1f ms -> %.0fx faster by seeking\n' \
  "$ev_mib" "$(awk -v a="$ev_all" 'BEGIN{print a/1e6}')" "$(awk -v a="$ev_all" -v m="$ev_mib" 'BEGIN{print m/(a/1e9)}')" \
  "$(awk -v a="$ev_since" 'BEGIN{print a/1e6}')" "$(awk -v a="$ev_all" -v b="$ev_since" 'BEGIN{print a/b}')"
printf 'replay, 30 days x 20 probes at 60 s (43,200 cycles, %s MiB journal): %s s wall (%s s CPU), %s cycles/s -> %.2f of the 2 s target; --diff %s s -> %.2f of the 4 s target\n' \
  "$mib" "$rs" "$rcpu" "$cps" "$(awk -v a="$rs" 'BEGIN{print a/2}')" "$ds" "$(awk -v a="$ds" 'BEGIN{print a/4}')"
printf 'probe with a setsid grandchild holding the pipe, timeout 2 s: %s ms -> %s of the timeout (goal <= 1.025)\n' "$held" "$heldr"
printf 'memory and time bombs (list(range(1 << 40)), a huge dict comprehension, str() of a deep list, ...): slowest refusal %s ms at load (%s of the 10 s load deadline), %s ms in a probe.func\n' \
  "$bombl" "$(awk -v a="$bombl" 'BEGIN{print a/10000}')" "$bombc"
