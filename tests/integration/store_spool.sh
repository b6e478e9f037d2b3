#!/usr/bin/env bash
# The server goes away under Bookinfo load and comes back: agents keep
# records in their on-disk spool and replay them. Ground truth: each agent's
# own JSON output (written alongside) and an nginx access log.
# node-1's agent has a large spool: nothing may be lost, nothing doubled.
# node-2's agent has a tiny spool (--spool-kb 4): it must drop its oldest
# batches, count exactly what it dropped, and still store nothing twice.
# The outage is STORE_OUTAGE_S seconds (20 here; the issue's 60 s runs in
# bench/run.sh, which sets STORE_OUTAGE_S=60).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"
OUTAGE=${STORE_OUTAGE_S:-20}

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
server_start
# Per-node options: start the two agents by hand.
for node in node-1 node-2; do
	extra=()
	[ $node = node-2 ] && extra=(--spool-kb 4 --batch 20)
	"$SONDE" agent --node $node --server "$STORE_URL" --spool "$TMP/spool-$node" \
		--output "$TMP/$node.jsonl" "${extra[@]}" 2>"$TMP/$node.err" &
	AGENT_PIDS+=($!)
done
for node in node-1 node-2; do
	wait_for 20 grep -q "flow sensor attached" "$TMP/$node.err" || die "agent of $node did not attach"
done
sleep 1.5

T0=$(date +%s.%N)
lab load --rate 40 >/dev/null || die "lab load failed"
sleep 4
log "stopping the server for ${OUTAGE}s under load"
server_stop
sleep "$OUTAGE"
spooled=$(find "$TMP/spool-node-1" -name '*.zb' | wc -l)
log "node-1 spool holds $spooled batches ($(du -sk "$TMP/spool-node-1" | cut -f1) KiB)"
[ "$spooled" -gt 0 ] || fail "node-1 spooled nothing while the server was away"
server_start
sleep 6
lab load --rate 0 >/dev/null
sleep 2
T1=$(date +%s.%N)
agents_stop
for node in node-1 node-2; do grep '^{"output"' "$TMP/$node.err" | sed "s/^/[$node] /"; done

# node-1: exactly its output, once.
sort "$TMP/node-1.jsonl" >"$TMP/n1.want"
server_records node-1 >"$TMP/n1.got"
n=$(wc -l <"$TMP/n1.want")
log "node-1 wrote $n records"
assert_eq "$n" "$(wc -l <"$TMP/n1.got")" "node-1: every record stored after the outage"
cmp -s "$TMP/n1.want" "$TMP/n1.got" || fail "node-1: stored records differ: $(diff "$TMP/n1.want" "$TMP/n1.got" | head -4)"
st1=$(grep '^{"output"' "$TMP/node-1.err")
assert_eq 0 "$(jq -r .dropped_records <<<"$st1")" "node-1: nothing dropped"
fails=$(jq -r .send_failures <<<"$st1")
[ "$fails" -gt 0 ] || fail "node-1 never failed to send: was the server really away?"

# node-2: stored + dropped = written, no duplicates, nothing invented.
sort "$TMP/node-2.jsonl" >"$TMP/n2.want"
server_records node-2 >"$TMP/n2.got"
st2=$(grep '^{"output"' "$TMP/node-2.err")
dropped=$(jq -r .dropped_records <<<"$st2")
written=$(wc -l <"$TMP/n2.want") stored=$(wc -l <"$TMP/n2.got")
log "node-2 wrote $written, stored $stored, dropped $dropped"
[ "$dropped" -gt 0 ] || fail "node-2's 4 KiB spool dropped nothing during ${OUTAGE}s"
# A batch the server committed while it was being stopped may never have
# been acknowledged: the agent keeps it, and if the tiny spool later drops
# it, it counts as dropped although it is stored. So stored + dropped may
# exceed written by the batches in flight at the stop (one: 20 records).
extra=$((stored + dropped - written))
assert_between 0 20 "$extra" "node-2: stored + counted drops - written (0, or one unacknowledged batch)"
assert_eq "" "$(uniq -d "$TMP/n2.got" | head -3)" "node-2: no record stored twice"
assert_eq "" "$(comm -13 "$TMP/n2.want" "$TMP/n2.got" | head -3)" "node-2: every stored record was written by the agent"

# Ground truth outside sonde: the access log of a server pod on node-1.
for w in ratings-v1 details-v1 productpage-v1 reviews-v1 reviews-v2 reviews-v3; do
	[ "$(pod_field $w .node)" = node-1 ] && break
done
alog=$(pod_field $w .dir)/access.log
want=$(jq -r --argjson t0 "$T0" --argjson t1 "$T1" 'select((.subrequest | not) and (.msec - .request_time) >= $t0 and .msec <= $t1) | 1' "$alog" | wc -l)
ns0=$(awk -v t="$T0" 'BEGIN { printf "%.0f", t * 1e9 }')
got=$("$SONDE" query flows --workload "$w" --since "$ns0" --records --limit 1000000 --json |
	jq -r --arg w "$w" 'select(.event == "open" and .side == "server" and .dst.workload == $w) | 1' | wc -l)
[ "$want" -gt 0 ] || fail "$w served nothing"
assert_eq "$want" "$got" "$w (node-1): server-side opens in the store = its access log across the outage"
dupb=$(curl -s "$STORE_URL/metrics" | awk '/result="duplicate"/ { print $2 }')
log "duplicate batches acknowledged again after restart: $dupb"
server_stop
done_testing
