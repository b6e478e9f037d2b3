#!/usr/bin/env bash
# Relocation dead period (DESIGN.md "Relocation"): MOVES reschedules of
# ratings-v1 between node-1 and node-2 under Bookinfo load, with one agent
# per node following ratings-v1 (--pods) and the controller's watch
# (`sonde topology --watch`). Per move:
#   api      lab starts writing the new pod to its state -> the controller's watch receives ADDED
#   plan     watch ADDED -> the controller's plan for the new node has the
#            new pod's sensor (sonde topology --plan: what would be pushed)
#   (a)      watch ADDED -> the new node's agent reports sensor_attached
#   (a')     the lab starts making the new pod (old one deleted: its netns,
#            veth, cgroups, processes follow) -> sensor_attached
#   (b)      watch Ready (MODIFIED, Ready=True) -> first flow record of the
#            new pod in the new node's agent output
# TRIGGER=notify: the agents get a frozen copy of the lab's state as
# metadata (so its rewrites trigger nothing) and follow every pod (no
# --pods: the frozen copy does not know the new pods), so only the node's
# own notifications (link events, kubepods cgroups) or the periodic
# rediscovery can attach the new pod's sensor; (b) then has no pod names
# and is not measured. AGENT_OPTS adds agent options (e.g. --rediscover 1h).
# Results: bench/results/relocation.md (appended by hand from the summary).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=${SONDE:-$ROOT/sonde}
MOVES=${MOVES:-20}
RATE=${RATE:-20}
TRIGGER=${TRIGGER:-live}
AGENT_OPTS=${AGENT_OPTS:-}
OUT=${OUT:-$(mktemp -d /tmp/sonde-bench-relocation.XXXXXX)}
export SONDE_LAB_DIR=$ROOT/lab
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }
if [ -z "${SONDE_BENCH_LOCKED:-}" ]; then
	SONDE_BENCH_LOCKED=1 exec flock -o /run/sonde-lab-session.lock "$0" "$@"
fi

cleanup() {
	for p in ${PIDS:-}; do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$SONDE" lab down >/dev/null 2>&1
}
trap cleanup EXIT
"$SONDE" lab down >/dev/null 2>&1
"$SONDE" lab up --rate "$RATE" || exit 1
PIDS=""
select=(--pods ratings-v1)
if [ "$TRIGGER" = notify ]; then
	cp /run/sonde-lab/state.json "$OUT/frozen-state.json"
	select=(--metadata "$OUT/frozen-state.json")
fi
for n in 1 2; do
	# shellcheck disable=SC2086
	"$SONDE" agent --node node-$n "${select[@]}" --sensors flow --output "$OUT/agent-node-$n.jsonl" \
		$AGENT_OPTS 2>"$OUT/agent-node-$n.err" &
	PIDS+=" $!"
done
printf '{"services": ["bookinfo/ratings"], "sensors": ["flow"]}\n' >"$OUT/policy.json"
"$SONDE" topology --kubeconfig /run/sonde-lab/kubeconfig --plan "$OUT/policy.json" --watch \
	>"$OUT/watch.jsonl" 2>"$OUT/watch.err" &
PIDS+=" $!"
sleep 3
for ((i = 1; i <= MOVES; i++)); do
	cur=$(jq -r '.pods[] | select(.workload == "ratings-v1") | .node' /run/sonde-lab/state.json)
	if [ "$cur" = node-1 ]; then to=node-2; else to=node-1; fi
	"$SONDE" lab move ratings-v1 "$to" || exit 1
	sleep 2
done
cp /run/sonde-lab/moves.jsonl "$OUT/moves.jsonl"
for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
wait 2>/dev/null
PIDS=""

/usr/bin/python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def lines(p):
    with open(os.path.join(out, p)) as f:
        for l in f:
            try: yield json.loads(l)
            except ValueError: pass
moves = list(lines("moves.jsonl"))
allw = list(lines("watch.jsonl"))
watch = [e for e in allw if e.get("resource") == "pods"]
plans = [e for e in allw if e.get("resource") == "plan"]
agents = {n: list(lines(f"agent-{n}.jsonl")) for n in ("node-1", "node-2")}
api, a, b, pl, mk, miss = [], [], [], [], [], 0
for m in moves:
    uid, pod, to = m["new_uid"], m["new_pod"], m["to"]
    added = next((e["time_ns"] for e in watch if e["uid"] == uid and e["type"] == "ADDED"), None)
    ready = next((e["time_ns"] for e in watch if e["uid"] == uid and e.get("ready")), None)
    attach = next((r["time_ns"] for r in agents[to] if r.get("kind") == "event"
                   and r.get("event") == "sensor_attached" and r.get("pod_uid") == uid), None)
    first = next((r["time_ns"] for r in agents[to] if r.get("kind") == "flow"
                  and (r.get("src", {}).get("pod") == pod or r.get("dst", {}).get("pod") == pod)), None)
    plan = next((e["time_ns"] for e in plans if e["node"] == to
                 and f"flow/bookinfo/{pod}" in e["sensors"]), None)
    if plan is not None and added is not None:
        pl.append((plan - added) / 1e6)
    if added is not None:
        api.append((added - m["added_ns"]) / 1e6)
    if None not in (added, attach):
        a.append((attach - added) / 1e6)
    if attach is not None:
        mk.append((attach - m["deleted_ns"]) / 1e6)
    if None not in (ready, first):
        b.append((first - ready) / 1e6)
    if None in (added, ready, attach, first):
        miss += 1
        print("incomplete move:", pod, added, ready, attach, first)
def pct(v, q):
    v = sorted(v); k = (len(v) - 1) * q; lo = int(k); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
print(f"moves: {len(moves)}, with (a): {len(a)}, with (b): {len(b)}, incomplete: {miss}")
for name, v in (("lab state write -> watch ADDED (ms)", api),
                ("watch ADDED -> new plan for the new node (ms)", pl),
                ("(a) watch ADDED -> sensor attached on new node (ms)", a),
                ("(a') lab starts making the new pod -> sensor attached (ms)", mk),
                ("(b) watch Ready -> first flow record of new pod (ms)", b)):
    if v:
        print(f"{name}: p50 {pct(v, .5):.1f}  p99 {pct(v, .99):.1f}  min {min(v):.1f}  max {max(v):.1f}")
PY
echo "raw data: $OUT"
