#!/usr/bin/env bash
# The sonde binary's contract: version, generated help for every
# subcommand, and clear errors that name the fix (not root, no BTF, a
# missing tool, bad options).
source "$(dirname "$0")/../lib.sh"

out=$("$SONDE" --version)
assert_contains "$out" "sonde 0." "--version prints the version"

out=$("$SONDE" --help)
for cmd in agent lab topology server query; do
	assert_contains "$out" "  $cmd " "top-level help lists '$cmd'"
done

# Every option in each table shows in that subcommand's help.
out=$("$SONDE" agent --help)
for o in --node --cgroup-root --netns --metadata --output --duration --all-netns --btf --help; do
	assert_contains "$out" "$o" "agent --help shows $o"
done
for sub in up down status exec delay loss load move api; do
	out=$("$SONDE" lab "$sub" --help) || fail "lab $sub --help exits non-zero"
	assert_contains "$out" "Usage: sonde lab $sub" "lab $sub --help"
done
assert_contains "$("$SONDE" help agent)" "Usage: sonde agent" "'sonde help agent'"
for o in --server --token --spool --spool-kb --batch --metrics; do
	assert_contains "$("$SONDE" agent --help)" "$o" "agent --help shows $o"
done
out=$("$SONDE" server --help)
for o in --listen --store --token --retention --queue-mb --max-uploads --export-es; do
	assert_contains "$out" "$o" "server --help shows $o"
done
out=$("$SONDE" query --help)
for o in --service --workload --pod --namespace --since --until --interval --records --count --json --server; do
	assert_contains "$out" "$o" "query --help shows $o"
done
"$SONDE" query >/dev/null 2>&1; assert_eq 2 $? "query without a kind exits 2"
err=$("$SONDE" query flows --server http://127.0.0.1:1 2>&1); rc=$?
assert_eq 1 "$rc" "query with no server exits 1"
assert_contains "$err" "is \`sonde server\` running" "query names the fix when the server is away"
err=$("$SONDE" server --listen nowhere 2>&1); rc=$?
assert_eq 2 "$rc" "server with a bad --listen exits 2"

# Unknown commands and options: exit 2 with a pointer to --help.
"$SONDE" frobnicate >/dev/null 2>&1; assert_eq 2 $? "unknown command exits 2"
err=$("$SONDE" agent --frob 2>&1); rc=$?
assert_eq 2 "$rc" "unknown agent option exits 2"
assert_contains "$err" "Try 'sonde agent --help'" "unknown option points at --help"
err=$("$SONDE" agent --duration soon 2>&1)
assert_contains "$err" "wants a duration such as 20ms" "bad duration is explained"
err=$("$SONDE" lab up --nodes 1 2>&1)
assert_contains "$err" "--nodes must be between 2" "too few nodes is explained"
err=$("$SONDE" lab loss --node node-1 150% 2>&1)
assert_contains "$err" "percentage in (0, 100]" "bad loss is explained"
err=$("$SONDE" lab delay 20ms 2>&1)
assert_contains "$err" "needs --node" "delay without node is explained"

# sonde topology: options and its errors (no API configured, unreadable or
# malformed kubeconfig, an API that does not answer, a bad policy).
out=$("$SONDE" topology --help)
for o in --kubeconfig --in-cluster --json --format --watch --snapshot --plan --timeout; do
	assert_contains "$out" "$o" "topology --help shows $o"
done
err=$("$SONDE" topology --format svg 2>&1); rc=$?
assert_eq 2 "$rc" "topology --format svg exits 2"
assert_contains "$err" "table, json or dot" "bad format is explained"
err=$(env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST HOME=/nonexistent "$SONDE" topology 2>&1); rc=$?
assert_eq 1 "$rc" "topology without any API config exits 1"
assert_contains "$err" "--kubeconfig" "no API config names --kubeconfig"
err=$("$SONDE" topology --kubeconfig /nonexistent/config 2>&1)
assert_contains "$err" "cannot read kubeconfig /nonexistent/config" "unreadable kubeconfig"
mkdir -p "$TMP"
printf 'clusters: [oops\n' >"$TMP/bad.yaml"
err=$("$SONDE" topology --kubeconfig "$TMP/bad.yaml" 2>&1)
assert_contains "$err" "is not valid YAML: line" "malformed kubeconfig names the line"
printf 'apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: "https://127.0.0.1:1"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n' >"$TMP/dead.yaml"
err=$("$SONDE" topology --kubeconfig "$TMP/dead.yaml" --timeout 1s 2>&1); rc=$?
assert_eq 1 "$rc" "topology against a dead API exits 1"
assert_contains "$err" "did not answer the first list" "dead API is explained"
printf '{"pods": ["x"]}' >"$TMP/policy.json"
err=$("$SONDE" topology --kubeconfig "$TMP/dead.yaml" --plan "$TMP/policy.json" 2>&1)
assert_contains "$err" "unknown policy key 'pods'" "bad policy is explained"

# Not root: the error says so and how to fix it. The binary must be
# reachable by an unprivileged user for this check.
if command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null &&
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$SONDE"; then
	err=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$SONDE" agent 2>&1); rc=$?
	assert_eq 1 "$rc" "agent as non-root exits 1"
	assert_contains "$err" "needs root" "agent as non-root says it needs root"
	err=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$SONDE" lab up 2>&1)
	assert_contains "$err" "run it with sudo or as root" "lab as non-root names the fix"
else
	log "note: cannot run as nobody here (binary not reachable); non-root check skipped"
fi

# No BTF: the error names the kernel option.
err=$("$SONDE" agent --btf /nonexistent/vmlinux --duration 1s 2>&1); rc=$?
assert_eq 1 "$rc" "agent without BTF exits 1"
assert_contains "$err" "CONFIG_DEBUG_INFO_BTF=y" "missing BTF names the kernel option"

# A missing tool: the error names the package to install. A PATH without
# nginx is made from symlinks to everything else the lab checks.
mkdir -p "$TMP/bin"
for t in ip iptables-legacy nsenter jq dnsmasq bash; do
	ln -sf "$(command -v "$t")" "$TMP/bin/$t"
done
err=$(PATH="$TMP/bin" "$SONDE" lab up 2>&1); rc=$?
assert_eq 1 "$rc" "lab up without nginx exits 1"
assert_contains "$err" "apt-get install nginx-light" "missing nginx names its package"
rm -rf "$TMP"

done_testing
