#!/usr/bin/env bash
# make bench: what the paywall costs. BENCHMARKS.md explains the numbers.
#
#   1. Go benchmarks of the request path (-benchmem), summarised by benchstat
#      when it is installed
#   2. the Stripe-economy and memory tests, full size, with their counts
#   3. a CPU and allocation profile of the cache-hit path
#   4. the load run: a real Caddy with the plugin on loopback, wrk against
#      (a) respond, (b) paywall + respond, (c) forward_auth + respond
#
# Everything listens on 127.0.0.1 only. Results go to artifacts/bench/.
#
# Environment:
#   CADDY_BIN  Caddy built with the plugin (default: go build ./cmd/caddy
#              into artifacts/bench/, so the run measures the tree as it is)
#   COUNT      runs of each Go benchmark (default 6, the fewest for which
#              benchstat gives a confidence interval)
#   BENCHTIME  -benchtime of each run (default 1s)
#   ROUNDS     load-run rounds (default 7)
#   DURATION   length of one wrk run (default 10s)
#   SKIP_LOAD  set to 1 to skip the load run
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-10s}
OUT=artifacts/bench
mkdir -p "$OUT"
: >"$OUT/targets.txt"

say() { printf '\n== %s\n' "$*"; }

say "machine"
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "go: $("$GO" version)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes')"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/machine.txt"

# wrk, from Debian's packages, only when missing.
if ! command -v wrk >/dev/null; then
	if [ -x scripts/tools.sh ]; then
		scripts/tools.sh bench
	else
		sudo=()
		[ "$(id -u)" -eq 0 ] || sudo=(sudo)
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q wrk
	fi
fi

say "Go benchmarks: go test -run '^\$' -bench . -benchmem -count $COUNT -benchtime $BENCHTIME ."
"$GO" test -run '^$' -bench . -benchmem -count "$COUNT" -benchtime "$BENCHTIME" . | tee "$OUT/go-bench.txt"
benchstat=$(command -v benchstat || true)
if [ -z "$benchstat" ]; then
	gobin=$("$GO" env GOBIN)
	[ -n "$gobin" ] || gobin="$("$GO" env GOPATH)/bin"
	[ -x "$gobin/benchstat" ] && benchstat="$gobin/benchstat"
fi
if [ -n "$benchstat" ]; then
	say "benchstat"
	"$benchstat" "$OUT/go-bench.txt" | tee "$OUT/go-bench-stat.txt"
else
	echo "(benchstat not installed: go install golang.org/x/perf/cmd/benchstat@latest for medians with confidence intervals)"
fi

say "Stripe economy and memory: go test -count=1 -run 'Economy|Memory|Bound' -v ."
"$GO" test -count=1 -run 'Economy|Memory|Bound' -v . | tee "$OUT/economy.txt" |
	grep -E '^\s+economy_test.go|^(--- |ok|FAIL|PASS)' || true
grep -h 'bytes per cached customer' "$OUT/economy.txt" | sed 's/^ *economy_test.go:[0-9]*: //' |
	awk '{ print "memory: " $0 " (target ≤ 512)" }' | tee -a "$OUT/targets.txt"
# The cache-hit target: no allocation in the plugin's own code, well under
# a microsecond.
hit=$(grep -E '^BenchmarkGateCached/plugin' "$OUT/go-bench.txt" || true)
if [ -n "$hit" ]; then
	ns=$(awk '{ print $3 }' <<<"$hit" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }')
	allocs=$(awk '{ for (i = 4; i < NF; i++) if ($(i+1) == "allocs/op") print $i }' <<<"$hit" | sort -n | tail -1)
	verdict_allocs=met; [ "$allocs" = 0 ] || verdict_allocs="MISSED (target 0)"
	verdict_ns=$(awk -v ns="$ns" 'BEGIN { print (ns < 1000) ? "met (< 1 µs)" : "MISSED (target < 1 µs)" }')
	echo "cache hit (BenchmarkGateCached/plugin): median $ns ns/op, $allocs allocs/op: allocations $verdict_allocs; time $verdict_ns" | tee -a "$OUT/targets.txt"
