#!/usr/bin/env bash
# The latency receiver's cost per packet by packet kind, measured by the
# kernel on crafted frames (bench/latency_rx_micro.c: BPF_PROG_TEST_RUN,
# REPEAT runs, best of 5), without the lab and without the noise of other
# processes' CPU use. OLD=DIR (a built tree of another version, e.g.
# `git archive REV | tar -x -C DIR && make -C DIR`) adds its objects,
# alternating with ours ROUNDS times, for before/after.
#
# Usage: bench/latency_rx_micro.sh   (root; no lab, no lock)
#        OLD=/tmp/old REPEAT=1000000 ROUNDS=3 bench/latency_rx_micro.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPEAT=${REPEAT:-1000000}
ROUNDS=${ROUNDS:-3}
TMP=$(mktemp -d /tmp/sonde-rxmicro.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
[ -f "$ROOT/build/bpf/latency.skel.h" ] || make -C "$ROOT" -s all
builds="new:$ROOT"
[ -z "${OLD:-}" ] || builds+=" old:$OLD"
for b in $builds; do
	cc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"${b#*:}/build/bpf" -I"${b#*:}/bpf" \
		-o "$TMP/${b%%:*}" "$ROOT/bench/latency_rx_micro.c" -lbpf -lelf -lz
done
for r in $(seq "$ROUNDS"); do
	for b in $builds; do
		echo "${b%%:*} $r $("$TMP/${b%%:*}" "$REPEAT")"
	done
done >"$TMP/runs.txt"
echo "lat_rx_vxlan, ns per run (BPF_PROG_TEST_RUN, $REPEAT runs, best of 5), $ROUNDS rounds; $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
kinds="unmonitored ts_only stamped sack_stamped vlan_stamped"
echo "| build | $(echo $kinds | sed 's/ / | /g') |"
echo "|---$(for _ in $kinds; do printf '|---'; done)|"
for b in $builds; do
	n=${b%%:*}
	printf '| %s |' "$n"
	for k in $kinds; do
		awk -v n="$n" '$1 == n' "$TMP/runs.txt" | sed 's/^[^{]*//' | jq -r ".${k}_ns" |
			sort -n | tr '\n' ' ' | awk '{ printf " %s (%s) |", $(int((NF + 1) / 2)), $0 }'
	done
	echo
done
echo
echo "(median of the rounds; all rounds in parentheses)"
