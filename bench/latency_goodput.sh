#!/usr/bin/env bash
# What stamping costs in goodput when the LINK is the bottleneck, as on a
# real network. Unshaped, iperf3 in this one-kernel lab is CPU-bound and
# varies +-8 % run to run (FACTS.md), far more than the option's 12 bytes
# per segment (0.86 % of a 1398-byte segment on the overlay). So the
# sending node's uplink (eth0 in its netns, carrying the VXLAN packets) is
# shaped with TBF to LINK (default 400mbit), well below what the CPUs can
# push: goodput is then set by bytes on the wire, and the option's cost
# shows as fewer payload bytes per wire byte.
#
# iperf3 for SECS seconds, ratings (node-1) -> loadgen (node-2), modes off /
# on (--latency-sample 1) / sampled (--latency-sample 16) in every round in
# a rotating order. Per run: goodput (iperf3's receiver), and the ground
# truth of the byte cost from the kernel's counters: bytes and packets
# the shaper sent on the uplink (tc -s qdisc, in the node's netns), TCP
# segments sent by the ratings pod (/proc/net/snmp OutSegs, in its netns),
# so payload bytes per segment and wire bytes per payload byte.
#
# Usage: bench/latency_goodput.sh [ROUNDS]   (root; takes the lab lock)
#        LINK=400mbit SECS=8 bench/latency_goodput.sh 8
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-8}
SECS=${SECS:-8}
LINK=${LINK:-400mbit}
MODES=${MODES:-off on sampled}
. "$ROOT/bench/lib_latency.sh"
lat_lock "$@"
lat_setup latgoodput

SND_NODE=$(lat_pod ratings-v1 .node)
SND_NS=$(jq -r --arg n "$SND_NODE" '.nodes[] | select(.name == $n) | .netns' $STATE)
RT_NS=$(lat_pod ratings-v1 .netns)
unshape() { tc -n "$SND_NS" qdisc del dev eth0 root 2>/dev/null; }
lat_cleanup_hook=unshape
# burst: a few full frames (the rate holds over any window longer than
# ~1 ms); limit by latency: a queue of 20 ms at LINK, so the sender's
# congestion control sees drops as on a real bottleneck.
tc -n "$SND_NS" qdisc replace dev eth0 root tbf rate "$LINK" burst 32kb latency 20ms

lat_iperf_server

tx_counters() { # -> "bytes packets drops" the shaper sent on the uplink
	# The qdisc's figures, not the link's: for a GSO super-frame it counts
	# every segment and every segment's headers (qdisc_pkt_len), as the
	# wire would; the veth counts one packet with one set of headers.
	tc -n "$SND_NS" -s -j qdisc show dev eth0 |
		jq -r '.[] | select(.kind == "tbf") | "\(.bytes) \(.packets) \(.drops)"'
}
out_segs() { # TCP segments sent from the ratings pod's netns
	nsenter --net="/run/netns/$RT_NS" cat /proc/net/snmp |
		awk '$1 == "Tcp:" && !h { for (i = 2; i <= NF; i++) if ($i == "OutSegs") c = i; h = 1; next }
		     $1 == "Tcp:" && h { print $c }'
}

run() { # mode round
	local tag="$1.$2" b0 p0 d0 b1 p1 d1 s0 s1
	lat_agents_start "$1" "$tag"
	read -r b0 p0 d0 < <(tx_counters)
	s0=$(out_segs)
	"$SONDE" lab exec ratings-v1 -- iperf3 -c "$LG_IP" -p 5201 -t "$SECS" -J \
		>"$WORK/$tag.json" 2>/dev/null || true
	read -r b1 p1 d1 < <(tx_counters)
	s1=$(out_segs)
	lat_agents_stop
	lat_agent_stats "$1" "$tag"
	# A failed run (iperf3 error) leaves no line: it is not averaged.
	jq -r --arg m "$1" --arg r "$2" --argjson wb "$((b1 - b0))" --argjson wp "$((p1 - p0))" \
		--argjson segs "$((s1 - s0))" --argjson drops "$((d1 - d0))" \
		'.end as $e | ($e.sum_received.bytes) as $b |
		 "\($m) \($r) goodput=\($e.sum_received.bits_per_second / 1e6) payload_per_seg=\($b / $segs) wire_per_payload=\($wb / $b) wire_bytes_per_pkt=\($wb / $wp) segs=\($segs) wire_pkts=\($wp) shaper_drops=\($drops) retrans=\($e.sum_sent.retransmits)"' \
		"$WORK/$tag.json" >>"$WORK/runs.txt" 2>/dev/null ||
		echo "run $tag failed: $(head -c 300 "$WORK/$tag.json")" >&2
}

for r in $(seq "$ROUNDS"); do
	for m in $(lat_rotate "$r" $MODES); do run "$m" "$r"; done
done

echo "iperf3 -t $SECS, ratings ($SND_NODE) -> loadgen over VXLAN, $SND_NODE's uplink shaped: tbf rate $LINK burst 32kb latency 20ms; $ROUNDS rounds; $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
lat_stamped $MODES
echo
lat_table off goodput:"goodput Mbit/s":paired payload_per_seg:"payload bytes per TCP segment":paired \
	wire_per_payload:"uplink bytes per payload byte":paired wire_bytes_per_pkt:"uplink bytes per packet" \
	shaper_drops:"shaper drops" retrans:"retransmits"
