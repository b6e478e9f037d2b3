#!/usr/bin/env bash
# Elasticsearch _bulk exporter against a local endpoint that checks the
# documented format and answers like Elasticsearch, with a busy 429, per-item
# 429s (retried) and per-item 400s (dropped, counted). Records: Bookinfo-like
# flow and latency records sent through the ingest API (no lab needed).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"
# No lab here: never touch the (shared) lab at exit.
KEEP_LAB=1
trap finish EXIT
ESP=$((STORE_PORT + 1))
/usr/bin/python3 "$ROOT/tests/es_bulk_endpoint.py" "$ESP" "$TMP/es.json" 2>"$TMP/es.err" &
ES_PID=$!
ON_EXIT='store_cleanup; kill $ES_PID 2>/dev/null; wait $ES_PID 2>/dev/null'
wait_for 10 bash -c "echo >/dev/tcp/127.0.0.1/$ESP" || die "fake ES did not start: $(cat "$TMP/es.err")"
server_start --export-es "http://127.0.0.1:$ESP"

# 3 batches x 400 records over three UTC days (index per day), times in ms
# steps so that the endpoint's per-item rules hit a known set.
base=$(( ($(date +%s) / 86400 - 2) * 86400 * 1000 + 3600000 ))
for b in 0 1 2; do
	for i in $(seq 0 399); do
		ms=$((base + b * 86400000 + i * 1003))
		kind=flow; [ $((i % 4)) = 0 ] && kind=latency
		echo "{\"kind\":\"$kind\",\"time_ns\":${ms}000123,\"node\":\"node-1\",\"p50_ns\":$((40000 + i)),\"duration_ns\":$((1000000 + i)),\"src\":{\"ip\":\"10.244.1.$((i % 5 + 2))\",\"port\":$((40000 + i)),\"pod\":\"reviews-v2-x\",\"namespace\":\"bookinfo\",\"workload\":\"reviews-v2\",\"service\":\"reviews\"},\"dst\":{\"ip\":\"10.244.2.7\",\"port\":9080,\"pod\":\"ratings-v1-y\",\"namespace\":\"bookinfo\",\"workload\":\"ratings-v1\",\"service\":\"ratings\"}}"
	done >"$TMP/b$b.jsonl"
	curl -sf -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: es-$b" \
		--data-binary @"$TMP/b$b.jsonl" "$STORE_URL/v1/ingest" >/dev/null || fail "ingest b$b"
done
# A replayed batch: stored once, exported once.
curl -sf -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: es-1" \
	--data-binary @"$TMP/b1.jsonl" "$STORE_URL/v1/ingest" >/dev/null
cat "$TMP"/b?.jsonl >"$TMP/all.jsonl"
total=$(wc -l <"$TMP/all.jsonl")
rej=$(jq -r '.time_ns / 1000000 | floor | select(. % 13 == 0)' "$TMP/all.jsonl" | wc -l)
r429=$(jq -r '.time_ns / 1000000 | floor | select(. % 13 != 0 and . % 7 == 0)' "$TMP/all.jsonl" | wc -l)
want=$((total - rej))
log "records $total, expected permanent rejections $rej, per-item 429s $r429"

metric() { curl -s "$STORE_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_for 30 bash -c "[ \"\$(curl -s $STORE_URL/metrics | awk '\$1 == \"sonde_server_export_queue_documents\" { print \$2 }')\" = 0 ] &&
	[ \"\$(curl -s $STORE_URL/metrics | awk '\$1 == \"sonde_server_export_documents_total{result=\\\"indexed\\\"}\" { print \$2 }')\" = $want ]" ||
	fail "exporter did not finish"
assert_eq "$want" "$(metric 'sonde_server_export_documents_total{result="indexed"}')" "indexed = records - permanent rejections"
assert_eq "$rej" "$(metric 'sonde_server_export_documents_total{result="rejected"}')" "per-item 400s counted as rejected"
assert_eq 0 "$(metric 'sonde_server_export_documents_total{result="dropped"}')" "nothing dropped"
assert_eq "$r429" "$(metric sonde_server_export_retried_documents_total)" "every per-item 429 retried"
[ "$(metric sonde_server_export_failed_requests_total)" -ge 1 ] || fail "the busy 429 was not seen as a failed request"
server_stop
kill -TERM $ES_PID; wait $ES_PID
assert_eq "[]" "$(jq -c .violations "$TMP/es.json")" "every request in the documented _bulk format"
assert_eq "$want" "$(jq '.docs | length' "$TMP/es.json")" "documents in the endpoint = indexed, no duplicates"
assert_eq 0 "$(jq .overwrites "$TMP/es.json")" "no document sent twice after success"
assert_eq "3" "$(jq -r '[.docs[] | .startTimeMillis / 86400000 | floor] | unique | length' "$TMP/es.json")" "three daily indices"
# A latency document against the record it came from (_id = batch-position).
id=$(jq -r '.docs | to_entries | map(select(.value.sensorType == "latency")) | .[0].key' "$TMP/es.json")
b=$(cut -d- -f2 <<<"$id") n=$(cut -d- -f3 <<<"$id")
doc=$(jq -c --arg id "$id" '.docs[$id] | {SRCNode, DSTNode, SRCworkload, DSTworkload, sensorType, serviceName, duration}' "$TMP/es.json")
want=$(sed -n "$((n + 1))p" "$TMP/b$b.jsonl" | jq -c '{SRCNode: .src.ip, DSTNode: .dst.ip, SRCworkload: .src.workload,
	DSTworkload: .dst.workload, sensorType: .kind, serviceName: .dst.namespace, duration: .p50_ns}')
assert_eq "$want" "$doc" "document $id in Fig. 12 form"
done_testing
