#!/usr/bin/env bash
# lab_bookinfo: Bookinfo answers end to end, from the loadgen pod, by service
# DNS name, through cluster IPs and the overlay: productpage -> details and
# reviews v1/v2/v3, v2/v3 -> ratings. Ground truth: the response bodies (each
# server names itself), curl's own timings, the nginx access logs of the
# servers that answered, and the pods' real addresses read inside the pods.
source "$(dirname "$0")/../lib.sh"

STATE=/run/sonde-lab/state.json
URL=http://productpage.bookinfo.svc.cluster.local:9080/productpage
N=30

lab_fresh_up --rate 0

pods_in() { grep -o '"pod": "[^"]*"' "$1" | cut -d'"' -f4; }
node_of() { jq -r --arg n "$1" '.pods[] | select(.name == $n) | .node' "$STATE"; }
dir_of() { jq -r --arg n "$1" '.pods[] | select(.name == $n) | .dir' "$STATE"; }
# A pod's IPv4 address as its own kernel has it (not as the state says).
real_ip() { lab exec "$1" -- ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }'; }

# --- one request, examined in detail
rid=bookinfo-$$-first
read -r code total < <(lab exec loadgen -- curl -sS -H "X-Request-Id: $rid" -o "$TMP/first.html" \
	-w '%{http_code} %{time_total}\n' "$URL")
assert_eq 200 "$code" "productpage answers through the service DNS name"
mapfile -t served < <(pods_in "$TMP/first.html")
log "pods named in the body: ${served[*]}"
pp=$(printf '%s\n' "${served[@]}" | grep '^productpage-v1-' || true)
det=$(printf '%s\n' "${served[@]}" | grep '^details-v1-' || true)
rev=$(printf '%s\n' "${served[@]}" | grep '^reviews-v[123]-' || true)
rat=$(printf '%s\n' "${served[@]}" | grep '^ratings-v1-' || true)
assert_ne "" "$pp" "body names a productpage pod"
assert_ne "" "$det" "body has details' content"
assert_ne "" "$rev" "body has reviews' content"
assert_contains "$(cat "$TMP/first.html")" '"author": "William Shakespeare"' "details content is in the page"
assert_contains "$(cat "$TMP/first.html")" '"reviewer": "Reviewer1"' "reviews content is in the page"
# The placement puts productpage and details on different nodes: the request
# crossed the overlay.
assert_ne "$(node_of "$pp")" "$(node_of "$det")" "productpage and details run on different nodes"
assert_ne "$(node_of "$(pod_field loadgen .name)")" "$(node_of "$pp")" "loadgen and productpage run on different nodes"
# Each server also printed its node; it must be the node the state says.
for p in "$pp" "$det" "$rev"; do
	printed=$(grep -o "\"pod\": \"$p\", \"node\": \"[^\"]*\"" "$TMP/first.html" | head -1 | cut -d'"' -f8)
	assert_eq "$(node_of "$p")" "$printed" "$p reports the node the state places it on"
done

# The access logs of the pods that answered hold this request (request id
# propagated from our header), with the fields later issues compare against.
pp_ip=$(real_ip productpage-v1)
lg_ip=$(real_ip loadgen)
main=$(jq -c --arg r "$rid" 'select(.request_id == $r and .subrequest == false)' "$(dir_of "$pp")/access.log")
assert_eq 1 "$(printf '%s\n' "$main" | grep -c .)" "productpage logged the request once"
assert_eq "GET /productpage HTTP/1.1 200" "$(jq -r '"\(.method) \(.uri) \(.protocol) \(.status)"' <<<"$main")" \
	"productpage log: method, URI, protocol, status"
