#!/usr/bin/env bash
# What stamping costs, interleaved in one run (the 2-core VM's run-to-run
# spread is larger than the effect, so every mode runs in every round):
# - iperf3 TCP throughput ratings (node-1) -> loadgen (node-2), across
#   the overlay, with the latency sensor off / on (every segment, MSS
#   shrunk by the option) / sampled (--latency-sample 16, only segments
#   with room);
# - wrk p99 and requests/s against ratings' nginx from reviews-v2, off / on.
# Prints a markdown table; ground truth is iperf3's and wrk's own output.
#
# Usage: bench/latency_overhead.sh [ROUNDS]   (root; takes the lab lock)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
SECS=${SECS:-5}
SONDE=${SONDE:-$ROOT/sonde}
export SONDE_LAB_DIR=$ROOT/lab
if [ -z "${BENCH_LOCKED:-}" ]; then
	BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock "$0" "$@"
fi
WORK=$(mktemp -d /tmp/sonde-latbench.XXXXXX)
apids=()
stop_agents() {
	for p in "${apids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${apids[@]}"; do wait "$p" 2>/dev/null || true; done
	apids=()
}
cleanup() {
	stop_agents
	[ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null
	"$SONDE" lab down >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

"$SONDE" lab down >/dev/null 2>&1 || true
"$SONDE" lab up --rate 0 >/dev/null
STATE=/run/sonde-lab/state.json
RT_IP=$(jq -r '.pods[] | select(.workload == "ratings-v1") | .ip' $STATE)
# loadgen listens on nothing at --rate 0 (no ports in the metadata), so the
# receiver's port filter lets iperf3's port through to it.
LG_IP=$(jq -r '.pods[] | select(.workload == "loadgen") | .ip' $STATE)

start_agents() { # sample tag
	for node in $(jq -r '.nodes[].name' $STATE); do
		"$SONDE" agent --node "$node" --sensors latency --latency-sample "$1" \
			--interval 1s --output "$WORK/$2.$node.jsonl" 2>"$WORK/$2.$node.err" &
		apids+=($!)
	done
	for node in $(jq -r '.nodes[].name' $STATE); do
		for _ in $(seq 100); do
			grep -q "receiver attached to flannel.1" "$WORK/$2.$node.err" && break
			sleep 0.1
		done
	done
	sleep 1.2 # one rescan: the pods are in the filters
}

"$SONDE" lab exec loadgen -- iperf3 -s -p 5201 >/dev/null 2>&1 &
SRV=$!
sleep 1

iperf_run() { # mode round
	local tag="iperf.$1.$2"
	case $1 in off) ;; on) start_agents 1 "$tag" ;; sampled) start_agents 16 "$tag" ;; esac
	"$SONDE" lab exec ratings-v1 -- iperf3 -c "$LG_IP" -p 5201 -t "$SECS" -J >"$WORK/$tag.json" 2>/dev/null || true
	stop_agents
	printf '%s %s %s\n' "$1" \
		"$(jq -r '.end.sum_received.bits_per_second / 1e9' "$WORK/$tag.json")" \
		"$(jq -r '.end.sum_sent.retransmits' "$WORK/$tag.json")" >>"$WORK/iperf.txt"
	if [ "$1" != off ]; then
		cat "$WORK/$tag".node-*.err | grep '^{' | jq -c 'select(.sensor == "latency")
			| {tx_stamped, tx_not_sampled, tx_no_room, rx_measured}' >>"$WORK/iperf.$1.stats"
	fi
}

wrk_run() { # mode round
	local tag="wrk.$1.$2"
	[ "$1" = on ] && start_agents 1 "$tag"
	"$SONDE" lab exec reviews-v2 -- wrk -t1 -c4 -d"${SECS}s" --latency \
		"http://$RT_IP:9080/ratings/0" >"$WORK/$tag.txt" 2>&1 || true
	stop_agents
	# wrk prints "99%  1.23ms" and "Requests/sec: 1234.5"
	p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) sub(/ms/, "", v); else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }' "$WORK/$tag.txt")
	rps=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/$tag.txt")
	echo "$1 $p99 $rps" >>"$WORK/wrk.txt"
}

for r in $(seq "$ROUNDS"); do
	for m in off on sampled; do iperf_run $m "$r"; done
	for m in off on; do wrk_run $m "$r"; done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "nan" }'; }
col() { awk -v m="$2" -v c="$3" '$1 == m { print $c }' "$WORK/$1.txt"; }
echo "| mode | iperf3 Gbit/s (median of $ROUNDS; all) | retransmits (median) | stamped / measured (median per run) |"
echo "|---|---|---|---|"
for m in off on sampled; do
	st=""
	[ -f "$WORK/iperf.$m.stats" ] && st=$(jq -s -r '[.[] | .tx_stamped] | add' "$WORK/iperf.$m.stats")" stamped / "$(jq -s -r '[.[] | .rx_measured] | add' "$WORK/iperf.$m.stats")" measured (all runs)"
	echo "| $m | $(col iperf $m 2 | median) ($(col iperf $m 2 | awk '{printf "%.2f ", $1}')) | $(col iperf $m 3 | median) | ${st:--} |"
done
echo
echo "| mode | wrk p99 ms (median of $ROUNDS; all) | requests/s (median; all) |"
echo "|---|---|---|"
for m in off on; do
	echo "| $m | $(col wrk $m 2 | median) ($(col wrk $m 2 | tr '\n' ' ')) | $(col wrk $m 3 | median) ($(col wrk $m 3 | tr '\n' ' ')) |"
done
