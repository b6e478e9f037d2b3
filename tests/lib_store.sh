# Helpers for the collector tests (sourced after lib.sh): a `sonde server`
# on a loopback port of its own, agents that ship to it.

# A port unlikely to be taken by a concurrent test of another worktree.
STORE_PORT=${STORE_PORT:-$((20000 + RANDOM % 20000))}
STORE_URL=http://127.0.0.1:$STORE_PORT
STORE_TOKEN=test-token-$RANDOM
export SONDE_TOKEN=$STORE_TOKEN SONDE_SERVER=$STORE_URL
SERVER_PID=

server_start() { # extra server options...
	"$SONDE" server --listen "127.0.0.1:$STORE_PORT" --token "$STORE_TOKEN" \
		--store "$TMP/store.db" "$@" 2>>"$TMP/server.err" &
	SERVER_PID=$!
	wait_for 20 curl -sf "$STORE_URL/healthz" || die "server did not start: $(cat "$TMP/server.err")"
}

server_stop() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" || fail "server exited with $?"
	SERVER_PID=
}

AGENT_PIDS=()
agents_start() { # extra agent options... (per node: --spool, --output set here)
	local node
	for node in $(jq -r '.nodes[].name' /run/sonde-lab/state.json); do
		"$SONDE" agent --node "$node" --server "$STORE_URL" \
			--spool "$TMP/spool-$node" --output "$TMP/$node.jsonl" "$@" \
			2>"$TMP/$node.err" &
		AGENT_PIDS+=($!)
	done
	for node in $(jq -r '.nodes[].name' /run/sonde-lab/state.json); do
		wait_for 20 grep -q "flow sensor attached" "$TMP/$node.err" ||
			die "agent of $node did not attach: $(cat "$TMP/$node.err")"
	done
	sleep 1.5 # one node rescan after attach
}

agents_stop() {
	local p
	for p in "${AGENT_PIDS[@]}"; do kill -TERM "$p"; done
	for p in "${AGENT_PIDS[@]}"; do wait "$p" || fail "agent $p exited with $?"; done
	AGENT_PIDS=()
}

# Every record of this node, as the server stores it, one per line, sorted.
server_records() { # node
	curl -sf -H "Authorization: Bearer $STORE_TOKEN" \
		"$STORE_URL/v1/records?node=$1&since=0&limit=100000000" | sort
}

store_cleanup() {
	local p
	for p in "${AGENT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	[ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null
	# Only our own children, by pid: a bare `wait` would also wait for
	# helpers a test started (prometheus) and hang.
	for p in "${AGENT_PIDS[@]}" $SERVER_PID; do wait "$p" 2>/dev/null; done
}
ON_EXIT=store_cleanup
