#!/usr/bin/env bash
# l7 sensor, HTTP, request by request against the servers' own logs: Bookinfo
# under the load generator's open-loop load, one agent per node. Every
# request in every nginx pod's access log must have its server-side record
# (same client ip:port, method, URI, status; duration close to nginx's
# request_time), no record may be invented, and the load generator's own
# request log must find its client-side records. Also checks that no event
# was lost (ring buffer, maps, truncation) and that every record is whole.
#
# L7_RATE (default 200 requests/s) and L7_SECONDS (default 15) size the run;
# bench/l7.sh runs the same check at the highest rate the machine holds.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing (scripts/deps.sh installs it)"

RATE=${L7_RATE:-200}
SECONDS_RUN=${L7_SECONDS:-15}
lab_fresh_up --rate "$RATE"
STATE=/run/sonde-lab/state.json

pids=()
for node in $(jq -r '.nodes[].name' $STATE); do
	"$SONDE" agent --node "$node" --sensors l7 --output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $(jq -r '.nodes[].name' $STATE); do
	wait_for 30 grep -q "l7 sensor attached" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
sleep 2 # one rescan after attach: every pod's netns is in the filter
T0=$(date +%s.%N)
sleep "$SECONDS_RUN"
T1=$(date +%s.%N)
sleep 2 # requests that straddle T1 finish; the agents see their ends
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done

cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
log "records: $(wc -l <"$TMP/all.jsonl") in ${SECONDS_RUN}s at $RATE requests/s"
jq -e . "$TMP/all.jsonl" >/dev/null || fail "agent output is not JSON lines"

python3 "$(dirname "$0")/l7_check.py" $STATE "$TMP/all.jsonl" "$T0" "$T1" >"$TMP/check.json"
rc=$?
jq -c '.pods | to_entries[] | {pod: .key} + .value' "$TMP/check.json" | while read -r l; do log "$l"; done
log "loadgen client side: $(jq -c .loadgen_client "$TMP/check.json")"
[ $rc = 0 ] || fail "records do not match the access logs: $(jq -c '.problems[:3]' "$TMP/check.json" | head -c 1500)"

# Every record names both pods and the service on the server side.
bad=$(jq -c 'select(.kind == "http" and .side == "server" and (.dst.pod == null or .dst.service == null or .src.pod == null))' \
	"$TMP/all.jsonl" | head -3)
assert_eq "" "$bad" "server-side records carry both pods and the service"
# Client records of productpage's SSI calls name the service they called
# (the socket sees the cluster IP).
n=$(jq -r 'select(.kind == "http" and .side == "client" and (.src.workload // "") == "productpage-v1"
	and .dst.service == "details" and .method == "GET" and (.uri | startswith("/details/")))' "$TMP/all.jsonl" | grep -c '"kind"')
[ "$n" -gt 0 ] || fail "no client-side record productpage -> details"

for node in $(jq -r '.nodes[].name' $STATE); do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "l7")')
	log "$node status: $st"
	for k in lost_ringbuf_full lost_syscall_map_full truncated_captures lost_read_fault lost_seq_holes http_partial; do
		assert_eq 0 "$(jq -r ".$k" <<<"$st")" "$node: $k"
	done
done

done_testing
