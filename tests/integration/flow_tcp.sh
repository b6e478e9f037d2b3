#!/usr/bin/env bash
# flow sensor, TCP numbers against the kernel's and the applications' own:
#  - bytes: iperf3 between pods on different nodes, its --json byte counts
#    against the close records of both ends (within 0.1 %);
#  - retransmits: with 1 % loss on the sender's node, the sum of the
#    sender pod's close records against nstat's TcpRetransSegs delta in that
#    pod's netns (within 1 %);
#  - RTT: with 20 ms delay, the interval records' srtt against `ss -ti` for
#    the same connection (within 10 %);
#  - many short connections: every one of N curl connections (Connection:
#    close) seen opening and closing at the server, none invented (nginx's
#    access log).
source "$(dirname "$0")/../lib.sh"

PORT=5299
source "$(dirname "$0")/../lib_flow.sh"

# iperf3 RUN-NAME ARGS...: one server run and one client run; JSON kept.
iperf() {
	local name=$1
	shift
	lab exec $SW -- iperf3 -s -1 -p $PORT -J >"$TMP/$name.server.json" 2>&1 &
	local spid=$!
	wait_for 10 bash -c "\"$SONDE\" lab exec $SW -- ss -ltn | grep -q :$PORT" || die "iperf3 server did not listen"
	lab exec $CW -- iperf3 -c "$sip" -p $PORT -J "$@" >"$TMP/$name.client.json" 2>&1 ||
		die "iperf3 client ($name) failed: $(head -c 300 "$TMP/$name.client.json")"
	wait $spid
	jq -r '.start.connected[0].local_port' "$TMP/$name.client.json"
}
# close NODE SIDE CLIENT-PORT FIELD: a close record's field for one flow.
close_field() {
	jq -r --arg side "$2" --argjson port "$3" --arg cip "$cip" \
		'select(.proto == "tcp" and .event == "close" and .side == $side and .src.ip == $cip and .src.port == $port) | .'"$4" \
		"$TMP/$1.jsonl"
}
retrans_segs() { lab exec $CW -- nstat -asz TcpRetransSegs | awk '$1 == "TcpRetransSegs" { print $2 }'; }
within() { # want got permille -> "lo hi"
	awk -v w="$1" -v p="$3" 'BEGIN { printf "%.0f %.0f\n", w * (1 - p / 1000), w * (1 + p / 1000) }'
}

# 1. bytes, no fault. Paced below what the receiver reads (-b), so little is
# left unread in its buffer when iperf3 tears the connection down (what is,
# the kernel counted but iperf3 never read: up to the receive buffer, 0.3 %
# of an unpaced 3 s run here).
port=$(iperf bytes -t 3 -b 2G)
sleep 1 # closes of both ends reach the agents
# iperf3 ends its data connection abruptly: the server closes it with data
# unread, which resets it, and what the client had written but not yet
# delivered is lost. Its "sent" count then exceeds what crossed the
# network (by up to the socket buffers, ~0.15 % here), so the transfer's
# ground truth is iperf3's received count, which the client's JSON carries
# too. The bytes acknowledged by the server (client's bytes_out) and the
# bytes the server's kernel received (bytes_in) must both match it, and the
# client cannot have had more acknowledged than iperf3 wrote (+ its 37-byte
# cookie, + 1 each for SYN and FIN: tcpi_bytes_acked follows snd_una, which
# counts their sequence numbers once they are acknowledged).
sent=$(jq '.end.sum_sent.bytes' "$TMP/bytes.client.json")
recv=$(jq '.end.sum_received.bytes' "$TMP/bytes.client.json")
log "iperf3 data connection from port $port: sent $sent, server received $recv"
out=$(close_field $cnode client "$port" bytes_out)
read -r lo hi < <(within "$recv" "$recv" 1)
assert_between "$lo" "$hi" "$out" "client close record bytes_out vs iperf3 received (0.1 %)"
assert_between "$lo" "$hi" "$(close_field $snode server "$port" bytes_in)" "server close record bytes_in vs iperf3 received (0.1 %)"
assert_between "$((recv / 2))" "$((sent + 39))" "$out" "client bytes_out at most what iperf3 wrote"
# The interval records are the deltas of the same counters: their sum
# cannot exceed the total, and they must carry most of the transfer.
isum=$(jq -s --argjson port "$port" --arg cip "$cip" \
	'[.[] | select(.event == "interval" and .side == "client" and .src.ip == $cip and .src.port == $port) | .bytes_out] | add // 0' \
	"$TMP/$cnode.jsonl")
