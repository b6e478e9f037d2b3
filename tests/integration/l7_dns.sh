#!/usr/bin/env bash
# l7 sensor, DNS and detection by content on any port. Ground truth: dig's
# own answers (status, id, answer count), the DNS servers' query logs, and
# python's http.server access log.
#  - dig A, AAAA, SRV, NXDOMAIN over UDP and TCP to kube-dns (10.96.0.10):
#    client-side records in the querying pod with dig's id, type and rcode,
#    server-side records in the coredns pod;
#  - every query that kube-dns logged in the window (the pods' own lookups
#    included) has its server-side record;
#  - a dnsmasq on port 5353 in a pod: NOERROR, SERVFAIL (its upstream, a
#    stub in the pod, answers SERVFAIL) and a timeout (an upstream that never
#    answers: the forwarded query is recorded as a timeout);
#  - HTTP on port 31337 (python3 -m http.server in a pod): both sides
#    recorded, query string redacted on one node, kept with --no-redact on
#    the other.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing (scripts/deps.sh installs it)"

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
pod() { jq -r --arg w "$1" '.pods[] | select(.workload == $w) | .'"$2" $STATE; }

# The test's own servers, stopped at exit (only the processes we started).
ON_EXIT='for p in ${mine:-}; do kill $p 2>/dev/null; done'
mine=""

pp_ip=$(pod productpage-v1 ip) pp_node=$(pod productpage-v1 node)
lg_node=$(pod loadgen node) lg_ip=$(pod loadgen ip)
dt_ip=$(pod details-v1 ip)
dns_dir=$(pod coredns dir) dns_pod=$(pod coredns name) dns_node=$(pod coredns node)
[ "$pp_node" != "$lg_node" ] || die "placement: productpage and loadgen on one node"

pids=()
for node in $(jq -r '.nodes[].name' $STATE); do
	extra=()
	[ "$node" = "$lg_node" ] && extra=(--no-redact)
	"$SONDE" agent --node "$node" --sensors l7 "${extra[@]}" --output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	wait_for 30 grep -q "l7 sensor attached" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
sleep 2
dns_log_start=$(wc -l <"$dns_dir/dnsmasq.log")

# --- dig against kube-dns: UDP and TCP, four kinds of answer
: >"$TMP/dig.txt"
for t in +notcp +tcp; do
	for q in "details.bookinfo.svc.cluster.local A" "details.bookinfo.svc.cluster.local AAAA" \
		"_http._tcp.details.bookinfo.svc.cluster.local SRV" "nosuch.bookinfo.svc.cluster.local A"; do
		set -- $q
		out=$(lab exec loadgen -- dig "$t" +time=2 +tries=1 @10.96.0.10 "$1" "$2")
		id=$(sed -n 's/.*status: \([A-Z]*\), id: \([0-9]*\).*/\2/p' <<<"$out")
		st=$(sed -n 's/.*status: \([A-Z]*\), id: \([0-9]*\).*/\1/p' <<<"$out")
		an=$(sed -n 's/.*ANSWER: \([0-9]*\),.*/\1/p' <<<"$out")
		echo "$t $1 $2 $id $st $an" >>"$TMP/dig.txt"
	done
done
grep -q " NXDOMAIN " "$TMP/dig.txt" || fail "dig saw no NXDOMAIN: $(cat "$TMP/dig.txt")"

# --- a pod's own lookups (curl's getaddrinfo: A and AAAA at once)
lab exec loadgen -- curl -s -o /dev/null http://details.bookinfo.svc.cluster.local:9080/details/0 ||
	fail "curl by service name failed"

# --- DNS on 5353: a dnsmasq in the details pod, with a SERVFAIL upstream
# and an upstream that never answers.
lab exec details -- python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 5398))
while True:
    d, a = s.recvfrom(4096)
    if len(d) >= 12:  # same id and question, QR set, rcode SERVFAIL
        s.sendto(d[:2] + bytes([0x80 | (d[2] & 0x79), 0x82]) + d[4:], a)
