#!/usr/bin/env bash
# The latency sensor end to end, against ground truth it did not compute:
# - Bookinfo under load, one agent per node: reviews-v2 -> ratings and the
#   reverse direction are measured at both hops, with plausible figures;
# - `sonde lab delay --node <reviews-v2's node> 20ms` delays that node's
#   uplink egress only: the median one-way latency reviews-v2 -> ratings
#   rises by the delay the delayer itself measured (and by 20 ms), within
#   1 %, while ratings -> reviews-v2 stays where it was (asymmetry);
# - a connection opened before the agent is never stamped, one opened after
#   is (a keep-alive HTTP client loadgen -> details, a pair Bookinfo itself
#   never uses, so its records can only come from these two connections);
# - counters: nothing lost, no negative time.
source "$(dirname "$0")/../lib.sh"

lab_fresh_up --rate 20
STATE=/run/sonde-lab/state.json
pod() { jq -r --arg w "$1" '.pods[] | select(.workload == $w) | .'"$2" $STATE; }
R2_IP=$(pod reviews-v2 ip) R2_NODE=$(pod reviews-v2 node)
RT_IP=$(pod ratings-v1 ip) RT_NODE=$(pod ratings-v1 node)
LG_IP=$(pod loadgen ip) DT_IP=$(pod details-v1 ip)
RT_CIP=$(jq -r '.services[] | select(.name == "ratings") | .cluster_ip' $STATE)
[ "$R2_NODE" != "$RT_NODE" ] || die "reviews-v2 and ratings share a node"

# One HTTP/1.1 keep-alive connection, a request every 0.2 s, until killed.
keepalive() { # tag
	lab exec loadgen -- /usr/bin/python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9080))
print(s.getsockname()[1], flush=True)
while True:
    s.sendall(b"GET /details/0 HTTP/1.1\r\nHost: details\r\n\r\n")
    s.recv(65536)
    time.sleep(0.2)
' "$DT_IP" >"$TMP/keepalive-$1.port" 2>&1 &
	echo $! >"$TMP/keepalive-$1.pid"
}
ON_EXIT='for f in "$TMP"/keepalive-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; for p in ${pids[*]:-}; do kill -TERM "$p" 2>/dev/null; done'

keepalive old
wait_for 10 test -s "$TMP/keepalive-old.port" || die "keep-alive client did not connect"

pids=()
for node in $(jq -r '.nodes[].name' $STATE); do
	"$SONDE" agent --node "$node" --sensors latency --interval 1s \
		--output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	wait_for 20 grep -q "latency receiver attached to flannel.1" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
now() { date +%s%N; }

sleep 4
T_NEW=$(now)
keepalive new
wait_for 10 test -s "$TMP/keepalive-new.port" || die "second keep-alive client did not connect"
B0=$(now)
sleep 8
B1=$(now)
lab delay --node "$R2_NODE" 20ms >/dev/null || die "lab delay failed"
sleep 2 # let intervals that straddle the change pass
D0=$(now)
sleep 8
D1=$(now)
lab delay --node "$R2_NODE" --clear >/dev/null || fail "lab delay --clear failed"
STATS=/run/sonde-lab/nodes/$R2_NODE/delayer-stats.json
wait_for 5 test -s "$STATS" || fail "no delayer statistics"
cp "$STATS" "$TMP/delayer-stats.json" 2>/dev/null

for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done
pids=()
cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
log "records: $(wc -l <"$TMP/all.jsonl")"
jq -e . "$TMP/all.jsonl" >/dev/null || fail "agent output is not JSON lines"

# Median over the intervals fully inside [from, to) of the per-interval p50.
median_p50() { # src dst hop from to
	jq -r --arg s "$1" --arg d "$2" --arg h "$3" --argjson a "$4" --argjson b "$5" \
		'select(.kind == "latency" and .src.ip == $s and .dst.ip == $d and .hop == $h
		        and .start_ns >= $a and .time_ns <= $b) | .p50_ns' "$TMP/all.jsonl" |
		sort -n | awk '{v[NR] = $1} END { if (NR) print v[int((NR + 1) / 2)]; else print "none" }'
}

# Fig. 12 fields and attribution of one reviews-v2 -> ratings record.
rec=$(jq -c --arg s "$R2_IP" --arg d "$RT_IP" \
	'select(.src.ip == $s and .dst.ip == $d and .hop == "vxlan_ingress")' "$TMP/all.jsonl" | head -1)
assert_eq "$RT_IP ratings-v1 $R2_IP reviews-v2 latency bookinfo $R2_NODE $RT_NODE $RT_NODE" \
	"$(jq -r '"\(.DSTNode) \(.DSTworkload) \(.SRCNode) \(.SRCworkload) \(.sensorType) \(.serviceName) \(.src_node) \(.dst_node) \(.node)"' <<<"$rec")" \
	"Fig. 12 fields of a reviews-v2 -> ratings record"
assert_eq "ratings reviews true" "$(jq -r '"\(.dst.service) \(.src.service) \(.duration == .p50_ns)"' <<<"$rec")" \
	"services named; duration is the interval's median"
rec=$(jq -c --arg s "$RT_CIP" --arg d "$R2_IP" 'select(.src.ip == $s and .dst.ip == $d)' "$TMP/all.jsonl" | head -1)
assert_eq "pod_veth ratings true null" "$(jq -r '"\(.hop) \(.src.service) \(.src.cluster_ip) \(.SRCworkload)"' <<<"$rec")" \
	"replies from ratings' cluster IP at reviews-v2's veth: attributed to the service"

