#!/usr/bin/env bash
# The controller inside `sonde server` (--kubeconfig): its GET /v1/topology
# and GET /v1/plan follow the lab's API stand-in. Ground truth: the lab's
# state.json (written by lab.sh, not by sonde's client). Checks: pods (uid,
# node, IP, services) and services (selected pods computed here with jq from
# the state's labels and selectors) equal the state; the plan has one flow
# sensor per pod on its node; after `lab move` the new pod (new uid, new IP)
# shows on its new node and both nodes' plan generations increase; after a
# move while the stand-in is down and its restart (every client must relist
# after a 410), the server equals the state again and the untouched nodes'
# generations did not move; bearer-token auth; `sonde topology --server`.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../lib_store.sh"

command -v openssl >/dev/null || skip "openssl is missing (scripts/deps.sh installs it)"
lab_fresh_up --rate 0
ST=/run/sonde-lab/state.json
server_start --kubeconfig /run/sonde-lab/kubeconfig
AUTH=(-H "Authorization: Bearer $STORE_TOKEN")

get() { curl -sf "${AUTH[@]}" "$STORE_URL/v1/$1"; }
# The server's view and the state's, in the same shape.
server_pods() { get topology | jq -c '[.pods[] | {namespace, pod, uid, node, ip, services}] | sort_by(.pod)'; }
state_pods() {
	jq -c '. as $s | [.pods[] | . as $p | {namespace, pod: .name, uid, node, ip,
		services: [$s.services[] | select(.namespace == $p.namespace and (.selector | length) > 0
			and all(.selector | to_entries[]; $p.labels[.key] == .value)) | .name]}] | sort_by(.pod)' $ST
}
server_svcs() { get topology | jq -c '[.services[] | {namespace, name, cluster_ip, pods: (.pods | sort)}] | sort_by(.namespace, .name)'; }
state_svcs() {
	jq -c '. as $s | [.services[] | . as $v | {namespace, name, cluster_ip,
		pods: ([$s.pods[] | . as $p | select($p.namespace == $v.namespace and ($v.selector | length) > 0
			and all($v.selector | to_entries[]; $p.labels[.key] == .value)) | .name] | sort)}]
		| sort_by(.namespace, .name)' $ST
}
# "node flow/ns/pod" per sensor; the default policy monitors every pod.
server_plan() { get plan | jq -r '[to_entries[] | .key as $n | .value.sensors[] | "\($n) \(.id)"] | sort | join(",")'; }
state_plan() { jq -r '[.pods[] | "\(.node) flow/\(.namespace)/\(.name)"] | sort | join(",")' $ST; }
gen() { get plan | jq -r --arg n "$1" '.[$n].generation // 0'; }
in_sync() { [ "$(server_pods)" = "$(state_pods)" ] && [ "$(server_plan)" = "$(state_plan)" ]; }

wait_for 15 get topology || die "no /v1/topology: $(tail -5 "$TMP/server.err")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$STORE_URL/v1/topology")
assert_eq 401 "$code" "/v1/topology without the token"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "$STORE_URL/v1/plan")
assert_eq 401 "$code" "/v1/plan with a wrong token"

wait_for 10 in_sync
npods=$(jq '.pods | length' $ST)
assert_eq "$(state_pods)" "$(server_pods)" "server topology pods = lab state ($npods pods)"
assert_eq "$(state_svcs)" "$(server_svcs)" "server topology services = lab state ($(jq '.services | length' $ST) services)"
assert_eq "$(state_plan)" "$(server_plan)" "plan = one flow sensor per pod on its node"
svc=$(get topology | jq -r '.pods[] | select(.pod | startswith("reviews-v2")) | .services | join(",")')
assert_eq reviews "$svc" "reviews-v2's service (server)"

# The CLI reads the same document from the server.
"$SONDE" topology --server "$STORE_URL" --json >"$TMP/cli.json" 2>"$TMP/cli.err" || fail "topology --server: $(cat "$TMP/cli.err")"
assert_eq "$(get topology | jq -S .)" "$(jq -S . "$TMP/cli.json")" "sonde topology --server --json = GET /v1/topology"
SONDE_TOKEN=wrong "$SONDE" topology --server "$STORE_URL" --json >/dev/null 2>&1
assert_ne 0 $? "sonde topology --server with a wrong token fails"
SONDE_SERVER=$STORE_URL "$SONDE" topology >"$TMP/table.txt" || fail "topology via \$SONDE_SERVER"
rows=0
for p in $(jq -r '.pods[].name' $ST); do grep -q -- "$p" "$TMP/table.txt" && rows=$((rows + 1)); done
assert_eq "$npods" "$rows" "pods in the table from \$SONDE_SERVER"

# In-cluster config (no --kubeconfig): the stand-in's service account files.
P2=$((STORE_PORT + 1))
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=6443 SONDE_K8S_SA_DIR=/run/sonde-lab/api/serviceaccount \
	"$SONDE" server --listen "127.0.0.1:$P2" --token "$STORE_TOKEN" --store "$TMP/store2.db" 2>"$TMP/server2.err" &
