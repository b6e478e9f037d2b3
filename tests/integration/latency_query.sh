#!/usr/bin/env bash
# Latency records through the collector across a pod move (seed 000's point:
# one series per workload pair, whatever pod and node it runs on). Bookinfo
# at 30 req/s, a `sonde server` (SQLite), agents on both nodes shipping and
# writing their own output; reviews-v2 is moved to the other node by
# `sonde lab move` while the load continues. Ground truth: the agents' own
# JSON output (jq over it) and the lab's moves.jsonl / state (the pods'
# names, IPs and the move's times, which sonde did not compute).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
OLD_POD=$(pod_field reviews-v2 .name) OLD_IP=$(pod_field reviews-v2 .ip)
OLD_NODE=$(pod_field reviews-v2 .node) RT_NODE=$(pod_field ratings-v1 .node)
TARGET=$(jq -r --arg n "$OLD_NODE" '[.nodes[].name | select(. != $n)][0]' $STATE)
server_start
agents_start --interval 1s --batch 100

T0=$(date +%s.%N)
lab load --rate 30 >/dev/null || die "lab load failed"
sleep 8
lab move "$OLD_POD" "$TARGET" >"$TMP/move.txt" || die "lab move failed"
NEW_POD=$(pod_field reviews-v2 .name) NEW_IP=$(pod_field reviews-v2 .ip)
assert_eq "$TARGET" "$(pod_field reviews-v2 .node)" "reviews-v2 runs on $TARGET after the move"
assert_ne "$OLD_IP" "$NEW_IP" "the moved pod has a new IP"
sleep 8
lab load --rate 0 >/dev/null
sleep 2 # connections close, the last intervals flush
T1=$(date +%s.%N)
agents_stop
MOVE=$(tail -1 /run/sonde-lab/moves.jsonl)
DEL_NS=$(jq -r .deleted_ns <<<"$MOVE") READY_NS=$(jq -r .ready_ns <<<"$MOVE")
assert_eq "$OLD_POD $NEW_POD" "$(jq -r '"\(.old_pod) \(.new_pod)"' <<<"$MOVE")" "moves.jsonl names the two pods"
log "reviews-v2: $OLD_POD $OLD_IP ($OLD_NODE) -> $NEW_POD $NEW_IP ($TARGET); ratings on $RT_NODE"

cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
ns0=$(awk -v t="$T0" 'BEGIN { printf "%.0f", t * 1e9 }')
ns1=$(awk -v t="$T1" 'BEGIN { printf "%.0f", t * 1e9 }')
q() { "$SONDE" query latency "$@" --since "$ns0" --until "$ns1"; }
# jq over the agents' latency records in the window.
J() { jq -c --argjson a "$ns0" --argjson b "$ns1" "select(.kind == \"latency\" and .time_ns >= \$a and .time_ns < \$b) | $1" "$TMP/all.jsonl"; }

# 1. The agents measured reviews-v2 -> ratings before and after the move,
# from two different pods (IPs from the lab state, not from sonde).
fwd='select(.src.workload == "reviews-v2" and .dst.workload == "ratings-v1")'
before=$(J "$fwd | select(.src.ip == \"$OLD_IP\" and .time_ns <= $DEL_NS)" | wc -l)
after=$(J "$fwd | select(.src.ip == \"$NEW_IP\" and .start_ns >= $READY_NS)" | wc -l)
log "agents' reviews-v2 -> ratings records: $before from $OLD_POD before the move, $after from $NEW_POD after it"
[ "$before" -gt 0 ] || fail "no reviews-v2 -> ratings record before the move"
[ "$after" -gt 0 ] || fail "no reviews-v2 -> ratings record after the move"
assert_eq "$(printf '%s\n' "$OLD_POD" "$NEW_POD" | sort | paste -sd' ')" "$(J "$fwd | .src.pod" | jq -rs 'unique | join(" ")')" \
	"records of the pair come from exactly the old and the new pod"

