#!/usr/bin/env bash
# lab_nodes8: an 8-node lab. Every node reaches every other node's pod subnet
# over the VXLAN overlay (and the packets really go through flannel.1 and the
# underlay), every server pod answers a pod on another node by pod IP, and
# Bookinfo still answers end to end. Ground truth: ping, curl, the kernel's
# interface counters.
source "$(dirname "$0")/../lib.sh"

STATE=/run/sonde-lab/state.json
NODES=8
lab_fresh_up --nodes "$NODES" --rate 0

assert_eq "$NODES" "$(ip netns list | grep -c '^sonde-node-')" "$NODES node netns"
tx_packets() { ip -n "sonde-node-$1" -s -j link show dev "$2" | jq '.[0].stats64.tx.packets'; }

# Node n -> remote cni0 address 10.244.m.1, for every pair.
bad=0
for ((n = 1; n <= NODES; n++)); do
	vx_before=$(tx_packets "$n" flannel.1)
	up_before=$(tx_packets "$n" eth0)
	for ((m = 1; m <= NODES; m++)); do
		((m == n)) && continue
		if ! nsenter --net="/run/netns/sonde-node-$n" ping -n -q -c 1 -W 2 "10.244.$m.1" >/dev/null; then
			fail "node-$n cannot reach node-$m's pod subnet (10.244.$m.1)"
			bad=$((bad + 1))
		fi
	done
	# 7 echo requests left through the VXLAN device, then the uplink.
	assert_between $((NODES - 1)) $((NODES + 20)) $(($(tx_packets "$n" flannel.1) - vx_before)) "node-$n: packets out of flannel.1 during its pings"
	assert_between $((NODES - 1)) $((NODES + 40)) $(($(tx_packets "$n" eth0) - up_before)) "node-$n: packets out of the uplink during its pings"
	# Static overlay: one route, one permanent neighbour, one FDB entry per remote node.
	assert_eq $((NODES - 1)) "$(ip -n "sonde-node-$n" route show dev flannel.1 | grep -c onlink)" "node-$n: onlink routes via flannel.1"
	assert_eq $((NODES - 1)) "$(ip -n "sonde-node-$n" neigh show dev flannel.1 nud permanent | grep -c lladdr)" "node-$n: permanent VTEP neighbours"
	assert_eq $((NODES - 1)) "$(bridge -n "sonde-node-$n" fdb show dev flannel.1 | grep -c 'dst 172\.30\.0\.')" "node-$n: FDB entries to remote VTEPs"
done
assert_eq 0 "$bad" "all $((NODES * (NODES - 1))) node pairs reach each other over the overlay"

# Pod to pod across nodes: loadgen to every server by pod IP.
lg_node=$(pod_field loadgen .node)
while read -r name ip node port; do
	[ "$port" = 9080 ] || continue
	body=$(lab exec loadgen -- curl -sS -m 5 "http://$ip:9080/health")
	assert_contains "$body" "\"pod\": \"$name\"" "loadgen ($lg_node) -> $name ($node) by pod IP"
done < <(jq -r '.pods[] | "\(.name) \(.ip) \(.node) \(.ports[0] // 0)"' "$STATE")
assert_eq 8 "$(jq -r '[.pods[].node] | unique | length' "$STATE")" "the 8 pods are spread over the 8 nodes"

# Bookinfo end to end.
code=$(lab exec loadgen -- curl -sS -o "$TMP/page" -w '%{http_code}' http://productpage.bookinfo.svc.cluster.local:9080/productpage)
assert_eq 200 "$code" "productpage answers with 8 nodes"
assert_contains "$(cat "$TMP/page")" '"pod": "details-v1-' "the page has details' content"
assert_contains "$(cat "$TMP/page")" '"pod": "reviews-v' "the page has reviews' content"

done_testing
