#!/usr/bin/env bash
# Prometheus exposition: a real prometheus (Debian's 2.42) scrapes the
# server's and both agents' /metrics on loopback; PromQL through its HTTP
# API must give the figures the store and the agents' own output give.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"
command -v prometheus >/dev/null || skip "prometheus is not installed (scripts/deps.sh installs it)"

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json
server_start
P1=$((STORE_PORT + 1)) P2=$((STORE_PORT + 2)) PP=$((STORE_PORT + 3))
AGENT_PIDS=()
for node in node-1 node-2; do
	port=$P1; [ $node = node-2 ] && port=$P2
	"$SONDE" agent --node $node --server "$STORE_URL" --spool "$TMP/spool-$node" \
		--output "$TMP/$node.jsonl" --metrics "127.0.0.1:$port" 2>"$TMP/$node.err" &
	AGENT_PIDS+=($!)
done
for node in node-1 node-2; do
	wait_for 20 grep -q "flow sensor attached" "$TMP/$node.err" || die "agent of $node did not attach"
done

cat >"$TMP/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sonde-server
    static_configs: [{targets: ["127.0.0.1:$STORE_PORT"]}]
  - job_name: sonde-agent
    static_configs: [{targets: ["127.0.0.1:$P1", "127.0.0.1:$P2"]}]
YML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
	--web.listen-address="127.0.0.1:$PP" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
ON_EXIT='kill $PROM_PID 2>/dev/null; wait $PROM_PID 2>/dev/null; store_cleanup'
wait_for 30 curl -sf "http://127.0.0.1:$PP/-/ready" || die "prometheus did not start: $(tail -5 "$TMP/prometheus.log")"

lab load --rate 40 >/dev/null || die "lab load failed"
sleep 6
lab load --rate 0 >/dev/null
sleep 4 # last batches shipped (1 s), connections closed

promql() { # query -> the single value (or "none")
	curl -sf "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
		jq -r 'if (.data.result | length) == 0 then "none" else .data.result[0].value[1] end'
}
# Waits until prometheus has scraped a value equal to $2 (a few scrapes).
prom_eq() { # query expected what
	local got end=$((SECONDS + 15))
	while :; do
		got=$(promql "$1")
		[ "$got" = "$2" ] && break
		[ $SECONDS -ge $end ] && break
		sleep 1
	done
	assert_eq "$2" "$got" "$3"
}

stored=$("$SONDE" query flows --since 0 --count)
written=$(cat "$TMP"/node-*.jsonl | jq -c 'select(.kind == "flow")' | wc -l)
assert_eq "$written" "$stored" "store holds every flow record the agents wrote"
prom_eq 'sum(sonde_records_total{kind="flow"})' "$stored" "PromQL: sum of sonde_records_total = records in the store"
want=$(jq -c 'select(.src.workload == "productpage-v1" and (.dst.workload // .dst.backend.workload) == "details-v1")' "$TMP"/node-*.jsonl | wc -l)
prom_eq 'sum(sonde_records_total{src_workload="productpage-v1",dst_workload="details-v1"})' "$want" \
	"PromQL: productpage-v1 -> details-v1 records = agent output"
n1=$(wc -l <"$TMP/node-1.jsonl")
prom_eq "sonde_agent_records_total{instance=\"127.0.0.1:$P1\"}" "$n1" "PromQL: node-1 agent's records = its output"
prom_eq "sonde_agent_shipped_records_total{instance=\"127.0.0.1:$P1\"}" "$n1" "PromQL: node-1 agent shipped all"
prom_eq 'sum(sonde_agent_lost_events_total)' 0 "PromQL: no lost events"
prom_eq 'count(sonde_agent_sensor_up{sensor="flow"} == 1)' 2 "PromQL: flow sensor up on both agents"
ev=$(promql 'sum(sonde_agent_events_total{sensor="flow"})')
awk -v e="$ev" 'BEGIN { exit !(e > 0) }' && log "ok: agents' flow events: $ev" || fail "no agent events in prometheus ($ev)"
cpu=$(promql 'process_cpu_seconds_total{job="sonde-server"}')
awk -v c="$cpu" 'BEGIN { exit !(c > 0) }' && log "ok: server CPU seconds: $cpu" || fail "no server CPU metric ($cpu)"
# The histogram's p99 estimate lies in the bucket that holds the exact p99.
exact=$("$SONDE" query flows --since 0 --service details --json |
	jq -r '.rows[] | select(.src_workload == "productpage-v1" and .dst_workload == "details-v1") | .p99_ns')
est=$(promql 'histogram_quantile(0.99, sum by (le) (sonde_duration_seconds_bucket{src_workload="productpage-v1",dst_workload="details-v1"}))')
log "p99 productpage -> details: exact ${exact} ns, histogram estimate ${est} s"
awk -v x="$exact" -v e="$est" 'BEGIN { r = e * 1e9 / x; exit !(r > 0.4 && r < 2.5) }' ||
	fail "histogram p99 $est s is not within one bucket of the exact $exact ns"
agents_stop
server_stop
done_testing
