#!/usr/bin/env bash
# Agents report their node discovery to `sonde server` (PUT
# /v1/agents/<node>/discovery) and the server's GET /v1/topology joins it
# with the API's objects. Ground truth from the kernel, not from sonde: each
# lab pod's chain has the netns inode of its process (stat -L
# /proc/<pid>/ns/net, pid from the lab's state), the host veth whose ifindex
# `ip -j link` shows in the node's netns and which the pod's eth0 names as
# its peer (link_index), bridge cni0 and flannel.1 with the VNI and port
# `ip -d -j link` shows, and the VXLAN's lower device as uplink; the chains
# equal `sonde topology --json` run here (same builder). After `lab move`
# the new pod's chain is discovered on its new node. A killed agent's node
# turns stale after 3 missed heartbeats. A malformed PUT gets 400 and
# leaves the stored document as it was; no token, 401. The agents run with
# their periodic rediscovery at an hour and a metadata file that never
# changes, so only the node's link and cgroup notifications can make them
# follow a move: the moved pod's sensor_attached comes within 1 s of its
# veth appearing (`ip monitor link` in the node's netns).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"

command -v openssl >/dev/null || skip "openssl is missing (scripts/deps.sh installs it)"
lab_fresh_up --rate 0
ST=/run/sonde-lab/state.json
server_start --kubeconfig /run/sonde-lab/kubeconfig
AUTH=(-H "Authorization: Bearer $STORE_TOKEN")
get() { curl -sf "${AUTH[@]}" "$STORE_URL/v1/$1"; }
put_code() { # node body [curl options...]: the HTTP status of a discovery PUT
	local node=$1 body=$2
	shift 2
	curl -s -o "$TMP/put.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
		"$@" --data-binary "$body" "$STORE_URL/v1/agents/$node/discovery"
}
cp $ST "$TMP/frozen.json"
agents_start --sensors flow --heartbeat 1s --rediscover 1h --metadata "$TMP/frozen.json"
npods=$(jq '.pods | length' $ST)
all_discovered() {
	get topology | jq -e --argjson n "$npods" \
		'[.pods[] | select(.discovered and .netns != null and .host_veth != null)] | length == $n' >/dev/null
}
wait_for 15 all_discovered || fail "not every chain discovered within 15 s: $(get topology | jq -c '[.pods[] | {pod, discovered, netns}]')"

# --- every chain against the kernel
check_pod() { # pod name: its chain in the server's topology against ip/stat
	local name=$1 p node pid netns want chain eth0
	p=$(jq -c --arg n "$name" '.pods[] | select(.name == $n)' $ST)
	node=$(jq -r .node <<<"$p")
	pid=$(jq -r .pid <<<"$p")
	[ "$pid" != 0 ] || pid=$(head -1 "$(jq -r .sandbox_cgroup <<<"$p")/cgroup.procs")
	netns=sonde-$node
	chain=$(get topology | jq -c --arg n "$name" '.pods[] | select(.pod == $n)')
	want=$(stat -L -c %i "/proc/$pid/ns/net")
	assert_eq "$want" "$(jq -r .netns <<<"$chain")" "$name: netns inode = stat -L /proc/$pid/ns/net"
	want=$(ip -n "$netns" -j link show "$(jq -r .host_veth <<<"$p")" | jq -c '.[0] | {name: .ifname, ifindex}')
	assert_eq "$want" "$(jq -c .host_veth <<<"$chain")" "$name: host veth (ip -n $netns link)"
	eth0=$(ip -n "$(jq -r .netns <<<"$p")" -j link show eth0 | jq -c '.[0]')
	assert_eq "$(jq -r .link_index <<<"$eth0")" "$(jq -r .host_veth.ifindex <<<"$chain")" "$name: the pod's eth0 names the host veth as its peer"
	assert_eq "$(jq -c '{name: .ifname, ifindex}' <<<"$eth0")" "$(jq -c .pod_veth <<<"$chain")" "$name: pod-side veth"
	want=$(ip -n "$netns" -j link show cni0 | jq -c '.[0] | {name: .ifname, ifindex}')
	assert_eq "$want" "$(jq -c .bridge <<<"$chain")" "$name: bridge"
	want=$(ip -n "$netns" -d -j link show flannel.1 | jq -c '.[0] | {name: .ifname, ifindex, vni: .linkinfo.info_data.id, port: .linkinfo.info_data.port}')
	assert_eq "$want" "$(jq -c .vxlan <<<"$chain")" "$name: VXLAN device"
	want=$(ip -n "$netns" -d -j link show flannel.1 | jq -r '.[0].linkinfo.info_data.link')
	want=$(ip -n "$netns" -j link show "$want" | jq -c '.[0] | {name: .ifname, ifindex}')
	assert_eq "$want" "$(jq -c .uplink <<<"$chain")" "$name: uplink (the VXLAN's lower device)"
	assert_eq "$node" "$(jq -r .node <<<"$chain")" "$name: node"
}
for name in $(jq -r '.pods[] | select(.pid != 0) | .name' $ST); do check_pod "$name"; done
# The CLI run here discovers the lab's nodes itself, with the same builder.
"$SONDE" topology --kubeconfig /run/sonde-lab/kubeconfig --json >"$TMP/cli.json" 2>"$TMP/cli.err" || fail "sonde topology: $(cat "$TMP/cli.err")"
get topology | jq -S -c '.pods' >"$TMP/server-chains.json"
jq -S -c '.pods' "$TMP/cli.json" >"$TMP/cli-chains.json"
assert_eq "$(md5sum <"$TMP/cli-chains.json")" "$(md5sum <"$TMP/server-chains.json")" \
	"server chains = sonde topology --json run on the nodes ($(jq length "$TMP/cli-chains.json") chains; $TMP/*-chains.json)"
