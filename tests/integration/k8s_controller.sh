#!/usr/bin/env bash
# The controller's Kubernetes client (src/k8s, through `sonde topology
# --watch`) loses nothing while its streams break: pods move while every
# watch is dropped mid-stream, while the API stand-in is stopped, and
# across its restart (the client must resume, get 410 Gone and relist).
# At the end the client's cache must equal the stand-in's list and the
# lab's state, and every move must show as DELETED old uid + ADDED new uid.
# Then `sonde topology --json` is checked against the lab's ground truth
# (state.json, /run/netns, cgroup.procs, ip link).
source "$(dirname "$0")/../lib.sh"

command -v openssl >/dev/null || skip "openssl is missing (scripts/deps.sh installs it)"
export SONDE_LAB_API_ARGS="--bookmark-interval 1s"
lab_fresh_up --rate 0
K=/run/sonde-lab/kubeconfig
ST=/run/sonde-lab/state.json
API=$(jq -r .api.server $ST)
TOKEN=$(cat "$(jq -r .api.token_file $ST)")
CA=$(jq -r .api.ca_file $ST)

# A monitoring policy: every Bookinfo pod, plus kube-dns's.
printf '{"namespaces": ["bookinfo"], "services": ["kube-system/kube-dns"], "sensors": ["flow"]}\n' >"$TMP/policy.json"
"$SONDE" topology --kubeconfig "$K" --plan "$TMP/policy.json" --watch --snapshot "$TMP/snapshot.json" >"$TMP/events.jsonl" 2>"$TMP/watch.err" &
TP=$!
ON_EXIT="kill $TP 2>/dev/null"
wait_for 10 grep -q '"pods"' "$TMP/events.jsonl" || die "no initial events from sonde topology --watch: $(cat "$TMP/watch.err")"

lab move ratings node-2 >/dev/null || fail "move 1"
lab api drop-watches
lab move details node-1 >/dev/null || fail "move 2 (after dropped watches)"
# A move while the API is down: only a relist can tell.
lab api stop
lab move productpage node-2 >/dev/null || fail "move 3 (API down)"
lab api start
lab api restart
lab move coredns node-2 >/dev/null || fail "move 4 (after a restart)"
# The client's relist after the restart may wait out its backoff (up to
# 5 s): wait for the last move's plan instead of a fixed sleep.
last_new=$(tail -1 /run/sonde-lab/moves.jsonl | jq -r .new_pod)
wait_for 20 grep -q "\"resource\":\"plan\".*flow/kube-system/$last_new" "$TMP/events.jsonl" ||
	fail "no plan with $last_new within 20 s of the last move"
sleep 1 # the Ready MODIFIED that follows
kill -TERM "$TP"
wait "$TP"
assert_eq 0 $? "sonde topology --watch exits 0 on SIGTERM"

state=$(jq -c '[.pods[] | {uid, name, node, ip}] | sort_by(.name)' $ST)
api=$(curl -sS --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$API/api/v1/pods" |
	jq -c '[.items[] | {uid: .metadata.uid, name: .metadata.name, node: .spec.nodeName, ip: .status.podIP}] | sort_by(.name)')
cache=$(jq -c '[.pods[] | {uid, name, node, ip}] | sort_by(.name)' "$TMP/snapshot.json")
assert_eq "$state" "$api" "stand-in list = lab state"
assert_eq "$api" "$cache" "client cache = stand-in list"
notready=$(jq '[.pods[] | select(.ready | not)] | length' "$TMP/snapshot.json")
assert_eq 0 "$notready" "every cached pod Ready"

moves=$(wc -l </run/sonde-lab/moves.jsonl)
assert_eq 4 "$moves" "moves recorded"
missing=0
while read -r old new; do
	grep -q "\"type\":\"DELETED\",.*\"uid\":\"$old\"" "$TMP/events.jsonl" || { fail "no DELETED for $old"; missing=1; }
	grep -q "\"type\":\"ADDED\",.*\"uid\":\"$new\"" "$TMP/events.jsonl" || { fail "no ADDED for $new"; missing=1; }
done < <(jq -r '"\(.old_uid) \(.new_uid)"' /run/sonde-lab/moves.jsonl)
((missing)) || log "ok: every move seen as DELETED + ADDED (4 moves)"
# The plan follows each move: a new generation for the target node that
# has the new pod's sensor, and one for the old node without the old pod's.
missing=0
while read -r ns old new from to; do
	jq -se --arg n "$to" --arg id "flow/$ns/$new" 'any(.[]; .resource == "plan" and .node == $n
		and any(.sensors[]; . == $id))' "$TMP/events.jsonl" >/dev/null || { fail "no plan for $to with $new"; missing=1; }
	jq -se --arg n "$from" --arg id "flow/$ns/$old" '[.[] | select(.resource == "plan" and .node == $n)]
		| last | any(.sensors[]; . == $id) | not' "$TMP/events.jsonl" >/dev/null || { fail "$from's last plan still has $old"; missing=1; }