assert_between "$((sent / 2))" "$sent" "$isum" "sum of the client's interval bytes_out"
assert_eq "$(pod $CW name) $(pod $SW name) $SW" \
	"$(jq -r --argjson port "$port" 'select(.event == "close" and .side == "server" and .src.port == $port) | "\(.src.pod) \(.dst.pod) \(.dst.workload)"' "$TMP/$snode.jsonl")" \
	"server record names both pods"
assert_eq "iperf3" "$(close_field $cnode client "$port" comm)" "client record carries the process"

# 2. retransmits with 1 % loss on the sender's node
lab loss --node "$cnode" 1% || die "lab loss failed"
r0=$(retrans_segs)
t0=$(date +%s%N)
port=$(iperf loss -t 4)
sleep 1
r1=$(retrans_segs)
lab loss --node "$cnode" --clear || fail "lab loss --clear failed"
want=$((r1 - r0))
# Every TCP flow of the client pod's netns that closed in this window.
got=$(jq -s --arg cip "$cip" --argjson t0 "$t0" \
	'[.[] | select(.proto == "tcp" and .event == "close" and .side == "client" and .src.ip == $cip and .time_ns >= $t0) | .retrans] | add // 0' \
	"$TMP/$cnode.jsonl")
log "TcpRetransSegs delta $want, sonde $got"
[ "$want" -gt 10 ] || fail "1 % loss produced only $want retransmits: the fault did not bite"
read -r lo hi < <(within "$want" "$want" 10)
assert_between "$lo" "$hi" "$got" "retransmits vs nstat TcpRetransSegs (1 %)"