assert_eq "$(jq -c '[.nodes[] | {name, stale}]' <<<"$(get topology)")" \
	"$(jq -c '[.nodes[] | {name, stale: false}]' $ST)" "every node reported and fresh"
doc=$(get agents/node-1/discovery)
assert_eq "node-1 false" "$(jq -r '"\(.discovery.node) \(.stale)"' <<<"$doc")" "GET /v1/agents/node-1/discovery"
jq -e '.discovery.agent.instance | test("^[0-9a-f]{16}$")' <<<"$doc" >/dev/null || fail "no agent instance id: $(jq -c .discovery.agent <<<"$doc")"

# --- auth and malformed documents
assert_eq 401 "$(put_code node-1 '{}')" "PUT without a token"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "$STORE_URL/v1/agents/node-1/discovery")" "GET without a token"
good='{"node":"node-t","time_ns":1,"agent":{"instance":"t","heartbeat_ns":3600000000000},"pods":[{"uid":"u1","netns":5}]}'
assert_eq 200 "$(put_code node-t "$good" "${AUTH[@]}")" "a valid PUT for a node of no agent"
before=$(get agents/node-t/discovery | jq -c .discovery)
for bad in '{not json' '[]' '{"node":"node-x","time_ns":1,"agent":{"instance":"t"},"pods":[]}' \
	'{"node":"node-t","time_ns":1,"agent":{"instance":"t"},"pods":[{"uid":7}]}' \
	'{"node":"node-t","time_ns":1,"agent":{"instance":"t"},"pods":[{"uid":"u","host_veth":{"name":1}}]}' \
	'{"node":"node-t","agent":{"instance":"t"},"pods":[]}'; do
	assert_eq 400 "$(put_code node-t "$bad" "${AUTH[@]}")" "malformed PUT $(head -c 60 <<<"$bad") -> 400 ($(jq -r .error "$TMP/put.out" 2>/dev/null))"
done
assert_eq "$before" "$(get agents/node-t/discovery | jq -c .discovery)" "stored document unchanged by the malformed PUTs"
assert_eq 400 "$(put_code node-1 '{"node":"node-1"}' "${AUTH[@]}")" "malformed PUT for node-1"
assert_eq "$npods" "$(get topology | jq '[.pods[] | select(.discovered and .netns != null)] | length')" "chains still discovered after it"

