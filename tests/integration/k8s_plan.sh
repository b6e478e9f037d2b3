#!/usr/bin/env bash
# The plan push: `sonde server --kubeconfig` pushes each node's sensor set to
# its agent's control API (--control); the agents attach exactly the plan's
# pods. Ground truth is never sonde's own word: the expected sensors come
# from the lab's state.json (pods and labels), what is attached from the
# kernel (the flow family's netns_allow map, read with bpftool through the
# agent's fds in /proc/PID/fdinfo; the pods' netns inodes from /run/netns),
# leaks and duplicates from bpftool prog/map show and tc filter show in the
# lab nodes' namespaces.
# Steps: policy A (ratings, details) -> attached and records only from them;
# PUT /v1/policy B (reviews, flow + latency) -> both nodes converge; 401 and
# 400 on the agent's control API (its state unchanged); lab move -> both
# nodes converge; kill -9 of an agent, a move while it is down, restart ->
# converges at once from its state file, no duplicate programs, maps or tc
# filters; server restart (new epoch) -> converges; agents stop -> nothing
# of theirs is left in the kernel.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"

command -v openssl >/dev/null || skip "openssl is missing (scripts/deps.sh installs it)"
command -v bpftool >/dev/null || skip "bpftool is missing"
lab_fresh_up --rate 10
ST=/run/sonde-lab/state.json
AUTH=(-H "Authorization: Bearer $STORE_TOKEN")
NODES=($(jq -r '.nodes[].name' $ST))
# Every BPF object id that exists before our agents: others' (the machine
# is shared), never counted as ours.
bpftool prog show -j | jq '[.[].id]' >"$TMP/progs0.json"
bpftool map show -j | jq '[.[].id]' >"$TMP/maps0.json"
bpftool link show -j | jq '[.[].id]' >"$TMP/links0.json"

declare -A CPORT APID
base=$((STORE_PORT + 1))
for n in "${NODES[@]}"; do CPORT[$n]=$base; base=$((base + 1)); done
agent_start() { # node
	"$SONDE" agent --node "$1" --server "$STORE_URL" --control "127.0.0.1:${CPORT[$1]}" \
		--state-dir "$TMP/state-$1" --spool "$TMP/spool-$1" --output "$TMP/$1.jsonl" \
		--sensors flow,latency --interval 500ms 2>>"$TMP/$1.err" &
	APID[$1]=$!
}
cleanup() {
	local p
	for p in "${APID[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${APID[@]}"; do wait "$p" 2>/dev/null; done
	store_cleanup
}
ON_EXIT=cleanup

printf '{"services": ["bookinfo/ratings", "bookinfo/details"], "sensors": ["flow"]}\n' >"$TMP/policy.json"
server_start --kubeconfig /run/sonde-lab/kubeconfig --policy "$TMP/policy.json"
for n in "${NODES[@]}"; do agent_start "$n"; done

