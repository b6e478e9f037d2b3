#!/usr/bin/env bash
# One store interface, two backends: the same records (an agent's real
# output under Bookinfo load) go through the ingest API into a server on
# SQLite and a server on a real clickhouse-server (Debian's 18.16, started
# here on loopback), then the same query suite runs on both: the answers
# must be identical, and they must match jq over the records.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"
CH=/usr/sbin/clickhouse-server
[ -x $CH ] || skip "clickhouse-server is not installed (scripts/deps.sh installs it)"

# 1. Real records: agents (no server) under load.
lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
for node in node-1 node-2; do
	"$SONDE" agent --node $node --output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	AGENT_PIDS+=($!)
done
for node in node-1 node-2; do
	wait_for 20 grep -q "flow sensor attached" "$TMP/$node.err" || die "agent of $node did not attach"
done
sleep 1.5
lab load --rate 40 >/dev/null
sleep 6
lab load --rate 0 >/dev/null
sleep 1.5
agents_stop
RPOD=$(pod_field ratings-v1 .name)
lab down >/dev/null 2>&1 # the lab is not needed any more: free the lock early
cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
log "records: $(wc -l <"$TMP/all.jsonl")"

# 2. A private clickhouse-server on loopback ports of its own.
CHP=$((STORE_PORT + 1))
mkdir -p "$TMP/ch/data" "$TMP/ch/log"
sed -e "s#<http_port>8123</http_port>#<http_port>$CHP</http_port>#" \
	-e "s#<tcp_port>9000</tcp_port>#<tcp_port>$((CHP + 1))</tcp_port>#" \
	-e "s#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>$((CHP + 2))</interserver_http_port>#" \
	-e "s#<listen_host>::1</listen_host>##" \
	-e "s#/var/lib/clickhouse/#$TMP/ch/data/#g" -e "s#/var/log/clickhouse-server/#$TMP/ch/log/#g" \
	/etc/clickhouse-server/config.xml >"$TMP/ch/config.xml"
cp /etc/clickhouse-server/users.xml "$TMP/ch/"
(cd "$TMP/ch" && exec $CH --config-file="$TMP/ch/config.xml" >"$TMP/ch/out.txt" 2>&1) &
CH_PID=$!
ON_EXIT='kill $CH_PID 2>/dev/null; wait $CH_PID 2>/dev/null; store_cleanup; for p in $S2; do kill $p 2>/dev/null; wait $p 2>/dev/null; done'
t0=$SECONDS
wait_for 30 curl -sf "http://127.0.0.1:$CHP/ping" || die "clickhouse-server did not start: $(tail -5 "$TMP/ch/log/clickhouse-server.err.log")"
log "clickhouse-server $(curl -s "http://127.0.0.1:$CHP/?query=SELECT%20version()") up in $((SECONDS - t0))s"

# 3. Two servers, same batches.
server_start
URL_SQ=$STORE_URL
"$SONDE" server --listen "127.0.0.1:$((CHP + 3))" --token "$STORE_TOKEN" \
	--store "clickhouse:http://127.0.0.1:$CHP" 2>>"$TMP/server-ch.err" &
S2=$!
URL_CH=http://127.0.0.1:$((CHP + 3))
wait_for 20 curl -sf "$URL_CH/healthz" || die "server on ClickHouse did not start: $(cat "$TMP/server-ch.err")"
split -l 500 "$TMP/all.jsonl" "$TMP/batch."
for b in "$TMP"/batch.*; do
	for url in "$URL_SQ" "$URL_CH"; do
		curl -sf -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: $(basename "$b")" \
			--data-binary @"$b" "$url/v1/ingest" >/dev/null || fail "ingest of $b into $url"
	done
done
# And one batch again: a duplicate for both.
for url in "$URL_SQ" "$URL_CH"; do
	d=$(curl -sf -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: batch.aa" \
		--data-binary @"$TMP/batch.aa" "$url/v1/ingest" | jq -r .duplicate)
	assert_eq true "$d" "$url: a replayed batch is a duplicate"
done

# 4. The suite. Records are compared as sorted sets (equal time_ns may
# come in either order).
suite() { # url
	local q
	while read -r q; do
		case "$q" in
		records*) SONDE_SERVER=$1 "$SONDE" query ${q#records } --records --limit 100000 --json | sort ;;
		*) SONDE_SERVER=$1 "$SONDE" query $q --json ;;
		esac
		echo "--- $q"
	done <<-Q
	flows --since 0 --count
	flows --since 0
	flows --since 0 --interval 1s
	flows --since 0 --interval 10s --service details
	flows --since 0 --service ratings
	flows --since 0 --service reviews --interval 2s
	flows --since 0 --workload reviews-v2 --count
	flows --since 0 --workload productpage-v1
	flows --since 0 --pod $RPOD --count
	flows --since 0 --namespace bookinfo --count
	flows --since 0 --node node-2 --interval 5s
	http --since 0
	dns --since 0 --count
	latency --since 0
	records flows --since 0 --service details
	records flows --since 0 --node node-1
	Q
}
suite "$URL_SQ" >"$TMP/suite.sqlite"
suite "$URL_CH" >"$TMP/suite.clickhouse"
log "suite: $(grep -c '^---' "$TMP/suite.sqlite") queries, $(wc -c <"$TMP/suite.sqlite") bytes of answers"
if cmp -s "$TMP/suite.sqlite" "$TMP/suite.clickhouse"; then
	log "ok: SQLite and ClickHouse answer the suite identically"
else
	fail "backends differ: $(diff "$TMP/suite.sqlite" "$TMP/suite.clickhouse" | head -6)"
fi
# The agents run every sensor family; `query flows` counts kind flow.
total=$(jq -c 'select(.kind == "flow")' "$TMP/all.jsonl" | wc -l)
assert_eq "$total" "$(sed -n 1p "$TMP/suite.sqlite" | jq .records)" "count = flow records sent"
# (jq prints time_ns as a double: select with jq, print the original lines.)
want=$(jq -c '.kind == "flow" and (.src.service == "details" or .dst.service == "details")' "$TMP/all.jsonl" |
	paste -d ' ' - "$TMP/all.jsonl" | sed -n 's/^true //p' | sort)
got=$(sed -n '/^--- latency --since 0$/,/^--- records flows --since 0 --service details$/p' "$TMP/suite.clickhouse" | grep -v '^---')
assert_eq "$want" "$got" "ClickHouse records by service = jq over the agent output"
server_stop
done_testing