' &
mine="$mine $!"
lab exec details -- dnsmasq --keep-in-foreground --port 5353 --no-resolv --no-hosts \
	--listen-address="$dt_ip" --bind-interfaces --address=/test.l7/10.1.2.3 \
	--server=/servfail.l7/127.0.0.1#5398 --server=/dead.l7/127.0.0.1#5399 \
	--log-queries --log-facility="$TMP/dnsmasq5353.log" --pid-file="$TMP/dm5353.pid" --user=root &
mine="$mine $!"
wait_for 10 lab exec loadgen -- dig +time=1 +tries=1 @"$dt_ip" -p 5353 ready.test.l7 A ||
	die "dnsmasq on 5353 did not answer"
sleep 1
for q in a.test.l7 b.servfail.l7 c.dead.l7; do
	out=$(lab exec loadgen -- dig +time=3 +tries=1 @"$dt_ip" -p 5353 "$q" A)
	st=$(sed -n 's/.*status: \([A-Z]*\), id: \([0-9]*\).*/\1/p' <<<"$out")
	id=$(sed -n 's/.*status: \([A-Z]*\), id: \([0-9]*\).*/\2/p' <<<"$out")
	echo "5353 $q $st $id" >>"$TMP/dig5353.txt"
done
assert_eq "a.test.l7 NOERROR" "$(awk '$2 == "a.test.l7" { print $2, $3 }' "$TMP/dig5353.txt")" "dig: NOERROR on 5353"
assert_eq "b.servfail.l7 SERVFAIL" "$(awk '$2 == "b.servfail.l7" { print $2, $3 }' "$TMP/dig5353.txt")" "dig: SERVFAIL from the failing dnsmasq"

# --- HTTP on 31337 in the productpage pod, called from loadgen
lab exec productpage -- python3 -m http.server 31337 --bind "$pp_ip" --directory /tmp 2>"$TMP/pyhttp.log" &
mine="$mine $!"
wait_for 10 lab exec loadgen -- curl -sf -o /dev/null "http://$pp_ip:31337/" || die "http.server on 31337 did not answer"
code=$(lab exec loadgen -- curl -s -o /dev/null -w '%{http_code}' "http://$pp_ip:31337/nope?token=s3cret")
assert_eq 404 "$code" "curl to :31337"

sleep 6.5 # past the 5 s DNS timeout: the unanswered forward is reported
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done
cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
log "records: $(wc -l <"$TMP/all.jsonl")"

