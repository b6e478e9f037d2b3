#!/usr/bin/env bash
# l7 sensor, HTTP, request by request against the servers' own logs: Bookinfo
# under the load generator's open-loop load, one agent per node. Every
# request in every nginx pod's access log must have its server-side record
# (same client ip:port, method, URI, status; duration close to nginx's
# request_time), no record may be invented, and the load generator's own
# request log must find its client-side records. Also checks that no event
# was lost (ring buffer, maps, truncation) and that every record is whole.
#
# A finer ground truth runs alongside: `sonde lab httpd` (our own server,
# microsecond access log) in the ratings pod on port 9081, under its own
# open-loop load from the loadgen pod (L7_US_RATE, default 100/s); its
# requests' server-side records must be within max(1 ms, 5 %) of its
# request_time_us (l7_check_us.py). nginx's log is checked at its own
# resolution (whole ms, cached clock: l7_check.py).
#
# L7_RATE (default 200 requests/s) and L7_SECONDS (default 15) size the run,
# L7_CONNECTIONS (default: the lab's load generator, 8) its connections;
# bench/l7.sh runs the same check at 1000 requests/s for 60 s.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing (scripts/deps.sh installs it)"

RATE=${L7_RATE:-200}
SECONDS_RUN=${L7_SECONDS:-15}
STATE=/run/sonde-lab/state.json
if [ -n "${L7_CONNECTIONS:-}" ]; then
	# The lab's load generator keeps at most 8 connections: when pages
	# are slow its schedule falls behind (bench/results/l7.md). With
	# L7_CONNECTIONS the test runs its own, same URL, rate and log, with
	# that many connections.
	lab_fresh_up --rate 0
	lg_dir=$(jq -r '.pods[] | select(.workload == "loadgen") | .dir' $STATE)
	"$SONDE" lab exec loadgen -- "$SONDE" lab loadgen \
		--url "http://productpage.bookinfo.svc.cluster.local:9080/productpage" --rate "$RATE" \
		--connections "$L7_CONNECTIONS" --duration "$((SECONDS_RUN + 40))s" \
		--log "$lg_dir/requests.log" 2>"$TMP/loadgen.err" &
else
	lab_fresh_up --rate "$RATE"
fi

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
US_RATE=${L7_US_RATE:-100}
US_POD=$(jq -r '.pods[] | select(.workload == "ratings-v1") | .name' $STATE)
US_IP=$(jq -r '.pods[] | select(.workload == "ratings-v1") | .ip' $STATE)
"$SONDE" lab exec "$US_POD" -- "$SONDE" lab httpd --port 9081 --log "$TMP/httpd.log" \
	--duration "$((SECONDS_RUN + 6))s" 2>"$TMP/httpd.err" &
us_srv=$!
wait_for 10 grep -q "listening" "$TMP/httpd.err" || die "lab httpd did not start: $(cat "$TMP/httpd.err")"
"$SONDE" lab exec loadgen -- "$SONDE" lab loadgen --url "http://$US_IP:9081/ratings/0" --rate "$US_RATE" \
	--duration "$((SECONDS_RUN + 3))s" --log "$TMP/us_client.log" 2>"$TMP/us_loadgen.err" &
us_cli=$!
# A TCP stream that is neither HTTP nor DNS (to httpd, which waits for a
# head that never ends): the agent gives it up after 64 pieces and tells
# the kernel to stop capturing it; the pieces written a few ticks later
# must be dropped in the kernel (ignored_syscalls).
"$SONDE" lab exec loadgen -- bash -c "exec 3<>/dev/tcp/$US_IP/9081
	for i in \$(seq 80); do printf 'not http %d\n' \$i >&3; done
	sleep 2.5
	for i in \$(seq 40); do printf 'still not %d\n' \$i >&3; done" &
