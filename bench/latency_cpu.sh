#!/usr/bin/env bash
# What stamping costs at a FIXED offered load (DESIGN.md's method: the
# throughput difference of two runs is far below this VM's noise, CPU time
# per byte at a constant rate is not): iperf3 -b RATE for SECS seconds,
# ratings (node-1) -> loadgen (node-2) across the overlay, with the latency
# sensor off / on (--latency-sample 1) / sampled (--latency-sample 16),
# the modes interleaved in every round, in a rotating order.
# Per run: CPU seconds per GB transferred of the iperf3 sender and receiver
# (iperf3's own getrusage figures: utime+stime of each process, which
# includes the sock_ops callbacks in the sender's context and the softirq
# work done in each process's context), of the whole machine (/proc/stat
# user+nice+system+irq+softirq, all CPUs: includes other users' load), and
# of the two agents (/proc/PID/stat). Reported: per mode, mean and 95 %
# confidence interval over rounds; per mode vs off, the mean of the per
# round differences (paired: same round, minutes apart) with its 95 % CI.
#
# Before/after a change to the BPF objects in one run: build the old
# version to another path and add its modes, e.g.
#   SONDE_OLD=/tmp/old/sonde MODES="off on on-old sampled sampled-old" \
#     bench/latency_cpu.sh 10
#
# MODES="off sampled sampled-frozen" separates the agents' processes from
# the kernel side (bench/lib_latency.sh, lat_agents_freeze).
#
# BPF_STATS=1 also reports the latency programs' own run time (kernel BPF
# statistics, see bench/lib_latency.sh): ns per receiver run, receiver runs
# per MB, ns per sock_ops run, and BPF ms per GB.
#
# Usage: bench/latency_cpu.sh [ROUNDS]   (root; takes the lab lock)
#        RATE=2G SECS=5 bench/latency_cpu.sh 8
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-6}
SECS=${SECS:-5}
RATE=${RATE:-2G}
MODES=${MODES:-off on sampled}
. "$ROOT/bench/lib_latency.sh"
lat_lock "$@"
lat_setup latcpu
lat_bpf_stats_start
lat_iperf_server

run() { # mode round
	local tag="$1.$2" a0 a1 m0 m1 b0=(0 0 0 0) b1=(0 0 0 0)
	lat_agents_start "$1" "$tag"
	a0=$(lat_agents_cpu) m0=$(lat_machine_busy)
	[ -z "${STATS_PID:-}" ] || read -ra b0 < <(lat_bpf_stats)
	lat_agents_freeze "$1" STOP
	"$SONDE" lab exec ratings-v1 -- iperf3 -c "$LG_IP" -p 5201 -t "$SECS" -b "$RATE" -J \
		>"$WORK/$tag.json" 2>/dev/null || true
	lat_agents_freeze "$1" CONT
	a1=$(lat_agents_cpu) m1=$(lat_machine_busy)
	[ -z "${STATS_PID:-}" ] || read -ra b1 < <(lat_bpf_stats)
	lat_agents_stop
	local bpf="" bpfns=0
	if [ -n "${STATS_PID:-}" ] && [ "$1" != off ]; then
		bpf=$(awk -v rc=$((b1[0] - b0[0])) -v rt=$((b1[1] - b0[1])) -v tc=$((b1[2] - b0[2])) -v tt=$((b1[3] - b0[3])) \
			'BEGIN { printf "rxns=%.2f rxruns=%d txns=%.2f txruns=%d bpfns=%d", rc ? rt / rc : 0, rc, tc ? tt / tc : 0, tc, rt + tt }')
		bpfns=$((b1[1] - b0[1] + b1[3] - b0[3]))
	fi
	lat_agent_stats "$1" "$tag"
	# CPU s per GB: sender and receiver (iperf3: percent of the run's
	# wall time), machine and agents. A failed run (iperf3 error) leaves
	# no line: it is not averaged.
	jq -r --arg bpf "$bpf" --argjson bpfns "$bpfns" --arg m "$1" --arg r "$2" --argjson mach "$((m1 - m0))" --argjson ag "$((a1 - a0))" --argjson hz "$HZ" \
		'.end as $e | ($e.sum_received.seconds) as $s | ($e.sum_received.bytes / 1e9) as $gb |
		 "\($m) \($r) snd=\($e.cpu_utilization_percent.host_total / 100 * $s / $gb) rcv=\($e.cpu_utilization_percent.remote_total / 100 * $s / $gb) mach=\($mach / $hz / $gb) agents=\($ag / $hz / $gb) gbps=\($e.sum_received.bits_per_second / 1e9) retrans=\($e.sum_sent.retransmits)" + (if $bpf != "" then " \($bpf) bpfms=\($bpfns / 1e6 / $gb)" else "" end)' \
		"$WORK/$tag.json" >>"$WORK/runs.txt" 2>/dev/null ||
		echo "run $tag failed: $(head -c 300 "$WORK/$tag.json")" >&2
}

for r in $(seq "$ROUNDS"); do
	for m in $(lat_rotate "$r" $MODES); do run "$m" "$r"; done
done

echo "iperf3 -b $RATE for ${SECS}s, ratings (node-1) -> loadgen (node-2) over VXLAN; $ROUNDS rounds; $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
lat_stamped $MODES
echo
cols=(snd:"sender CPU s/GB":paired rcv:"receiver CPU s/GB":paired
	mach:"machine CPU s/GB":paired agents:"agents CPU s/GB" gbps:"Gbit/s")
[ -z "${STATS_PID:-}" ] || cols+=(rxns:"ns per receiver run":paired rxruns:"receiver runs":paired
	txns:"ns per sock_ops run":paired txruns:"sock_ops runs" bpfms:"BPF ms per GB":paired)
# -old modes: also each against the same mode of the current build.
pairs=""
for m in $MODES; do case $m in *-old) pairs+="${m%-old}/$m," ;; esac; done
if [ -n "$pairs" ]; then
	/usr/bin/python3 "$ROOT/bench/lat_stats.py" --pairs "$pairs" "$WORK/runs.txt" off "${cols[@]}"
else
	lat_table off "${cols[@]}"
fi
