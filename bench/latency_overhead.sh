#!/usr/bin/env bash
# What stamping costs request/response traffic AT A FIXED REQUEST RATE
# (the cost a user pays at their own load; a closed-loop client that
# saturates both vCPUs of this VM measures mostly the fight for CPU):
# `sonde lab loadgen` (open loop: request i is due at start + i/RPS
# whatever the server does) in the loadgen pod (node-2) -> ratings' nginx
# (node-1, /ratings/0) across the overlay, RPS requests/s over CONNS
# kept-alive connections for SECS seconds; modes off / on
# (--latency-sample 1) / sampled (--latency-sample 16) in every round, in a
# rotating order. Per run: the client's p50/p99 (its own histogram), CPU
# per 1000 requests of the two agents (/proc/PID/stat), the ratings pod
# and the loadgen pod (their cgroups' cpu.stat: every process in them,
# including softirq work done in their context) and the machine
# (/proc/stat, all CPUs: includes other users' load). Then, cheap and
# closed-loop, wrk -t1 -c4 for WRK_SECS (0: skip) from reviews-v2 to
# ratings with the same agents: p99 and requests/s, an upper bound under
# CPU saturation.
#
# Usage: bench/latency_overhead.sh [ROUNDS]   (root; takes the lab lock)
#        RPS=2000 CONNS=8 SECS=10 WRK_SECS=5 bench/latency_overhead.sh 6
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-6}
SECS=${SECS:-10}
RPS=${RPS:-2000}
CONNS=${CONNS:-8}
WRK_SECS=${WRK_SECS:-5}
MODES=${MODES:-off on sampled}
. "$ROOT/bench/lib_latency.sh"
lat_lock "$@"
lat_setup latoverhead
URL="http://$RT_IP:9080/ratings/0"

run() { # mode round
	local tag="$1.$2" a0 a1 m0 m1 s0 s1 c0 c1 wrk_p99="" wrk_rps=""
	lat_agents_start "$1" "$tag"
	a0=$(lat_agents_cpu) m0=$(lat_machine_busy)
	s0=$(lat_pod_cpu_us ratings-v1) c0=$(lat_pod_cpu_us loadgen)
	"$SONDE" lab exec loadgen -- "$SONDE" lab loadgen --url "$URL" --rate "$RPS" \
		--connections "$CONNS" --duration "${SECS}s" --log /dev/null >"$WORK/$tag.lg" 2>&1 || true
	a1=$(lat_agents_cpu) m1=$(lat_machine_busy)
	s1=$(lat_pod_cpu_us ratings-v1) c1=$(lat_pod_cpu_us loadgen)
	if [ "$WRK_SECS" != 0 ]; then
		"$SONDE" lab exec reviews-v2 -- wrk -t1 -c4 -d"${WRK_SECS}s" --latency "$URL" \
			>"$WORK/$tag.wrk" 2>&1 || true
		# wrk prints "99%  1.23ms" and "Requests/sec: 1234.5"
		wrk_p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) sub(/ms/, "", v); else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }' "$WORK/$tag.wrk")
		wrk_rps=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/$tag.wrk")
	fi
	lat_agents_stop
	lat_agent_stats "$1" "$tag"
	# loadgen's summary: "sent N (R/s), completed N, errors N, ..." and
	# "total_ms p50 X p99 Y max Z"
	awk -v m="$1" -v r="$2" -v hz="$HZ" -v ag=$((a1 - a0)) -v mach=$((m1 - m0)) \
		-v srv=$((s1 - s0)) -v cli=$((c1 - c0)) -v wp="$wrk_p99" -v wr="$wrk_rps" -v secs="$SECS" '
		/ sent [0-9]+/ { for (i = 1; i <= NF; i++) { if ($i == "sent") sent = $(i + 1); if ($i == "completed") { done = $(i + 1); sub(/,/, "", done) } if ($i == "errors") { err = $(i + 1); sub(/,/, "", err) } } }
		/total_ms p50/ { for (i = 1; i <= NF; i++) { if ($i == "p50") p50 = $(i + 1); if ($i == "p99") p99 = $(i + 1) } }
		END {
			if (done + 0 == 0) { print "run " m "." r ": no completed requests" > "/dev/stderr"; exit }
			k = done / 1000
			printf "%s %s p50_ms=%s p99_ms=%s rate=%.1f errors=%d agents_ms=%.4f server_ms=%.4f client_ms=%.4f machine_ms=%.4f", \
				m, r, p50, p99, done / secs, err, ag / hz * 1000 / k, srv / 1000 / k, cli / 1000 / k, mach / hz * 1000 / k
			if (wp != "") printf " wrk_p99_ms=%s wrk_rps=%s", wp, wr
			printf "\n"
		}' "$WORK/$tag.lg" >>"$WORK/runs.txt"
}

for r in $(seq "$ROUNDS"); do
	for m in $(lat_rotate "$r" $MODES); do run "$m" "$r"; done
done

echo "sonde lab loadgen --rate $RPS --connections $CONNS for ${SECS}s, loadgen (node-2) -> ratings (node-1) $URL; then wrk -t1 -c4 -d${WRK_SECS}s reviews-v2 -> ratings; $ROUNDS rounds; $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
lat_stamped $MODES
echo
cols=(p50_ms:"p50 ms":paired p99_ms:"p99 ms":paired agents_ms:"agents CPU ms per 1000 req":paired
	server_ms:"ratings pod CPU ms per 1000 req":paired client_ms:"loadgen pod CPU ms per 1000 req":paired
	machine_ms:"machine CPU ms per 1000 req":paired rate:"completed req/s" errors:"errors")
[ "$WRK_SECS" = 0 ] || cols+=(wrk_p99_ms:"wrk p99 ms (closed loop)":paired wrk_rps:"wrk req/s (closed loop)":paired)
lat_table off "${cols[@]}"