S2=$!
ON_EXIT="kill $S2 2>/dev/null; store_cleanup"
in_cluster_pods() { curl -sf "${AUTH[@]}" "http://127.0.0.1:$P2/v1/topology" | jq -c '[.pods[] | {namespace, pod, uid, node, ip, services}] | sort_by(.pod)'; }
wait_for 15 curl -sf "${AUTH[@]}" "http://127.0.0.1:$P2/v1/topology" || fail "in-cluster server: no /v1/topology: $(tail -3 "$TMP/server2.err")"
assert_eq "$(state_pods)" "$(in_cluster_pods)" "in-cluster server topology pods = lab state"
grep -q "in-cluster" "$TMP/server2.err" || fail "the second server did not say it used in-cluster config"
kill -TERM $S2
wait $S2
assert_eq 0 $? "in-cluster server exits 0 on SIGTERM"
ON_EXIT=store_cleanup

# --- a move: the server's topology and plan follow
nodes=($(jq -r '.nodes[].name' $ST))
from=$(pod_field ratings-v1 .node)
old_uid=$(pod_field ratings-v1 .uid)
old_pod=$(pod_field ratings-v1 .name)
for n in "${nodes[@]}"; do [ "$n" != "$from" ] && { to=$n; break; }; done
declare -A g0
for n in "${nodes[@]}"; do g0[$n]=$(gen "$n"); done
lab move ratings "$to" >/dev/null || die "lab move ratings $to"
new_uid=$(pod_field ratings-v1 .uid)
new_pod=$(pod_field ratings-v1 .name)
assert_ne "$old_uid" "$new_uid" "the move made a new pod (uid)"
wait_for 10 in_sync || fail "server did not follow the move within 10 s"
t=$(get topology | jq -c --arg n "$new_pod" '.pods[] | select(.pod == $n) | {uid, node, ip}')
assert_eq "$(jq -c --arg n "$new_pod" '.pods[] | select(.name == $n) | {uid, node, ip}' $ST)" "$t" "moved pod in the server's topology"
assert_eq 0 "$(get topology | jq --arg u "$old_uid" '[.pods[] | select(.uid == $u)] | length')" "old uid gone"
plan=$(get plan)
jq -e --arg n "$to" --arg id "flow/bookinfo/$new_pod" 'any(.[$n].sensors[]; .id == $id and .ip != "")' <<<"$plan" >/dev/null ||
	fail "plan of $to lacks $new_pod"
jq -e --arg n "$from" --arg id "flow/bookinfo/$old_pod" 'any(.[$n].sensors[]?; .id == $id) | not' <<<"$plan" >/dev/null ||
	fail "plan of $from still has $old_pod"
for n in "$from" "$to"; do
	g=$(gen "$n")
	[ "$g" -gt "${g0[$n]}" ] || fail "$n: generation ${g0[$n]} -> $g after the move"
done
log "generations after the move: $from ${g0[$from]} -> $(gen "$from"), $to ${g0[$to]} -> $(gen "$to")"

# --- the stand-in stops, a pod moves meanwhile, the stand-in restarts with
# newer resourceVersions (410 for the server's watches): relist.
declare -A g1
for n in "${nodes[@]}"; do g1[$n]=$(gen "$n"); done
gone0=$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_controller_gone_total/ { print $2 }')
from2=$(pod_field details-v1 .node)
for n in "${nodes[@]}"; do [ "$n" != "$from2" ] && { to2=$n; break; }; done
lab api stop >/dev/null || die "lab api stop"
lab move details "$to2" >/dev/null || die "lab move details $to2 (API down)"
lab api start >/dev/null || die "lab api start"
lab api restart >/dev/null || die "lab api restart"
wait_for 20 in_sync || fail "server did not recover after the API restart"
assert_eq "$(state_pods)" "$(server_pods)" "server topology pods = lab state after the restart"
assert_eq "$(state_svcs)" "$(server_svcs)" "server topology services = lab state after the restart"
gone1=$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_controller_gone_total/ { print $2 }')
assert_between $((gone0 + 1)) 100000 "$gone1" "410 Gone answers seen by the controller"
for n in "${nodes[@]}"; do
	g=$(gen "$n")
	if [ "$n" = "$from2" ] || [ "$n" = "$to2" ]; then
		[ "$g" -gt "${g1[$n]}" ] || fail "$n: generation ${g1[$n]} -> $g after the move while the API was down"
	else
		assert_eq "${g1[$n]}" "$g" "$n: generation unchanged by the relist (objects re-stamped, plan equal)"
	fi
done
# A restart with nothing changed: the relist re-stamps every object (MODIFIED
# events), the plan must not churn.
declare -A g2
for n in "${nodes[@]}"; do g2[$n]=$(gen "$n"); done
lab api restart >/dev/null || die "lab api restart (2)"
gone_more() { [ "$(curl -sf "$STORE_URL/metrics" | awk '/^sonde_controller_gone_total/ { print $2 }')" -gt "$gone1" ]; }
wait_for 20 gone_more || fail "no relist after the second restart"
wait_for 10 in_sync || fail "server out of sync after the second restart"
for n in "${nodes[@]}"; do
	assert_eq "${g2[$n]}" "$(gen "$n")" "$n: generation unchanged by a relist of unchanged objects"
done
server_stop
grep -q "AddressSanitizer\|runtime error" "$TMP/server.err" && fail "server log: $(grep -m3 'AddressSanitizer\|runtime error' "$TMP/server.err")"
done_testing