# 2. The store: the records listing by service holds both pods' records,
# the same number jq finds in the agents' output.
want=$(J 'select(.src.service == "ratings" or .dst.service == "ratings")' | wc -l)
assert_eq "$want" "$(q --service ratings --count)" "query latency --service ratings --count = agents' records"
q --service ratings --records --limit 100000 --json >"$TMP/svc.jsonl"
assert_eq "$want" "$(wc -l <"$TMP/svc.jsonl")" "query latency --service ratings --records lists them all"
assert_eq "$before $after" \
	"$(jq -c "$fwd" "$TMP/svc.jsonl" | jq -s "[map(select(.src.ip == \"$OLD_IP\" and .time_ns <= $DEL_NS)), map(select(.src.ip == \"$NEW_IP\" and .start_ns >= $READY_NS))] | map(length) | join(\" \")" -r)" \
	"the store's ratings records hold the pair before (old pod) and after (new pod) the move"
want=$(J 'select(.src.workload == "reviews-v2" or .dst.workload == "reviews-v2")' | wc -l)
assert_eq "$want" "$(q --workload reviews-v2 --count)" "query latency --workload reviews-v2 --count = agents' records"

# 3. Aggregates: one row per workload pair over the whole run (no pod or
# node in the key), of the last hop only (pod_veth: a cross-node pair has
# the same packets at vxlan_ingress too, which would count them twice):
# records = rows, count = sum of samples, p50/p99/max = exact quantiles
# (position floor(p*n)) of the records' p50_ns.
veth='select(.hop == "pod_veth")'
q --service ratings --json >"$TMP/agg.json"
rows=$(jq -r '[.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1")] | length' "$TMP/agg.json")
assert_eq 1 "$rows" "one aggregate row for reviews-v2 -> ratings-v1 across the move"
agg_jq='(map(.p50_ns) | sort) as $v | "\(length) \(map(.count) | add) \($v[($v | length) * 0.5 | floor]) \($v[($v | length) * 0.99 | floor]) \($v[-1])"'
want=$(J "$fwd | $veth" | jq -rs "$agg_jq")
got=$(jq -r '.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1") | "\(.records) \(.count) \(.p50_ns) \(.p99_ns) \(.max_ns)"' "$TMP/agg.json")
assert_eq "$want" "$got" "aggregate reviews-v2 -> ratings (records, samples, p50, p99, max) = jq over pod_veth records"
# The other hop on request, and both.
want=$(J "$fwd | select(.hop == \"vxlan_ingress\")" | jq -rs "$agg_jq")
got=$(q --service ratings --hop vxlan_ingress --json | jq -r '.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1") | "\(.records) \(.count) \(.p50_ns) \(.p99_ns) \(.max_ns)"')
assert_eq "$want" "$got" "--hop vxlan_ingress: aggregate = jq over vxlan_ingress records (before the move only)"
assert_eq "$(J "$fwd" | wc -l)" \
	"$(q --service ratings --hop any --json | jq -r '.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1") | .records')" \
	"--hop any: every record of the pair"
# Every pair of the ratings query, the same way.
want=$(J "select(.src.service == \"ratings\" or .dst.service == \"ratings\") | $veth
	| {s: (.src.service // \"\"), sw: (.src.workload // \"\"), d: (.dst.service // \"\"), dw: (.dst.workload // \"\"), c: .count, p: .p50_ns}" |
	jq -rs 'group_by([.s, .sw, .d, .dw]) | map((map(.p) | sort) as $v | "\(.[0].s)/\(.[0].sw) \(.[0].d)/\(.[0].dw) \(length) \(map(.c) | add) \($v[($v | length) * 0.5 | floor])") | sort | .[]')
got=$(jq -r '.rows[] | "\(.src_service)/\(.src_workload) \(.dst_service)/\(.dst_workload) \(.records) \(.count) \(.p50_ns)"' "$TMP/agg.json" | sort)
assert_eq "$want" "$got" "aggregate per workload pair (all ratings pairs) = jq"
# Per second: buckets from before and after the move in the same series.
q --workload reviews-v2 --interval 1s --json >"$TMP/agg1s.json"
n_before=$(jq -r --argjson t "$DEL_NS" '[.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1" and .bucket_ns + 1000000000 <= $t)] | length' "$TMP/agg1s.json")
n_after=$(jq -r --argjson t "$READY_NS" '[.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1" and .bucket_ns >= $t)] | length' "$TMP/agg1s.json")
log "1 s buckets of reviews-v2 -> ratings-v1: $n_before before the move, $n_after after"
[ "$n_before" -gt 0 ] && [ "$n_after" -gt 0 ] || fail "the per-second series does not span the move ($n_before before, $n_after after)"
want=$(J "$fwd | $veth" | jq -rs 'group_by(.time_ns - .time_ns % 1000000000) | map("\(.[0].time_ns - .[0].time_ns % 1000000000) \(length) \(map(.count) | add)") | .[]')
got=$(jq -r '.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1") | "\(.bucket_ns) \(.records) \(.count)"' "$TMP/agg1s.json")
assert_eq "$want" "$got" "per-second series reviews-v2 -> ratings-v1 = jq"
# 4. --hops: the per-hop split of the pod_veth records per workload pair.
# Before the move the pair crossed nodes (vxlan_ingress seen), after it the
# two pods share a node (lab state): only the old pod's records are split.
split_old=$(J "$fwd | $veth | select(.src.ip == \"$OLD_IP\" and .hops != null)" | wc -l)
split_new=$(J "$fwd | $veth | select(.src.ip == \"$NEW_IP\" and .hops != null)" | wc -l)
[ "$split_old" -gt 0 ] || fail "no split record from the old (cross-node) pod"
assert_eq 0 "$split_new" "no split record from the new pod (same node as ratings)"
want=$(J "$fwd | $veth" | jq -rs '(map(.p50_ns) | sort) as $v | (map(.hops.sender_to_node_p50_ns // empty) | sort) as $s
	| (map(.hops.node_to_pod_p50_ns // empty) | sort) as $n
	| "\(length) \(map(.count) | add) \($v[($v | length) * 0.5 | floor]) \($s | length) \($s[($s | length) * 0.5 | floor]) \($n[($n | length) * 0.5 | floor])"')
got=$(q --service ratings --hops --json | jq -r '.rows[] | select(.src_workload == "reviews-v2" and .dst_workload == "ratings-v1")
	| "\(.records) \(.count) \(.p50_ns) \(.split_records) \(.sender_to_node_p50_ns) \(.node_to_pod_p50_ns)"')
assert_eq "$want" "$got" "--hops reviews-v2 -> ratings (records, samples, p50, split records, sender->node p50, node->pod p50) = jq"
log "$(q --service ratings --hops)"
log "$(q --service ratings | head -8)"
server_stop
done_testing