done < <(jq -r '"\(if (.old_pod | startswith("coredns")) then "kube-system" else "bookinfo" end) \(.old_pod) \(.new_pod) \(.from) \(.to)"' /run/sonde-lab/moves.jsonl)
((missing)) || log "ok: the sensor plan followed every move (new node gains, old node loses)"
gens=$(jq -r 'select(.resource == "plan") | "\(.node) \(.generation)"' "$TMP/events.jsonl" | sort -k1,1 -k2n | awk '$1 == p && $2 != q + 1 { bad = 1 } { p = $1; q = $2 } END { print bad + 0 }')
assert_eq 0 "$gens" "plan generations increase by one per node"
# Without --watch: the plan of the final state.
"$SONDE" topology --kubeconfig "$K" --plan "$TMP/policy.json" >"$TMP/plan.json" || fail "topology --plan"
want=$(jq -r '[.pods[] | select(.namespace == "bookinfo" or .workload == "coredns") | "\(.node) flow/\(.namespace)/\(.name)"] | sort | join(",")' $ST)
got=$(jq -r '[to_entries[] | .key as $n | .value.sensors[] | "\($n) \(.id)"] | sort | join(",")' "$TMP/plan.json")
assert_eq "$want" "$got" "plan = one flow sensor per monitored pod, on its node"
stats=$(jq -c .stats "$TMP/snapshot.json")
log "client counters: $stats"
gone=$(jq .stats.gone "$TMP/snapshot.json")
assert_between 1 1000 "$gone" "410 Gone answers (restarts)"
# Each 410 Gone must cost one relist of that resource. How many of the
# four watches meet a 410 around the restart depends on timing (seen: 3
# of 4 in one run), so the bound is 4 initial lists + one per 410, not a
# fixed 8.
assert_between $((4 + gone)) 1000 "$(jq .stats.lists "$TMP/snapshot.json")" "lists (4 initial + one per 410 Gone)"
assert_between 1 100000 "$(jq .stats.bookmarks "$TMP/snapshot.json")" "bookmarks"
# After an API restart the stand-in re-stamps every object, so a relist
# reports MODIFIED for objects that did not change; never a spurious DELETED.
spurious=$(jq -r 'select(.resource == "pods" and .type == "DELETED") | .uid' "$TMP/events.jsonl" | sort | uniq -d | wc -l)
assert_eq 0 "$spurious" "no pod deleted twice"

# --- the full-stack topology against ground truth
"$SONDE" topology --kubeconfig "$K" --json >"$TMP/topo.json" 2>"$TMP/topo.err" || fail "topology --json: $(cat "$TMP/topo.err")"
bad=0
while read -r name netns veth ifidx pid node; do
	t=$(jq -c --arg n "$name" '.pods[] | select(.pod == $n)' "$TMP/topo.json")
	[ "$(jq -r .netns <<<"$t")" = "$(stat -L -c %i "/run/netns/$netns")" ] || { fail "$name: netns"; bad=1; }
	[ "$(jq -r .host_veth.name <<<"$t")" = "$veth" ] || { fail "$name: host veth $(jq -r .host_veth.name <<<"$t") != $veth"; bad=1; }
	[ "$(jq -r .host_veth.ifindex <<<"$t")" = "$ifidx" ] || { fail "$name: host veth ifindex"; bad=1; }
	[ "$pid" = 0 ] || [ "$(jq -r .process.pid <<<"$t")" = "$pid" ] || { fail "$name: pid $(jq -r .process.pid <<<"$t") != $pid"; bad=1; }
	[ "$(jq -r '"\(.bridge.name) \(.vxlan.name) \(.vxlan.vni) \(.uplink.name) \(.node)"' <<<"$t")" = "cni0 flannel.1 1 eth0 $node" ] ||
		{ fail "$name: bridge/vxlan/uplink $(jq -c '[.bridge, .vxlan, .uplink]' <<<"$t")"; bad=1; }
	master=$(ip -n "sonde-node-${node#node-}" -o link show "$veth" | grep -o 'master [^ ]*' | cut -d' ' -f2)
	[ "$master" = cni0 ] || { fail "$name: ip link says master $master"; bad=1; }
done < <(jq -r '.pods[] | "\(.name) \(.netns) \(.host_veth) \(.host_veth_ifindex) \(.pid) \(.node)"' $ST)
((bad)) || log "ok: every pod's netns, veth, ifindex, pid, bridge, VXLAN, uplink = ground truth ($(jq '.pods | length' $ST) pods)"
svc=$(jq -r '.pods[] | select(.pod | startswith("reviews-v2")) | .services | join(",")' "$TMP/topo.json")
assert_eq reviews "$svc" "reviews-v2's service"
"$SONDE" topology --kubeconfig "$K" --format dot >"$TMP/topo.dot"
edges=$(grep -c -- '->' "$TMP/topo.dot")
# Per pod: container, process, netns, 2 veths, bridge, vxlan, uplink, node
# (9 hops), plus one edge per selecting service (7 of 8 pods: loadgen has none).
assert_eq $((8 * 9 + 7)) "$edges" "dot edges"
done_testing
