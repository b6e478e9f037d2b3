#!/usr/bin/env bash
# lab_dns: kube-dns at 10.96.0.10 (dnsmasq in the coredns pod, reached
# through the kube-dns cluster IP DNAT) answers every service name with its
# cluster IP, over UDP and TCP, from a pod on the DNS pod's node and from one
# on another node; unknown names get NXDOMAIN; short names resolve through
# the pod's search path. Ground truth: dig's own answer and transport, the
# services actually answering on the IPs DNS gives, the DNS server's query
# log, and the nat rule counters in the client's node.
source "$(dirname "$0")/../lib.sh"

STATE=/run/sonde-lab/state.json
host_resolv_before=$(cat /etc/resolv.conf)
lab_fresh_up --rate 0

dns_node=$(pod_field coredns .node)
# One client on kube-dns' node (same-node DNAT: needs br_netfilter), one not.
near=$(jq -r --arg n "$dns_node" '[.pods[] | select(.node == $n and .namespace == "bookinfo")][0].name' "$STATE")
far=$(jq -r --arg n "$dns_node" '[.pods[] | select(.node != $n and .namespace == "bookinfo")][0].name' "$STATE")
log "kube-dns on $dns_node; clients: $near (same node), $far (other node)"
if [ "$near" = null ] || [ "$far" = null ]; then die "placement gave no near/far client"; fi

mapfile -t svcs < <(jq -r '.services[] | "\(.name).\(.namespace).svc.cluster.local \(.cluster_ip) \(.ports[0].port)"' "$STATE")
assert_eq 5 "${#svcs[@]}" "the state lists kube-dns and the four Bookinfo services"

for client in "$near" "$far"; do
	for line in "${svcs[@]}"; do
		read -r fqdn ip port <<<"$line"
		got=$(lab exec "$client" -- dig +short +time=2 +tries=1 @10.96.0.10 "$fqdn" A)
		assert_eq "$ip" "$got" "$client: UDP $fqdn"
		out=$(lab exec "$client" -- dig +time=2 +tries=1 +tcp @10.96.0.10 "$fqdn" A)
		got=$(awk '/^;; ANSWER SECTION/ { a = 1; next } a && NF == 0 { a = 0 } a { print $5 }' <<<"$out")
		assert_eq "$ip" "$got" "$client: TCP $fqdn"
		assert_contains "$out" "(TCP)" "$client: dig used TCP for $fqdn"
	done
done

# The IPs DNS hands out really are the services: each answers as a pod of
# that service (this does not rely on the state being right).
for line in "${svcs[@]}"; do
	read -r fqdn ip port <<<"$line"
	svc=${fqdn%%.*}
	[ "$svc" = kube-dns ] && continue
	body=$(lab exec "$far" -- curl -sS -m 5 "http://$ip:$port/health")
	assert_contains "$body" "\"pod\": \"$svc-v" "cluster IP $ip of $svc is served by a $svc pod"
done

# Unknown names inside cluster.local: NXDOMAIN, over UDP and TCP.
for t in +notcp +tcp; do
	out=$(lab exec "$far" -- dig "$t" +time=2 +tries=1 @10.96.0.10 nosuch.bookinfo.svc.cluster.local A)
	assert_contains "$out" "status: NXDOMAIN" "unknown service name gets NXDOMAIN ($t)"
done

# Short names, through each pod's resolv.conf (search <ns>.svc.cluster.local ...).
rat_ip=$(jq -r '.services[] | select(.name == "ratings") | .cluster_ip' "$STATE")
for client in "$near" "$far"; do
	got=$(lab exec "$client" -- getent hosts ratings | awk '{ print $1 }')
	assert_eq "$rat_ip" "$got" "$client: 'ratings' resolves through the search path"
	got=$(lab exec "$client" -- getent hosts ratings.bookinfo | awk '{ print $1 }')
	assert_eq "$rat_ip" "$got" "$client: 'ratings.bookinfo' resolves through the search path"
done
body=$(lab exec "$far" -- curl -sS -m 5 http://ratings:9080/ratings/0)
assert_contains "$body" '"pod": "ratings-v1-' "curl http://ratings:9080 reaches ratings"
got=$(lab exec coredns -- getent hosts kube-dns | awk '{ print $1 }')
assert_eq 10.96.0.10 "$got" "kube-system pod: 'kube-dns' resolves through its own namespace"
assert_eq "$host_resolv_before" "$(cat /etc/resolv.conf)" "the host's resolv.conf is untouched"
assert_contains "$(lab exec "$far" -- cat /etc/resolv.conf)" "search bookinfo.svc.cluster.local svc.cluster.local cluster.local" \
	"the pod sees its own resolv.conf"

# The queries reached dnsmasq from the client's own address (DNAT, no SNAT).
far_ip=$(lab exec "$far" -- ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }')
dlog=$(jq -r '.pods[] | select(.workload == "coredns") | .dir' "$STATE")/dnsmasq.log
assert_contains "$(cat "$dlog")" "query[A] nosuch.bookinfo.svc.cluster.local from $far_ip" \
	"dnsmasq logged the query from the client pod's address"

# TCP queries went through the kube-dns TCP rule of the client's node: its
# packet counter (first packet of each connection) grows by one per query.
far_node=$(pod_field "$far" .node)
tcp_count() {
	nsenter --net="/run/netns/sonde-$far_node" iptables-legacy -w -t nat -L KUBE-SERVICES -v -x -n |
		awk '/kube-system\/kube-dns:dns-tcp cluster IP/ { print $1 }'
}
before=$(tcp_count)
for _ in 1 2 3 4 5; do lab exec "$far" -- dig +short +tcp +time=2 +tries=1 ratings.bookinfo.svc.cluster.local >/dev/null; done
after=$(tcp_count)
assert_eq 5 "$((after - before))" "5 TCP queries = 5 new connections through the kube-dns TCP DNAT rule"

done_testing
