#!/usr/bin/env bash
# What stamping costs at a FIXED offered load (DESIGN.md's method: the
# throughput difference of two runs is far below this VM's noise, CPU time
# per byte at a constant rate is not): iperf3 -b RATE for SECS seconds,
# ratings (node-1) -> loadgen (node-2) across the overlay, with the latency
# sensor off / on (--latency-sample 1) / sampled (--latency-sample 16),
# the three modes interleaved in every round, in a rotating order.
# Per run: CPU seconds per GB transferred of the iperf3 sender and receiver
# (iperf3's own getrusage figures: utime+stime of each process, which
# includes the sock_ops callbacks in the sender's context and the softirq
# work done in each process's context), of the whole machine (/proc/stat
# user+nice+system+irq+softirq, all CPUs: includes other users' load), and
# of the two agents (/proc/PID/stat). Reported: per mode, mean and 95 %
# confidence interval over rounds; per mode vs off, the mean of the per
# round differences (paired: same round, minutes apart) with its 95 % CI.
#
# Usage: bench/latency_cpu.sh [ROUNDS]   (root; takes the lab lock)
#        RATE=2G SECS=5 bench/latency_cpu.sh 8
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-6}
SECS=${SECS:-5}
RATE=${RATE:-2G}
SONDE=${SONDE:-$ROOT/sonde}
export SONDE_LAB_DIR=$ROOT/lab
if [ -z "${BENCH_LOCKED:-}" ]; then
	BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock "$0" "$@"
fi
WORK=$(mktemp -d /tmp/sonde-latcpu.XXXXXX)
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
# loadgen has no listening ports in the metadata at --rate 0, so the
# receiver's port filter lets iperf3's port through to it.
LG_IP=$(jq -r '.pods[] | select(.workload == "loadgen") | .ip' $STATE)
HZ=$(getconf CLK_TCK)

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
# busy jiffies of the machine: user nice system irq softirq steal
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
agents_cpu() { # jiffies of the running agents
	local t=0 p
	for p in "${apids[@]}"; do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo $t
}

"$SONDE" lab exec loadgen -- iperf3 -s -p 5201 >/dev/null 2>&1 &
SRV=$!
sleep 1

run() { # mode round
	local tag="$1.$2" a0 a1 m0 m1
	case $1 in on) start_agents 1 "$tag" ;; sampled) start_agents 16 "$tag" ;; esac
	a0=$(agents_cpu) m0=$(machine_busy)
	"$SONDE" lab exec ratings-v1 -- iperf3 -c "$LG_IP" -p 5201 -t "$SECS" -b "$RATE" -J \
		>"$WORK/$tag.json" 2>/dev/null || true
	a1=$(agents_cpu) m1=$(machine_busy)
	stop_agents
	# bytes, sender and receiver CPU s (iperf3: percent of the run's wall
	# time), machine and agents CPU s
	# a failed run (iperf3 error) leaves no line: it is not averaged
	jq -r --arg m "$1" --arg r "$2" --argjson mach "$((m1 - m0))" --argjson ag "$((a1 - a0))" --argjson hz "$HZ" \
		'.end as $e | ($e.sum_received.seconds) as $s | "\($m) \($r) \($e.sum_received.bytes) \($e.cpu_utilization_percent.host_total / 100 * $s) \($e.cpu_utilization_percent.remote_total / 100 * $s) \($mach / $hz) \($ag / $hz) \($e.sum_received.bits_per_second / 1e9) \($e.sum_sent.retransmits)"' \
		"$WORK/$tag.json" >>"$WORK/runs.txt" 2>/dev/null || echo "run $tag failed: $(head -c 300 "$WORK/$tag.json")" >&2
	if [ "$1" != off ]; then
		{ cat "$WORK/$tag".node-*.err | grep '^{' | jq -c 'select(.sensor == "latency")
			| {tx_stamped, rx_measured}' >>"$WORK/$1.stats"; } || true
	fi
}

modes=(off on sampled)
for r in $(seq "$ROUNDS"); do
	# rotate the order so that no mode always runs first (warm caches,
	# a neighbour's periodic load)
	for i in 0 1 2; do run "${modes[$(((i + r) % 3))]}" "$r"; done
done

echo "iperf3 -b $RATE for ${SECS}s, ratings (node-1) -> loadgen (node-2) over VXLAN; $ROUNDS rounds; $(date -u +%FT%TZ)"
for m in on sampled; do
	[ ! -f "$WORK/$m.stats" ] || echo "$m: $(jq -s -r '"\([.[].tx_stamped] | add) segments stamped, \([.[].rx_measured] | add) measured over all runs"' "$WORK/$m.stats")"
done
/usr/bin/python3 - "$WORK/runs.txt" <<'EOF'
import math, sys
from collections import defaultdict
# Student t, 97.5 % quantile, by degrees of freedom
T = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
     8: 2.306, 9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
def t975(df):
    return T.get(df) or T[max(k for k in T if k <= df)] if df >= 1 else float("nan")
def ci(xs):
    n = len(xs); m = sum(xs) / n
    if n < 2: return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, t975(n - 1) * sd / math.sqrt(n)
runs = defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 9: continue
    mode, rnd = f[0], int(f[1]); gb = float(f[2]) / 1e9
    runs[rnd][mode] = {"snd": float(f[3]) / gb, "rcv": float(f[4]) / gb,
                       "mach": float(f[5]) / gb, "agents": float(f[6]) / gb,
                       "gbps": float(f[7]), "retr": float(f[8])}
cols = [("snd", "sender CPU s/GB"), ("rcv", "receiver CPU s/GB"),
        ("mach", "machine CPU s/GB"), ("agents", "agents CPU s/GB"),
        ("gbps", "Gbit/s")]
print("\n| mode | " + " | ".join(c[1] + " (mean +- 95 % CI)" for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for mode in ("off", "on", "sampled"):
    cells = []
    for k, _ in cols:
        xs = [r[mode][k] for r in runs.values() if mode in r]
        m, h = ci(xs)
        cells.append(f"{m:.4f} +- {h:.4f}")
    print(f"| {mode} | " + " | ".join(cells) + " |")
print("\n| vs off, paired per round | " + " | ".join(c[1] + " difference (95 % CI), relative" for c in cols[:3]) + " |")
print("|---" * 4 + "|")
for mode in ("on", "sampled"):
    cells = []
    for k, _ in cols[:3]:
        d = [r[mode][k] - r["off"][k] for r in runs.values() if mode in r and "off" in r]
        base = [r["off"][k] for r in runs.values() if "off" in r]
        m, h = ci(d); b = sum(base) / len(base)
        cells.append(f"{m:+.4f} ({m - h:+.4f} .. {m + h:+.4f}), {100 * m / b:+.1f} %")
    print(f"| {mode} | " + " | ".join(cells) + " |")
EOF