other=$!
sleep 1
T0=$(date +%s.%N)
sleep "$SECONDS_RUN"
T1=$(date +%s.%N)
sleep 2 # requests that straddle T1 finish; the agents see their ends
wait "$other" || fail "the non-HTTP stream failed"
wait "$us_cli" || fail "the httpd load generator failed: $(tail -3 "$TMP/us_loadgen.err")"
wait "$us_srv" || fail "lab httpd failed: $(tail -3 "$TMP/httpd.err")"
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent $p exited with $?"; done

cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
log "records: $(wc -l <"$TMP/all.jsonl") in ${SECONDS_RUN}s at $RATE requests/s"
jq -e . "$TMP/all.jsonl" >/dev/null || fail "agent output is not JSON lines"

python3 "$(dirname "$0")/l7_check.py" $STATE "$TMP/all.jsonl" "$T0" "$T1" >"$TMP/check.json"
rc=$?
jq -c '.pods | to_entries[] | {pod: .key} + .value' "$TMP/check.json" | while read -r l; do log "$l"; done
log "loadgen client side: $(jq -c .loadgen_client "$TMP/check.json")"
log "loadgen client load: $(jq -c .loadgen_load "$TMP/check.json")"
if [ $rc != 0 ]; then
	# The logs go with the lab: keep them with the test's artefacts.
	for d in $(jq -r '.pods[].dir' $STATE); do
		for f in access.log requests.log; do [ -f "$d/$f" ] && cp "$d/$f" "$TMP/$(basename "$d").$f"; done
	done
	fail "records do not match the logs ($(jq -r '.failed | join("; ")' "$TMP/check.json")): $(jq -c '.problems[:3]' "$TMP/check.json" | head -c 1500)"
fi

# The microsecond ground truth: our server's own request times.
python3 "$(dirname "$0")/l7_check_us.py" "$TMP/all.jsonl" "$TMP/httpd.log" "$US_POD" 9081 "$T0" "$T1" >"$TMP/check_us.json"
rc=$?
log "lab httpd (us): $(jq -c 'del(.problems)' "$TMP/check_us.json")"
[ $rc = 0 ] || fail "records do not match lab httpd's microsecond log: $(jq -c '.problems[:3]' "$TMP/check_us.json" | head -c 1500)"

# Every record names both pods and the service on the server side.
bad=$(jq -c 'select(.kind == "http" and .side == "server" and (.dst.pod == null or .dst.service == null or .src.pod == null))' \
	"$TMP/all.jsonl" | head -3)
assert_eq "" "$bad" "server-side records carry both pods and the service"
# Client records of productpage's SSI calls name the service they called
# (the socket sees the cluster IP).
n=$(jq -r 'select(.kind == "http" and .side == "client" and (.src.workload // "") == "productpage-v1"
	and .dst.service == "details" and .method == "GET" and (.uri | startswith("/details/")))' "$TMP/all.jsonl" | grep -c '"kind"')
[ "$n" -gt 0 ] || fail "no client-side record productpage -> details"

ignored=0 ignored_calls=0
for node in $(jq -r '.nodes[].name' $STATE); do
	st=$(grep '^{' "$TMP/$node.err" | jq -c 'select(.sensor == "l7")')
	ignored=$((ignored + $(jq -r '.ignored_sockets' <<<"$st")))
	ignored_calls=$((ignored_calls + $(jq -r '.ignored_syscalls' <<<"$st")))
	log "$node status: $st"
	for k in lost_ringbuf_full lost_syscall_map_full truncated_captures lost_read_fault lost_seq_holes http_partial; do
		assert_eq 0 "$(jq -r ".$k" <<<"$st")" "$node: $k"
	done
done

[ "$ignored" -ge 1 ] || fail "the non-HTTP stream was not given up (ignored_sockets $ignored)"
[ "$ignored_calls" -ge 1 ] || fail "the kernel kept capturing the non-HTTP stream (ignored_syscalls $ignored_calls)"
log "non-HTTP stream status: $ignored socket(s) given up, $ignored_calls syscall(s) dropped in the kernel"

done_testing
