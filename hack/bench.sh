#!/usr/bin/env bash
# Prints Talon's speed figures, each as a ratio to its baseline or goal,
# measured side by side in one run (the machine is small and noisy: only
# same-run comparisons mean anything). The daemon's figures come from the
# real binary (internal/e2e and internal/cli benchmarks start `talon run`
# and `talon replay` and read /proc, rusage and the GC trace).
# TALON_BENCH_SCALE=0.2 shortens the measuring windows for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# BENCH_RESULTS=FILE prints the figures of a saved run (this script's
# output) without measuring again.
if [ -n "${BENCH_RESULTS:-}" ]; then
  cp "$BENCH_RESULTS" "$out"
else
  echo "loadavg-before $(cat /proc/loadavg 2>/dev/null)" | tee -a "$out"
  go test -run '^$' -bench 'CheckCycle' -benchtime 5x -count 1 ./engine/ | tee -a "$out"
  go test -run '^$' -bench 'Observe' -benchmem -count 1 ./engine/ | tee -a "$out"
  go test -run '^$' -bench 'TimeoutPipeHolder' -benchtime 3x -count 1 ./engine/ | tee -a "$out"
  go test -run '^$' -bench 'RefuseBombs' -benchtime 3x -count 1 ./builtins/ | tee -a "$out"
  go test -run '^$' -bench 'BenchmarkEvents' -benchtime 5x -count 1 ./internal/cli/ | tee -a "$out"
  go test -run '^$' -bench 'ReplayMonthBinary' -benchtime 1x -count 1 ./internal/cli/ | tee -a "$out"
  go test -run '^$' -bench 'DaemonCycle|ReloadPolicy|SteadyIdle|SteadyBusy' -benchtime 1x -count 1 -timeout 30m ./internal/e2e/ | tee -a "$out"
  echo "loadavg-after $(cat /proc/loadavg 2>/dev/null)" | tee -a "$out"
fi

metric() { # metric BENCH UNIT
  awk -v b="^$1-" -v u="$2" '$1 ~ b { for (i = 3; i < NF; i++) if ($(i+1) == u) print $i }' "$out" | head -1
}
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# The watcher's debounce, from the one place it is set.
debounce=$(sed -n 's/.*opts.Debounce = \([0-9]*\) \* time.Millisecond.*/\1/p' engine/watch/watch.go | head -1)

conc=$(metric BenchmarkCheckCycle wall_ms)
seq=$(metric BenchmarkCheckCycleSequential wall_ms)
frac=$(metric BenchmarkCheckCycle wall/sum)
obs=$(awk '$1 ~ /^BenchmarkObserve-/ { print $3 }' "$out" | head -1)
ev_all=$(awk '$1 ~ /^BenchmarkEvents\/all-/ { print $3 }' "$out" | head -1)
ev_since=$(awk '$1 ~ /^BenchmarkEvents\/since2h-/ { print $3 }' "$out" | head -1)
ev_mib=$(metric 'BenchmarkEvents/all' journal_MiB)
held=$(metric BenchmarkTimeoutPipeHolder wall_ms)
heldr=$(metric BenchmarkTimeoutPipeHolder of_timeout)
bombl=$(metric BenchmarkRefuseBombs worst_load_ms)
bombc=$(metric BenchmarkRefuseBombs worst_call_ms)

R=BenchmarkReplayMonthBinary
mmib=$(metric $R month_MiB); files=$(metric $R files); bound=$(metric $R default_bound_MiB)
wcs=$(metric $R wc_s); wcc=$(metric $R wc_cpu_s)
rs=$(metric $R replay_s); rc=$(metric $R replay_cpu_s); rrss=$(metric $R replay_maxrss_MiB)
ds=$(metric $R diff_s); drss=$(metric $R diff_maxrss_MiB)

C=BenchmarkDaemonCycle
sleepers=$(metric $C sleepers_ms); slowest=$(metric $C slowest_ms)
dheld=$(metric $C held_ms); mixed=$(metric $C held+sleepers_ms)

P=BenchmarkReloadPolicy
s1=$(metric $P save1_median_ms); w1=$(metric $P save1_worst_ms); p1=$(metric $P post1_median_ms)
s500=$(metric $P save500_median_ms); w500=$(metric $P save500_worst_ms); p500=$(metric $P post500_median_ms)

I=BenchmarkSteadyIdle
irss=$(metric $I rss_MiB); icpu=$(metric $I cpu_%); iticks=$(metric $I cpu_ticks_%); iwake=$(metric $I wakeups/s)
h50=$(metric $I health_p50_ms); h99=$(metric $I health_p99_ms)
k50=$(metric $I idle1k_p50_ms); k99=$(metric $I idle1k_p99_ms); kopen=$(metric $I idle_open)

B=BenchmarkSteadyBusy
bcpu=$(metric $B cpu_%); bticks=$(metric $B cpu_ticks_%); bgc=$(metric $B gcs/s); bruns=$(metric $B probes/s)
bwake=$(metric $B wakeups/s); brss=$(metric $B rss_MiB)
b50=$(metric $B health_p50_ms); b99=$(metric $B health_p99_ms); m50=$(metric $B metrics_p50_ms)

