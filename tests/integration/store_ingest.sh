#!/usr/bin/env bash
# Agents ship to `sonde server` (SQLite) under Bookinfo load. Ground truth:
# the agents' own JSON output (written alongside) and the nginx access logs.
# Checks: every record reaches the store exactly once, byte for byte; the
# query API's filters (service, workload, pod, kind, time) and aggregates
# give what jq computes from the agents' output; server-side connection
# opens at ratings equal the requests in its access log.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
server_start
agents_start --batch 100

T0=$(date +%s.%N)
lab load --rate 40 >/dev/null || die "lab load failed"
sleep 10
lab load --rate 0 >/dev/null
sleep 2 # connections close
T1=$(date +%s.%N)
agents_stop

cat "$TMP"/node-*.jsonl >"$TMP/all.jsonl"
total=$(wc -l <"$TMP/all.jsonl")
log "records written by the agents: $total"
[ "$total" -gt 500 ] || fail "too few records under load: $total"

# 1. Exactly once, byte for byte, per node.
for node in $(jq -r '.nodes[].name' $STATE); do
	sort "$TMP/$node.jsonl" >"$TMP/$node.want"
	server_records "$node" >"$TMP/$node.got"
	assert_eq "$(wc -l <"$TMP/$node.want")" "$(wc -l <"$TMP/$node.got")" "$node: records in the store = agent output"
	if ! cmp -s "$TMP/$node.want" "$TMP/$node.got"; then
		fail "$node: stored records differ: $(diff "$TMP/$node.want" "$TMP/$node.got" | head -4)"
	fi
	shipped=$(grep '^{"output"' "$TMP/$node.err" | jq -r .shipped_records)
	assert_eq "$(wc -l <"$TMP/$node.want")" "$shipped" "$node: agent counts every record as shipped"
done
dups=$(grep -h '^{"output"' "$TMP"/node-*.err | jq -s 'map(.dropped_records + .rejected_records) | add')
assert_eq 0 "$dups" "no record dropped or rejected"

# 2. Filters of the query CLI against jq over the agents' output.
ns0=$(awk -v t="$T0" 'BEGIN { printf "%.0f", t * 1e9 }')
ns1=$(awk -v t="$T1" 'BEGIN { printf "%.0f", t * 1e9 }')
q() { "$SONDE" query "$@" --since "$ns0" --until "$ns1"; }
# The agents run every sensor family; `query flows` is about kind flow. A
# end at a cluster IP is filed under its backend pod (dst.backend, and
# src.backend of a drop record of a reply from a cluster IP).
jall() { jq -c --argjson a "$ns0" --argjson b "$ns1" "select(.time_ns >= \$a and .time_ns < \$b) | $1" "$TMP/all.jsonl" | wc -l; }
jcount() { jall "select(.kind == \"flow\") | $1"; }
assert_eq "$(jcount 'select(.src.service == "ratings" or .dst.service == "ratings")')" \
	"$(q flows --service ratings --count)" "query --service ratings --count"
assert_eq "$(jcount 'select((.src.workload // .src.backend.workload) == "reviews-v2" or (.dst.workload // .dst.backend.workload) == "reviews-v2")')" \
	"$(q flows --workload reviews-v2 --count)" "query --workload reviews-v2 --count"
