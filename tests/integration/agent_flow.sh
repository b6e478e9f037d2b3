#!/usr/bin/env bash
# The first sensor end to end: one `sonde agent` per lab node sees the lab's
# TCP connections with the right pod IPs, pods, workloads and services.
# Ground truth: the nginx access logs (remote_addr/remote_port of every
# request, each on its own connection), curl's own local port, state.json.
source "$(dirname "$0")/../lib.sh"

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
REQUESTS=10

pids=()
for node in $(jq -r '.nodes[].name' $STATE); do
	"$SONDE" agent --node "$node" --output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	wait_for 20 grep -q "flow sensor attached" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
sleep 1.5 # one node rescan after attach: the pods' netns are in the filter
# Requests before this moment (lab up's readiness probes) are not ours.
T0=$(date +%s.%N)

url=http://productpage.bookinfo.svc.cluster.local:9080/productpage
: >"$TMP/curl.txt"
for _ in $(seq $REQUESTS); do
	lab exec loadgen -- curl -s -o /dev/null -w '%{http_code} %{local_ip} %{local_port}\n' "$url" >>"$TMP/curl.txt"
done
assert_eq "$REQUESTS" "$(grep -c '^200 ' "$TMP/curl.txt")" "all requests answered 200"
sleep 1
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done

cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
log "records: $(wc -l <"$TMP/all.jsonl")"
jq -e . "$TMP/all.jsonl" >/dev/null || fail "agent output is not JSON lines"

pod() { jq -r --arg w "$1" '.pods[] | select(.workload == $w) | .'"$2" $STATE; }

# Each server: every request in its access log came on its own connection,
# from remote_addr:remote_port; sonde must have seen exactly those
# connections open and close at the server pod, attributed to both pods.
check_server() { # server-workload client-workload service
	local sw=$1 cw=$2 svc=$3
	local spod sip snode cpod log want got
	spod=$(pod "$sw" name) sip=$(pod "$sw" ip) snode=$(pod "$sw" node)
	cpod=$(pod "$cw" name)
	log=$(pod "$sw" dir)/access.log
	jq -r --argjson t0 "$T0" 'select((.subrequest | not) and (.msec - .request_time) >= $t0)
		| "\(.remote_addr) \(.remote_port)"' "$log" | sort >"$TMP/$sw.truth"
	want=$(wc -l <"$TMP/$sw.truth")
	[ "$want" -gt 0 ] || { fail "$sw served no request"; return; }
	for ev in open close; do
		jq -r --arg ev $ev --arg sip "$sip" \
			'select(.event == $ev and .side == "server" and .dst.ip == $sip and .dst.port == 9080)
			 | "\(.src.ip) \(.src.port)"' "$TMP/$snode.jsonl" | sort >"$TMP/$sw.$ev"
		got=$(wc -l <"$TMP/$sw.$ev")
		assert_eq "$want" "$got" "$sw: server-side $ev records = requests in its access log"
		if ! diff -q "$TMP/$sw.truth" "$TMP/$sw.$ev" >/dev/null; then
			fail "$sw: $ev records' client ip:port differ from the access log: $(diff "$TMP/$sw.truth" "$TMP/$sw.$ev" | head -5)"
		fi
	done
	# Attribution of every such record, both ends.
	bad=$(jq -c --arg sip "$sip" --arg spod "$spod" --arg cpod "$cpod" --arg cw "$cw" --arg svc "$svc" --arg sw "$sw" \
		'select(.side == "server" and .dst.ip == $sip and .dst.port == 9080)
		 | select(.dst.pod != $spod or .dst.workload != $sw or .dst.service != $svc
			  or .dst.namespace != "bookinfo" or .src.pod != $cpod or .src.workload != $cw)' \
		"$TMP/$snode.jsonl" | head -3)
	assert_eq "" "$bad" "$sw: records name $cpod -> $spod (service $svc)"
}
check_server productpage-v1 loadgen productpage
check_server details-v1 productpage-v1 details

# ratings is called by reviews-v2 and reviews-v3: check the client pod by IP.
rip=$(pod ratings-v1 ip) rnode=$(pod ratings-v1 node)
bad=$(jq -c --slurpfile s $STATE --arg rip "$rip" \
	'select(.side == "server" and .dst.ip == $rip and .event == "open")
	 | . as $r | ($s[0].pods[] | select(.ip == $r.src.ip)) as $c
	 | select($r.src.pod != $c.name or ($c.workload | test("^reviews-v[23]$") | not))' \
	"$TMP/$rnode.jsonl" | head -3)
assert_eq "" "$bad" "ratings' callers are reviews-v2/v3 pods, named by IP"
want=$(jq -r --argjson t0 "$T0" 'select((.subrequest | not) and (.msec - .request_time) >= $t0) | 1' \
	"$(pod ratings-v1 dir)/access.log" | wc -l)
got=$(jq -r --arg rip "$rip" 'select(.side == "server" and .dst.ip == $rip and .event == "open") | 1' \
	"$TMP/$rnode.jsonl" | wc -l)
[ "$want" -gt 0 ] || fail "ratings served nothing: reviews-v2/v3 were never picked"
assert_eq "$want" "$got" "ratings: server-side opens = requests in its access log"

# Client side: curl's own local port, in the loadgen pod, to productpage's
# cluster IP (the pod's socket sees the address before kube-proxy's DNAT).
lnode=$(pod loadgen node) lpod=$(pod loadgen name) lip=$(pod loadgen ip)
cip=$(jq -r '.services[] | select(.name == "productpage") | .cluster_ip' $STATE)
while read -r _ ip port; do
	n=$(jq -r --arg port "$port" --arg lip "$lip" \
		'select(.side == "client" and .event == "open" and .src.ip == $lip and .src.port == ($port | tonumber))
		 | "\(.src.pod) \(.comm) \(.dst.ip) \(.dst.port) \(.dst.service)"' "$TMP/$lnode.jsonl")
	assert_eq "$lpod curl $cip 9080 productpage" "$n" "client open for curl port $port"
	[ "$ip" = "$lip" ] || fail "curl's local ip $ip is not loadgen's $lip"
done <"$TMP/curl.txt"

# Each agent reports only its own node: the local end of every record is a
# pod on that node (or the node itself), never another node's.
for node in $(jq -r '.nodes[].name' $STATE); do
	foreign=$(jq -c --slurpfile s $STATE --arg node "$node" \
		'select(.kind == "flow") | (if .side == "server" then .dst else .src end) as $l
		 | select($l.pod != null)
		 | select(([$s[0].pods[] | select(.name == $l.pod) | .node][0]) != $node)' \
		"$TMP/$node.jsonl" | head -3)
	assert_eq "" "$foreign" "$node's agent reports only its node's sockets"
	lost=$(grep '^{' "$TMP/$node.err" | jq -r 'select(.sensor == "flow") | .lost_ringbuf_full')
	assert_eq 0 "$lost" "$node: no event lost to a full ring buffer"
	hook=$(grep '^{' "$TMP/$node.err" | jq -r 'select(.sensor == "flow") | .hook')
	assert_eq tp_btf "$hook" "$node: tp_btf chosen on a kernel with BTF"
done

done_testing