sget() { curl -sf "${AUTH[@]}" "$STORE_URL/v1/$1"; }
# Expected "<node> <kind>/<ns>/<pod>" lines, from state.json and the policy's
# apps (jq here, not sonde): expect APPS KINDS.
expect() {
	jq -r --arg apps "$1" --arg kinds "$2" '.pods[] | select(.labels.app as $a | $apps | split(",") | index($a))
		| . as $p | $kinds | split(",")[] | "\($p.node) \(.)/\($p.namespace)/\($p.name)"' $ST | sort
}
# What the agents report attached, same shape.
reported() {
	sget agents | jq -r '.agents | to_entries[] | .key as $n | .value.state.sensors[]? | select(.status == "attached") | "\($n) \(.id)"' | sort
}
all_in_sync() { sget agents | jq -e --argjson n ${#NODES[@]} '[.agents[] | select(.in_sync and (.stale | not))] | length == $n' >/dev/null; }
# The kernel's view: netns inodes in an agent's flow netns_allow map.
map_id() { # pid map-name
	local id
	for id in $(grep -h '^map_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -un); do
		[ "$(bpftool map show id "$id" -j | jq -r .name)" = "$2" ] && { echo "$id"; return; }
	done
}
kernel_netns() { # node -> sorted inodes in its agent's flow filter
	local id
	id=$(map_id "${APID[$1]}" netns_allow)
	[ -n "$id" ] || return 1
	bpftool map dump id "$id" -j | jq -r '.[] | if .formatted then .formatted.key
		else (.key | map(ltrimstr("0x") | explode | map(if . >= 97 then . - 87 else . - 48 end) | .[0] * 16 + .[1]) | .[0] + .[1] * 256 + .[2] * 65536 + .[3] * 16777216) end' | sort -n | tr '\n' ' '
}
state_netns() { # node apps -> sorted inodes of those pods' netns (/run/netns)
	local p
	for p in $(jq -r --arg n "$1" --arg apps "$2" '.pods[] | select(.node == $n and (.labels.app as $a | $apps | split(",") | index($a))) | .netns_path' $ST); do
		stat -L -c %i "$p"
	done | sort -n | tr '\n' ' '
}
converged() { # apps kinds
	all_in_sync && [ "$(reported)" = "$(expect "$1" "$2")" ] || return 1
	local n
	for n in "${NODES[@]}"; do [ "$(kernel_netns "$n")" = "$(state_netns "$n" "$1")" ] || return 1; done
}
show() { # for failures: what differs
	log "expected: $(expect "$1" "$2" | tr '\n' ';')"
	log "reported: $(reported | tr '\n' ';')"
	for n in "${NODES[@]}"; do log "$n kernel [$(kernel_netns "$n")] state [$(state_netns "$n" "$1")]"; done
	sget agents | jq -c '.agents[] | {in_sync, stale, desired_generation, g: .state.generation, e: .state.epoch, pushes, push_failures, last_error}'
}
# TCP flow records since $1 (UTC ns): the netns of their sockets must be the
# selected pods' (records of other pods would mean a sensor too many).
records_netns() { # since_ns node
	jq -r --argjson t "$1" 'select(.kind == "flow" and .proto == "tcp" and .time_ns > $t and .netns != null) | .netns' "$TMP/$2.jsonl" | sort -un | tr '\n' ' '
}
check_records() { # since apps what
	local n got want extra
	for n in "${NODES[@]}"; do
		got=$(records_netns "$1" "$n") want=$(state_netns "$n" "$2")
		extra=$(comm -23 <(tr ' ' '\n' <<<"$got" | grep . | sort) <(tr ' ' '\n' <<<"$want" | grep . | sort) | tr '\n' ' ')
		assert_eq "" "$extra" "$n: records only from the selected pods' netns ($3; records from [$got], selected [$want])"
	done
}
timed() { # seconds what apps kinds: waits for convergence, logs the time
	local t0=$(date +%s%N)
	if wait_for "$1" converged "$3" "$4"; then
		log "converged after $2 in $((($(date +%s%N) - t0) / 1000000)) ms"
	else
		fail "not converged within $1 s after $2"
		show "$3" "$4"
	fi
}
now_ns() { date +%s%N; }

# --- policy A
timed 20 "start (policy A: ratings, details)" ratings,details flow
t=$(now_ns)
sleep 3 # load at 10 req/s: every selected pod talks
check_records "$t" ratings,details "policy A"
seen=$(records_netns "$t" "$(pod_field ratings-v1 .node)")
assert_contains "$seen" "$(stat -L -c %i "$(pod_field ratings-v1 .netns_path)")" "records of ratings (policy A)"

# --- the policy API
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data '{}' "$STORE_URL/v1/policy")
assert_eq 401 "$code" "PUT /v1/policy without the token"
out=$(curl -s -w ' %{http_code}' "${AUTH[@]}" -X PUT --data '{"namespace": ["x"]}' "$STORE_URL/v1/policy")
assert_contains "$out" "unknown policy key 'namespace'" "PUT /v1/policy with a bad key: the error names it"
assert_contains "$out" " 400" "PUT /v1/policy with a bad key: 400"
out=$(curl -s -w ' %{http_code}' "${AUTH[@]}" -X PUT --data '{"selectors": [' "$STORE_URL/v1/policy")
assert_contains "$out" " 400" "PUT /v1/policy with broken JSON: 400"
assert_eq "$(jq -S . "$TMP/policy.json")" "$(sget policy | jq -S .)" "GET /v1/policy = --policy FILE (bad PUTs changed nothing)"
pushes0=$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_server_plan_pushes_total\{result="ok"\}/ { print $2 }')
curl -sf "${AUTH[@]}" -X PUT --data '{"selectors": ["app=reviews"], "sensors": ["flow", "latency"]}' "$STORE_URL/v1/policy" >/dev/null ||
	fail "PUT /v1/policy B"
timed 15 "PUT /v1/policy (B: reviews, flow + latency)" reviews flow,latency
# The CLI shows the same: every expected sensor attached, both nodes in sync.
"$SONDE" sensors >"$TMP/sensors.txt" 2>&1 || fail "sonde sensors: $(cat "$TMP/sensors.txt")"
assert_eq "$(expect reviews flow,latency)" "$(awk '$3 == "attached" { print $1, $2 }' "$TMP/sensors.txt" | sort)" "sonde sensors: attached = state.json's reviews pods"
assert_eq "${#NODES[@]}" "$(awk '$4 == "yes"' "$TMP/sensors.txt" | wc -l)" "sonde sensors: every node in sync"
assert_eq '{"selectors":["app=reviews"],"sensors":["flow","latency"]}' "$(jq -c . "$TMP/policy.json")" "the new policy is written back to --policy FILE"
pushes1=$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_server_plan_pushes_total\{result="ok"\}/ { print $2 }')
assert_between $((pushes0 + 1)) $((pushes0 + 2 * ${#NODES[@]})) "$pushes1" "plan pushes after the policy change"
t=$(now_ns)
sleep 3
check_records "$t" reviews "policy B"

# --- the agent's control API: auth, bad plans, idempotence
n1=${NODES[0]}
CURL_A="http://127.0.0.1:${CPORT[$n1]}"
code=$(curl -s -o /dev/null -w '%{http_code}' "$CURL_A/v1/state")
assert_eq 401 "$code" "agent GET /v1/state without the token"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data '{"node":"'"$n1"'","generation":1,"sensors":[]}' "$CURL_A/v1/plan")
assert_eq 401 "$code" "agent PUT /v1/plan without the token"
before=$(curl -sf "${AUTH[@]}" "$CURL_A/v1/state" | jq -S 'del(.time_ns)')
k0=$(kernel_netns "$n1")
for bad in '{"node":"'"$n1"'","generation":1,"sensors":[' '{"node":"no-such-node","generation":1,"sensors":[]}' \
	'{"node":"'"$n1"'","generation":-1,"sensors":[]}' '{"node":"'"$n1"'","generation":1,"sensors":[{"id":"x","kind":"flow"}]}' \
	'{"node":"'"$n1"'","generation":1,"sensors":[{"id":"x","kind":"flow","pod_uid":"u"},{"id":"x","kind":"flow","pod_uid":"u"}]}'; do
	out=$(curl -s -w ' %{http_code}' "${AUTH[@]}" -X PUT --data "$bad" "$CURL_A/v1/plan")
	assert_contains "$out" " 400" "malformed plan refused: $(head -c 60 <<<"$bad")"
done
assert_eq "$before" "$(curl -sf "${AUTH[@]}" "$CURL_A/v1/state" | jq -S 'del(.time_ns)')" "agent state unchanged by malformed plans"
assert_eq "$k0" "$(kernel_netns "$n1")" "kernel filter unchanged by malformed plans"
plan=$(curl -sf "${AUTH[@]}" "$CURL_A/v1/plan")
out=$(curl -sf "${AUTH[@]}" -X PUT --data "$plan" "$CURL_A/v1/plan")
assert_eq '0 0' "$(jq -r '"\(.applied.add | length) \(.applied.delete | length)"' <<<"$out")" "the same plan again: nothing added or deleted"

# --- a move: both nodes converge
from=$(pod_field reviews-v2 .node)
for n in "${NODES[@]}"; do [ "$n" != "$from" ] && { to=$n; break; }; done
lab move reviews-v2 "$to" >/dev/null || die "lab move reviews-v2 $to"
timed 15 "lab move reviews-v2 $from -> $to" reviews flow,latency
t=$(now_ns)
sleep 2
check_records "$t" reviews "after the move"
seen=$(records_netns "$t" "$to")
assert_contains "$seen" "$(stat -L -c %i "$(pod_field reviews-v2 .netns_path)")" "records of the moved reviews-v2 on $to"

# --- leak checks: tc filters and BPF objects
# Our programs and maps: ids in the live agents' fdinfo.
agent_ids() { # kind (prog|map)
	local p
	for p in "${APID[@]}"; do grep -h "^${1}_id:" /proc/"$p"/fdinfo/* 2>/dev/null; done | awk '{ print $2 }' | sort -un
}
# Objects created since the test began that no live agent holds, among
# names our agents use: leaked.
orphans() { # kind
	local names
	# The names our agents' objects have (kept: after they stop, too).
	[ -s "$TMP/names-$1.json" ] || for id in $(agent_ids "$1"); do bpftool "$1" show id "$id" -j | jq -r .name; done |
		sort -u | jq -R . | jq -sc . >"$TMP/names-$1.json"
	names=$(cat "$TMP/names-$1.json")
	bpftool "$1" show -j | jq -r --slurpfile old "$TMP/${1}s0.json" --argjson names "$names" \
		--argjson live "$(agent_ids "$1" | jq -sc .)" \
		'.[] | select((.id as $i | $old[0] | index($i) | not) and (.id as $i | $live | index($i) | not)
			and (.name as $n | $names | index($n))) | "\(.id):\(.name)"' | tr '\n' ' '
}
# tc filters on every lab node device: "<node> <dev> <dir> <count> <prog ids>"
tc_filters() {
	local n d dir
	for n in "${NODES[@]}"; do
		for d in $(nsenter --net=/run/netns/sonde-node-${n#node-} ip -o link show | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
			for dir in ingress egress; do
				local ids
				ids=$(nsenter --net=/run/netns/sonde-node-${n#node-} tc filter show dev "$d" "$dir" 2>/dev/null |
					grep -o ' id [0-9]*' | awk '{ print $2 }' | tr '\n' ',')
				[ -n "$ids" ] && echo "$n $d $dir ${ids%,}"
			done
		done
	done
}
# tcx links (bpftool 7.1 prints their type as 11) created since the test
# began that run a latency receiver: "<link id>" per line.
tcx_links() {
	local l p
	bpftool link show -j | jq -r --slurpfile old "$TMP/links0.json" \
		'.[] | select((.type == 11 or .type == "tcx") and (.id as $i | $old[0] | index($i) | not)) | "\(.id) \(.prog_id)"' |
		while read -r l p; do
			[[ "$(bpftool prog show id "$p" -j 2>/dev/null | jq -r .name)" == lat_rx_* ]] && echo "$l"
		done | sort -u
}
check_kernel() { # what
	local n want have
	# The latency receivers are tcx links (the kernel has them): no
	# legacy tc filter anywhere, and none left by a killed agent.
	assert_eq "" "$(tc_filters)" "no legacy tc filters in the node netns ($1)"
	# flannel.1 ingress + one egress per pod veth: per agent, exactly
	# its node's devices (a second link on a device would show here).
	for n in "${NODES[@]}"; do
		want=$(jq --arg n "$n" '1 + ([.pods[] | select(.node == $n)] | length)' $ST)
		have=$(comm -12 <(tcx_links) <(grep -h '^link_id:' /proc/"${APID[$n]}"/fdinfo/* | awk '{ print $2 }' | sort -u) | wc -l)
		assert_eq "$want" "$have" "$n: tcx links, one per VXLAN device and pod veth ($1)"
	done
	assert_eq "" "$(comm -23 <(tcx_links) <(agent_ids link | sort -u) | tr '\n' ' ')" "every latency tcx link is a live agent's ($1)"
	assert_eq "" "$(orphans prog)" "no orphaned programs ($1)"
	assert_eq "" "$(orphans map)" "no orphaned maps ($1)"
}
check_kernel "steady state"
progs_per_agent=$(for p in "${APID[@]}"; do grep -h '^prog_id:' /proc/"$p"/fdinfo/* | sort -u | wc -l; done | sort -u | tr '\n' ' ')

# --- kill -9 an agent, move pods while it is down, restart it
victim=$(pod_field reviews-v1 .node)
for n in "${NODES[@]}"; do [ "$n" != "$victim" ] && { other=$n; break; }; done
failed0=$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_server_plan_pushes_total\{result="failed"\}/ { print $2 }')
kill -9 "${APID[$victim]}"
wait "${APID[$victim]}" 2>/dev/null
survivor_links=$(grep -h '^link_id:' /proc/"${APID[$other]}"/fdinfo/* | awk '{ print $2 }' | sort -u)
assert_eq "" "$(comm -23 <(tcx_links) <(echo "$survivor_links") | tr '\n' ' ')" "kill -9: none of the killed agent's tcx links stays"
assert_eq "" "$(tc_filters)" "kill -9: no tc filter stays"
lab move reviews-v1 "$other" >/dev/null || die "lab move reviews-v1 $other"
lab move reviews-v3 "$victim" >/dev/null || die "lab move reviews-v3 $victim"
failed1=$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_server_plan_pushes_total\{result="failed"\}/ { print $2 }')
assert_between $((failed0 + 1)) 1000 "$failed1" "failed pushes to the killed agent (retried with backoff)"
log "the killed agent in /v1/agents: $(sget agents | jq -c --arg n "$victim" '.agents[$n] | {in_sync, push_failures, backoff_ms, last_error}')"
agent_start "$victim"
restarted() { [ "$(grep -c "control API on" "$TMP/$victim.err")" = 2 ]; }
wait_for 20 restarted || die "agent of $victim did not restart: $(tail -5 "$TMP/$victim.err")"
grep -q "re-applying the plan of" "$TMP/$victim.err" || fail "the restarted agent did not re-apply its state file"
timed 20 "kill -9 of $victim's agent, 2 moves, restart" reviews flow,latency
check_kernel "after kill -9 and restart"
assert_eq "$progs_per_agent" "$(for p in "${APID[@]}"; do grep -h '^prog_id:' /proc/"$p"/fdinfo/* | sort -u | wc -l; done | sort -u | tr '\n' ' ')" \
	"programs per agent unchanged by the restart"

# --- the server restarts: new epoch, generations from 1 again
epoch0=$(sget agents | jq -r .epoch)
server_stop
server_start --kubeconfig /run/sonde-lab/kubeconfig --policy "$TMP/policy.json"
epoch1=$(sget agents | jq -r .epoch)
assert_ne "$epoch0" "$epoch1" "a restarted server has a new epoch"
timed 20 "server restart" reviews flow,latency
assert_eq "${#NODES[@]}" "$(sget agents | jq --arg e "$epoch1" '[.agents[] | select(.state.epoch == $e)] | length')" "agents applied the new epoch's plan"
lab move reviews-v2 "$from" >/dev/null || die "lab move reviews-v2 back"
timed 15 "a move after the server restart" reviews flow,latency
check_kernel "after the server restart"

# --- agents stop: nothing of theirs stays in the kernel
for p in "${APID[@]}"; do kill -TERM "$p"; done
for n in "${NODES[@]}"; do wait "${APID[$n]}" || fail "agent of $n exited with $?"; done
APID=()
assert_eq "" "$(tc_filters)" "no tc filters left after the agents stopped"
assert_eq "" "$(tcx_links | tr '\n' ' ')" "no tcx links left after the agents stopped"
assert_eq "" "$(orphans prog)" "no programs left after the agents stopped"
for n in "${NODES[@]}"; do
	grep -q "AddressSanitizer\|runtime error" "$TMP/$n.err" && fail "$n agent log: $(grep -m3 'AddressSanitizer\|runtime error' "$TMP/$n.err")"
done
server_stop
grep -q "AddressSanitizer\|runtime error" "$TMP/server.err" && fail "server log: $(grep -m3 'AddressSanitizer\|runtime error' "$TMP/server.err")"
done_testing
