#!/usr/bin/env bash
# The pod behind a cluster IP: a client socket only knows the service's
# cluster IP; the agent asks the node's conntrack which pod kube-proxy's DNAT
# chose and adds it as `dst.backend`. Checked connection by connection
# against the backends' own nginx access logs (remote_addr:remote_port ->
# the pod that served it): productpage calls details and reviews (three
# pods behind one cluster IP, picked at random by kube-proxy's rules) through
# their cluster IPs, under the load generator's load.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing (scripts/deps.sh installs it)"

lab_fresh_up --rate 40
STATE=/run/sonde-lab/state.json

pids=()
ON_EXIT='for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done'
for node in $(jq -r '.nodes[].name' $STATE); do
	"$SONDE" agent --node "$node" --sensors flow,l7 --interval 1s \
		--output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	wait_for 30 grep -q "l7 sensor attached" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
sleep 8
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done
pids=()
cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"

python3 - "$STATE" "$TMP/all.jsonl" >"$TMP/check.json" <<'EOF'
import json, sys
state = json.load(open(sys.argv[1]))
# (client ip, client port) -> [(request end, pod)]: a client port is reused
# by later connections, so a record is matched to the nearest in time.
served = {}
for p in state["pods"]:
    if not p["workload"].startswith(("details", "reviews")):
        continue
    try:
        lines = open(p["dir"] + "/access.log").read().splitlines()
    except OSError:
        continue
    for l in lines:
        try:
            e = json.loads(l)
        except ValueError:
            continue
        served.setdefault((e["remote_addr"], e["remote_port"]), []).append(
            (e["msec"], p["name"]))
out = {"logged_conns": len(served), "http": 0, "http_backend": 0,
       "tcp": 0, "tcp_backend": 0, "matched": 0, "wrong": [],
       "unlogged": 0, "reviews_pods": []}
reviews = set()
for l in open(sys.argv[2]):
    r = json.loads(l)
    if r.get("side") != "client":
        continue
    d, s = r.get("dst", {}), r.get("src", {})
    if not d.get("cluster_ip") or d.get("service") not in ("details", "reviews"):
        continue
    if s.get("workload") != "productpage-v1":
        continue
    k = "http" if r["kind"] == "http" else "tcp" if r.get("proto") == "tcp" else None
    if k is None:
        continue
    out[k] += 1
    b = d.get("backend")
    if not b:
        continue
    out[k + "_backend"] += 1
    if d["service"] == "reviews" and b.get("pod"):
        reviews.add(b["pod"])
    cands = served.get((s.get("ip"), s.get("port")))
    t = r["time_ns"] / 1e9
    truth = min(cands, key=lambda c: abs(c[0] - t))[1] if cands else None
    if truth is None:
        out["unlogged"] += 1
    elif truth == b.get("pod"):
        out["matched"] += 1
    else:
        out["wrong"].append({"record": r, "served_by": truth})
out["reviews_pods"] = sorted(reviews)
out["wrong"] = out["wrong"][:3]
json.dump(out, sys.stdout)
EOF
log "check: $(jq -c 'del(.wrong)' "$TMP/check.json")"
c=$(cat "$TMP/check.json")
assert_eq "[]" "$(jq -c .wrong <<<"$c")" "every backend pod is the pod whose access log has the connection"
[ "$(jq .http <<<"$c")" -gt 50 ] || fail "too few client http records to cluster IPs: $(jq .http <<<"$c")"
# Every client record to a cluster IP names its backend: the connection is
# alive (http) or in TIME_WAIT (flow close) when the record is written, so
# conntrack still has it.
assert_eq "$(jq .http <<<"$c")" "$(jq .http_backend <<<"$c")" "http client records with a backend"
assert_eq "$(jq .tcp <<<"$c")" "$(jq .tcp_backend <<<"$c")" "tcp flow client records with a backend"
[ "$(jq .matched <<<"$c")" -gt 50 ] || fail "too few records matched to an access log line"
# kube-proxy spreads reviews' connections over its three pods: the backend
# is looked up per connection, not a constant per service.
[ "$(jq '.reviews_pods | length' <<<"$c")" -ge 2 ] ||
	fail "reviews connections resolved to fewer than 2 pods: $(jq -c .reviews_pods <<<"$c")"
# The agents report their lookups at exit. Most new connections' backends
# come from conntrack's NEW events (one batch read instead of one query per
# connection): at least one node must have learnt some that way.
events=0
for node in $(jq -r '.nodes[].name' $STATE); do
	st=$(grep '^{"node"' "$TMP/$node.err" | jq -c .node.conntrack)
	log "$node: conntrack $st"
	[ "$st" = null ] || assert_eq 0 "$(jq .errors <<<"$st")" "$node: conntrack errors"
	[ "$st" = null ] || events=$((events + $(jq '.events // 0' <<<"$st")))
done
[ "$events" -gt 0 ] || fail "no backend learnt from conntrack events"

done_testing
