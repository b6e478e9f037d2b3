#!/usr/bin/env bash
# `sonde query latency --offsets` against offsets and asymmetries the test
# injects itself. Lab nodes share one kernel clock, so the true offset
# between node-1 and node-2 is exactly 0 unless we make one up:
# 1. nothing injected: the estimate is within tens of us of 0;
# 2. node-2's agent with --latency-test-skew-ns S (its stamps and arrival
#    times shifted by S, as if its clock ran S ahead): the estimate
#    recovers S, and S lies inside the reported bound;
# 3. no skew, `sonde lab delay --node node-2 20ms` (node-2's uplink egress
#    only): the estimate reads about -10 ms although the clocks agree. That
#    is the documented limit: an asymmetry of D reads as an offset of D/2;
#    the bound still holds the truth (0).
# Bookinfo at 20 req/s provides the traffic both ways; a `sonde server`
# stores the agents' records; the query's figures are also checked against
# jq over the agents' own output.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"

SKEW=2000000 # 2 ms
lab_fresh_up --rate 20
STATE=/run/sonde-lab/state.json
mapfile -t NODES < <(jq -r '.nodes[].name' $STATE | sort)
[ "${#NODES[@]}" -ge 2 ] || die "the lab has fewer than two nodes"
A=${NODES[0]} B=${NODES[1]}
server_start

now() { date +%s%N; }

# Agents with the latency sensor only, shipping to the server; node B's
# with the given test skew. Sets W0/W1, a window of 8 s fully inside the
# agents' run.
phase() { # tag skew_ns_of_B
	local node extra
	AGENT_PIDS=()
	for node in "${NODES[@]}"; do
		extra=()
		[ "$node" = "$B" ] && [ "$2" != 0 ] && extra=(--latency-test-skew-ns "$2")
		"$SONDE" agent --node "$node" --sensors latency --interval 1s \
			--server "$STORE_URL" --spool "$TMP/spool-$1-$node" \
			--output "$TMP/$1.$node.jsonl" "${extra[@]}" 2>"$TMP/$1.$node.err" &
		AGENT_PIDS+=($!)
	done
	for node in "${NODES[@]}"; do
		wait_for 20 grep -q "latency receiver attached to flannel.1" "$TMP/$1.$node.err" ||
			die "agent of $node did not attach: $(cat "$TMP/$1.$node.err")"
	done
	sleep 1.5 # one rescan: the pods are in the filters
	W0=$(now)
	sleep 8
	W1=$(now)
	sleep 1.2 # the interval holding W1 is flushed
	agents_stop
	cat "$TMP/$1".node-*.jsonl >"$TMP/$1.jsonl"
}

# The offsets row A-B over the window, from the server.
offsets() { # tag
	"$SONDE" query latency --offsets --json --since "$W0" --until "$W1" >"$TMP/$1.offsets.json" ||
		fail "$1: query --offsets failed"
	"$SONDE" query latency --offsets --since "$W0" --until "$W1" >"$TMP/$1.offsets.txt"
	log "$1: $(cat "$TMP/$1.offsets.txt")"
	ROW=$(jq -c --arg a "$A" --arg b "$B" '.pairs[] | select(.node_a == $a and .node_b == $b)' "$TMP/$1.offsets.json")
	[ -n "$ROW" ] || { fail "$1: no $A/$B row in: $(cat "$TMP/$1.offsets.json")"; ROW='{}'; }
	OFF=$(jq -r '.offset_ns' <<<"$ROW") UNC=$(jq -r '.uncertainty_ns' <<<"$ROW")
	LO=$(jq -r '.offset_low_ns' <<<"$ROW") HI=$(jq -r '.offset_high_ns' <<<"$ROW")
	# The minima the query used = jq over the agents' own records.
	local d want got
	for d in "$A $B a_to_b" "$B $A b_to_a"; do
		set -- $d
		want=$(jq -s --arg s "$1" --arg r "$2" --argjson a "$W0" --argjson b "$W1" \
			'[.[] | select(.kind == "latency" and .src_node == $s and .dst_node == $r
			   and .time_ns >= $a and .time_ns < $b) | .min_ns] | min' "$TMP/$TAG.jsonl")
		got=$(jq -r ".$3.min_ns" <<<"$ROW")
		assert_eq "$want" "$got" "$TAG: min $1 -> $2 in the query = jq over the agents' records"
	done
}

# 1. Nothing injected: same clock, near-symmetric fastest paths.
TAG=base
phase $TAG 0
offsets $TAG
log "base: offset $OFF ns +- $UNC (bound [$LO, $HI])"
assert_between -20000 20000 "$OFF" "base: offset estimate (ns), truth 0"
assert_between -1000000000 0 "$LO" "base: the bound's low end is <= the truth (0)"
assert_between 0 1000000000 "$HI" "base: the bound's high end is >= the truth (0)"

# 2. node B's clock made to run SKEW ahead.
TAG=skew
phase $TAG $SKEW
offsets $TAG
log "skew: offset $OFF ns +- $UNC (bound [$LO, $HI]), injected $SKEW"
assert_between $((SKEW - 20000)) $((SKEW + 20000)) "$OFF" "skew: offset estimate (ns) recovers the injected $SKEW"
assert_between "$LO" "$HI" "$SKEW" "skew: the injected skew lies inside the bound"
assert_eq "$SKEW" "$(jq -r 'select(.kind == "latency") | .clock.test_skew_ns' "$TMP/skew.$B.jsonl" | sort -u | paste -sd' ')" \
	"skew: every record of $B says its figures carry the test skew"
assert_eq "null" "$(jq -r 'select(.kind == "latency") | .clock.test_skew_ns' "$TMP/skew.$A.jsonl" | sort -u | paste -sd' ')" \
	"skew: $A's records carry none"
assert_contains "$(cat "$TMP/skew.offsets.txt")" "TEST-SKEW" "skew: the table flags the doctored clock"

# 3. No skew; 20 ms on node B's uplink egress: B -> A is 20 ms slower.
TAG=delay
lab delay --node "$B" 20ms >/dev/null || die "lab delay failed"
phase $TAG 0
lab delay --node "$B" --clear >/dev/null || fail "lab delay --clear failed"
STATS=/run/sonde-lab/nodes/$B/delayer-stats.json
wait_for 5 test -s "$STATS" || fail "no delayer statistics"
added_min=$(jq -r '.added_delay_us.min * 1000 | floor' "$STATS" 2>/dev/null || echo 20000000)
offsets $TAG
log "delay: offset $OFF ns +- $UNC (bound [$LO, $HI]); the delayer's smallest added delay $added_min ns"
# (min A->B - min B->A) / 2 = (d - (d' + delay)) / 2 ~ -delay / 2
assert_between -10300000 -9950000 "$OFF" "delay: the asymmetry reads as an offset of about -10 ms (ns)"
assert_between "$(awk -v t="$added_min" 'BEGIN { print -t / 2 - 100000 }')" \
	"$(awk -v t="$added_min" 'BEGIN { print -t / 2 + 100000 }')" "$OFF" \
	"delay: estimate = -(the delayer's smallest added delay) / 2 within 100 us"
assert_between "$LO" "$HI" 0 "delay: the true offset (0) still lies inside the bound"
assert_between 9900000 10300000 "$UNC" "delay: the reported uncertainty covers the error (ns)"

server_stop
done_testing
