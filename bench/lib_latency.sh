# shellcheck shell=bash disable=SC2034
# Sourced by the latency benchmarks (bench/latency_*.sh): the lab lock, a
# lab with its built-in load off, agents started and stopped around each
# run, CPU counters, and the table maker. Not a benchmark itself:
# bench/run.sh skips bench/lib_*.sh.
#
# The caller sets ROOT and calls, in this order:
#   lat_lock "$@"      re-exec under the lab lock (once: BENCH_LOCKED)
#   lat_setup NAME     work dir, cleanup trap, lab up, STATE and pod IPs
# then lat_agents_start MODE TAG / lat_agents_stop around each run.

SONDE=${SONDE:-$ROOT/sonde}
export SONDE_LAB_DIR=$ROOT/lab
STATE=/run/sonde-lab/state.json
HZ=$(getconf CLK_TCK)
apids=()
# Extra cleanup of a benchmark (e.g. a qdisc it added), run first on exit.
lat_cleanup_hook=:

# The lab is one per machine: a benchmark holds its lock for the whole run
# (tests/run.sh takes it per test the same way). Re-exec'ing keeps the lock
# in one place and lets a benchmark be run by hand or by bench/run.sh.
lat_lock() {
	if [ -z "${BENCH_LOCKED:-}" ]; then
		BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock "$0" "$@"
	fi
}

lat_agents_freeze() { # MODE STOP|CONT: only for -frozen modes
	local p
	case $1 in *-frozen) ;; *) return 0 ;; esac
	for p in "${apids[@]}"; do kill -"$2" "$p" 2>/dev/null || true; done
}

lat_agents_stop() {
	local p
	# a stopped agent would not see SIGTERM until continued
	for p in "${apids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
	for p in "${apids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${apids[@]}"; do wait "$p" 2>/dev/null || true; done
	apids=()
}

lat_cleanup() {
	$lat_cleanup_hook || true
	lat_agents_stop
	[ -z "${STATS_PID:-}" ] || kill "$STATS_PID" 2>/dev/null || true
	# RUNS_OUT=FILE keeps the per-run figures (to re-table them later).
	[ -z "${RUNS_OUT:-}" ] || cp "$WORK/runs.txt" "$RUNS_OUT" 2>/dev/null || true
	[ -z "${SRV:-}" ] || kill "$SRV" 2>/dev/null || true
	"$SONDE" lab down >/dev/null 2>&1 || true
	rm -rf "$WORK"
}

lat_setup() { # NAME
	WORK=$(mktemp -d "/tmp/sonde-$1.XXXXXX")
	trap lat_cleanup EXIT
	"$SONDE" lab down >/dev/null 2>&1 || true
	"$SONDE" lab up --rate 0 >/dev/null
	RT_IP=$(lat_pod ratings-v1 .ip)
	# loadgen listens on nothing at --rate 0 (no ports in the metadata),
	# so the receiver's port filter lets iperf3's port through to it.
	LG_IP=$(lat_pod loadgen .ip)
}

lat_pod() { # WORKLOAD JQ-FIELD
	jq -r --arg w "$1" ".pods[] | select(.workload == \$w) | $2" $STATE
}

# A mode is off, on (--latency-sample 1: every segment, MSS shrunk by the
# option) or sampled (--latency-sample 16: 1 segment in 16 of those with
# room, full-size segments never). A suffix "-old" runs the agents from
# $SONDE_OLD instead (another build, e.g. before a change to the BPF side,
# whose objects are embedded in the binary): before/after in one run.
# A suffix "-frozen" stops the agents (SIGSTOP) for the measured part, see
# lat_agents_freeze: their BPF programs stay attached and keep working
# (links and maps are held by the stopped process), the processes use no
# CPU: what is left of the cost is the kernel side alone.
lat_agents_start() { # MODE TAG
	local sample bin=$SONDE node
	case $1 in
	off) return 0 ;;
	on | on-old | on-frozen) sample=1 ;;
	sampled | sampled-old | sampled-frozen) sample=16 ;;
	*) echo "unknown mode $1" >&2; return 1 ;;
	esac
	case $1 in *-old) bin=${SONDE_OLD:?mode $1 needs SONDE_OLD} ;; esac
	for node in $(jq -r '.nodes[].name' $STATE); do
		"$bin" agent --node "$node" --sensors latency --latency-sample "$sample" \
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

