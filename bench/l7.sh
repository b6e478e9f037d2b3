#!/usr/bin/env bash
# Cost of the l7 sensor, in one run, interleaved:
#  - wrk from the loadgen pod (node-2) to ratings (node-1), across the
#    overlay, with no agent and with one l7 agent per node, alternating
#    REPS times: throughput, p50 and p99 of each run, ratios of medians;
#    also the agents' own CPU time per 1000 requests;
#  - the parsers' throughput per core (bench/l7_parse.c);
#  - ground truth at the highest Bookinfo rate asked (L7_RATE, default
#    1000/s for 60 s): tests/integration/l7_http.sh with the release build.
# Writes bench/results/l7.md. Run under the lab lock (bench/run.sh does).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=$ROOT/build/release/sonde
OUT=${L7_BENCH_OUT:-$ROOT/bench/results/l7.md}
STATE=/run/sonde-lab/state.json
REPS=${REPS:-6}
WRK_SECONDS=${WRK_SECONDS:-8}
TMP=$(mktemp -d /tmp/sonde-bench-l7.XXXXXX)
export SONDE_LAB_DIR=$ROOT/lab
trap '"$SONDE" lab down >/dev/null 2>&1 || true' EXIT
make -C "$ROOT" -s all

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# wrk's latency lines ("50%  1.23ms") to microseconds.
to_us() { awk '{ v = $2; u = 1; if (v ~ /us$/) u = 1; else if (v ~ /ms$/) u = 1000; else if (v ~ /s$/) u = 1000000; sub(/[a-z]+$/, "", v); printf "%.1f\n", v * u }'; }

"$SONDE" lab down >/dev/null 2>&1 || true
"$SONDE" lab up --rate 0 >/dev/null
rip=$(jq -r '.pods[] | select(.workload == "ratings-v1") | .ip' $STATE)
url="http://$rip:9080/ratings/0"

run_wrk() { # tag rep
	"$SONDE" lab exec loadgen -- wrk -t1 -c8 -d"${WRK_SECONDS}s" --latency "$url" >"$TMP/$1.$2.txt"
}
agent_cpu() { # pids -> total utime+stime ticks
	local t=0
	for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
	echo $t
}

: >"$TMP/cpu.txt"
for rep in $(seq "$REPS"); do
	run_wrk off "$rep"
	pids=()
	for node in $(jq -r '.nodes[].name' $STATE); do
		"$SONDE" agent --node "$node" --sensors l7 --output "$TMP/agent-$node.$rep.jsonl" 2>"$TMP/agent-$node.$rep.err" &
		pids+=($!)
	done
	for node in $(jq -r '.nodes[].name' $STATE); do
		for _ in $(seq 100); do grep -q "l7 sensor attached" "$TMP/agent-$node.$rep.err" && break; sleep 0.1; done
	done
	sleep 1.5
	c0=$(agent_cpu "${pids[@]}")
	run_wrk on "$rep"
	c1=$(agent_cpu "${pids[@]}")
	kill -TERM "${pids[@]}"
	wait "${pids[@]}" || true
	reqs=$(awk '/requests in/ { print $1 }' "$TMP/on.$rep.txt")
	recs=$(cat "$TMP"/agent-*."$rep".jsonl | grep -c '"kind":"http"' || true)
	echo "$rep $((c1 - c0)) $reqs $recs" >>"$TMP/cpu.txt"
done

row() { # tag -> "rps p50_us p99_us" medians
	local rps p50 p99
	rps=$(for f in "$TMP/$1".*.txt; do awk '/Requests\/sec/ { print $2 }' "$f"; done | median)
	p50=$(for f in "$TMP/$1".*.txt; do grep -E '^ +50%' "$f" | to_us; done | median)
	p99=$(for f in "$TMP/$1".*.txt; do grep -E '^ +99%' "$f" | to_us; done | median)
	echo "$rps $p50 $p99"
}
read -r off_rps off_p50 off_p99 <<<"$(row off)"
read -r on_rps on_p50 on_p99 <<<"$(row on)"
hz=$(getconf CLK_TCK)
cpu_per_k=$(awk -v hz="$hz" '{ t += $2; r += $3 } END { if (r) printf "%.1f", t / hz * 1000 / r * 1000; else print "n/a" }' "$TMP/cpu.txt")
rec_ratio=$(awk '{ r += $3; n += $4 } END { if (r) printf "%.4f", n / r; else print "n/a" }' "$TMP/cpu.txt")

