#!/usr/bin/env bash
# Capacity of the flow sensor: TCP connection churn on loopback inside a
# private network namespace (no lab needed, no traffic leaves it), at rising
# offered rates; for each, the events the agent received per second, the
# agent's own CPU time per event, and the events lost (ring buffer full,
# untracked). Each connection is 4 ring-buffer events (open and close at
# both ends). Results: bench/results/flow-capacity.md. STEP_S=N seconds per
# step (default 8).
set -u
if [ -z "${SONDE_BENCH_LOCKED:-}" ]; then # one lab per machine: take turns
	SONDE_BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=$ROOT/sonde
STEP_S=${STEP_S:-8}
OUT=${OUT:-$ROOT/bench/results/flow-capacity.md}
TMP=$(mktemp -d /tmp/sonde-bench-cap.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

cat >"$TMP/run.sh" <<EOF
set -u
ip link set lo up
CG=\$(awk '\$3 == "cgroup2" { print \$2; exit }' /proc/mounts)/sonde-bench-cap
mkdir -p \$CG
echo \$\$ >\$CG/cgroup.procs
cpu() { awk '{ print \$14 + \$15 }' /proc/\$AP/stat; }
for procs in 1 2 4; do
	"$SONDE" agent --node bench --cgroup-root \$CG --metadata "$TMP/meta.json" --output /dev/null 2>"$TMP/agent.err" &
	AP=\$!
	for _ in \$(seq 100); do grep -q "flow sensor attached" "$TMP/agent.err" && break; sleep 0.1; done
	c0=\$(cpu)
	python3 - "\$procs" "$STEP_S" <<'PY' >>"$TMP/steps.txt"
import multiprocessing, socket, sys, time
procs, secs = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(4096); port = srv.getsockname()[1]
def acceptor():
    while True:
        c, _ = srv.accept(); c.close()
def churn(q):
    n, end = 0, time.time() + secs
    while time.time() < end:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close(); n += 1
    q.put(n)
a = multiprocessing.Process(target=acceptor, daemon=True); a.start()
q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=churn, args=(q,)) for _ in range(procs)]
t0 = time.time(); [p.start() for p in ps]; [p.join() for p in ps]
n = sum(q.get() for _ in ps)
print(procs, n, time.time() - t0)
PY
	c1=\$(cpu)
	kill -TERM \$AP; wait \$AP
	echo "cpu \$((c1 - c0)) \$(grep '^{' "$TMP/agent.err" | jq -r '"\\(.events) \\(.lost_ringbuf_full) \\(.tcp_flows_evicted)"')" >>"$TMP/steps.txt"
done
rmdir \$CG 2>/dev/null
EOF
echo '{"nodes":[],"pods":[],"services":[]}' >"$TMP/meta.json"
unshare --net bash "$TMP/run.sh"
HZ=$(getconf CLK_TCK)
{
	printf '\n## Run of %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
	printf 'Command: `bench/flow_capacity.sh` (STEP_S=%s). Machine: %s, %s cores (shared), kernel %s. Loopback churn (connect + close with SO_LINGER 0: each connection ends in a reset, no TIME_WAIT) in a private netns, agent release build.\n\n' \
		"$STEP_S" "$(. /etc/os-release; echo "$PRETTY_NAME")" "$(nproc)" "$(uname -r)"
	printf '| churn processes | connections/s | events offered/s | events delivered | lost (ring full) | flows evicted | agent CPU s | agent CPU us per delivered event |\n|---|---|---|---|---|---|---|---|\n'
	awk -v hz="$HZ" '$1 == "cpu" { c = $2 / hz; printf "| %d | %.0f | %.0f | %d | %d | %d | %.2f | %.2f |\n", p, n / t, ($3 + $4) / t, $3, $4, $5, c, $3 ? c * 1e6 / $3 : 0; next }
		{ p = $1; n = $2; t = $3 }' "$TMP/steps.txt"
} >>"$OUT"
cat "$OUT" | tail -12
