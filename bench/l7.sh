#!/usr/bin/env bash
# Cost of the l7 sensor, in one run, interleaved:
#  - wrk from the loadgen pod (node-2) to ratings (node-1), across the
#    overlay, with no agent and with one l7 agent per node, alternating
#    REPS times: throughput, p50 and p99 of each run, ratios of medians;
#    also the agents' own CPU time per 1000 requests;
#  - Bookinfo at a fixed offered rate (FIXED_RATE, default 1000 pages/s,
#    FIXED_SECONDS each, the lab's own load generator, open loop), off/on
#    interleaved: the load generator's latency p50/p99, the agents' CPU
#    per 1000 pages and the whole machine's busy CPU per page (paired
#    on - off per round, mean and 95 % CI);
#  - where the kernel side's time goes: one more wrk run with
#    kernel.bpf_stats_enabled, run count and ns per run of each program of
#    each agent, per wrk request;
#  - with L7_BEFORE_SONDE=<an older sonde binary>, a third arm "before"
#    running that binary's agents, interleaved with the others: the same
#    figures for the old code in the same run;
#  - the parsers' throughput per core (bench/l7_parse.c);
#  - ground truth at the highest Bookinfo rate asked (L7_RATE, default
#    1000/s for 60 s): tests/integration/l7_http.sh with the release build
#    (nginx logs, the load generator's log, and the microsecond log of
#    `sonde lab httpd`; L7_CONNECTIONS is passed on).
# Writes bench/results/l7.md. Run under the lab lock (bench/run.sh does).
set -eu
if [ -z "${SONDE_BENCH_LOCKED:-}" ]; then
	SONDE_BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=${SONDE:-$ROOT/build/release/sonde}