# The agents' exit statistics of one run (after lat_agents_stop), appended
# to $WORK/MODE.stats for lat_stamped.
lat_agent_stats() { # MODE TAG
	[ "$1" != off ] || return 0
	{ cat "$WORK/$2".node-*.err | grep '^{' | jq -c 'select(.sensor == "latency")
		| {tx_stamped, tx_not_sampled, tx_no_room, rx_measured}' >>"$WORK/$1.stats"; } || true
}

lat_stamped() { # MODE... -> one line per mode with agent statistics
	local m
	for m in "$@"; do
		[ ! -f "$WORK/$m.stats" ] ||
			echo "$m: $(jq -s -r '"\([.[].tx_stamped] | add) segments stamped, \([.[].rx_measured] | add) measured over all runs"' "$WORK/$m.stats")"
	done
}

# Busy jiffies of the machine: user nice system irq softirq steal.
lat_machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

lat_agents_cpu() { # jiffies of the running agents
	local t=0 p
	for p in "${apids[@]}"; do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo $t
}

# CPU microseconds of a pod's container cgroup (all its processes, also
# those started by `sonde lab exec`).
lat_pod_cpu_us() { # WORKLOAD
	awk '$1 == "usage_usec" { print $2 }' "$(lat_pod "$1" .cgroup)/cpu.stat"
}

# BPF_STATS=1: the kernel counts run count and run time of every BPF
# program while bench/bpf_stats_hold.py runs (it adds two clock reads per
# program run, the same in every mode). lat_bpf_stats then gives the
# latency programs' own cost, which process CPU on a shared VM cannot
# resolve.
lat_bpf_stats_start() {
	[ "${BPF_STATS:-0}" = 1 ] || return 0
	/usr/bin/python3 "$ROOT/bench/bpf_stats_hold.py" >"$WORK/bpf_stats_hold.out" &
	STATS_PID=$!
	for _ in $(seq 50); do grep -q on "$WORK/bpf_stats_hold.out" && return 0; sleep 0.1; done
	echo "BPF statistics could not be turned on" >&2
	return 1
}

# "rx_runs rx_ns sockops_runs sockops_ns" summed over the loaded latency
# programs (the running agents' only: call before lat_agents_stop).
lat_bpf_stats() {
	bpftool prog show -j | jq -r '[.[] | select(.run_cnt != null)] as $p |
		($p | map(select(.name == "lat_rx_vxlan" or .name == "lat_rx_veth"))) as $rx |
		($p | map(select(.name == "lat_sockops"))) as $tx |
		"\($rx | map(.run_cnt) | add // 0) \($rx | map(.run_time_ns) | add // 0) \($tx | map(.run_cnt) | add // 0) \($tx | map(.run_time_ns) | add // 0)"'
}

lat_iperf_server() { # start iperf3 -s in the loadgen pod (port 5201)
	"$SONDE" lab exec loadgen -- iperf3 -s -p 5201 >/dev/null 2>&1 &
	SRV=$!
	sleep 1
}

# Modes in a rotating order per round, so that no mode always runs first
# (warm caches, a neighbour's periodic load).
lat_rotate() { # ROUND MODE...
	local r=$1 n i
	shift
	n=$#
	local m=("$@")
	for ((i = 0; i < n; i++)); do echo "${m[$(((i + r) % n))]}"; done
}

# Tables from $WORK/runs.txt (lines "MODE ROUND key=value ..."): per mode
# mean and 95 % CI over rounds, and per mode the paired per-round
# difference from BASE. COLS: key:label[:paired] ...
lat_table() { # BASE COL...
	/usr/bin/python3 "$ROOT/bench/lat_stats.py" "$WORK/runs.txt" "$@"
}