# dig's queries, client side (loadgen) and server side (coredns).
while read -r t name type id st an; do
	proto=udp
	[ "$t" = +tcp ] && proto=tcp
	c=$(jq -r --arg n "$name" --arg ty "$type" --argjson id "$id" --arg p "$proto" --arg lg "$lg_ip" \
		'select(.kind == "dns" and .side == "client" and .src.ip == $lg and .qname == $n and .qtype == $ty and .txid == $id and .proto == $p)
		 | "\(.rcode) \(.answers) \(.dst.service)"' "$TMP/$lg_node.jsonl")
	assert_eq "$st $an kube-dns" "$c" "client record: $proto $name $type id $id"
	s=$(jq -r --arg n "$name" --arg ty "$type" --argjson id "$id" --arg p "$proto" --arg lg "$lg_ip" --arg dp "$dns_pod" \
		'select(.kind == "dns" and .side == "server" and .src.ip == $lg and .qname == $n and .qtype == $ty and .txid == $id and .proto == $p and .dst.pod == $dp)
		 | "\(.rcode) \(.answers)"' "$TMP/$dns_node.jsonl")
	assert_eq "$st $an" "$s" "server record in $dns_pod: $proto $name $type id $id"
done <"$TMP/dig.txt"

# Every query kube-dns logged since the agents started has its server-side
# record (type, name, client ip): the pods' own lookups included.
tail -n +"$((dns_log_start + 1))" "$dns_dir/dnsmasq.log" |
	sed -n 's/.*query\[\([A-Z0-9]*\)\] \([^ ]*\) from \([0-9.]*\)$/\1 \2 \3/p' | sort >"$TMP/dns.truth"
jq -r --arg dp "$dns_pod" 'select(.kind == "dns" and .side == "server" and .dst.pod == $dp) | "\(.qtype) \(.qname) \(.src.ip)"' \
	"$TMP/$dns_node.jsonl" | sort >"$TMP/dns.got"
assert_ne 0 "$(wc -l <"$TMP/dns.truth")" "kube-dns logged queries"
assert_eq "" "$(diff "$TMP/dns.truth" "$TMP/dns.got")" "kube-dns' query log = its server-side records"
# curl's own lookups, client side: A and AAAA of the details service.
n=$(jq -r --arg lg "$lg_ip" 'select(.kind == "dns" and .side == "client" and .src.ip == $lg and .qname == "details.bookinfo.svc.cluster.local" and .comm != "isc-net-0000") | .qtype' \
	"$TMP/$lg_node.jsonl" | sort -u | tr '\n' ' ')
assert_eq "A AAAA " "$n" "curl's getaddrinfo lookups recorded from the loadgen pod"

# Port 5353: dig's view and dnsmasq's own forward to the dead upstream.
while read -r _ name st id; do
	want="$st false"
	[ -z "$st" ] && want="TIMEOUT true" # dig itself gave up
	got=$(jq -r --arg n "$name" 'select(.kind == "dns" and .side == "client" and .qname == $n and .dst.port == 5353)
		| "\(.rcode) \(.timeout)"' "$TMP/$lg_node.jsonl" | head -1)
	assert_eq "$want" "$got" "client record for $name on port 5353"
done <"$TMP/dig5353.txt"
got=$(jq -r 'select(.kind == "dns" and .side == "client" and .qname == "c.dead.l7" and .dst.port == 5399) | "\(.rcode) \(.timeout) \(.comm)"' \
	"$TMP/$lg_node.jsonl" | head -1)
assert_eq "TIMEOUT true dnsmasq" "$got" "dnsmasq's unanswered forward recorded as a timeout"
got=$(jq -r 'select(.kind == "dns" and .side == "client" and .qname == "b.servfail.l7" and .dst.port == 5398) | .rcode' \
	"$TMP/$lg_node.jsonl" | head -1)
assert_eq SERVFAIL "$got" "dnsmasq's forward answered SERVFAIL by its upstream"

# HTTP on 31337: server side redacted, client side (--no-redact) whole.
grep -q '"GET /nope?token=s3cret HTTP/1.1" 404' "$TMP/pyhttp.log" || fail "http.server did not log the request"
s=$(jq -r --arg ip "$pp_ip" 'select(.kind == "http" and .side == "server" and .dst.ip == $ip and .dst.port == 31337 and .status == 404)
	| "\(.method) \(.uri) \(.version) \(.src.workload) \(.dst.workload)"' "$TMP/$pp_node.jsonl")
assert_eq "GET /nope?<redacted> HTTP/1.1 loadgen productpage-v1" "$s" "server record on :31337, query redacted"
c=$(jq -r --arg ip "$pp_ip" 'select(.kind == "http" and .side == "client" and .dst.ip == $ip and .dst.port == 31337 and .status == 404)
	| "\(.method) \(.uri) \(.comm)"' "$TMP/$lg_node.jsonl")
assert_eq "GET /nope?token=s3cret curl" "$c" "client record on :31337 with --no-redact"

for node in $(jq -r '.nodes[].name' $STATE); do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "l7")')
	log "$node status: $st"
	assert_eq 0 "$(jq -r '.lost_ringbuf_full + .lost_syscall_map_full + .lost_seq_holes' <<<"$st")" "$node: nothing lost"
done

done_testing
