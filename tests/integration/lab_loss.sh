#!/usr/bin/env bash
# lab_loss: `sonde lab loss --node A 20%` drops a fifth of the packets leaving
# A's uplink, only there, and --clear restores a lossless overlay. Ground
# truth: ping's own transmitted/received counts, judged against the binomial
# distribution, and the drop rule's packet counter in A's netns.
source "$(dirname "$0")/../lib.sh"

STATE=/run/sonde-lab/state.json
P=0.20
COUNT=1000
lab_fresh_up --nodes 3 --rate 0

# ping_loss FROM_NODE TO_IP COUNT -> "transmitted received"
ping_loss() {
	nsenter --net="/run/netns/sonde-$1" ping -n -q -c "$3" -i 0.002 -W 1 "$2" |
		awk '/packets transmitted/ { print $1, $4 }'
}
drop_counter() {
	nsenter --net=/run/netns/sonde-node-1 iptables-legacy -w -t mangle -L SONDE-LOSS -v -x -n |
		awk '$3 == "DROP" { s += $1 } END { print s + 0 }'
}
# The binomial band: P*n +- 4 sigma.
band() { awk -v p="$P" -v n="$1" 'BEGIN { s = sqrt(n * p * (1 - p)); printf "%d %d\n", n * p - 4 * s, n * p + 4 * s + 1 }'; }

read -r tx rx < <(ping_loss node-1 10.244.2.1 200)
assert_between 0 1 "$((tx - rx))" "before: node-1 -> node-2 pings lost (of $tx)"

lab loss --node node-1 20% || fail "lab loss --node node-1 20% failed"
assert_eq '[{"node":"node-1","kind":"loss","probability":0.2}]' "$(jq -c .faults "$STATE")" "state records the loss"
lab status | grep -Eq '^node-1 +loss +20%' || fail "status shows the loss on node-1"

c0=$(drop_counter)
read -r tx rx < <(ping_loss node-1 10.244.2.1 "$COUNT")
lost=$((tx - rx))
c1=$(drop_counter)
read -r lo hi < <(band "$tx")
log "node-1 -> node-2: $lost of $tx lost; drop rule counted $((c1 - c0))"
assert_between "$lo" "$hi" "$lost" "echo requests lost leaving node-1 (binomial 4-sigma band for 20 %)"
# Only echo requests leave node-1 here; each lost one was dropped by the rule.
assert_between "$lost" "$((lost + 20))" "$((c1 - c0))" "drop rule packet counter vs pings lost"

# The replies of node-2's pings leave node-1 too: the same loss.
read -r tx rx < <(ping_loss node-2 10.244.1.1 "$COUNT")
read -r lo hi < <(band "$tx")
assert_between "$lo" "$hi" "$((tx - rx))" "node-2 -> node-1: replies lost leaving node-1"
# Traffic that never leaves node-1's uplink is untouched.
read -r tx rx < <(ping_loss node-2 10.244.3.1 300)
assert_between 0 1 "$((tx - rx))" "node-2 -> node-3 unaffected by node-1's loss"

lab loss --node node-1 --clear || fail "lab loss --clear failed"
assert_eq '[]' "$(jq -c .faults "$STATE")" "state: no fault after clear"
assert_eq 0 "$(nsenter --net=/run/netns/sonde-node-1 iptables-legacy -w -t mangle -S SONDE-LOSS | grep -c -- '-A SONDE-LOSS')" "drop rule removed"
read -r tx rx < <(ping_loss node-1 10.244.2.1 500)
assert_between 0 1 "$((tx - rx))" "after clear: node-1 -> node-2 pings lost (of $tx)"

out=$(lab loss --node node-9 5% 2>&1) && fail "loss on an unknown node succeeds"
assert_contains "$out" "no node 'node-9'" "an unknown node is named in the error"

done_testing
