#!/usr/bin/env bash
# Seed 000's Fig. 11 in the lab: Bookinfo under load; the one-way latency
# reviews-v2 -> ratings (sonde's latency sensor) and reviews-v2's service
# latency (its nginx access log: request_time of its main requests, the
# stand-in for the seed's Envoy/Jaeger figure), second by second, while a
# 20 ms delay is put on, then taken off, the uplink egress of reviews-v2's
# node; then, as the seed did, reviews-v2 is moved to the other node
# (`sonde lab move`: new pod, new IP) and the run goes on. Writes a CSV time
# series, a PNG (gnuplot), the step sizes and the dead period around the
# move (the old pod's last record, the new pod's Ready from moves.jsonl, its
# first request in its access log, its first record).
#
# Usage: bench/fig11.sh [OUTDIR]   (root; takes the lab session lock)
# Env: PHASE=20 (seconds per phase), RATE=20 (requests/s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/bench/results/fig11}
PHASE=${PHASE:-20}
RATE=${RATE:-20}
SONDE=${SONDE:-$ROOT/sonde}
export SONDE_LAB_DIR=$ROOT/lab
LOCK=/run/sonde-lab-session.lock

if [ -z "${FIG11_LOCKED:-}" ]; then
	FIG11_LOCKED=1 exec flock -o "$LOCK" "$0" "$@"
fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/sonde-fig11.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	"$SONDE" lab down >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$SONDE" lab down >/dev/null 2>&1 || true
"$SONDE" lab up --rate "$RATE" >/dev/null
STATE=/run/sonde-lab/state.json
pod() { jq -r --arg w "$1" '.pods[] | select(.workload == $w) | .'"$2" $STATE; }
R2_IP=$(pod reviews-v2 ip) R2_NODE=$(pod reviews-v2 node) R2_DIR=$(pod reviews-v2 dir)
RT_IP=$(pod ratings-v1 ip) RT_NODE=$(pod ratings-v1 node)

for node in $(jq -r '.nodes[].name' $STATE); do
	"$SONDE" agent --node "$node" --sensors latency --interval 1s \
		--output "$WORK/$node.jsonl" 2>"$WORK/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	for _ in $(seq 100); do
		grep -q "receiver attached to flannel.1" "$WORK/$node.err" && break
		sleep 0.2
	done
done
sleep 2
T0=$(date +%s.%N)
sleep "$PHASE"
T1=$(date +%s.%N)
"$SONDE" lab delay --node "$R2_NODE" 20ms >/dev/null
# What a user would do instead: ping, and take RTT/2 as the one-way time.
sleep 2
"$SONDE" lab exec reviews-v2 -- ping -c 20 -i 0.2 -q "$RT_IP" >"$WORK/ping.txt" 2>&1 || true
sleep $((PHASE - 6))
T2=$(date +%s.%N)
"$SONDE" lab delay --node "$R2_NODE" --clear >/dev/null
cp "/run/sonde-lab/nodes/$R2_NODE/delayer-stats.json" "$WORK/delayer-stats.json" 2>/dev/null || true
sleep "$PHASE"
T3=$(date +%s.%N)
R2_POD=$(pod reviews-v2 name)
MV_TO=$(jq -r --arg n "$R2_NODE" '[.nodes[].name | select(. != $n)][0]' $STATE)
"$SONDE" lab move "$R2_POD" "$MV_TO" >"$WORK/move.txt"
MOVE=$(tail -1 /run/sonde-lab/moves.jsonl)
N2_IP=$(pod reviews-v2 ip) N2_DIR=$(pod reviews-v2 dir)
sleep "$PHASE"
T4=$(date +%s.%N)
for p in "${pids[@]}"; do kill -TERM "$p"; done
wait "${pids[@]}" || true
pids=()
cat "$R2_DIR/access.log" "$N2_DIR/access.log" >"$WORK/reviews-v2.access.log"
cat "$WORK"/node-*.jsonl >"$WORK/all.jsonl"

# One row per second from T0: one-way p50/p99 (vxlan hop, the receiving
# node's ingress; the pod hop is within microseconds of it) and the
# median service latency of the requests reviews-v2 finished in that second.
jq -r \
	'select(.kind == "latency" and .src.workload == "reviews-v2" and .dst.workload == "ratings-v1")
	 | [.hop, ((.start_ns + .interval_ns / 2) / 1e9), .p50_ns, .p99_ns, .count] | @tsv' "$WORK/all.jsonl" >"$WORK/oneway.tsv"