OUT=${L7_BENCH_OUT:-$ROOT/bench/results/l7.md}
STATE=/run/sonde-lab/state.json
REPS=${REPS:-6}
WRK_SECONDS=${WRK_SECONDS:-8}
FIXED_RATE=${FIXED_RATE:-1000}
FIXED_SECONDS=${FIXED_SECONDS:-10}
ARMS="on"
[ -n "${L7_BEFORE_SONDE:-}" ] && ARMS="before on"
agent_bin() { if [ "$1" = before ]; then echo "$L7_BEFORE_SONDE"; else echo "$SONDE"; fi; }
TMP=$(mktemp -d /tmp/sonde-bench-l7.XXXXXX)
export SONDE_LAB_DIR=$ROOT/lab
trap '"$SONDE" lab down >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
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
: >"$TMP/fixed.txt"
: >"$TMP/busy.txt"
AGENT_PIDS=()
agents_start() { # arm rep
	AGENT_PIDS=()
	for node in $(jq -r '.nodes[].name' $STATE); do
		"$(agent_bin "$1")" agent --node "$node" --sensors l7 --output "$TMP/agent-$node.$1.$2.jsonl" 2>"$TMP/agent-$node.$1.$2.err" &
		AGENT_PIDS+=($!)
	done
	for node in $(jq -r '.nodes[].name' $STATE); do
		for _ in $(seq 100); do grep -q "l7 sensor attached" "$TMP/agent-$node.$1.$2.err" && break; sleep 0.1; done
	done
	sleep 1.5
}
agents_stop() {
	kill -TERM "${AGENT_PIDS[@]}"
	wait "${AGENT_PIDS[@]}" || true
}
ppip=$(jq -r '.pods[] | select(.workload == "productpage-v1") | .ip' $STATE)
machine_busy() { # busy ticks of all CPUs so far (user+nice+system+irq+softirq+steal)
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
run_fixed() { # arm rep: the lab's load generator at FIXED_RATE
	local b0
	b0=$(machine_busy)
	"$SONDE" lab exec loadgen -- "$SONDE" lab loadgen --url "http://$ppip:9080/productpage" \
		--rate "$FIXED_RATE" --duration "${FIXED_SECONDS}s" --log /dev/null >"$TMP/fixed.$1.$2.txt" 2>&1
	echo "$1 $2 $(($(machine_busy) - b0))" >>"$TMP/busy.txt"
}
fixed_stat() { # file -> "p50 p99 sent"
	awk '/total_ms p50/ { for (i = 1; i <= NF; i++) { if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1) } }
	     /sent [0-9]+/ { for (i = 1; i <= NF; i++) if ($i == "sent") n = $(i + 1) }
	     END { print a, b, n }' "$1"
}
for rep in $(seq "$REPS"); do
	run_wrk off "$rep"
	run_fixed off "$rep"
	for arm in $ARMS; do
		agents_start "$arm" "$rep"
		c0=$(agent_cpu "${AGENT_PIDS[@]}")
		run_wrk "$arm" "$rep"
		c1=$(agent_cpu "${AGENT_PIDS[@]}")
		run_fixed "$arm" "$rep"
		c2=$(agent_cpu "${AGENT_PIDS[@]}")
		agents_stop
		reqs=$(awk '/requests in/ { print $1 }' "$TMP/$arm.$rep.txt")
		# wrk's exchanges only (the fixed-rate run's are in the same
		# files): wrk's client side, and ratings' server side of them.
		recs=$(cat "$TMP"/agent-*."$arm.$rep".jsonl | jq -c 'select(.kind == "http" and
			((.side == "client" and .comm == "wrk") or
			 (.side == "server" and .src.workload == "loadgen" and .dst.workload == "ratings-v1")))' | wc -l)
		echo "$arm $rep $((c1 - c0)) $reqs $recs" >>"$TMP/cpu.txt"
		echo "$arm $rep $((c2 - c1)) $(fixed_stat "$TMP/fixed.$arm.$rep.txt")" >>"$TMP/fixed.txt"
	done
	echo "off $rep 0 $(fixed_stat "$TMP/fixed.off.$rep.txt")" >>"$TMP/fixed.txt"
done

# Where the kernel side's time goes: one more wrk run per arm with the
# kernel's BPF run-time statistics on (they add two clock reads to every
# run, so the ns are upper bounds).
bpf_progs() {
	bpftool -j prog show | jq -c '[.[] | select(.name | startswith("l7_")) |
		{id, name, run_time_ns: (.run_time_ns // 0), run_cnt: (.run_cnt // 0)}]'
}
bpf_was=$(sysctl -n kernel.bpf_stats_enabled)
for arm in $ARMS; do
	agents_start "$arm" bpf
	sysctl -q kernel.bpf_stats_enabled=1
	bpf_progs >"$TMP/bpf0.$arm.json"
	run_wrk "bpf-$arm" 1
	bpf_progs >"$TMP/bpf1.$arm.json"
	sysctl -q kernel.bpf_stats_enabled="$bpf_was"
	# prog id -> node: each agent holds its programs' fds, and a BPF
	# program fd's fdinfo names the program id.
	i=0
	for node in $(jq -r '.nodes[].name' $STATE); do
		grep -h '^prog_id:' /proc/"${AGENT_PIDS[$i]}"/fdinfo/* 2>/dev/null | awk -v n="$node" '{ print $2, n }'
		i=$((i + 1))
	done | sort -u >"$TMP/bpfpids.$arm.txt"
	agents_stop
done

row() { # tag -> "rps p50_us p99_us" medians
	local rps p50 p99
	rps=$(for f in "$TMP/$1".[0-9]*.txt; do awk '/Requests\/sec/ { print $2 }' "$f"; done | median)
	p50=$(for f in "$TMP/$1".[0-9]*.txt; do grep -E '^ +50%' "$f" | to_us; done | median)
	p99=$(for f in "$TMP/$1".[0-9]*.txt; do grep -E '^ +99%' "$f" | to_us; done | median)
	echo "$rps $p50 $p99"
}
hz=$(getconf CLK_TCK)
read -r off_rps off_p50 off_p99 <<<"$(row off)"
cpu_per_k() { awk -v hz="$hz" -v a="$1" '$1 == a { t += $3; r += $4 } END { if (r) printf "%.2f", t / hz * 1000 / r * 1000; else print "n/a" }' "$TMP/cpu.txt"; }
rec_ratio() { awk -v a="$1" '$1 == a { r += $4; n += $5 } END { if (r) printf "%.4f", n / r; else print "n/a" }' "$TMP/cpu.txt"; }
fixed_row() { # arm -> "p50 p99 cpu_ms_per_1000_pages" (medians; CPU summed)
	local p50 p99 cpu
	p50=$(awk -v a="$1" '$1 == a { print $4 }' "$TMP/fixed.txt" | median)
	p99=$(awk -v a="$1" '$1 == a { print $5 }' "$TMP/fixed.txt" | median)
	cpu=$(awk -v hz="$hz" -v a="$1" '$1 == a { t += $3; r += $6 } END { if (r) printf "%.2f", t / hz * 1000 / r * 1000; else print "n/a" }' "$TMP/fixed.txt")
	echo "$p50 $p99 $cpu"
}

cc -O2 -D_GNU_SOURCE -I"$ROOT/src" -o "$TMP/l7_parse" "$ROOT/bench/l7_parse.c" "$ROOT/src/l7/http.c" "$ROOT/src/l7/dns.c"
parse=$("$TMP/l7_parse")

{
	echo "# l7 sensor: overhead, parser throughput, ground truth at load"
	echo
	echo "Command: \`make bench BENCH=l7\` (bench/l7.sh, REPS=$REPS, ${WRK_SECONDS}s per wrk run, FIXED_RATE=$FIXED_RATE, L7_RATE=${L7_RATE:-1000}${L7_BEFORE_SONDE:+, L7_BEFORE_SONDE=$L7_BEFORE_SONDE}), $(date -u +%Y-%m-%dT%H:%MZ)."
	echo "Machine: $(nproc) cores shared with other engineers' work, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r); load average at start $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "## wrk across nodes (loadgen pod on node-2 -> ratings pod on node-1, \`wrk -t1 -c8\`), off/on interleaved"
	echo
	echo "Medians of $REPS runs each. \"on\" = one \`sonde agent --sensors l7\` per node (release build), every pod monitored.${L7_BEFORE_SONDE:+ \"before\" = the same with the agents of $L7_BEFORE_SONDE.}"
	echo
	echo "| | requests/s | p50 (us) | p99 (us) | on/off requests/s | on/off p50 | on/off p99 | agents' CPU per 1000 requests (ms) | http records per request |"
	echo "|---|---|---|---|---|---|---|---|---|"
	echo "| off | $off_rps | $off_p50 | $off_p99 | | | | | |"
	for arm in $ARMS; do
		read -r rps p50 p99 <<<"$(row "$arm")"
		awk -v n="$arm" -v a="$off_rps" -v b="$rps" -v c="$off_p50" -v d="$p50" -v e="$off_p99" -v f="$p99" -v k="$(cpu_per_k "$arm")" -v r="$(rec_ratio "$arm")" \
			'BEGIN { printf "| %s | %s | %s | %s | %.3f | %.3f | %.3f | %s | %s |\n", n, b, d, f, b / a, d / c, f / e, k, r }'
	done
	echo
	echo "http records per request: server side + client side, both ends monitored, so 2 is complete."
	echo
	echo "## Bookinfo at a fixed rate: $FIXED_RATE pages/s for ${FIXED_SECONDS}s per run (\`sonde lab loadgen\` in the loadgen pod -> productpage), interleaved"
	echo
	echo "Latency = the load generator's total time per page (libcurl, ms); medians of $REPS runs. One page is 1 main request + 2-3 upstream calls, each seen on both sides."
	echo
	echo "| | p50 (ms) | p99 (ms) | on/off p50 | on/off p99 | agents' CPU per 1000 pages (ms) |"
	echo "|---|---|---|---|---|---|"
	read -r fo50 fo99 _ <<<"$(fixed_row off)"
	echo "| off | $fo50 | $fo99 | | | |"
	for arm in $ARMS; do
		read -r f50 f99 fcpu <<<"$(fixed_row "$arm")"
		awk -v n="$arm" -v a="$fo50" -v b="$f50" -v c="$fo99" -v d="$f99" -v k="$fcpu" \
			'BEGIN { printf "| %s | %s | %s | %.3f | %.3f | %s |\n", n, b, d, b / a, d / c, k }'
	done
	echo
	echo "Whole machine's busy CPU per page at the fixed rate (/proc/stat, all CPUs, everything running: the lab's servers, the load generator, the agents, the BPF programs, and any other work on this shared machine), and the paired difference on - off within each round (mean, 95 % CI over rounds, Student t):"
	echo
	python3 - "$TMP/busy.txt" "$TMP/fixed.txt" "$hz" "$ARMS" <<-'PY'
		import sys, statistics as st
		busy = {}
		for l in open(sys.argv[1]):
		    a, r, t = l.split(); busy[(a, r)] = int(t)
		pages = {}
		for l in open(sys.argv[2]):
		    f = l.split(); pages[(f[0], f[1])] = int(f[5])
		hz = int(sys.argv[3])
		us = {k: busy[k] / hz * 1e6 / pages[k] for k in busy if pages.get(k)}
		# two-sided 95 % Student t quantiles by degrees of freedom
		T = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
		def ci(v):
		    m = st.mean(v)
		    if len(v) < 2: return m, float("nan")
		    return m, T.get(len(v) - 1, 2.0) * st.stdev(v) / len(v) ** 0.5
		print("| arm | machine busy CPU per page (us), mean +- 95 % CI | on - off per page (us), paired | relative |")
		print("|---|---|---|---|")
		off = [us[k] for k in sorted(us) if k[0] == "off"]
		m, h = ci(off)
		print(f"| off | {m:.1f} +- {h:.1f} | | |")
		for arm in sys.argv[4].split():
		    v = [us[k] for k in sorted(us) if k[0] == arm]
		    d = [us[(arm, r)] - us[("off", r)] for (a, r) in sorted(us) if a == arm and ("off", r) in us]
		    m1, h1 = ci(v); md, hd = ci(d)
		    print(f"| {arm} | {m1:.1f} +- {h1:.1f} | {md:+.1f} ({md - hd:+.1f} .. {md + hd:+.1f}) | {100 * md / m:+.1f} % |")
	PY
	echo
	echo "## Where the kernel side's time goes (one wrk run per arm, \`kernel.bpf_stats_enabled=1\`)"
	echo
	echo "Every syscall of the machine runs every agent's sys_enter and sys_exit programs: in the lab both nodes share one kernel, so each syscall runs two pairs, and each agent's pair leaves early for the other node's pods (netns filter). On a real cluster a node's kernel runs one pair. ns per run include the statistics' own two clock reads."
	echo
	echo "| arm | agent | program | runs per wrk request | ns per run | ns per wrk request |"
	echo "|---|---|---|---|---|---|"
	for arm in $ARMS; do
		reqs=$(awk '/requests in/ { print $1 }' "$TMP/bpf-$arm.1.txt")
		jq -r -n --slurpfile a "$TMP/bpf1.$arm.json" --slurpfile b "$TMP/bpf0.$arm.json" --arg arm "$arm" --argjson reqs "$reqs" \
			--rawfile pids "$TMP/bpfpids.$arm.txt" '
			($pids | split("\n") | map(select(length > 0) | split(" ") | {(.[0]): .[1]}) | add) as $node |
			[$a[0][] | . as $x | ([$b[0][] | select(.id == $x.id)][0] // {run_cnt: 0, run_time_ns: 0}) as $y |
			 {agent: ($node[($x.id | tostring)] // "?"), name: $x.name, cnt: ($x.run_cnt - $y.run_cnt), ns: ($x.run_time_ns - $y.run_time_ns)}] | sort_by(.agent, .name) |
			(.[] | select(.cnt > 0) | "| \($arm) | \(.agent) | \(.name) | \(.cnt / $reqs * 100 | round / 100) | \(.ns / .cnt | round) | \(.ns / $reqs | round) |"),
			"| \($arm) | all | all | \((map(.cnt) | add) / $reqs * 100 | round / 100) | \((map(.ns) | add) / ((map(.cnt) | add) + 0.001) | round) | \((map(.ns) | add) / $reqs | round) |"'
	done
	echo
	echo "Per run: wrk (arm, rep, agent CPU ticks at ${hz}/s, wrk requests, http records), then fixed rate (arm, rep, agent CPU ticks, p50 ms, p99 ms, pages sent):"
	echo
	echo '```'
	cat "$TMP/cpu.txt"
	cat "$TMP/fixed.txt"
	for t in off $ARMS; do for f in "$TMP/$t".[0-9]*.txt; do echo "$t $(basename "$f"): $(awk '/Requests\/sec/ { print $2 }' "$f") req/s, p50 $(grep -E '^ +50%' "$f" | awk '{ print $2 }'), p99 $(grep -E '^ +99%' "$f" | awk '{ print $2 }')"; done; done
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
		grep -E 'records:|"pod"|loadgen client|lab httpd|status|FAIL|PASS|failed' >>"$OUT" || true
	echo '```' >>"$OUT"
fi
cat "$OUT"
