#!/usr/bin/env bash
# Collector benchmarks (results: bench/results/store.md):
# 1. ingest records/s into SQLite through the real HTTP path (compressed
#    batches POSTed by PAR concurrent curl clients, as agents do), and the
#    server's CPU time per 100k records;
# 2. the same into ClickHouse (Debian's 18.16, started here on loopback);
# 3. p99 of a one-hour service-pair aggregation over the stored records.
# Loopback only; no lab needed. Sizes: STORE_BENCH_RECORDS (default 10M).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=${SONDE:-$ROOT/build/release/sonde}
N=${STORE_BENCH_RECORDS:-10000000}
BATCH=${STORE_BENCH_BATCH:-5000}
PAR=${STORE_BENCH_PAR:-4}
QUERIES=${STORE_BENCH_QUERIES:-20}
TMP=$(mktemp -d /tmp/sonde-bench-store.XXXXXX)
PORT=$((30000 + RANDOM % 10000))
trap 'kill $SP $CHPID 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
SP= CHPID=

echo "generating $N records in batches of $BATCH over 2 h..."
python3 "$ROOT/bench/store_gen.py" "$TMP/batches" "$N" "$BATCH" 7200
echo "batches: $(ls "$TMP/batches" | wc -l), $(du -sh "$TMP/batches" | cut -f1) compressed"

cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ingest() { # store-spec label
	"$SONDE" server --listen 127.0.0.1:$PORT --store "$1" --queue-mb 512 2>"$TMP/server.err" &
	SP=$!
	for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
	local c0 t0 t1 c1 hz
	hz=$(getconf CLK_TCK)
	c0=$(cpu_of $SP) t0=$(date +%s.%N)
	ls "$TMP/batches" | xargs -P "$PAR" -I{} curl -sf -o /dev/null --retry 20 --retry-delay 1 \
		-H "X-Sonde-Batch: {}" -H "Content-Encoding: deflate" \
		--data-binary @"$TMP/batches/{}" "http://127.0.0.1:$PORT/v1/ingest"
	t1=$(date +%s.%N) c1=$(cpu_of $SP)
	local stored
	stored=$(curl -s "http://127.0.0.1:$PORT/v1/count?since=0" | jq .records)
	awk -v n="$stored" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v l="$2" 'BEGIN {
		s = t1 - t0; cpu = (c1 - c0) / hz
		printf "%s: %d records in %.1f s = %.0f records/s; server CPU %.1f s = %.2f CPU-s per 100k records (%.2f cores at 100k/s)\n",
			l, n, s, n / s, cpu, cpu / n * 1e5, cpu / n * 1e5 }'
}
query_p99() { # label
	local now since
	now=$(date +%s%N) since=$((now - 3600 * 1000000000))
	for _ in $(seq "$QUERIES"); do
		curl -s -o /dev/null -w '%{time_total}\n' \
			"http://127.0.0.1:$PORT/v1/aggregate?kind=flow&service=details&since=$since&until=$now&interval=1m"
	done | sort -n >"$TMP/q.txt"
	rows=$(curl -s "http://127.0.0.1:$PORT/v1/aggregate?kind=flow&service=details&since=$since&until=$now&interval=1m" | jq '.rows | length')
	awk -v l="$1" -v rows="$rows" '{ v[NR] = $1 } END {
		i = int(NR * 0.99) + 1; if (i > NR) i = NR
		m = int(NR * 0.5) + 1; if (m > NR) m = NR
		printf "%s: one-hour aggregation (service details, 1 min buckets, %d rows): p50 %.3f s, p99 %.3f s over %d queries\n",
			l, rows, v[m], v[i], NR }' "$TMP/q.txt"
}

ingest "sqlite:$TMP/bench.db" sqlite
query_p99 sqlite
echo "sqlite file: $(du -sh "$TMP"/bench.db* | awk '{ print $1 }' | paste -sd+)"
kill $SP; wait $SP; SP=
rm -f "$TMP"/bench.db*

if [ "${STORE_BENCH_CLICKHOUSE:-1}" = 1 ] && [ -x /usr/sbin/clickhouse-server ]; then
	CHP=$((PORT + 1))
	mkdir -p "$TMP/ch/data" "$TMP/ch/log"
	sed -e "s#<http_port>8123</http_port>#<http_port>$CHP</http_port>#" \
		-e "s#<tcp_port>9000</tcp_port>#<tcp_port>$((CHP + 1))</tcp_port>#" \
		-e "s#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>$((CHP + 2))</interserver_http_port>#" \
		-e "s#<listen_host>::1</listen_host>##" \
		-e "s#/var/lib/clickhouse/#$TMP/ch/data/#g" -e "s#/var/log/clickhouse-server/#$TMP/ch/log/#g" \
		/etc/clickhouse-server/config.xml >"$TMP/ch/config.xml"
	cp /etc/clickhouse-server/users.xml "$TMP/ch/"
	(cd "$TMP/ch" && exec /usr/sbin/clickhouse-server --config-file="$TMP/ch/config.xml" >/dev/null 2>&1) &
	CHPID=$!
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CHP/ping" >/dev/null && break; sleep 0.2; done
	ingest "clickhouse:http://127.0.0.1:$CHP" clickhouse
	echo "clickhouse-server CPU during the run: $(awk '{ printf "%.1f s", ($14 + $15) / '"$(getconf CLK_TCK)"' }' /proc/$(pgrep -P $CHPID -f clickhouse-server || echo $CHPID)/stat 2>/dev/null)"
	query_p99 clickhouse
	kill $SP; wait $SP; SP=
fi
