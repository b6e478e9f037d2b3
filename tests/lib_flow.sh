# Shared setup of the flow tests (source after tests/lib.sh): a lab, a client
# pod (loadgen) and a server pod on another node, and one agent per node of
# the two, attached and watching the pods' netns.
# Sets STATE, CW SW (workloads), cnode snode, cip sip, pids (agent pids).

lab_fresh_up --rate 0
STATE=/run/sonde-lab/state.json

pod() { jq -r --arg w "$1" '[.pods[] | select(.workload == $w)][0].'"$2" $STATE; }
# The client and the server must be on different nodes.
CW=loadgen SW=""
cnode=$(pod $CW node)
for w in ratings-v1 details-v1 reviews-v1 productpage-v1; do
	[ "$(pod $w node)" != "$cnode" ] && { SW=$w; break; }
done
[ -n "$SW" ] || die "no server pod on a node other than $cnode"
snode=$(pod $SW node) sip=$(pod $SW ip) cip=$(pod $CW ip)
log "client $CW ($cip, $cnode) -> server $SW ($sip, $snode)"

pids=()
for node in $cnode $snode; do
	"$SONDE" agent --node "$node" --interval 500ms --output "$TMP/$node.jsonl" 2>"$TMP/$node.err" &
	pids+=($!)
done
for node in $cnode $snode; do
	wait_for 20 grep -q "flow sensor attached" "$TMP/$node.err" ||
		die "agent of $node did not attach: $(cat "$TMP/$node.err")"
done
sleep 1.5 # one node rescan after attach: the pods' netns are in the filter
