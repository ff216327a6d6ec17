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