# reviews-v2 called ratings' cluster IP: at reviews-v2's veth the replies
# come from that address (the DNAT was undone on its node), and so they
# are recorded, as the service.
for hop in vxlan_ingress pod_veth; do
	rsrc=$RT_IP
	[ $hop = pod_veth ] && rsrc=$RT_CIP
	fwd0=$(median_p50 "$R2_IP" "$RT_IP" $hop "$B0" "$B1")
	rev0=$(median_p50 "$rsrc" "$R2_IP" $hop "$B0" "$B1")
	fwd1=$(median_p50 "$R2_IP" "$RT_IP" $hop "$D0" "$D1")
	rev1=$(median_p50 "$rsrc" "$R2_IP" $hop "$D0" "$D1")
	log "$hop: reviews-v2 -> ratings p50 $fwd0 -> $fwd1 ns; ratings -> reviews-v2 p50 $rev0 -> $rev1 ns"
	for v in "$fwd0" "$rev0" "$fwd1" "$rev1"; do
		[ "$v" != none ] || { fail "$hop: a window has no record"; continue 2; }
	done
	# Undelayed one-way time between pods on one kernel: microseconds
	# (a few us here; hundreds on a loaded machine), never ms.
	assert_between 500 2000000 "$fwd0" "$hop: undelayed reviews-v2 -> ratings p50 (ns)"
	assert_between 500 2000000 "$rev0" "$hop: undelayed ratings -> reviews-v2 p50 (ns)"
	rise=$((fwd1 - fwd0))
	truth=$(jq -r '.added_delay_us.p50 * 1000 | floor' "$TMP/delayer-stats.json" 2>/dev/null || echo 20000000)
	log "$hop: rise $rise ns; the delayer's own p50 added delay $truth ns"
	assert_between "$(awk -v t="$truth" 'BEGIN{print t * 0.99}')" "$(awk -v t="$truth" 'BEGIN{print t * 1.01}')" \
		"$rise" "$hop: rise of reviews-v2 -> ratings vs the delayer's measured delay (ns)"
	assert_between 19800000 20200000 "$rise" "$hop: rise vs the nominal 20 ms (ns)"
	assert_between -200000 200000 "$((rev1 - rev0))" "$hop: change of ratings -> reviews-v2 (ns), unchanged"
done

# Per-hop: the pod veth record splits the path at the node's ingress; the
# delay is all upstream of it (on the sender node's uplink).
hops() { # from to
	jq -r --arg s "$R2_IP" --arg d "$RT_IP" --argjson a "$1" --argjson b "$2" \
		'select(.src.ip == $s and .dst.ip == $d and .hop == "pod_veth" and .start_ns >= $a and .time_ns <= $b)
		 | "\(.hops.sender_to_node_p50_ns) \(.hops.node_to_pod_p50_ns)"' "$TMP/all.jsonl" |
		sort -n -k2 | awk '{ a[NR] = $1; b[NR] = $2 } END { m = int((NR + 1) / 2); print a[m], b[m] }'
}
read -r up0 seg0 < <(hops "$B0" "$B1")
read -r up1 seg1 < <(hops "$D0" "$D1")
log "hops: sender -> node $up0 -> $up1 ns, node -> pod $seg0 -> $seg1 ns"
assert_between 0 1000000 "${seg0:-x}" "node ingress -> pod segment, undelayed (ns)"
assert_between 0 1000000 "${seg1:-x}" "node ingress -> pod segment, delayed: unchanged (ns)"
assert_between 19800000 20400000 "${up1:-x}" "sender -> node ingress segment carries the delay (ns)"

# Existing connections: none of the old keep-alive connection's packets,
# the new one's from its start on.
before=$(jq -r --arg s "$LG_IP" --arg d "$DT_IP" --argjson t "$T_NEW" \
	'select((.src.ip == $s and .dst.ip == $d) or (.src.ip == $d and .dst.ip == $s)) | select(.time_ns <= $t) | .count' \
	"$TMP/all.jsonl" | awk '{n += $1} END {print n + 0}')
after=$(jq -r --arg s "$LG_IP" --arg d "$DT_IP" --argjson t "$B0" \
	'select(.src.ip == $s and .dst.ip == $d and .hop == "pod_veth") | select(.start_ns >= $t) | .count' \
	"$TMP/all.jsonl" | awk '{n += $1} END {print n + 0}')
assert_eq 0 "$before" "samples loadgen <-> details while only the pre-agent connection ran"
assert_between 20 100000 "$after" "samples loadgen -> details once a post-agent connection runs"

for node in $(jq -r '.nodes[].name' $STATE); do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "latency")')
	assert_eq "running 0 0 0" "$(jq -r '"\(.state) \(.rx_negative) \(.tx_store_failed) \(.tx_reserve_failed)"' <<<"$st")" \
		"$node: running, no negative time, no stamp failed"
	# A pair's first sample allocates its histogram in softirq context,
	# which can fail while the allocator refills: rare, counted.
	assert_between 0 "$(jq -r '.rx_measured / 100' <<<"$st")" "$(jq -r .rx_map_full <<<"$st")" \
		"$node: samples lost to histogram allocation (<= 1 %)"
	assert_between 1 1000000000 "$(jq -r .tx_stamped <<<"$st")" "$node: segments stamped"
done

done_testing
