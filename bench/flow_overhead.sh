#!/usr/bin/env bash
# Overhead of the flow sensor, against no sensor and against what a user
# would run instead, in one run with interleaved repetitions:
#   off      nothing attached
#   sonde    `sonde agent --sensors flow` on both nodes (release build)
#   tcpdump  `tcpdump -w` on both nodes' uplinks (eth0) (headers only, -s 128)
#   tools    libbpf-tools tcplife + a bpftrace tcp_probe RTT histogram
#            (libbpf-tools' tcprtt needs kprobes/fentry: not on this kernel)
# Loads, client pod (loadgen) on one node, server pod on another:
#   - iperf3 TCP at full speed, 3 s: receiver throughput;
#   - iperf3 TCP at a fixed 1 Gbit/s, 3 s: machine CPU time (/proc/stat
#     user+system+softirq) per GB moved;
#   - wrk, 4 connections, 3 s, keep-alive, to nginx: p50 and p99 latency.
# Results: bench/results/flow-overhead.md (appended to the table below the
# command). ROUNDS=N (default 5).
set -u
if [ -z "${SONDE_BENCH_LOCKED:-}" ]; then # one lab per machine: take turns
	SONDE_BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
SONDE=$ROOT/sonde
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-$ROOT/bench/results/flow-overhead.md}
TMP=$(mktemp -d /tmp/sonde-bench-flow.XXXXXX)
STATE=/run/sonde-lab/state.json
PORT=5297
MODES="off sonde tcpdump tools"

log() { printf '[bench] %s\n' "$*" >&2; }
pod() { jq -r --arg w "$1" '[.pods[] | select(.workload == $w)][0].'"$2" $STATE; }

"$SONDE" lab up --rate 0 >&2 || exit 1
trap '"$SONDE" lab down >/dev/null 2>&1; rm -rf "$TMP"' EXIT
CW=loadgen SW=""
cnode=$(pod $CW node)
for w in ratings-v1 details-v1 reviews-v1; do
	[ "$(pod $w node)" != "$cnode" ] && { SW=$w; break; }
done
snode=$(pod $SW node) sip=$(pod $SW ip)
url=http://$sip:9080/
case $SW in ratings-v1) url=${url}ratings/0 ;; details-v1) url=${url}details/0 ;; reviews-v1) url=${url}reviews/0 ;; esac
# Classic tracepoints (tcplife, bpftrace) need tracefs.
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

side_pids=()
start_mode() {
	side_pids=()
	case $1 in
	sonde)
		for n in $cnode $snode; do
			"$SONDE" agent --node "$n" --sensors flow --output "$TMP/$n.jsonl" 2>"$TMP/$n.err" &
			side_pids+=($!)
		done
		for n in $cnode $snode; do
			for _ in $(seq 100); do grep -q "flow sensor attached" "$TMP/$n.err" && break; sleep 0.1; done
		done ;;
	tcpdump)
		for n in $cnode $snode; do
			nsenter --net=/run/netns/sonde-$n tcpdump -i eth0 -s 128 -w "$TMP/$n.pcap" -q 2>/dev/null &
			side_pids+=($!)
		done ;;
	tools)
		tcplife >"$TMP/tcplife.txt" 2>&1 &
		side_pids+=($!)
		bpftrace -e 'tracepoint:tcp:tcp_probe { @srtt = hist(args->srtt); }' >"$TMP/bpftrace.txt" 2>&1 &
		side_pids+=($!) ;;
	esac
	sleep 1.5
}
stop_mode() {
	for p in "${side_pids[@]}"; do kill -INT "$p" 2>/dev/null; done
	for p in "${side_pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -f "$TMP"/*.pcap
}
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
iperf_run() { # args -> receiver bits/s
	"$SONDE" lab exec $SW -- iperf3 -s -1 -p $PORT -J >/dev/null 2>&1 &
	local sp=$!
	for _ in $(seq 50); do "$SONDE" lab exec $SW -- ss -ltn | grep -q ":$PORT " && break; sleep 0.1; done
	"$SONDE" lab exec $CW -- iperf3 -c "$sip" -p $PORT -J -t 3 "$@" >"$TMP/iperf.json" 2>/dev/null
	wait $sp
	jq '.end.sum_received.bits_per_second // 0' "$TMP/iperf.json"
}
wrk_run() { # -> "p50_us p99_us"
	"$SONDE" lab exec $CW -- wrk -t 1 -c 4 -d 3s --latency "$url" >"$TMP/wrk.txt" 2>&1
	awk 'function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
	     $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) } END { print p50, p99 }' "$TMP/wrk.txt"
}