# 3. srtt with 20 ms delay: ss -ti in the client pod during the transfer
lab delay --node "$cnode" 20ms || die "lab delay failed"
lab exec $SW -- iperf3 -s -1 -p $PORT -J >"$TMP/rtt.server.json" 2>&1 &
spid=$!
wait_for 10 bash -c "\"$SONDE\" lab exec $SW -- ss -ltn | grep -q :$PORT" || die "iperf3 server did not listen"
lab exec $CW -- iperf3 -c "$sip" -p $PORT -J -t 5 -b 20M >"$TMP/rtt.client.json" 2>&1 &
cpid=$!
sleep 3.5
# The data connection is the one that has sent the most.
lab exec $CW -- ss -tin dst "$sip:$PORT" >"$TMP/ss.txt"
ss_ns=$(date +%s%N)
wait $cpid $spid
lab delay --node "$cnode" --clear || fail "lab delay --clear failed"
read -r ss_port ss_rtt < <(awk '
	/^ESTAB/ { split($4, a, ":"); port = a[length(a)] }
	/rtt:/ { match($0, /rtt:[0-9.]+/); r = substr($0, RSTART + 4, RLENGTH - 4);
		 match($0, /bytes_sent:[0-9]+/); b = substr($0, RSTART + 11, RLENGTH - 11) + 0;
		 if (b >= best) { best = b; bp = port; br = r } }
	END { print bp, br }' "$TMP/ss.txt")
sleep 1
srtt=$(jq -s --argjson port "$ss_port" --argjson t "$ss_ns" \
	'[.[] | select(.event == "interval" and .side == "client" and .src.port == $port and .srtt_us != null)
	 | {d: ((.time_ns - $t) | fabs), s: .srtt_us}] | sort_by(.d) | .[0].s' "$TMP/$cnode.jsonl")
log "ss rtt ${ss_rtt} ms (port $ss_port), sonde srtt ${srtt} us"
lo=$(awk -v r="$ss_rtt" 'BEGIN { printf "%.0f", r * 900 }')
hi=$(awk -v r="$ss_rtt" 'BEGIN { printf "%.0f", r * 1100 }')
assert_between "$lo" "$hi" "$srtt" "srtt vs ss -ti rtt (10 %)"
assert_between 19000 40000 "$srtt" "srtt reflects the 20 ms delay"
rmin=$(jq -s --argjson port "$ss_port" '[.[] | select(.event == "interval" and .src.port == $port and .rtt_min_us != null) | .rtt_min_us] | min' "$TMP/$cnode.jsonl")
assert_between 19000 40000 "$rmin" "interval rtt_min_us with 20 ms delay"

# 4. many short connections: curl, one connection per request
N=100
url=http://$sip:9080/
[ "$SW" = ratings-v1 ] && url=http://$sip:9080/ratings/0
[ "$SW" = details-v1 ] && url=http://$sip:9080/details/0
[ "$SW" = reviews-v1 ] && url=http://$sip:9080/reviews/0
[ "$SW" = productpage-v1 ] && url=http://$sip:9080/productpage
T0=$(date +%s.%N)
args=()
for _ in $(seq $N); do args+=(-o /dev/null "$url"); done
lab exec $CW -- curl -s -H 'Connection: close' -w '%{local_port}\n' "${args[@]}" >"$TMP/curl.ports"
sleep 1.5
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done

jq -r --argjson t0 "$T0" --arg cip "$cip" 'select((.subrequest | not) and (.msec - .request_time) >= $t0 and .remote_addr == $cip) | .remote_port' \
	"$(pod $SW dir)/access.log" | sort -n >"$TMP/truth.ports"
assert_eq "$N" "$(wc -l <"$TMP/truth.ports")" "access log: $N requests from $CW"
sort -n "$TMP/curl.ports" | diff -q - "$TMP/truth.ports" >/dev/null || fail "curl's ports differ from the access log"
for ev in open close; do
	jq -r --arg ev $ev --arg cip "$cip" --arg sip "$sip" \
		'select(.proto == "tcp" and .event == $ev and .side == "server" and .dst.ip == $sip and .dst.port == 9080 and .src.ip == $cip) | .src.port' \
		"$TMP/$snode.jsonl" | sort -n >"$TMP/seen.$ev"
	# Earlier connections (setup, iperf3 is on another port) are not in
	# the window: compare on the ports curl used.
	grep -Fxf "$TMP/truth.ports" "$TMP/seen.$ev" >"$TMP/seen.$ev.win"
	assert_eq "$N" "$(wc -l <"$TMP/seen.$ev.win")" "server $ev records for the $N connections"
	diff -q "$TMP/truth.ports" "$TMP/seen.$ev.win" >/dev/null || fail "$ev records' ports differ from the access log"
done
# None invented: every server-side 9080 record from the client after T0 is
# a connection in the access log.
extra=$(jq -r --arg cip "$cip" --arg sip "$sip" --argjson t0 "${T0%.*}000000000" \
	'select(.proto == "tcp" and (.event == "open" or .event == "close") and .side == "server" and .dst.ip == $sip and .dst.port == 9080 and .src.ip == $cip and .time_ns >= $t0) | .src.port' \
	"$TMP/$snode.jsonl" | sort -n | uniq | grep -vFxf "$TMP/truth.ports" | head -3)
assert_eq "" "$extra" "no connection invented"
tot=$(jq -s --arg cip "$cip" '[.[] | select(.event == "close" and .side == "server" and .src.ip == $cip and .dst.port == 9080)] | length' "$TMP/$snode.jsonl")
log "server-side closes from $CW on 9080: $tot"

for node in $cnode $snode; do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "flow")')
	log "$node status: $st"
	assert_eq 0 "$(jq -r .lost_ringbuf_full <<<"$st")" "$node: no event lost to a full ring buffer"
	assert_eq 0 "$(jq -r .tcp_flows_evicted <<<"$st")" "$node: no flow evicted"
	assert_eq '{}' "$(jq -c .degraded <<<"$st")" "$node: every hook attached"
done

done_testing