# --- a move: the new pod's chain appears discovered on its new node
from=$(pod_field ratings-v1 .node)
for n in $(jq -r '.nodes[].name' $ST); do [ "$n" != "$from" ] && { to=$n; break; }; done
old_uid=$(pod_field ratings-v1 .uid)
lab move ratings "$to" >/dev/null || die "lab move ratings $to"
new_pod=$(pod_field ratings-v1 .name)
# The old pod's processes, netns and veth vanished: its node's agent drops it.
gone() { get "agents/$from/discovery" | jq -e --arg u "$old_uid" 'all(.discovery.pods[]; .uid != $u)' >/dev/null; }
wait_for 5 gone || fail "the old pod $old_uid is still in $from's discovery"
moved() {
	get topology | jq -e --arg n "$new_pod" --arg to "$to" \
		'.pods[] | select(.pod == $n and .node == $to and .discovered and .host_veth != null)' >/dev/null
}
wait_for 5 moved || fail "moved pod $new_pod not discovered on $to within 5 s"
check_pod "$new_pod"

# --- a killed agent's node turns stale (heartbeat 1 s, stale after 3)
idx=0
for n in $(jq -r '.nodes[].name' $ST); do [ "$n" = "$to" ] && break; idx=$((idx + 1)); done
kill -KILL "${AGENT_PIDS[$idx]}"
wait "${AGENT_PIDS[$idx]}" 2>/dev/null
unset "AGENT_PIDS[$idx]"
AGENT_PIDS=("${AGENT_PIDS[@]}")
t0=$SECONDS
stale() { get topology | jq -e --arg n "$to" '.nodes[] | select(.name == $n) | .stale' >/dev/null; }
wait_for 10 stale || fail "$to not stale 10 s after its agent was killed"
log "stale after $((SECONDS - t0)) s"
assert_eq true "$(get topology | jq --arg n "$new_pod" '.pods[] | select(.pod == $n) | .stale')" "chains of $to marked stale"
assert_eq true "$(get agents/$to/discovery | jq .stale)" "GET /v1/agents/$to/discovery: stale"
curl -sf "$STORE_URL/metrics" | grep -q '^sonde_server_discovery_nodes{state="stale"} [1-9]' || fail "/metrics: no stale node"

# --- notifications: the other node's agent (no periodic rediscovery, its
# metadata frozen) follows a move to its node within 1 s of the veth.
to=$from
NL=$TMP/$to
TZ=UTC ip -n "sonde-$to" -ts monitor link >"$TMP/monitor.txt" 2>&1 &
MON=$!
ON_EXIT="kill $MON 2>/dev/null; store_cleanup"
sleep 0.5
wl=$(jq -r --arg n "$to" '[.pods[] | select(.node != $n and .namespace == "bookinfo" and .pid != 0)][0].workload' $ST)
lab move "$wl" "$to" >/dev/null || die "lab move $wl $to"
new_uid=$(pod_field "$wl" .uid)
veth=$(pod_field "$wl" .host_veth)
attached() { jq -c --arg u "$new_uid" 'select(.event == "sensor_attached" and .pod_uid == $u)' "$NL.jsonl" | grep -q .; }
wait_for 5 attached || fail "no sensor_attached for the moved $wl pod ($new_uid)"
kill $MON 2>/dev/null
wait $MON 2>/dev/null
ON_EXIT=store_cleanup
t_att=$(jq -r --arg u "$new_uid" 'select(.event == "sensor_attached" and .pod_uid == $u) | .time_ns' "$NL.jsonl" | head -1)
# "[2026-11-23T16:01:02.123456] 12: vethXXXX@if2: ..." (TZ=UTC)
t_veth=$(grep -m1 "$veth" "$TMP/monitor.txt" | sed -n 's/^\[\([^]]*\)\].*/\1/p')
[ -n "$t_veth" ] || fail "ip monitor did not see $veth: $(head -c 300 "$TMP/monitor.txt")"
if [ -n "$t_veth" ] && [ -n "$t_att" ]; then
	ms=$(/usr/bin/python3 -c 'import sys, datetime as d
t = d.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=d.timezone.utc)
print(round((int(sys.argv[2]) / 1e9 - t.timestamp()) * 1000, 1))' "$t_veth" "$t_att")
	assert_between -50 1000 "$ms" "veth appeared -> sensor_attached (ms), periodic rediscovery 1 h"
fi
agents_stop
ev=$(grep '^{"node"' "$NL.err" | jq -r '"\(.node.link_events) \(.node.cgroup_events)"')
log "notifications seen by that agent (link, cgroup): $ev"
server_stop
for f in "$TMP"/*.err; do
	grep -q "AddressSanitizer\|runtime error" "$f" && fail "$(basename "$f"): $(grep -m3 'AddressSanitizer\|runtime error' "$f")"
done
done_testing