dpod=$(pod_field details-v1 .name)
assert_eq "$(jcount "select((.src.pod // .src.backend.pod) == \"$dpod\" or (.dst.pod // .dst.backend.pod) == \"$dpod\")")" \
	"$(q flows --pod "$dpod" --count)" "query --pod $dpod --count"
assert_eq "$(jall 'select(.kind == "http")')" "$(q http --count)" "query http --count = the agents' http records (kind filter)"
assert_eq "$(jcount 'select(.kind == "flow")')" "$(q flows --count)" "query flows --count (time range)"
# The newest record listed is the newest the agents wrote in the range.
want=$(jq -c --argjson a "$ns0" --argjson b "$ns1" 'select(.kind == "flow" and .time_ns >= $a and .time_ns < $b) | .time_ns' "$TMP/all.jsonl" | sort -n | tail -1)
got=$(q flows --records --limit 1 --json | jq -r .time_ns)
assert_eq "$want" "$got" "query --records: newest first"

# 3. Aggregates: per workload pair, productpage -> details, 1 s buckets.
q flows --service details --interval 1s --json >"$TMP/agg.json"
want=$(jq -s --argjson a "$ns0" --argjson b "$ns1" '[.[] | select(.kind == "flow" and .time_ns >= $a and .time_ns < $b
	and (.src.service == "details" or .dst.service == "details"))
	| {b: (.time_ns - .time_ns % 1000000000), s: (.src.workload // .src.backend.workload // ""), d: (.dst.workload // .dst.backend.workload // ""), e: (if .event == "close" and .established == false then 1 else 0 end)}]
	| group_by([.b, .s, .d]) | map("\(.[0].b) \(.[0].s) \(.[0].d) \(length) \(map(.e) | add)") | sort | .[]' -r "$TMP/all.jsonl")
got=$(jq -r '.rows[] | select(.kind == "flow") | "\(.bucket_ns) \(.src_workload) \(.dst_workload) \(.records) \(.errors)"' "$TMP/agg.json" | sort)
assert_eq "$want" "$got" "aggregate per 1 s and workload pair = jq over the agents' output"
# p50 of the closes' duration_ns (a flow's duration counts at close): exact, by its definition (floor(p*n)).
want=$(jq -s --argjson a "$ns0" --argjson b "$ns1" -r '[.[] | select(.time_ns >= $a and .time_ns < $b and .kind == "flow"
	and (.dst.workload // .dst.backend.workload) == "details-v1" and .src.workload == "productpage-v1"
	and .event == "close" and .duration_ns != null) | .duration_ns] | sort
	| .[(length * 0.5 | floor)], .[(length * 0.99 | floor)]' "$TMP/all.jsonl" | tr '\n' ' ')
got=$(q flows --service details --json | jq -r '.rows[] | select(.src_workload == "productpage-v1" and .dst_workload == "details-v1") | "\(.p50_ns) \(.p99_ns) "')
assert_eq "$want" "$got" "p50/p99 of flow durations productpage -> details"
log "$(q flows --service details | head -5)"

# 4. Ground truth outside sonde: ratings' access log vs server-side opens.
rlog=$(pod_field ratings-v1 .dir)/access.log
want=$(jq -r --argjson t0 "$T0" --argjson t1 "$T1" 'select((.subrequest | not) and (.msec - .request_time) >= $t0 and .msec <= $t1) | 1' "$rlog" | wc -l)
got=$(q flows --workload ratings-v1 --records --limit 100000 --json |
	jq -r 'select(.event == "open" and .side == "server" and .dst.workload == "ratings-v1") | 1' | wc -l)
[ "$want" -gt 0 ] || fail "ratings served nothing"
assert_eq "$want" "$got" "ratings: server-side opens in the store = its access log"

# 5. Auth and batch-id idempotence, through the API directly.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Sonde-Batch: x" --data-binary @"$TMP/node-1.jsonl" "$STORE_URL/v1/ingest")
assert_eq 401 "$code" "ingest without the token is refused"
before=$(q flows --count)
line=$(head -1 "$TMP/node-1.jsonl")
for _ in 1 2 3; do
	curl -sf -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: replay-1" --data-binary "$line" "$STORE_URL/v1/ingest" >>"$TMP/replay.txt"
	echo >>"$TMP/replay.txt"
done
assert_eq "false true true" "$(jq -r .duplicate "$TMP/replay.txt" | tr '\n' ' ' | sed 's/ $//')" "a batch id sent 3 times is stored once"
server_stop
done_testing
