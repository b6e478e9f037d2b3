#!/usr/bin/env bash
# Controller-side scale: the API stand-in serving a synthetic cluster of
# PODS pods on NODES nodes (100 services), and `sonde topology` listing it
# and computing the sensor plan; then the cost of one pod change (a pod
# moved in the state file -> the stand-in's diff -> watch event -> the
# client -> re-plan -> the changed nodes' new plans printed). No lab, no
# root: loopback only (127.0.0.1:16443, plain HTTP, no token).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=${SONDE:-$ROOT/sonde}
PODS=${PODS:-1000}
NODES=${NODES:-100}
CHANGES=${CHANGES:-20}
OUT=${OUT:-$(mktemp -d /tmp/sonde-bench-plan.XXXXXX)}
PORT=${PORT:-16443}

/usr/bin/python3 - "$OUT/state.json" "$PODS" "$NODES" <<'PY'
import json, sys, uuid
path, npods, nnodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
nodes = [{"name": f"node-{n}", "index": n, "ip": f"172.30.{n // 250}.{n % 250 + 1}",
          "pod_cidr": f"10.{n // 250 + 100}.{n % 250}.0/24", "vxlan_vni": 1,
          "vtep_mac": "02:5e:00:00:%02x:%02x" % (n // 256, n % 256), "netns": f"synthetic-node-{n}"}
         for n in range(1, nnodes + 1)]
pods, services = [], []
for i in range(npods):
    app = f"app{i % 100}"
    ns = f"ns{i % 10}"
    n = i % nnodes + 1
    pods.append({"uid": str(uuid.UUID(int=i + 1)), "namespace": ns,
                 "name": f"{app}-v1-abcdefghij-{i:05d}", "workload": f"{app}-v1",
                 "labels": {"app": app, "version": "v1"}, "node": f"node-{n}",
                 "ip": f"10.{n // 250 + 100}.{n % 250}.{i // nnodes + 2}", "container": app,
                 "container_id": "%064x" % (i + 1), "ports": [8080],
                 "created": "2026-01-01T00:00:00Z"})
for s in range(100):
    ns, app = f"ns{s % 10}", f"app{s}"
    eps = [{"pod": p["name"], "ip": p["ip"], "port": 8080, "node": p["node"]}
           for p in pods if p["labels"]["app"] == app and p["namespace"] == ns]
    services.append({"namespace": ns, "name": app, "cluster_ip": f"10.96.{s // 250}.{s % 250 + 1}",
                     "ports": [{"name": "http", "port": 80, "target_port": 8080, "protocol": "TCP"}],
                     "selector": {"app": app}, "endpoints": eps})
json.dump({"version": 1, "cluster": "synthetic", "created": "2026-01-01T00:00:00Z",
           "nodes": nodes, "pods": pods, "services": services}, open(path, "w"))
PY
cat >"$OUT/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: s, cluster: {server: "http://127.0.0.1:$PORT"}}]
users: [{name: u, user: {}}]
contexts: [{name: s, context: {cluster: s, user: u}}]
current-context: s
KC
# Every pod of half the namespaces is monitored.
echo '{"namespaces": ["ns0", "ns1", "ns2", "ns3", "ns4"], "sensors": ["flow"]}' >"$OUT/policy.json"

"$SONDE" lab apiserver --listen "127.0.0.1:$PORT" --state "$OUT/state.json" --ready-file "$OUT/ready" \
	--history 100000 >"$OUT/apiserver.log" 2>&1 &
API=$!
trap 'kill $API $W 2>/dev/null; wait 2>/dev/null' EXIT
W=""
for _ in $(seq 100); do [ -s "$OUT/ready" ] && break; sleep 0.05; done

measure() { # NAME CMD... : wall ms and max RSS of one run
	/usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[2:], stdout=open("/dev/null", "w"), check=True)
ms = (time.monotonic() - t) * 1000
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{sys.argv[1]}: {ms:.0f} ms, max RSS {rss:.1f} MiB")
PY
}
echo "synthetic cluster: $PODS pods, $NODES nodes, 100 services"
for i in 1 2 3; do
	measure "topology --plan (list 4 resources + plan), run $i" "$SONDE" topology --kubeconfig "$OUT/kubeconfig" --plan "$OUT/policy.json" --timeout 60s
done
measure "topology --json (list + chains; no node visible here)" "$SONDE" topology --kubeconfig "$OUT/kubeconfig" --json --timeout 60s

# One pod change at a time: move pod i to the next node, CHANGES times.
"$SONDE" topology --kubeconfig "$OUT/kubeconfig" --plan "$OUT/policy.json" --watch --timeout 60s >"$OUT/watch.jsonl" 2>"$OUT/watch.err" &
W=$!
for _ in $(seq 200); do grep -q '"plan"' "$OUT/watch.jsonl" 2>/dev/null && break; sleep 0.1; done
sleep 1
/usr/bin/python3 - "$OUT" "$CHANGES" "$NODES" <<'PY'
import json, os, sys, time
out, changes, nnodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = os.path.join(out, "state.json")
state = json.load(open(path))
def plan_lines():
    with open(os.path.join(out, "watch.jsonl")) as f:
        return [json.loads(l) for l in f if '"plan"' in l]
lat = []
for c in range(changes):
    p = state["pods"][c * 10]          # ns0 pods: monitored
    n = int(p["node"].split("-")[1]) % nnodes + 1
    p["node"] = f"node-{n}"
    before = len(plan_lines())
    tmp = path + ".tmp"
    json.dump(state, open(tmp, "w"))
    t0 = time.time_ns()
    os.rename(tmp, path)
    for _ in range(500):
        lines = plan_lines()
        got = [l for l in lines[before:] if l["node"] == p["node"]
               and any(s.endswith("/" + p["name"]) for s in l["sensors"])]
        if got:
            lat.append((got[0]["time_ns"] - t0) / 1e6)
            break
        time.sleep(0.005)
    time.sleep(0.2)
lat.sort()
q = lambda v, x: v[min(len(v) - 1, int(round(x * (len(v) - 1))))]
print(f"one pod change -> new plan for its node: n={len(lat)} p50 {q(lat, .5):.1f} ms"
      f"  p99 {q(lat, .99):.1f} ms  max {lat[-1]:.1f} ms")
PY
echo "raw data: $OUT"
