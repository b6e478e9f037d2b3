#!/usr/bin/env bash
# The lab's own figures, which every other benchmark and test stands on:
#  - time of `sonde lab up` / `down` for 2 and 8 nodes;
#  - precision of `sonde lab delay` (NFQUEUE holder): the rise of curl's
#    time_connect median (one crossing of the delayed uplink) for 5, 20 and
#    50 ms, against a baseline measured in the same run, interleaved;
#  - the load generator: achieved rate at 200/500/1000 requests/s against
#    productpage's own access log, and the load generator's CPU.
# Writes bench/results/lab.md.
set -eu
if [ -z "${SONDE_BENCH_LOCKED:-}" ]; then
	SONDE_BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=$ROOT/sonde
OUT=$ROOT/bench/results/lab.md
STATE=/run/sonde-lab/state.json
TMP=$(mktemp -d /tmp/sonde-bench-lab.XXXXXX)
trap '"$SONDE" lab down >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
make -C "$ROOT" -s all

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p99() { sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; print v[i] }'; }
secs() { local t0=$EPOCHREALTIME; "$@" >/dev/null; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

{
	echo "# Lab figures"
	echo
	echo "Command: \`make bench BENCH=lab\` (bench/lab.sh), $(date -u +%Y-%m-%dT%H:%MZ)."
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r); load average at start $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "## up / down (seconds, 3 runs each)"
	echo
	echo "| nodes | up | down |"
	echo "|---|---|---|"
} >"$OUT"
"$SONDE" lab down >/dev/null 2>&1 || true
for nodes in 2 8; do
	ups="" downs=""
	for _ in 1 2 3; do
		ups="$ups $(secs "$SONDE" lab up --nodes "$nodes" --rate 0)"
		downs="$downs $(secs "$SONDE" lab down)"
	done
	echo "| $nodes |$ups |$downs |" >>"$OUT"
done

"$SONDE" lab up --rate 0 >/dev/null
client=loadgen
a=$(jq -r '.pods[] | select(.workload == "loadgen") | .node' "$STATE")
read -r ip b < <(jq -r --arg a "$a" '[.pods[] | select(.workload == "ratings-v1" and .node != $a)][0] | "\(.ip) \(.node)"' "$STATE")
[ -n "$ip" ] && [ "$ip" != null ] || { echo "no ratings pod off $a" >&2; exit 1; }
# connects NAME N: N fresh connections' time_connect (ms) into $TMP/NAME
connects() {
	# shellcheck disable=SC2016 # the loop runs in the pod's shell
	"$SONDE" lab exec "$client" -- sh -c 'i=0; while [ $i -lt '"$2"' ]; do i=$((i + 1));
		curl -sS -o /dev/null -w "%{time_connect}\n" "$0"; done' "http://$ip:9080/ratings/0" |
		awk '{ print $1 * 1000 }' >>"$TMP/$1"
}
{
	echo
	echo "## lab delay precision"
	echo
	echo "$client on $a -> ratings on $b by pod IP; curl time_connect holds one crossing of $a's uplink."
	echo "Rounds interleave baseline and delayed batches of 20 connections (5 rounds)."
	echo
	echo "| set delay | baseline median (ms) | delayed median (ms) | added median (ms) | delayed p99 (ms) | error of the median |"
	echo "|---|---|---|---|---|---|"
} >>"$OUT"
for d in 5 20 50; do
	: >"$TMP/base-$d"
	: >"$TMP/del-$d"
	for _ in 1 2 3 4 5; do
		connects "base-$d" 20
		"$SONDE" lab delay --node "$a" "${d}ms" >/dev/null
		connects "del-$d" 20
		"$SONDE" lab delay --node "$a" --clear >/dev/null
	done
	bm=$(median <"$TMP/base-$d")
	dm=$(median <"$TMP/del-$d")
	dp=$(p99 <"$TMP/del-$d")
	awk -v d="$d" -v b="$bm" -v m="$dm" -v p="$dp" 'BEGIN {
		printf "| %d ms | %.3f | %.3f | %.3f | %.3f | %+.2f %% |\n", d, b, m, m - b, p, (m - b - d) / d * 100 }' >>"$OUT"
done

{
	echo
	echo "## load generator"
	echo
	echo "10 s per rate after 2 s of warm-up; achieved = productpage's main requests with status 200 whose access-log time falls in the window / its length; CPU = the load generator cgroup's usage over the window."
	echo
	echo "| target rps | achieved rps | loadgen CPU |"
	echo "|---|---|---|"
} >>"$OUT"
pp_dir=$(jq -r '.pods[] | select(.workload == "productpage-v1") | .dir' "$STATE")
lg_cg=$(jq -r '.pods[] | select(.workload == "loadgen") | .cgroup' "$STATE")
# Requests that ended in [t0, t1) by nginx's own clock ($msec), so the time
# spent reading the log does not widen the window.
main200() { jq -c --argjson a "$2" --argjson b "$3" 'select(.subrequest == false and .status == 200 and .msec >= $a and .msec < $b)' "$1" | wc -l; }
for rate in 200 500 1000; do
	"$SONDE" lab load --rate "$rate" >/dev/null
	sleep 2
	t0=$EPOCHREALTIME
	cpu0=$(awk '/usage_usec/ { print $2 }' "$lg_cg/cpu.stat")
	sleep 10
	t1=$EPOCHREALTIME
	cpu1=$(awk '/usage_usec/ { print $2 }' "$lg_cg/cpu.stat")
	sleep 2 # requests in flight at t1 are logged when they end
	n=$(main200 "$pp_dir/access.log" "$t0" "$t1")
	awk -v r="$rate" -v n="$n" -v a="$t0" -v b="$t1" -v c0="$cpu0" -v c1="$cpu1" 'BEGIN {
		printf "| %d | %.1f | %.1f %% |\n", r, n / (b - a), (c1 - c0) / 1e6 / (b - a) * 100 }' >>"$OUT"
done
"$SONDE" lab load --rate 0 >/dev/null
cat "$OUT"
