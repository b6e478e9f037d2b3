#!/usr/bin/env bash
# Backpressure instead of unbounded memory: with --max-uploads 1, a second
# upload while one is still being received is answered 429 with
# Retry-After; once the first is done, uploads are accepted again. No lab.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"
KEEP_LAB=1 # no lab here: never touch the shared one at exit
trap finish EXIT
server_start --max-uploads 1
now=$(date +%s%N)
for i in $(seq 3000); do
	echo "{\"kind\":\"flow\",\"time_ns\":$((now + i)),\"node\":\"n\",\"src\":{\"ip\":\"10.0.0.1\"},\"dst\":{\"ip\":\"10.0.0.2\"},\"pad\":\"$(printf '%0100d' 0)\"}"
done >"$TMP/big.jsonl"
# The first upload trickles in at 100 KB/s (~5 s).
curl -s -o "$TMP/slow.out" -w '%{http_code}' --limit-rate 100k -H "Authorization: Bearer $STORE_TOKEN" \
	-H "X-Sonde-Batch: slow" --data-binary @"$TMP/big.jsonl" "$STORE_URL/v1/ingest" >"$TMP/slow.code" &
SLOW=$!
sleep 1
curl -s -D "$TMP/h.txt" -o /dev/null -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: second" \
	--data-binary "{\"kind\":\"flow\",\"time_ns\":$now}" "$STORE_URL/v1/ingest"
assert_contains "$(head -1 "$TMP/h.txt")" " 429" "second concurrent upload answered 429"
assert_contains "$(tr -d '\r' <"$TMP/h.txt")" "Retry-After: 1" "with Retry-After"
wait $SLOW
assert_eq 200 "$(cat "$TMP/slow.code")" "the slow upload itself is stored"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $STORE_TOKEN" -H "X-Sonde-Batch: second" \
	--data-binary "{\"kind\":\"flow\",\"time_ns\":$now}" "$STORE_URL/v1/ingest")
assert_eq 200 "$code" "accepted again once the first upload is done"
assert_eq 3001 "$("$SONDE" query flows --since 0 --count)" "both batches stored"
over=$(curl -s "$STORE_URL/metrics" | awk '$1 == "sonde_server_ingest_batches_total{result=\"overloaded\"}" { print $2 }')
assert_eq 1 "$over" "the refusal is counted"
server_stop
done_testing