cc -O2 -D_GNU_SOURCE -I"$ROOT/src" -o "$TMP/l7_parse" "$ROOT/bench/l7_parse.c" "$ROOT/src/l7/http.c" "$ROOT/src/l7/dns.c"
parse=$("$TMP/l7_parse")

{
	echo "# l7 sensor: overhead, parser throughput, ground truth at load"
	echo
	echo "Command: \`make bench BENCH=l7\` (bench/l7.sh, REPS=$REPS, ${WRK_SECONDS}s per wrk run), $(date -u +%Y-%m-%dT%H:%MZ)."
	echo "Machine: $(nproc) cores shared with other engineers' work, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r); load average at start $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "## wrk across nodes (loadgen pod on node-2 -> ratings pod on node-1, \`wrk -t1 -c8\`), off/on interleaved"
	echo
	echo "Medians of $REPS runs each. \"on\" = one \`sonde agent --sensors l7\` per node (release build), every pod monitored."
	echo
	echo "| | requests/s | p50 (us) | p99 (us) |"
	echo "|---|---|---|---|"
	echo "| off | $off_rps | $off_p50 | $off_p99 |"
	echo "| on | $on_rps | $on_p50 | $on_p99 |"
	awk -v a="$off_rps" -v b="$on_rps" -v c="$off_p50" -v d="$on_p50" -v e="$off_p99" -v f="$on_p99" \
		'BEGIN { printf "| on/off | %.3f | %.3f | %.3f |\n", b / a, d / c, f / e }'
	echo
	echo "Agents' CPU (both nodes, user+system) per 1000 requests during the \"on\" runs: ${cpu_per_k} ms."
	echo "Server-side + client-side http records per wrk request (both ends monitored, so 2 is complete): $rec_ratio."
	echo
	echo "Per run (rep, agent CPU ticks at ${hz}/s, wrk requests, http records):"
	echo
	echo '```'
	cat "$TMP/cpu.txt"
	for t in off on; do for f in "$TMP/$t".*.txt; do echo "$t $(basename "$f"): $(awk '/Requests\/sec/ { print $2 }' "$f") req/s, p50 $(grep -E '^ +50%' "$f" | awk '{ print $2 }'), p99 $(grep -E '^ +99%' "$f" | awk '{ print $2 }')"; done; done
	echo '```'
	echo
	echo "## Parser throughput (one core, CPU time)"
	echo
	echo "Keep-alive stream of Bookinfo-like requests and responses (half chunked), in 1448-byte pieces; DNS: a response with two A answers."
	echo
	echo '```'
	echo "$parse"
	echo '```'
} >"$OUT"

"$SONDE" lab down >/dev/null 2>&1 || true
if [ "${L7_RATE:-1000}" != 0 ]; then
	echo >>"$OUT"
	echo "## Ground truth at ${L7_RATE:-1000} requests/s for ${L7_SECONDS:-60} s (tests/integration/l7_http.sh, release build)" >>"$OUT"
	echo >>"$OUT"
	echo '```' >>"$OUT"
	SONDE=$SONDE L7_RATE=${L7_RATE:-1000} L7_SECONDS=${L7_SECONDS:-60} bash "$ROOT/tests/integration/l7_http.sh" 2>&1 |
		grep -E 'records:|"pod"|loadgen client|status:|FAIL|PASS|failed' >>"$OUT" || true
	echo '```' >>"$OUT"
fi
cat "$OUT"