fi

failed=0
grep -q '^ok' "$OUT/economy.txt" || { failed=1; echo "bench: the economy and memory tests FAILED (see $OUT/economy.txt); going on with the rest" >&2; }

say "profile of the cache-hit path: BenchmarkGateCached/plugin"
# CPU and allocations in separate runs: recording every allocation's stack
# (-memprofilerate 1) would show up in the CPU profile.
"$GO" test -run '^$' -bench 'GateCached/plugin$' -benchtime 3s -cpuprofile "$OUT/cpu.pprof" -o "$OUT/paywall.test" . | grep Benchmark
"$GO" test -run '^$' -bench 'GateCached/plugin$' -benchtime 1s -benchmem -memprofile "$OUT/mem.pprof" -memprofilerate 1 . | grep Benchmark
{
	echo "# CPU, by function (flat), top 25"
	"$GO" tool pprof -top -nodecount 25 "$OUT/paywall.test" "$OUT/cpu.pprof" 2>/dev/null | sed -n '/flat%/,$p'
	echo
	echo "# CPU, cumulative, under (*Handler).gate"
	"$GO" tool pprof -top -cum -focus 'paywall\.\(\*Handler\)\.gate$' -nodecount 30 "$OUT/paywall.test" "$OUT/cpu.pprof" 2>/dev/null | sed -n '/flat%/,$p'
	echo
	echo "# allocations under (*Handler).gate, by line (empty when the cache hit allocates nothing)"
	"$GO" tool pprof -sample_index=alloc_objects -list 'paywall\.\(\*Handler\)\.gate$' "$OUT/paywall.test" "$OUT/mem.pprof" 2>/dev/null |
		grep -vE '^\s+\.\s+\.\s' || true
} | tee "$OUT/profile.txt"

if [ "${SKIP_LOAD:-0}" = 1 ]; then
	echo "SKIP_LOAD=1: no load run"
	exit "$failed"
fi

say "load run"
caddy=${CADDY_BIN:-}
if [ -z "$caddy" ]; then
	caddy="$OUT/caddy"
	"$GO" build -o "$caddy" ./cmd/caddy
fi
"$caddy" list-modules | grep -qx 'http.handlers.paywall' || { echo "bench: $caddy lacks http.handlers.paywall" >&2; exit 1; }
"$GO" build -o "$OUT/authsvc" ./bench/authsvc
"$GO" build -o "$OUT/loadrun" ./bench/loadrun
"$OUT/loadrun" -caddy "$caddy" -authsvc "$OUT/authsvc" -rounds "$ROUNDS" -duration "$DURATION" \
	-markdown "$OUT/loadrun.md" -json "$OUT/loadrun.json" -pprof "$OUT/pprof"
for site in a b c; do
	echo "# Caddy serving site $site: CPU by function (cumulative), top 20" >"$OUT/pprof/caddy-$site.txt"
	"$GO" tool pprof -top -cum -nodecount 20 "$caddy" "$OUT/pprof/caddy-$site.pprof" 2>/dev/null | sed -n '/flat%/,$p' >>"$OUT/pprof/caddy-$site.txt"
done
echo
echo "# Caddy serving site b: time under the paywall's gate, by callee"
"$GO" tool pprof -peek 'paywall\.\(\*Handler\)\.gate$' "$caddy" "$OUT/pprof/caddy-b.pprof" 2>/dev/null | sed -n '/flat%/,$p' | tee "$OUT/pprof/caddy-b-gate.txt"

grep -h '^Targets' "$OUT/loadrun.md" | tee -a "$OUT/targets.txt"

say "done: $OUT/"
cat "$OUT/targets.txt"
if [ "$failed" = 1 ]; then
	echo "bench: the economy and memory tests failed: see $OUT/economy.txt" >&2
	exit 1
fi
