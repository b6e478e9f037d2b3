#!/usr/bin/env bash
# The latency sensor on real IPv6 traffic between lab pods on two nodes,
# through the VXLAN overlay (inner IPv6, outer IPv4 as flannel does). The lab
# is IPv4-only (IPv6 off in every netns), so this test turns IPv6 on where it
# needs it and adds, inside its own lab only, ULA addresses the flannel way: fd00:244:N::k/64 on pod 10.244.N.k's eth0, fd00:244:N::1 on
# node N's cni0, a route to every other node's /64 via a permanent
# neighbour on flannel.1 (the remote VTEP's MAC, which the lab's FDB already
# maps to the remote node). The agents get a metadata file in which the two
# pods' IPs are these IPv6 addresses. Ground truth: the messages the client
# sends, and the delay `sonde lab delay` adds on the client's node uplink
# (the delayer's own measurement).
source "$(dirname "$0")/../lib.sh"

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
# Server: loadgen (no listening ports in the metadata at --rate 0, so the
# receiver's port filter lets any port through to it). Client: a pod on
# another node.
SRV=$(pod_field loadgen .name) SRV4=$(pod_field loadgen .ip) SRV_NODE=$(pod_field loadgen .node)
CLI=$(jq -r --arg n "$SRV_NODE" '[.pods[] | select(.node != $n)][0].name' $STATE)
CLI4=$(pod_field "$CLI" .ip) CLI_NODE=$(pod_field "$CLI" .node) CLI_WL=$(pod_field "$CLI" .workload)
[ -n "$CLI" ] && [ "$CLI" != null ] || die "no pod on a node other than loadgen's"
v6() { IFS=. read -r _ _ n k <<<"$1"; echo "fd00:244:$n::$k"; }
SRV6=$(v6 "$SRV4") CLI6=$(v6 "$CLI4")
log "server $SRV [$SRV6] on $SRV_NODE, client $CLI [$CLI6] on $CLI_NODE"

# IPv6 on the overlay, every node.
for node in $(jq -r '.nodes[].name' $STATE); do
	n=${node#node-}
	# The lab turns IPv6 off in every netns; on only where this test needs it.
	nsenter --net=/run/netns/sonde-node-$n sh -c 'echo 0 >/proc/sys/net/ipv6/conf/cni0/disable_ipv6 &&
		echo 0 >/proc/sys/net/ipv6/conf/flannel.1/disable_ipv6 &&
		echo 1 >/proc/sys/net/ipv6/conf/all/forwarding' || die "$node: IPv6 on cni0/flannel.1, forwarding"
	ip -n sonde-node-$n addr add "fd00:244:$n::1/64" dev cni0 nodad || die "$node: cni0 address"
	ip -n sonde-node-$n addr add "fd00:245::$n/128" dev flannel.1 nodad || die "$node: flannel.1 address"
	for m in $(jq -r '.nodes[].name' $STATE); do
		m=${m#node-}
		[ "$m" = "$n" ] && continue
		ip -n sonde-node-$n -6 neigh replace "fd00:245::$m" lladdr "$(printf '02:5e:00:00:00:%02x' "$m")" \
			dev flannel.1 nud permanent || die "$node: neighbour of node-$m"
		ip -n sonde-node-$n -6 route add "fd00:244:$m::/64" via "fd00:245::$m" dev flannel.1 onlink ||
			die "$node: route to node-$m"
	done
done
for p in "$SRV:$SRV4" "$CLI:$CLI4"; do
	name=${p%%:*} ip4=${p#*:}
	IFS=. read -r _ _ n _ <<<"$ip4"
	nsenter --net="/run/netns/sonde-pod-$name" sh -c 'echo 0 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6' ||
		die "$name: IPv6 on eth0"
	ip -n "sonde-pod-$name" addr add "$(v6 "$ip4")/64" dev eth0 nodad || die "$name: address"
	ip -n "sonde-pod-$name" -6 route add default via "fd00:244:$n::1" || die "$name: route"
done
lab exec "$CLI" -- ping -6 -c 2 -W 2 "$SRV6" >"$TMP/ping.txt" 2>&1 ||
	die "no IPv6 path $CLI -> $SRV: $(cat "$TMP/ping.txt")"

# An IPv4 twin on the same two nodes, the same traffic, at the same time:
# two other pods, so that an IPv6-specific error would show as a
# difference between the two families on one path.
SRV2=$(jq -r --arg n "$SRV_NODE" --arg x "$SRV" '[.pods[] | select(.node == $n and .name != $x)][0].name' $STATE)
CLI2=$(jq -r --arg n "$CLI_NODE" --arg x "$CLI" '[.pods[] | select(.node == $n and .name != $x)][0].name' $STATE)
SRV24=$(pod_field "$SRV2" .ip) CLI24=$(pod_field "$CLI2" .ip)
[ "$SRV2" != null ] && [ "$CLI2" != null ] || die "no second pod on each node for the IPv4 twin"
log "IPv4 twin: $CLI2 [$CLI24] -> $SRV2 [$SRV24]"

# The agents see the two pods by their IPv6 addresses; the IPv4 twin's
# server loses its listening ports, so that the receivers' port filter
# lets the echo port through.
jq --arg s "$SRV" --arg s6 "$SRV6" --arg c "$CLI" --arg c6 "$CLI6" --arg s2 "$SRV2" \
	'.pods |= map(if .name == $s then .ip = $s6 elif .name == $c then .ip = $c6
	              elif .name == $s2 then .ports = [] else . end)' \
	$STATE >"$TMP/meta.json"

# Echo servers on [::]:5555 and 0.0.0.0:5556; each client sends one small
# message every 50 ms and logs what it sent.
ECHO='
import socket, sys, threading
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2]))); ls.listen(4)
def serve(c):
    while True:
        b = c.recv(4096)
        if not b: return
        c.sendall(b)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'