assert_eq "$lg_ip" "$(jq -r .remote_addr <<<"$main")" "productpage log: remote_addr is the loadgen pod (no SNAT)"
# SSI answers are chunked and body_bytes_sent counts the chunk framing:
# compare with the raw body of another request.
lab exec loadgen -- curl -sS --raw -H "X-Request-Id: $rid-raw" -o "$TMP/raw.html" "$URL"
assert_eq "$(wc -c <"$TMP/raw.html")" \
	"$(jq -r --arg r "$rid-raw" 'select(.request_id == $r and .subrequest == false) | .body_bytes_sent' "$(dir_of "$pp")/access.log")" \
	"productpage log: body_bytes_sent = raw body bytes curl received"
pp_time=$(jq -r .request_time <<<"$main")
# nginx times in whole ms (either end may round by up to 1 ms).
assert_between 0 "$(awk -v t="$total" 'BEGIN { print t + 0.001 }')" "$pp_time" "productpage request_time (s) within curl's time_total"
for svc in details reviews; do
	sub=$(jq -c --arg r "$rid" --arg u "/_upstream/$svc/0" \
		'select(.request_id == $r and .subrequest == true and .uri == $u)' "$(dir_of "$pp")/access.log")
	assert_eq 1 "$(printf '%s\n' "$sub" | grep -c .)" "productpage logged its subrequest to $svc"
	cip=$(lab exec loadgen -- dig +short "$svc.bookinfo.svc.cluster.local")
	assert_eq "$cip:9080" "$(jq -r .upstream_addr <<<"$sub")" "subrequest to $svc went to the cluster IP DNS gives"
	assert_eq "200" "$(jq -r .upstream_status <<<"$sub")" "subrequest to $svc: upstream status"
	ut=$(jq -r .upstream_response_time <<<"$sub")
	assert_between 0 "$(awk -v t="$pp_time" 'BEGIN { print t + 0.001 }')" "$ut" "$svc upstream_response_time within productpage's request_time"
done
dline=$(jq -c --arg r "$rid" 'select(.request_id == $r)' "$(dir_of "$det")/access.log")
assert_eq "GET /details/0 200" "$(jq -r '"\(.method) \(.uri) \(.status)"' <<<"$dline")" "details log: method, URI, status"
assert_eq "$pp_ip" "$(jq -r .remote_addr <<<"$dline")" "details log: remote_addr is the productpage pod"
assert_between 0 1 "$(jq -r .request_time <<<"$dline")" "details log: request_time"
rline=$(jq -c --arg r "$rid" 'select(.request_id == $r and .subrequest == false)' "$(dir_of "$rev")/access.log")
assert_eq "GET /reviews/0 200" "$(jq -r '"\(.method) \(.uri) \(.status)"' <<<"$rline")" "reviews log: method, URI, status"
if [ -n "$rat" ]; then
	rsub=$(jq -c --arg r "$rid" 'select(.request_id == $r and .subrequest == true)' "$(dir_of "$rev")/access.log")
	assert_contains "$(jq -r .upstream_response_time <<<"$rsub")" "." "$rev logged upstream_response_time for ratings"
	ratline=$(jq -c --arg r "$rid" 'select(.request_id == $r)' "$(dir_of "$rat")/access.log")
	assert_eq "GET /ratings/0 200" "$(jq -r '"\(.method) \(.uri) \(.status)"' <<<"$ratline")" "ratings log: method, URI, status"
	assert_eq "$(real_ip "$rev")" "$(jq -r .remote_addr <<<"$ratline")" "ratings log: remote_addr is the reviews pod"
fi

# --- N requests: every reviews version answers; ratings exactly with v2/v3
# shellcheck disable=SC2016 # the loop runs in the pod's shell
lab exec loadgen -- sh -c '
	i=0
	while [ $i -lt '"$N"' ]; do
		i=$((i + 1))
		curl -sS -H "X-Request-Id: bookinfo-'"$$"'-$i" -o "'"$TMP"'/page.$i" -w "%{http_code}\n" "'"$URL"'"
	done' >"$TMP/codes"
