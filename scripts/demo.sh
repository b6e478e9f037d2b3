#!/usr/bin/env bash
# `make demo`: the lab with Bookinfo under load, `sonde server` (SQLite),
# one sonde agent per node shipping to it, and a live view of what the
# services served next to what sonde saw and what `sonde query` answers.
# Ctrl-C stops the agents and removes the lab.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SONDE=$ROOT/sonde
STATE=/run/sonde-lab/state.json
OUT=/run/sonde-demo
RATE=${RATE:-10}
LISTEN=${LISTEN:-127.0.0.1:7070}
export SONDE_SERVER=http://$LISTEN
NODES=${NODES:-2}

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root (eBPF and network namespaces): sudo make demo" >&2
	exit 1
fi

agents=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "== stopping agents and removing the lab"
	for pid in "${agents[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${agents[@]}"; do wait "$pid" 2>/dev/null || true; done
	[ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
	"$SONDE" lab down || true
	rm -rf "$OUT"
}
trap cleanup INT TERM EXIT

echo "== sonde lab up --nodes $NODES --rate $RATE"
"$SONDE" lab up --nodes "$NODES" --rate "$RATE"
echo
"$SONDE" lab status
echo

rm -rf "$OUT"
mkdir -p "$OUT"
"$SONDE" server --listen "$LISTEN" --store "$OUT/sonde.db" 2>"$OUT/server.log" &
server=$!
for _ in $(seq 50); do curl -sf "$SONDE_SERVER/healthz" >/dev/null && break; sleep 0.2; done
echo "== sonde server on $SONDE_SERVER (SQLite $OUT/sonde.db; /metrics for Prometheus)"
for node in $(jq -r '.nodes[].name' "$STATE"); do
	"$SONDE" agent --node "$node" --output "$OUT/$node.jsonl" --server "$SONDE_SERVER" \
		--spool "$OUT/spool-$node" 2>"$OUT/$node.log" &
	agents+=($!)
done
echo "== one sonde agent per node; records in $OUT/<node>.jsonl and in the server"
echo "   (try: SONDE_SERVER=$SONDE_SERVER ./sonde query flows --service reviews --interval 10s)"
echo "   (try: ./sonde lab delay --node node-2 20ms, in another terminal)"
sleep 2

# Byte offsets of what we have shown already, per file.
declare -A seen
new_lines() { # file: prints lines appended since the last call
	local f=$1 size
	[ -f "$f" ] || return 0
	size=$(stat -c %s "$f")
	tail -c +"$(( ${seen[$f]:-0} + 1 ))" "$f" | head -c "$(( size - ${seen[$f]:-0} ))"
	seen[$f]=$size
}

# Start counting from now.
for f in "$OUT"/*.jsonl $(jq -r '.pods[].dir + "/access.log"' "$STATE"); do
	new_lines "$f" >/dev/null
done

while true; do
	sleep 2
	printf '\n== %s  last 2 s\n' "$(date +%T)"
	echo "-- requests served (nginx access logs: status counts)"
	for pod in $(jq -r '.pods[] | select(.namespace=="bookinfo" and .workload!="loadgen") | .name' "$STATE"); do
		dir=$(jq -r --arg p "$pod" '.pods[] | select(.name==$p) | .dir' "$STATE")
		node=$(jq -r --arg p "$pod" '.pods[] | select(.name==$p) | .node' "$STATE")
		counts=$(new_lines "$dir/access.log" | jq -r 'select((.subrequest // false) | not) | .status' 2>/dev/null | sort | uniq -c | awk '{printf "%s x%s  ", $2, $1}')
		printf '   %-36s %-7s %s\n' "$pod" "$node" "${counts:--}"
	done
	echo "-- TCP connections sonde saw opening (server side: client workload -> server workload)"
	for f in "$OUT"/*.jsonl; do new_lines "$f"; done |
		jq -r 'select(.event=="open" and .side=="server") |
			"\(.src.workload // .src.ip) -> \(.dst.workload // .dst.ip)  [\(.node)]"' 2>/dev/null |
		sort | uniq -c | sed 's/^/   /'
	echo "-- sonde query flows --since 10s (the server's store, per workload pair)"
	"$SONDE" query flows --since 10s 2>&1 | sed 's/^/   /' || true
done