lab exec "$SRV" -- /usr/bin/python3 -c "$ECHO" :: 5555 >"$TMP/server.log" 2>&1 &
SRV_PID=$!
lab exec "$SRV2" -- /usr/bin/python3 -c "$ECHO" 0.0.0.0 5556 >"$TMP/server2.log" 2>&1 &
SRV2_PID=$!
pids=()
ON_EXIT='kill $SRV_PID $SRV2_PID ${CLIENT_PID:-} ${CLIENT2_PID:-} 2>/dev/null; for p in ${pids[*]:-}; do kill -TERM "$p" 2>/dev/null; done'
listening() { lab exec "$1" -- ss -Hltn "sport = :$2" | grep -q "$2"; }
wait_for 10 listening "$SRV" 5555 || die "echo server did not listen"
wait_for 10 listening "$SRV2" 5556 || die "IPv4 echo server did not listen"

for node in $(jq -r '.nodes[].name' $STATE); do
	"$SONDE" agent --node "$node" --sensors latency --interval 1s --metadata "$TMP/meta.json" \
		--output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	wait_for 20 grep -q "latency receiver attached to flannel.1" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
sleep 1.5 # one rescan

now() { date +%s%N; }
CLIENT='
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
n = 0
end = time.time() + float(sys.argv[3])
while time.time() < end:
    s.sendall(b"ping"); s.recv(64); n += 1
    print(n, time.time_ns(), flush=True)
    time.sleep(0.05)
'
lab exec "$CLI" -- /usr/bin/python3 -c "$CLIENT" "$SRV6" 5555 20 >"$TMP/client.log" 2>&1 &
CLIENT_PID=$!
lab exec "$CLI2" -- /usr/bin/python3 -c "$CLIENT" "$SRV24" 5556 20 >"$TMP/client2.log" 2>&1 &
CLIENT2_PID=$!
sleep 1
B0=$(now)
sleep 7
B1=$(now)
lab delay --node "$CLI_NODE" 20ms >/dev/null || die "lab delay failed"
sleep 1.5
D0=$(now)
sleep 7
D1=$(now)
lab delay --node "$CLI_NODE" --clear >/dev/null || fail "lab delay --clear failed"
wait "$CLIENT_PID" || fail "client exited with $?"
wait "$CLIENT2_PID" || fail "IPv4 client exited with $?"
CLIENT_PID= CLIENT2_PID=
STATS=/run/sonde-lab/nodes/$CLI_NODE/delayer-stats.json
wait_for 5 test -s "$STATS" || fail "no delayer statistics"
cp "$STATS" "$TMP/delayer-stats.json" 2>/dev/null
log "delayer: $(jq -c .added_delay_us "$TMP/delayer-stats.json" 2>/dev/null)"
sleep 1.2
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done
pids=()
cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"