jq -r 'select(.subrequest | not) | select(.uri | startswith("/reviews")) | [.msec, .request_time] | @tsv' \
	"$WORK/reviews-v2.access.log" >"$WORK/service.tsv"
TM=$(jq -r '.start_ns / 1e9' <<<"$MOVE")
awk -v t0="$T0" -v t1="$T1" -v t2="$T2" -v t3="$T4" -v tm="$TM" '
	FILENAME ~ /oneway/ { s = int($2 - t0); if (s < 0 || $2 > t3) next
		if ($1 == "vxlan_ingress") { ow[s] = $3; owp99[s] = $4; own[s] = $5 }
		else { pv[s] = $3 } next }
	{ s = int($1 - t0); if (s < 0 || $1 > t3) next; n[s]++; v[s, n[s]] = $2 * 1000 }
	END {
		print "t_s,delay_ms,oneway_p50_us,oneway_p99_us,oneway_count,oneway_pod_veth_p50_us,service_p50_ms,service_count,moved"
		last = int(t3 - t0)
		for (s = 0; s <= last; s++) {
			delay = (t0 + s + 1 > t1 && t0 + s < t2) ? 20 : 0
			med = ""
			if (n[s]) { k = 0; for (i = 1; i <= n[s]; i++) a[++k] = v[s, i]
				for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
				med = a[int((k + 1) / 2)] }
			printf "%d,%d,%s,%s,%s,%s,%s,%d,%d\n", s, delay,
				(s in ow) ? sprintf("%.1f", ow[s] / 1000) : "",
				(s in owp99) ? sprintf("%.1f", owp99[s] / 1000) : "",
				(s in own) ? own[s] : "", (s in pv) ? sprintf("%.1f", pv[s] / 1000) : "", med, n[s], (t0 + s >= tm)
		}
	}' "$WORK/oneway.tsv" "$WORK/service.tsv" >"$OUT/fig11.csv"

# Step sizes: medians of the per-second figures in each phase, leaving out
# the 2 s around each change.
step() { # column phase_from phase_to (seconds from T0)
	awk -F, -v c="$1" -v a="$2" -v b="$3" 'NR > 1 && $1 >= a && $1 < b && $c != "" { print $c }' "$OUT/fig11.csv" |
		sort -g | awk '{ v[NR] = $1 } END { if (!NR) print "nan"; else print v[int((NR + 1) / 2)] }' 
}
P=$PHASE
# The reverse direction during the delay, at the vxlan hop.
rv1=$(jq -r --arg s "$RT_IP" --arg d "$R2_IP" --argjson a "$T1" --argjson b "$T2" \
	'select(.kind == "latency" and .src.ip == $s and .dst.ip == $d and .hop == "vxlan_ingress"
	        and .start_ns / 1e9 >= $a + 2 and .time_ns / 1e9 <= $b) | .p50_ns / 1000' "$WORK/all.jsonl" |
	sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "nan" }')