HZ=$(getconf CLK_TCK)
: >"$TMP/raw.tsv"
for r in $(seq "$ROUNDS"); do
	# Rotate the order each round so that no mode always runs first.
	set -- $MODES
	for _ in $(seq $(( (r - 1) % 4 ))); do set -- "$@" "$1"; shift; done
	for m in "$@"; do
		start_mode "$m"
		tput=$(iperf_run)
		b0=$(busy)
		iperf_run -b 1G >/dev/null
		bytes=$(jq '.end.sum_received.bytes // 0' "$TMP/iperf.json")
		b1=$(busy)
		read -r p50 p99 < <(wrk_run)
		stop_mode
		cpu_per_gb=$(awk -v j=$((b1 - b0)) -v hz="$HZ" -v b="$bytes" 'BEGIN { printf "%.3f", b ? j / hz / (b / 1e9) : 0 }')
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$tput" "$cpu_per_gb" "$p50" "$p99" | tee -a "$TMP/raw.tsv" >&2
	done
done

# mean and 95 % confidence half-width per mode and metric
summary() {
	awk -F'\t' -v modes="$MODES" '
	{ n[$2]++; for (c = 3; c <= 6; c++) { s[$2, c] += $c; q[$2, c] += $c * $c } }
	END {
		split(modes, m, " ")
		for (i = 1; i <= 4; i++) for (c = 3; c <= 6; c++) {
			k = n[m[i]]; mu[m[i], c] = s[m[i], c] / k
			v = k > 1 ? (q[m[i], c] - k * mu[m[i], c] ^ 2) / (k - 1) : 0
			ci[m[i], c] = 1.96 * sqrt(v > 0 ? v : 0) / sqrt(k)
		}
		printf "| mode | iperf3 Gbit/s | vs off | CPU s per GB at 1 Gbit/s | vs off | wrk p50 us | vs off | wrk p99 us | vs off |\n"
		printf "|---|---|---|---|---|---|---|---|---|\n"
		for (i = 1; i <= 4; i++) {
			x = m[i]
			printf "| %s | %.2f ± %.2f | %+.1f %% | %.3f ± %.3f | %+.1f %% | %.0f ± %.0f | %+.1f %% | %.0f ± %.0f | %+.1f %% |\n", x,
				mu[x, 3] / 1e9, ci[x, 3] / 1e9, 100 * (mu[x, 3] / mu["off", 3] - 1),
				mu[x, 4], ci[x, 4], 100 * (mu[x, 4] / mu["off", 4] - 1),
				mu[x, 5], ci[x, 5], 100 * (mu[x, 5] / mu["off", 5] - 1),
				mu[x, 6], ci[x, 6], 100 * (mu[x, 6] / mu["off", 6] - 1)
		}
	}' "$TMP/raw.tsv"
}
{
	printf '\n## Run of %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'Command: `ROUNDS=%s bench/flow_overhead.sh` (inside the lab lock). Machine: %s, %s cores, kernel %s. ' \
		"$ROUNDS" "$(. /etc/os-release; echo "$PRETTY_NAME")" "$(nproc)" "$(uname -r)"
	printf 'Client %s on %s, server %s on %s. %s rounds, modes interleaved and rotated; ± is the 95 %% confidence half-width.\n\n' \
		"$CW" "$cnode" "$SW" "$snode" "$ROUNDS"
	summary
	printf '\nRaw (round, mode, iperf3 bit/s, CPU s/GB, p50 us, p99 us):\n\n```\n'
	cat "$TMP/raw.tsv"
	printf '```\n'
	if [ -s "$TMP/$cnode.err" ]; then
		printf '\nsonde status (last sonde round, client node): `%s`\n' "$(grep '^{' "$TMP/$cnode.err" | tail -1)"
	fi
} >>"$OUT"
log "results appended to $OUT"