sent=$(awk -v a="$B0" -v b="$D1" '$2 >= a && $2 < b' "$TMP/client.log" | wc -l)
log "client sent $(tail -1 "$TMP/client.log" | cut -d' ' -f1) messages, $sent in the two windows"
sel() { # hop from to [src dst] -> records client -> server at hop in [from, to)
	jq -c --arg s "${4:-$CLI6}" --arg d "${5:-$SRV6}" --arg h "$1" --argjson a "$2" --argjson b "$3" \
		'select(.kind == "latency" and .src.ip == $s and .dst.ip == $d and .hop == $h
		        and .start_ns >= $a and .time_ns <= $b)' "$TMP/all.jsonl"
}
median_p50() { sel "$@" | jq -r .p50_ns | sort -n | awk '{v[NR] = $1} END { if (NR) print v[int((NR + 1) / 2)]; else print "none" }'; }

rec=$(jq -c --arg s "$CLI6" --arg d "$SRV6" 'select(.src.ip == $s and .dst.ip == $d)' "$TMP/all.jsonl" | head -1)
[ -n "$rec" ] || die "no IPv6 record $CLI6 -> $SRV6: $(grep -c . "$TMP/all.jsonl") records in all"
assert_eq "$CLI_WL loadgen $CLI_NODE $SRV_NODE" \
	"$(jq -r '"\(.src.workload) \(.dst.workload) \(.src_node) \(.dst_node)"' <<<"$rec")" \
	"an IPv6 record names both pods' workloads and nodes"
for hop in vxlan_ingress pod_veth; do
	n=$( { sel $hop "$B0" "$B1"; sel $hop "$D0" "$D1"; } | jq -s 'map(.count) | add // 0')
	w=$(awk -v a="$B0" -v b="$B1" -v c="$D0" -v d="$D1" '($2 >= a && $2 < b) || ($2 >= c && $2 < d)' "$TMP/client.log" | wc -l)
	# Intervals straddling a window edge are left out, so up to two
	# seconds' messages (2 x 2 x 20) of each window may be missing.
	assert_between $((w - 80)) $((w * 3)) "$n" "$hop: IPv6 samples client -> server vs $w messages sent in the windows"
	p0=$(median_p50 $hop "$B0" "$B1") p1=$(median_p50 $hop "$D0" "$D1")
	log "$hop: p50 $p0 ns undelayed, $p1 ns with 20 ms on $CLI_NODE"
	assert_between 500 2000000 "$p0" "$hop: undelayed IPv6 one-way p50 (ns)"
	truth=$(jq -r '.added_delay_us.p50 * 1000 | floor' "$TMP/delayer-stats.json" 2>/dev/null || echo 20000000)
	# The delayer stamps a packet's release just before its verdict; the
	# reinjection and what queues behind it come on top, more so on a
	# busy machine (agent_latency.sh holds IPv4 to 1 % on a quiet one).
	assert_between "$(awk -v t="$truth" 'BEGIN{print t * 0.995}')" "$(awk -v t="$truth" 'BEGIN{print t * 1.025}')" \
		"$((p1 - p0))" "$hop: rise of the IPv6 one-way p50 vs the delayer's own p50 ($truth ns)"
	q0=$(median_p50 $hop "$B0" "$B1" "$CLI24" "$SRV24") q1=$(median_p50 $hop "$D0" "$D1" "$CLI24" "$SRV24")
	log "$hop: IPv4 twin p50 $q0 ns undelayed, $q1 ns delayed: rise $((q1 - q0)) ns (IPv6: $((p1 - p0)) ns)"
	assert_between -100000 100000 "$(((p1 - p0) - (q1 - q0)))" \
		"$hop: IPv6 rise minus the IPv4 twin's rise on the same path (ns)"
done
for node in $(jq -r '.nodes[].name' $STATE); do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "latency")')
	assert_eq "0 0" "$(jq -r '"\(.rx_negative) \(.tx_store_failed)"' <<<"$st")" "$node: no negative time, no stamp failed"
done
done_testing