ow0=$(step 3 2 $((P - 1))) ow1=$(step 3 $((P + 2)) $((2 * P - 1))) ow2=$(step 3 $((2 * P + 2)) $((3 * P)))
sv0=$(step 7 2 $((P - 1))) sv1=$(step 7 $((P + 2)) $((2 * P - 1))) sv2=$(step 7 $((2 * P + 2)) $((3 * P)))
dl=$(jq -r '.added_delay_us.p50 / 1000' "$WORK/delayer-stats.json" 2>/dev/null || echo nan)
{
	echo "phase seconds: $P, load: $RATE req/s, delay on $R2_NODE (reviews-v2) uplink egress; ratings on $RT_NODE"
	echo "one-way reviews-v2 -> ratings p50 (us): before $ow0, delayed $ow1, after $ow2; step $(awk -v a="$ow0" -v b="$ow1" 'BEGIN{printf "%.3f ms", (b - a) / 1000}')"
	echo "service latency reviews-v2 p50 (ms): before $sv0, delayed $sv1, after $sv2; step $(awk -v a="$sv0" -v b="$sv1" 'BEGIN{printf "%.1f ms", b - a}')"
	echo "delayer's own p50 added delay: $dl ms"
	rtt=$(awk -F/ '/^rtt/ { print $5 }' "$WORK/ping.txt")
	echo "ping reviews-v2 -> ratings during the delay: avg RTT $rtt ms, RTT/2 = $(awk -v r="$rtt" 'BEGIN{printf "%.3f", r / 2}') ms for BOTH directions;" \
		"sonde: reviews-v2 -> ratings $(awk -v b="$ow1" 'BEGIN{printf "%.3f", b / 1000}') ms, ratings -> reviews-v2 $(awk -v b="$rv1" 'BEGIN{printf "%.3f", b / 1000}') ms"
	# The move: times from moves.jsonl (the lab's), records' times from
	# the agents, requests from the two pods' access logs.
	ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f ms", (b - a) / 1e6 }'; }
	m_start=$(jq -r .start_ns <<<"$MOVE") m_del=$(jq -r .deleted_ns <<<"$MOVE") m_ready=$(jq -r .ready_ns <<<"$MOVE")
	old_last=$(jq -s --arg s "$R2_IP" '[.[] | select(.kind == "latency" and .src.ip == $s and .dst.workload == "ratings-v1") | .time_ns] | max' "$WORK/all.jsonl")
	new_first=$(jq -cs --arg s "$N2_IP" '[.[] | select(.kind == "latency" and .src.ip == $s and .dst.workload == "ratings-v1")] | min_by(.start_ns) | [.start_ns, .time_ns]' "$WORK/all.jsonl")
	nf_start=$(jq '.[0]' <<<"$new_first") nf_end=$(jq '.[1]' <<<"$new_first")
	old_req=$(jq -s 'map(select(.subrequest | not) | .msec) | max * 1e9' "$R2_DIR/access.log")
	new_req=$(jq -s 'map(select(.subrequest | not) | (.msec - .request_time)) | min * 1e9' "$N2_DIR/access.log")
	echo "move of reviews-v2 $R2_NODE -> $MV_TO at t = $(awk -v a="$T0" -v b="$TM" 'BEGIN{printf "%.1f", b - a}') s ($(jq -r '"\(.old_pod) \(.old_uid[0:8]) -> \(.new_pod) \(.new_uid[0:8]), new IP \(.new_ip)"' <<<"$MOVE")):" \
		"deleted $(ms "$m_start" "$m_del"), Ready $(ms "$m_start" "$m_ready") after the move started"
	# Offsets are signed: + after, - before the reference.
	echo "dead period (one-way reviews-v2 -> ratings, 1 s records): old pod's last record ended at deletion $(ms "$m_del" "$old_last");" \
		"new pod's first record covers [Ready $(ms "$m_ready" "$nf_start"), Ready $(ms "$m_ready" "$nf_end")];" \
		"no record for $(ms "$old_last" "$nf_start") (end of the old pod's last record -> start of the new pod's first)"
	echo "requests (access logs): old pod's last finished at deletion $(ms "$m_del" "$old_req"); new pod's first began at Ready $(ms "$m_ready" "$new_req")" \
		"(Ready is stamped after the rules of every node are rewritten, so traffic can reach the new pod before it)"
} | tee "$OUT/fig11.txt"

if command -v gnuplot >/dev/null; then
	gnuplot <<EOF
set terminal pngcairo size 1100,520 noenhanced
set output "$OUT/fig11.png"
set datafile separator ","
set title "Bookinfo, reviews-v2 -> ratings; 20 ms on $R2_NODE's uplink egress in [$P s, $((2 * P)) s); reviews-v2 moved to $MV_TO at $(awk -v a="$T0" -v b="$TM" 'BEGIN{printf "%.0f", b - a}') s"
set xlabel "time (s)"
set ylabel "latency (ms)"
set yrange [0:55]
set key top right box opaque
set grid
plot "$OUT/fig11.csv" using 1:(\$7) with linespoints title "service latency, reviews-v2 (nginx request_time, p50)", \
     "" using 1:(\$6/1000) with linespoints title "one-way latency reviews-v2 -> ratings pod (sonde, p50, pod_veth hop)", \
     "" using 1:2 with steps dt 2 title "injected delay", \
     "" using 1:(\$9*50) with steps dt 3 title "reviews-v2 moved (0/50)"
EOF
	echo "plot: $OUT/fig11.png"
fi
cp "$WORK/delayer-stats.json" "$OUT/" 2>/dev/null || true
rm -rf "$WORK"
