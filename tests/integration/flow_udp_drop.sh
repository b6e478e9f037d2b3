#!/usr/bin/env bash
# flow sensor, UDP and drops against the applications' and the kernel's own
# numbers:
#  - iperf3 -u between pods on different nodes: payload bytes and datagrams
#    counted at both ends against iperf3's --json (within 0.1 %);
#  - a tc filter in a pod that drops its ICMP (a direct-action BPF
#    classifier: this kernel has no act_gact): the drop records carry the
#    kernel's drop reason (TC_EGRESS) and the pod, and their packet count
#    equals the clsact qdisc's own drop counter.
source "$(dirname "$0")/../lib.sh"

PORT=5298
source "$(dirname "$0")/../lib_flow.sh"

# 1. UDP: iperf3 -u, fixed datagram size
# The server netns' own UDP counters: datagrams delivered to a socket plus
# those dropped because its receive buffer was full = datagrams that arrived
# at the socket, which is where sonde counts (cgroup_skb ingress). iperf3's
# "received" is what it read: less when the buffer overflowed.
udp_arrived() {
	lab exec $SW -- cat /proc/net/snmp | awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) { if ($i == "InDatagrams") a = i; if ($i == "RcvbufErrors") b = i }; h = 1 } else print $a + $b }'
}
arrived0=$(udp_arrived)
lab exec $SW -- iperf3 -s -1 -p $PORT -J >"$TMP/udp.server.json" 2>&1 &
spid=$!
wait_for 10 bash -c "\"$SONDE\" lab exec $SW -- ss -ltn | grep -q :$PORT" || die "iperf3 server did not listen"
lab exec $CW -- iperf3 -c "$sip" -p $PORT -u -b 50M -l 1200 -t 3 -J >"$TMP/udp.client.json" 2>&1 ||
	die "iperf3 -u failed: $(head -c 300 "$TMP/udp.client.json")"
wait $spid
arrived=$(($(udp_arrived) - arrived0))

# 2. drops: a tc filter in the client pod drops its ICMP on egress
clang -O2 -g -target bpf -I/usr/include/"$(uname -m)"-linux-gnu \
	-c "$ROOT/tests/integration/bpf/tc_drop_icmp.bpf.c" -o "$TMP/tc_drop.o" || die "cannot build the tc fixture"
lab exec $CW -- tc qdisc add dev eth0 clsact || die "tc qdisc add failed"
lab exec $CW -- tc filter add dev eth0 egress bpf da obj "$TMP/tc_drop.o" sec tc || die "tc filter add failed"
lab exec $CW -- ping -n -q -c 20 -i 0.05 -W 0.2 "$sip" >/dev/null 2>&1
tc_drops=$(lab exec $CW -- tc -s qdisc show dev eth0 | awk '/qdisc clsact/ { c = 1 } c && /dropped/ { sub(",", "", $7); print $7; exit }')
lab exec $CW -- tc qdisc del dev eth0 clsact
sleep 1.2
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done

# UDP checks. The data flow is the pair (client pod, server pod:PORT);
# iperf3 counts payload bytes, as sonde does. Its first datagram (the UDP
# "connect", 4 bytes) is outside iperf3's count: within the tolerance.
sent=$(jq '.end.sum.bytes' "$TMP/udp.client.json")
recv=$(jq '.end.sum_received.bytes // .end.sum.bytes' "$TMP/udp.server.json")
pk_sent=$(jq '.end.sum.packets' "$TMP/udp.client.json")
log "iperf3 -u: client sent $sent bytes ($pk_sent datagrams), server received $recv"
sum_udp() { # node field
	jq -s --arg cip "$cip" --arg sip "$sip" --argjson port $PORT \
		'[.[] | select(.proto == "udp" and .event == "interval" and .src.ip == $cip and .dst.ip == $sip and .dst.port == $port) | .'"$2"'] | add // 0' \
		"$TMP/$1.jsonl"
}
within() { awk -v w="$1" -v p="$2" 'BEGIN { printf "%.0f %.0f\n", w * (1 - p / 1000), w * (1 + p / 1000) }'; }
read -r lo hi < <(within "$sent" 1)
assert_between "$lo" "$hi" "$(sum_udp $cnode bytes_out)" "client node: UDP bytes_out vs iperf3 sent (0.1 %)"
# Every datagram that arrived is a full 1200-byte one but the 4-byte connect.
read -r lo hi < <(within "$(( (arrived - 1) * 1200 + 4 ))" 1)
log "server netns: $arrived datagrams arrived (InDatagrams + RcvbufErrors); iperf3 read $recv bytes"
assert_between "$lo" "$hi" "$(sum_udp $snode bytes_in)" "server node: UDP bytes_in vs datagrams arrived x 1200 (0.1 %)"
assert_between "$((recv + 4))" "$((sent + 4))" "$(sum_udp $snode bytes_in)" "server node: UDP bytes_in between what iperf3 read and what it sent"
read -r lo hi < <(within "$arrived" 1)
assert_between "$lo" "$hi" "$(sum_udp $snode dgrams_in)" "server node: datagrams in vs the netns' UDP counters"
read -r lo hi < <(within "$pk_sent" 1)
assert_between "$lo" "$((hi + 2))" "$(sum_udp $cnode dgrams_out)" "client node: datagrams vs iperf3 packets"
attr=$(jq -r --arg cip "$cip" --argjson port $PORT \
	'select(.proto == "udp" and .event != "drop" and .src.ip == $cip and .dst.port == $port) | "\(.src.pod) \(.dst.pod) \(.dst.workload) \(.side)"' \
	"$TMP/$snode.jsonl" | sort -u)
assert_eq "$(pod $CW name) $(pod $SW name) $SW server" "$attr" "UDP records name both pods"

# Drop checks.
[ "${tc_drops:-0}" -gt 0 ] || fail "the tc filter dropped nothing (tc says '${tc_drops:-}')"
drops=$(jq -s --arg cip "$cip" --arg sip "$sip" \
	'[.[] | select(.event == "drop" and .src.ip == $cip and .dst.ip == $sip and .reason == "TC_EGRESS") | .packets] | add // 0' \
	"$TMP/$cnode.jsonl")
assert_eq "$tc_drops" "$drops" "TC_EGRESS drops recorded = clsact's dropped packets"
who=$(jq -r --arg cip "$cip" 'select(.event == "drop" and .src.ip == $cip and .reason == "TC_EGRESS") | "\(.src.pod) \(.src.workload) \(.proto)"' \
	"$TMP/$cnode.jsonl" | sort -u)
assert_eq "$(pod $CW name) $CW other" "$who" "drops name the pod"

for node in $cnode $snode; do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "flow")')
	log "$node status: $st"
	assert_eq 0 "$(jq -r .lost_ringbuf_full <<<"$st")" "$node: no event lost to a full ring buffer"
	assert_eq 0 "$(jq -r .udp_flows_evicted <<<"$st")" "$node: no UDP flow evicted"
	assert_eq 0 "$(jq -r .udp_untracked_map_full <<<"$st")" "$node: no UDP datagram uncounted"
done

done_testing
