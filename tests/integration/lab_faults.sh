#!/usr/bin/env bash
# lab_faults: `sonde lab delay --node A 20ms` adds 20 ms (+-1 ms) to what
# leaves node A's uplink, through the NFQUEUE delayer, and --clear restores
# the baseline. A pod on A calls, by pod IP, a server pod on node B that has
# no upstream; each of curl's time_connect (SYN out of A) and
# time_starttransfer - time_pretransfer (request out of A) crosses A's uplink
# once. Ground truth: curl's own timings, medians of 25 each, in one run.
source "$(dirname "$0")/../lib.sh"

"$SONDE" lab delayer --help >/dev/null 2>&1 ||
	skip "sonde lab delayer is not built yet (src/lab/delayer.c)"

STATE=/run/sonde-lab/state.json
REQS=25
lab_fresh_up --rate 0

client=loadgen
a=$(pod_field "$client" .node)
read -r server ip b < <(jq -r --arg a "$a" '[.pods[] | select((.workload == "ratings-v1" or .workload == "details-v1"
	or .workload == "reviews-v1") and .node != $a)][0] | "\(.name) \(.ip) \(.node)"' "$STATE")
[ "$ip" != null ] || die "no server without upstream on a node other than $a"
path=/${server%%-*}/0
log "client $client on $a -> $server on $b ($ip$path)"

# measure NAME: REQS requests from the client; curl's timings in $TMP/NAME.times
measure() {
	# shellcheck disable=SC2016 # the loop runs in the pod's shell
	lab exec "$client" -- sh -c 'i=0; while [ $i -lt '"$REQS"' ]; do i=$((i + 1));
		curl -sS -o /dev/null -w "%{http_code} %{time_connect} %{time_pretransfer} %{time_starttransfer}\n" "$0"; done' \
		"http://$ip:9080$path" >"$TMP/$1.times"
	assert_eq "$REQS" "$(grep -c '^200 ' "$TMP/$1.times")" "$1: $REQS requests answered 200"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# medians NAME: "connect_ms transfer_ms request_ms" where transfer =
# starttransfer - pretransfer and request = starttransfer - connect. curl
# 7.88 sometimes stamps pretransfer only after the answer is in (a
# bimodal baseline of ~0.01 or ~0.5 ms), so the request time, which
# holds the same single crossing of A's uplink, is checked as well.
medians() {
	printf '%s %s %s\n' "$(awk '{ print $2 * 1000 }' "$TMP/$1.times" | median)" \
		"$(awk '{ print ($4 - $3) * 1000 }' "$TMP/$1.times" | median)" \
		"$(awk '{ print ($4 - $2) * 1000 }' "$TMP/$1.times" | median)"
}
rise() { awk -v x="$1" -v y="$2" 'BEGIN { print x - y }'; }
queue_counter() {
	nsenter --net="/run/netns/sonde-$a" iptables-legacy -w -t mangle -L SONDE-DELAY -v -x -n |
		awk '$3 == "NFQUEUE" { s += $1 } END { print s + 0 }'
}

measure baseline
read -r base_c base_t base_r < <(medians baseline)
log "baseline medians: connect $base_c ms, pretransfer->first byte $base_t ms, connected->first byte $base_r ms"

lab delay --node "$a" 20ms || fail "lab delay --node $a 20ms failed"
assert_eq "[{\"node\":\"$a\",\"kind\":\"delay\",\"value_us\":20000}]" "$(jq -c '[.faults[] | {node, kind, value_us}]' "$STATE")" \
	"state records the delay"
dcg=$(jq -r --arg a "$a" '.nodes[] | select(.name == $a) | .cgroup' "$STATE")/system/delayer
dpid=$(head -n 1 "$dcg/cgroup.procs")
assert_ne "" "$dpid" "a delayer runs in $dcg"
assert_eq "$(stat -L -c %i "/run/netns/sonde-$a")" "$(stat -L -c %i "/proc/$dpid/ns/net")" "the delayer runs in $a's netns"
q0=$(queue_counter)
measure delayed
read -r del_c del_t del_r < <(medians delayed)
q1=$(queue_counter)
log "delayed medians: connect $del_c ms, pretransfer->first byte $del_t ms, connected->first byte $del_r ms; $((q1 - q0)) packets queued"
assert_between 19 21 "$(rise "$del_c" "$base_c")" "time_connect rise (ms)"
assert_between 19 21 "$(rise "$del_t" "$base_t")" "time_starttransfer - time_pretransfer rise (ms)"
assert_between 19 21 "$(rise "$del_r" "$base_r")" "time_starttransfer - time_connect rise (ms)"
# Every request sends at least SYN, ACK+request, FIN out of A's uplink.
assert_between $((REQS * 3)) $((REQS * 40)) "$((q1 - q0))" "packets through the NFQUEUE rule"

# Loss and delay on one node are independent: clearing one keeps the other.
lab loss --node "$a" 1% >/dev/null || fail "lab loss on a delayed node failed"
lab delay --node "$a" --clear || fail "lab delay --clear failed"
rules=$(nsenter --net="/run/netns/sonde-$a" iptables-legacy -w -t mangle -S)
assert_contains "$rules" "-A SONDE-LOSS" "clearing the delay keeps the loss rule"
case $rules in *"-A SONDE-DELAY"*) fail "the NFQUEUE rule survived --clear" ;; esac
lab loss --node "$a" --clear >/dev/null || fail "lab loss --clear failed"
assert_eq '[]' "$(jq -c .faults "$STATE")" "state: no fault after both clears"
wait_for 5 sh -c "[ -z \"\$(cat $dcg/cgroup.procs)\" ]" || fail "the delayer still runs after --clear"

measure cleared
read -r clr_c clr_t clr_r < <(medians cleared)
log "cleared medians: connect $clr_c ms, pretransfer->first byte $clr_t ms, connected->first byte $clr_r ms"
assert_between -1 1 "$(rise "$clr_c" "$base_c")" "time_connect back to baseline (ms)"
assert_between -1 1 "$(rise "$clr_t" "$base_t")" "starttransfer - pretransfer back to baseline (ms)"
assert_between -1 1 "$(rise "$clr_r" "$base_r")" "starttransfer - connect back to baseline (ms)"

out=$(lab delay --node node-9 20ms 2>&1) && fail "delay on an unknown node succeeds"
assert_contains "$out" "no node 'node-9'" "an unknown node is named in the error"

done_testing