assert_eq "$N" "$(grep -c '^200$' "$TMP/codes")" "$N of $N requests answered 200"
declare -A versions=()
with_ratings=0 bad=0
for ((i = 1; i <= N; i++)); do
	r=$(pods_in "$TMP/page.$i" | grep '^reviews-' || true)
	v=${r#reviews-}
	v=${v%%-*}
	versions[$v]=$((${versions[$v]:-0} + 1))
	if pods_in "$TMP/page.$i" | grep -q '^ratings-v1-'; then
		with_ratings=$((with_ratings + 1))
		[ "$v" != v1 ] || bad=$((bad + 1))
	else
		[ "$v" = v1 ] || bad=$((bad + 1))
	fi
	pods_in "$TMP/page.$i" | grep -q '^details-v1-' || bad=$((bad + 1))
done
log "reviews versions over $N requests: $(for v in "${!versions[@]}"; do printf '%s=%s ' "$v" "${versions[$v]}"; done)"
for v in v1 v2 v3; do assert_ne "0" "${versions[$v]:-0}" "reviews-$v answered at least once"; done
assert_eq 0 "$bad" "ratings in every v2/v3 answer and in no v1 answer; details in every page"

# The logs agree with the bodies: one details call and one reviews call per
# page, one ratings call per page that shows ratings.
details_n=$(jq -r --arg p "bookinfo-$$-" 'select(.subrequest == false and (.request_id | test("^" + $p + "[0-9]+$")))' \
	"$(dir_of "$det")/access.log" | jq -s length)
assert_eq "$N" "$details_n" "details logged one request per page"
reviews_n=0
for d in $(jq -r '.pods[] | select(.workload | startswith("reviews-")) | .dir' "$STATE"); do
	n=$(jq -r --arg p "bookinfo-$$-" 'select(.subrequest == false and (.request_id | test("^" + $p + "[0-9]+$")))' "$d/access.log" | jq -s length)
	reviews_n=$((reviews_n + n))
done
assert_eq "$N" "$reviews_n" "the reviews pods logged one request per page"
ratings_n=$(jq -r --arg p "bookinfo-$$-" 'select(.subrequest == false and (.request_id | test("^" + $p + "[0-9]+$")))' \
	"$(jq -r '.pods[] | select(.workload == "ratings-v1") | .dir' "$STATE")/access.log" | jq -s length)
assert_eq "$with_ratings" "$ratings_n" "ratings logged one request per page that shows ratings"
# Every line of every access log is one JSON object with the documented fields.
for d in $(jq -r '.pods[] | select(.ports == [9080]) | .dir' "$STATE"); do
	jq -e -s 'all(.[]; has("msec") and has("remote_addr") and has("remote_port") and has("method")
		and has("uri") and has("protocol") and has("status") and has("body_bytes_sent")
		and has("request_time") and has("upstream_response_time") and has("upstream_addr")
		and has("connection") and has("connection_requests") and has("subrequest"))' \
		"$d/access.log" >/dev/null || fail "$d/access.log has a line without the documented fields"
done

# Same-node service call (productpage and ratings share a node): works only
# when the bridge hands pod-to-pod frames to conntrack (br_netfilter), so
# the reply is un-DNATed.
assert_eq "$(node_of "$pp")" "$(node_of "$(pod_field ratings-v1 .name)")" "productpage and ratings share a node"
out=$(lab exec productpage-v1 -- curl -sS -m 5 http://ratings.bookinfo.svc.cluster.local:9080/ratings/7)
assert_contains "$out" '"id": 7' "same-node call through the ratings cluster IP answers"
# Hairpin: a pod reaching itself through its own service.
out=$(lab exec ratings-v1 -- curl -sS -m 5 http://ratings:9080/ratings/8)
assert_contains "$out" "\"pod\": \"$(pod_field ratings-v1 .name)\"" "a pod reaches itself through its service (hairpin)"

done_testing
