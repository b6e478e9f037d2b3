#!/usr/bin/env bash
# The Kubernetes client (src/k8s, through `sonde topology --watch`) against
# an API server that misbehaves (tests/integration/bad_api.py, on loopback):
# a 500 and a non-JSON answer to the first lists, a list item without
# metadata, watch lines that are not JSON / have no object / an unknown
# type, a stream cut mid-way, a 503 on the resumed watch, a wrong token.
# Each gets a clear log line and a retry (with backoff); nothing valid is
# lost and nothing invalid reaches the cache or the event stream.
# No lab needed.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || skip "python3 missing (scripts/deps.sh installs it)"
trap finish EXIT

PORT=$((17000 + RANDOM % 2000))
TOKEN=t0k3n-$RANDOM
python3 "$(dirname "$0")/bad_api.py" $PORT $TOKEN "$TMP/requests.jsonl" 2>"$TMP/api.err" &
wait_for 10 curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/nodes" ||
	die "bad_api.py did not start: $(cat "$TMP/api.err")"
: >"$TMP/requests.jsonl"

kubeconfig() { # token
	cat <<-EOF
	{"apiVersion": "v1", "kind": "Config", "current-context": "bad",
	 "clusters": [{"name": "bad", "cluster": {"server": "http://127.0.0.1:$PORT"}}],
	 "users": [{"name": "u", "user": {"token": "$1"}}],
	 "contexts": [{"name": "bad", "context": {"cluster": "bad", "user": "u"}}]}
	EOF
}
kubeconfig $TOKEN >"$TMP/kubeconfig.json"
kubeconfig wrong >"$TMP/wrong.json"

"$SONDE" topology --kubeconfig "$TMP/kubeconfig.json" --watch --duration 5s \
	--snapshot "$TMP/snapshot.json" >"$TMP/events.jsonl" 2>"$TMP/watch.err"
assert_eq 0 $? "sonde topology --watch exits 0 after its duration"

# The cache ends as the server's valid state: b (with its new IP) and c;
# a was deleted; the item without metadata never entered.
assert_eq "b 10.244.1.21 c 10.244.1.12" \
	"$(jq -r '[.pods[] | .name, .ip] | join(" ")' "$TMP/snapshot.json")" "final cache"
# Every valid change was delivered once, in order; nothing else.
assert_eq "ADDED a ADDED b ADDED c DELETED a MODIFIED b" \
	"$(jq -r 'select(.resource == "pods") | .type, .name' "$TMP/events.jsonl" | tr '\n' ' ' | sed 's/ $//')" \
	"pod events"
# A clear line for each fault.
for what in "HTTP 500: etcdserver: request timed out" "not JSON" \
	"malformed event ignored" "unknown type 'SURPRISE'" "HTTP 503"; do
	grep -qF "$what" "$TMP/watch.err" || fail "no log line with '$what': $(head -c 1500 "$TMP/watch.err")"
done
# The retries: three lists, one watch from 10, the watch from 12 twice (503,
# then the good one); each retry after a backoff, not at once.
R="$TMP/requests.jsonl"
assert_eq 3 "$(jq -s '[.[] | select(.res == "pods" and (.watch | not))] | length' "$R")" "pod lists"
assert_eq 1 "$(jq -s '[.[] | select(.res == "pods" and .watch and .rv == "10")] | length' "$R")" "watches from 10"
assert_eq 2 "$(jq -s '[.[] | select(.res == "pods" and .watch and .rv == "12")] | length' "$R")" "watches from 12 (a 503, then served)"
gap=$(jq -s '[.[] | select(.res == "pods" and (.watch | not)) | .t] | .[1] - .[0]' "$R")
assert_between 0.045 5 "$gap" "seconds between the failed first list and its retry (backoff 100 ms, half jitter)"
errors=$(jq .stats.errors "$TMP/snapshot.json")
[ "$errors" -ge 5 ] || fail "client error counter $errors: expected the 2 bad lists, the cut stream, the 503 and the bad lines"

# A wrong token: a clear error and a non-zero exit, not a hang.
: >"$R"
start=$SECONDS
"$SONDE" topology --kubeconfig "$TMP/wrong.json" --watch --timeout 2s >/dev/null 2>"$TMP/wrong.err"
rc=$?
assert_ne 0 $rc "exit status with a wrong token"
grep -q "HTTP 401" "$TMP/wrong.err" || fail "no 401 in the log: $(head -c 500 "$TMP/wrong.err")"
assert_between 0 6 $((SECONDS - start)) "seconds to give up with a wrong token"

done_testing