echo
echo "== Talon figures (one run): figure -> ratio to its baseline or goal =="
# Wall times move with the machine's load; CPU times much less.
echo "load average (1, 5, 15 min) before: $(awk '$1 == "loadavg-before" { print $2, $3, $4 }' "$out"), after: $(awk '$1 == "loadavg-after" { print $2, $3, $4 }' "$out") on $(nproc) CPUs"
echo "-- issue 12's table"
printf 'replay, 30 days x 20 probes at 60 s (43,200 cycles): talon replay %s s wall, %s s CPU -> %sx / %sx `wc -l` of the same files (%s s wall, %s s CPU); %s of the 2 s goal (its CPU time: %s)\n' \
  "$rs" "$rc" "$(calc "$rs/$wcs" 1)" "$(calc "$rc/$wcc" 1)" "$wcs" "$wcc" "$(calc "$rs/2")" "$(calc "$rc/2")"
printf 'replay peak RSS: %s MiB -> %s of the 64 MiB goal (--diff: %s MiB -> %s)\n' \
  "$rrss" "$(calc "$rrss/64")" "$drss" "$(calc "$drss/64")"
printf 'replay --diff: %s s -> %s of the 4 s goal; %sx the replay alone\n' "$ds" "$(calc "$ds/4")" "$(calc "$ds/$rs")"
printf 'journal of those 30 days on disk, as the daemon rotates it (%s files): %s MiB -> %s of the default bound (%s MiB; goal: well under 1)\n' \
  "$(calc "$files" 0)" "$mmib" "$(calc "$mmib/$bound")" "$bound"
printf 'probe whose setsid grandchild holds the pipe, timeout 2 s, inside the daemon: %s ms -> %s of the timeout (goal <= 1.025); in the runner alone %s ms -> %s\n' \
  "$dheld" "$(calc "$dheld/2000" 3)" "$held" "$heldr"
printf 'idle daemon, 50 probes at 60 s: RSS %s MiB -> %s of the 15 MiB goal; CPU %s %% of a core (clock ticks say %s %%) -> %s of the 0.1 %% goal; %s wake-ups/s\n' \
  "$irss" "$(calc "$irss/15")" "$(calc "$icpu" 3)" "$(calc "$iticks" 3)" "$(calc "$icpu/0.1")" "$(calc "$iwake" 1)"
printf '1,000 probes at 1 s: CPU %s %% of a core (clock ticks say %s %%) -> %s of the 20 %% goal; %s GCs/s; %s probe runs/s (%s of the 1,000/s asked); %s wake-ups/s; RSS %s MiB\n' \
  "$(calc "$bcpu" 1)" "$(calc "$bticks" 1)" "$(calc "$bcpu/20")" "$(calc "$bgc" 1)" "$(calc "$bruns" 0)" "$(calc "$bruns/1000")" "$(calc "$bwake" 0)" "$brss"
printf '/health at 1,000 probes: p50 %s ms -> %s of the 0.5 ms goal; p99 %s ms; /metrics p50 %s ms\n' \
  "$b50" "$(calc "$b50/0.5")" "$b99" "$m50"
printf '/health with 1,000 idle connections (%s still open at the end): p50 %s ms, p99 %s ms -> %sx / %sx the same daemon without them (%s / %s ms); keep (issue: 0.27 / 0.98 ms)\n' \
  "$kopen" "$k50" "$k99" "$(calc "$k50/$h50")" "$(calc "$k99/$h99")" "$h50" "$h99"
printf 'reload on save, file written -> new hash on /health: 1 probe median %s ms (worst %s) -> %sx the %s ms debounce; 500 probes %s ms (worst %s) -> %sx; keep (issue: 52 / 59 ms)\n' \
  "$s1" "$w1" "$(calc "$s1/$debounce")" "$debounce" "$s500" "$w500" "$(calc "$s500/$debounce")"
printf 'POST /reload, unchanged files: 1 probe %s ms, 500 probes %s ms -> %s / %s of a save; keep (issue: 3.7 ms)\n' \
  "$p1" "$p500" "$(calc "$p1/$s1")" "$(calc "$p500/$s500")"
echo "-- more"
printf 'check cycle inside the daemon, 10 probes sleeping 0.1-0.5 s: %s ms -> %sx the slowest alone (%s ms); the pipe-holding probe among them: %s ms -> %sx it alone\n' \
  "$sleepers" "$(calc "$sleepers/$slowest")" "$slowest" "$mixed" "$(calc "$mixed/$dheld")"
printf 'check cycle in the runner, 10 probes x sleep 0.3 s: %s ms concurrent vs %s ms sequential -> %sx faster; wall/sum of probe times = %s\n' \
  "$conc" "$seq" "$(calc "$seq/$conc")" "$frac"
printf 'state machine, 50 probes per Observe: %s ns/op -> %s of a 1 s cycle\n' "$obs" "$(calc "$obs/1e9" 5)"
printf 'talon events on a full %s MiB journal: all of it in %s ms (%s MiB/s); --since 2h in %s ms -> %sx faster by seeking\n' \
  "$ev_mib" "$(calc "$ev_all/1e6" 0)" "$(calc "$ev_mib/($ev_all/1e9)" 0)" "$(calc "$ev_since/1e6" 1)" "$(calc "$ev_all/$ev_since" 0)"
printf 'memory and time bombs (list(range(1 << 40)), a huge dict comprehension, str() of a deep list, ...): slowest refusal %s ms at load (%s of the 10 s load deadline), %s ms in a probe.func\n' \
  "$bombl" "$(calc "$bombl/10000" 4)" "$bombc"
