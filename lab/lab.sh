#!/usr/bin/env bash
# The sonde lab: a Kubernetes-like cluster built from network namespaces on
# one machine (docs/lab.md). `sonde lab VERB ...` (src/lab/lab.c) parses and
# checks the options, then runs this script as:
#
#   lab.sh up NODES RATE WORKLOAD      WORKLOAD = bookinfo | none; RATE 0 = no load
#   lab.sh down
#   lab.sh status [--json]
#   lab.sh exec POD CMD [ARGS...]      POD = pod name, workload name or unique prefix
#   lab.sh delay NODE DELAY_US|clear
#   lab.sh loss NODE PROBABILITY|clear
#   lab.sh load RATE
#
# Environment (set by lab.c): SONDE_BIN (the running sonde binary),
# SONDE_LAB_DIR (this directory), SONDE_CGROUP2 (the cgroup v2 mount).
#
# Rules this script keeps:
# - nothing is created in, or routed from, the host's root network namespace:
#   every link is created with `ip -n <lab netns>`, veth peers are created
#   directly in their target namespace;
# - everything the lab makes has a name `down` can find without state:
#   netns sonde-underlay / sonde-node-N / sonde-pod-*, the cgroup subtree
#   <cgroup2>/sonde-lab, /run/sonde-lab, /etc/netns/sonde-pod-*;
# - every lab process lives in the lab's cgroup subtree, so `down` can kill
#   them all at once (cgroup.kill), even after `up` was killed with -9;
# - commands are serialized with flock on /run/sonde-lab.lock (outside
#   /run/sonde-lab, which `down` removes); the lock fd is closed in every
#   daemon so a long-lived daemon never holds it.
# SC2016: jq filters and the `sh -c` below are single-quoted on purpose.
# SC2015: `test && test || die` is used only with tests, which cannot fail
# in the middle position.
# shellcheck disable=SC2016,SC2015
set -Eeuo pipefail
shopt -s nullglob

LAB_DIR=${SONDE_LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
SONDE_BIN=${SONDE_BIN:-$(cd "$LAB_DIR/.." && pwd)/sonde}
CGROUP2=${SONDE_CGROUP2:-$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)}
readonly LAB_DIR SONDE_BIN CGROUP2

readonly RUN=/run/sonde-lab
readonly STATE=$RUN/state.json
readonly LOCK=/run/sonde-lab.lock
readonly CG_ROOT=$CGROUP2/sonde-lab
readonly CLUSTER=sonde-lab
readonly UNDERLAY_NS=sonde-underlay UNDERLAY_BR=br-underlay UNDERLAY_CIDR=172.30.0.0/24
readonly CLUSTER_CIDR=10.244.0.0/16 SERVICE_CIDR=10.96.0.0/16
readonly DNS_IP=10.96.0.10 DOMAIN=cluster.local
readonly VXLAN_DEV=flannel.1 VXLAN_VNI=1 VXLAN_PORT=8472 POD_MTU=1450
readonly HTTP_PORT=9080
# Placement: this order, round-robin over nodes 1..N. With any N >= 2,
# reviews-v2 and ratings-v1 (neighbours in the list) land on different nodes.
readonly PLACEMENT=(productpage-v1 reviews-v2 ratings-v1 details-v1 reviews-v1 reviews-v3 coredns loadgen)
# Kubernetes' pod-name alphabet (no vowels, no look-alike digits).
readonly NAME_ALPHABET=bcdfghjklmnpqrstvwxz2456789
readonly READY_TIMEOUT=30

# ---------------------------------------------------------------- helpers

say() { printf 'sonde lab: %s\n' "$*"; }
# Set while `up` builds: a failure then leaves the partial lab for
# inspection (its logs are in /run/sonde-lab), and says so.
BUILDING=0
partial_hint() {
	((BUILDING == 0)) ||
		printf 'sonde lab: the partial lab is left for inspection (logs in %s); sonde lab down removes it\n' "$RUN" >&2
}
# In a command substitution, die exits the subshell with REPORTED so the
# caller's ERR trap knows the error was already printed.
readonly REPORTED=99
die() {
	printf 'sonde lab: error: %s\n' "$*" >&2
	((BASH_SUBSHELL == 0)) || exit $REPORTED
	partial_hint
	exit 1
}
# set -e alone would exit silently; name the command that failed instead.
on_err() {
	local rc=$1 line=$2 cmd=$3
	if ((rc == REPORTED)); then
		((BASH_SUBSHELL == 0)) || exit $REPORTED
		partial_hint
		exit 1
	fi
	printf 'sonde lab: error: "%s" failed (exit %s, lab.sh line %s)\n' "$cmd" "$rc" "$line" >&2
	((BASH_SUBSHELL == 0)) || exit $REPORTED
	partial_hint
	exit "$rc"
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

# Runs a command in a lab netns. nsenter --net changes only the network
# namespace (ip netns exec also remounts /sys and /etc files; not needed here).
in_ns() {
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" "$@"
}
ipt() {
	local ns=$1
	shift
	in_ns "$ns" iptables-legacy -w 5 "$@"
}
now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%SZ; }

rand_str() { # ALPHABET LENGTH
	local alphabet=$1 n=$2 s=""
	while ((${#s} < n)); do
		s+=${alphabet:$((SRANDOM % ${#alphabet})):1}
	done
	printf '%s' "$s"
}
rand_hex32() { printf '%08x' "$SRANDOM"; }
container_id() {
	local i id=""
	for i in 1 2 3 4 5 6 7 8; do id+=$(rand_hex32); done
	printf '%s' "$id"
}
# kube-proxy's chain-name hash: base32(sha256(text)), first 16 characters.
# Memoized, in this run and across runs ($RUN/kube-hash.memo): `up` and
# `move` regenerate the same chain names, and each costs a pipeline of six
# processes (about 70 ms on a loaded 2-core VM). Sets KUBE_HASH.
declare -A KUBE_HASH_MEMO=()
KUBE_HASH=""
kube_hash() { # TEXT
	local h
	if [ -z "${KUBE_HASH_MEMO[$1]:-}" ]; then
		h=$(printf '%s' "$1" | sha256sum | cut -c1-64 | tr a-f A-F | basenc --base16 -d | base32)
		KUBE_HASH_MEMO[$1]=${h:0:16}
		[ ! -d "$RUN" ] || printf '%s\t%s\n' "$1" "${h:0:16}" >>"$RUN/kube-hash.memo"
	fi
	KUBE_HASH=${KUBE_HASH_MEMO[$1]}
}
load_kube_hash_memo() {
	local text h
	[ -s "$RUN/kube-hash.memo" ] || return 0
	while IFS=$'\t' read -r text h; do KUBE_HASH_MEMO[$text]=$h; done <"$RUN/kube-hash.memo"
}
vtep_mac() { printf '02:5e:00:00:00:%02x' "$1"; }
# cni0 gets a fixed MAC (Kubernetes' 0a:58 + IP scheme): a bridge without one
# takes its lowest port's MAC, which changes as pods come and go.
cni_mac() { printf '0a:58:0a:f4:%02x:01' "$1"; }

# Fills a template: every @KEY@ is replaced by the value of KEY=value.
render() { # TEMPLATE OUT KEY=VALUE...
	local template=$1 out=$2 text kv
	shift 2
	text=$(<"$template")
	for kv in "$@"; do
		text=${text//@${kv%%=*}@/${kv#*=}}
	done
	if [[ $text =~ @[A-Z_]+@ ]]; then
		die "template $template: ${BASH_REMATCH[0]} not filled (lab.sh bug)"
	fi
	printf '%s\n' "$text" >"$out"
}

# Starts a daemon detached (own session) inside cgroup CG: the shell moves
# itself into the cgroup, then execs the command, so the daemon is in the
# cgroup from its first instruction. fd 9 (the lab lock) is closed, the
# working directory is / (a caller's directory may go away). Sets
# SPAWN_PID (the daemon's pid: setsid does not fork here, since a background
# job of a non-interactive shell is never a process-group leader).
spawn() { # CG LOGFILE CMD...
	local cg=$1 log=$2
	shift 2
	setsid sh -c 'cd / && echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@" \
		</dev/null >>"$log" 2>&1 9>&- &
	SPAWN_PID=$!
}

pid_alive_in() { # PID CGROUP_DIR
	local pid=$1 cg=$2 line
	[[ $pid =~ ^[0-9]+$ ]] && ((pid > 0)) || return 1
	[ -r "/proc/$pid/cgroup" ] || return 1
	line=$(grep '^0::' "/proc/$pid/cgroup" 2>/dev/null) || return 1
	[ "$CGROUP2${line#0::}" = "$cg" ] || return 1
	# A zombie has left its cgroup already, but be explicit.
	! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

cgroup_empty() { # DIR
	[ ! -e "$1/cgroup.events" ] || grep -q '^populated 0$' "$1/cgroup.events"
}

# Kills every process in a cgroup subtree and waits until it is empty.
cgroup_kill() { # DIR
	local cg=$1 i
	[ -d "$cg" ] || return 0
	echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		cgroup_empty "$cg" && return 0
		sleep 0.05
	done
	return 1
}

lock() {
	exec 9>"$LOCK"
	flock -w 300 9 || die "another sonde lab command has held $LOCK for 5 minutes; is one stuck? (fuser $LOCK)"
}

require_tools() {
	local t pkg missing=""
	for t in curl:curl dig:dnsutils ping:iputils-ping bridge:iproute2 sysctl:procps \
		flock:util-linux setsid:util-linux iptables-legacy-restore:iptables basenc:coreutils; do
		pkg=${t#*:}
		t=${t%%:*}
		command -v "$t" >/dev/null 2>&1 || missing+=" $pkg"
	done
	[ -z "$missing" ] || die "missing tools; install them: apt-get install$missing"
	[ -n "$CGROUP2" ] && [ -e "$CGROUP2/cgroup.procs" ] ||
		die "no cgroup v2 mount found in /proc/mounts; mount one: mount -t cgroup2 none /sys/fs/cgroup/unified"
	[ -e /etc/resolv.conf ] ||
		die "/etc/resolv.conf is missing; ip netns exec needs it to bind pods' resolv.conf over it: touch /etc/resolv.conf"
}

state_exists() { [ -s "$STATE" ]; }
require_up() { state_exists || die "lab is down; start it with: sonde lab up"; }

# Writes the state atomically (temp file + rename) from jq's output on stdin.
write_state() {
	local tmp=$STATE.tmp.$$
	cat >"$tmp"
	jq -e . "$tmp" >/dev/null || die "internal error: state JSON is invalid (kept in $tmp)"
	mv -f "$tmp" "$STATE"
}
# Applies a jq filter to the state: update_state FILTER [jq args...]
update_state() {
	local filter=$1
	shift
	jq "$@" "$filter" "$STATE" | write_state
}

# ---------------------------------------------------------------- down

lab_netns_names() {
	local f
	for f in /run/netns/sonde-underlay /run/netns/sonde-node-* /run/netns/sonde-pod-*; do
		[ -e "$f" ] && printf '%s\n' "${f##*/}"
	done
	return 0
}

# Removes everything the lab made, found by name (works without state and
# after a crash). Order: processes, then namespaces, then cgroups and files.
# Sets DOWN_REMOVED=1 when there was something to remove. (It returns 0:
# a function called as a condition would run with set -e disabled.)
DOWN_REMOVED=0
do_down() {
	local ns pids d
	case "$(cat /proc/self/cgroup)" in
	*/sonde-lab/*) die "this command runs inside the lab (a lab exec shell?); run sonde lab down from the host" ;;
	esac
	# 1. Processes: the lab cgroup subtree, then anything else that entered
	#    a lab netns (a shell from nsenter, a killed up's stragglers).
	if [ -d "$CG_ROOT" ]; then
		cgroup_kill "$CG_ROOT" || say "warning: processes remain in $CG_ROOT after cgroup.kill"
		DOWN_REMOVED=1
	fi
	for ns in $(lab_netns_names); do
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086 # one pid per word
			kill -9 $pids 2>/dev/null || true
		fi
	done
	# 2. Namespaces: pods first (their veths die with them), nodes, underlay.
	for ns in $(lab_netns_names | sort -r); do
		ip netns del "$ns" 2>/dev/null || ip netns del "$ns" ||
			say "warning: could not delete netns $ns"
		DOWN_REMOVED=1
	done
	# 3. Cgroups, deepest first; a dying process can keep one busy briefly.
	if [ -d "$CG_ROOT" ]; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			find "$CG_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$CG_ROOT" ] || break
			cgroup_kill "$CG_ROOT" || true
			sleep 0.1
		done
		[ ! -d "$CG_ROOT" ] || die "cannot remove $CG_ROOT: $(find "$CG_ROOT" -name cgroup.procs -exec cat {} + | tr '\n' ' ')still running"
	fi
	# 4. Files.
	for d in /etc/netns/sonde-underlay /etc/netns/sonde-node-* /etc/netns/sonde-pod-*; do
		[ -e "$d" ] || continue
		rm -rf "$d"
		DOWN_REMOVED=1
	done
	if [ -e "$RUN" ]; then
		rm -rf "$RUN"
		DOWN_REMOVED=1
	fi
}

cmd_down() {
	lock
	do_down
	if ((DOWN_REMOVED)); then say "lab is down; everything it made is removed"; else say "lab is down (nothing to remove)"; fi
}

# ---------------------------------------------------------------- up: topology

# Checks, in the fresh underlay netns, that the kernel has every feature the
# lab uses, so a missing one is reported with its config option instead of
# surfacing later as an obscure failure.
preflight() {
	local ns=$UNDERLAY_NS
	ip -n "$ns" link add probe-br type bridge 2>/dev/null ||
		die "cannot create a bridge: the kernel lacks CONFIG_BRIDGE"
	ip -n "$ns" link add probe-veth type veth peer name probe-veth1 2>/dev/null ||
		die "cannot create a veth pair: the kernel lacks CONFIG_VETH"
	ip -n "$ns" link add probe-vx type vxlan id 1 dstport "$VXLAN_PORT" nolearning 2>/dev/null ||
		die "cannot create a VXLAN device: the kernel lacks CONFIG_VXLAN"
	ip -n "$ns" link del probe-br
	ip -n "$ns" link del probe-veth
	ip -n "$ns" link del probe-vx
	local probe err
	probe='*mangle
:SONDE-PROBE - [0:0]
-A SONDE-PROBE -m statistic --mode random --probability 0.5 -j DROP
-A SONDE-PROBE -j NFQUEUE --queue-num 1 --queue-bypass
-A SONDE-PROBE -m comment --comment probe -j RETURN
COMMIT
*nat
:SONDE-PROBE - [0:0]
-A SONDE-PROBE -p tcp -m tcp --dport 1 -j DNAT --to-destination 10.244.1.2:1
-A SONDE-PROBE -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully
-A SONDE-PROBE -j MARK --xor-mark 0x4000
COMMIT'
	if ! err=$(printf '%s\n' "$probe" | in_ns "$ns" iptables-legacy-restore 2>&1); then
		die "iptables-legacy cannot load kube-proxy/fault rules ($(tr '\n' ' ' <<<"$err")): the kernel needs CONFIG_IP_NF_IPTABLES, CONFIG_IP_NF_NAT, CONFIG_IP_NF_MANGLE, CONFIG_NETFILTER_XT_MATCH_STATISTIC, CONFIG_NETFILTER_XT_TARGET_NFQUEUE, CONFIG_NETFILTER_XT_MARK, CONFIG_NETFILTER_XT_MATCH_COMMENT, CONFIG_IP_NF_TARGET_MASQUERADE"
	fi
	in_ns "$ns" iptables-legacy-restore <<-EOF
		*mangle
		COMMIT
		*nat
		COMMIT
	EOF
	in_ns "$ns" sysctl -q net.bridge.bridge-nf-call-iptables >/dev/null 2>&1 ||
		die "no net.bridge.bridge-nf-call-iptables in a network namespace: the kernel needs CONFIG_BRIDGE_NETFILTER (or modprobe br_netfilter)"
}

# Per-netns sysctls. IPv6 is off in every lab netns: the lab is IPv4-only
# (like a default flannel cluster) and this keeps router/neighbour
# solicitations and MLD out of what sensors count.
ns_sysctls() { # NETNS extra=settings...
	local ns=$1
	shift
	in_ns "$ns" sysctl -q -e -w net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 "$@" >/dev/null
}

make_underlay() {
	ip netns add "$UNDERLAY_NS"
	# The underlay is a plain switch: bridged frames skip iptables (the
	# preflight below loads tables here, and br_netfilter defaults to on).
	ns_sysctls "$UNDERLAY_NS" net.bridge.bridge-nf-call-iptables=0 \
		net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0
	preflight
	# A plain L2 switch: no address, no routing, STP off (ports forward at once).
	ip -n "$UNDERLAY_NS" -b - <<-EOF
		link set lo up
		link add $UNDERLAY_BR type bridge stp_state 0
		link set $UNDERLAY_BR up
	EOF
}

make_node() { # INDEX
	local n=$1 ns=sonde-node-$1 cg=$CG_ROOT/node-$1
	ip netns add "$ns"
	# ip_forward: the node routes between cni0, flannel.1 and eth0.
	# bridge-nf-call-iptables: bridged pod-to-pod frames go through
	# conntrack, so a reply from a same-node endpoint to a pod that called
	# a cluster IP is un-DNATed (otherwise the caller sees the pod IP and
	# drops it). Per netns since Linux 5.3.
	ns_sysctls "$ns" net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
	ip -n "$UNDERLAY_NS" link add "node-$n" type veth peer name eth0 netns "$ns"
	ip -n "$UNDERLAY_NS" link set "node-$n" master "$UNDERLAY_BR" up
	# Last line: the node has no default route (nothing may leave the lab),
	# so a socket of the node itself needs a route to the service range to
	# get as far as the nat OUTPUT chain, whose DNAT then reroutes the
	# packet to the endpoint. Source = the cni0 address, so replies come
	# back over the overlay like any pod traffic.
	ip -n "$ns" -b - <<-EOF
		link set lo up
		addr add 172.30.0.$n/24 dev eth0
		link set eth0 up
		link add cni0 address $(cni_mac "$n") type bridge stp_state 0
		addr add 10.244.$n.1/24 dev cni0
		link set cni0 up
		link add $VXLAN_DEV address $(vtep_mac "$n") mtu $POD_MTU type vxlan id $VXLAN_VNI local 172.30.0.$n dev eth0 dstport $VXLAN_PORT nolearning
		addr add 10.244.$n.0/32 dev $VXLAN_DEV
		link set $VXLAN_DEV up
		route add $SERVICE_CIDR dev cni0 src 10.244.$n.1
	EOF
	mkdir -p "$cg/kubepods/besteffort" "$cg/system" "$RUN/nodes/node-$n"
}

# flannel's vxlan backend, statically: for each remote node M, a route to
# its pod subnet via its VTEP address (onlink), a permanent neighbour entry
# VTEP address -> VTEP MAC, and an FDB entry VTEP MAC -> M's underlay IP.
make_overlay() { # NODES
	local nodes=$1 n m
	for ((n = 1; n <= nodes; n++)); do
		{
			for ((m = 1; m <= nodes; m++)); do
				((m == n)) && continue
				printf 'route add 10.244.%d.0/24 via 10.244.%d.0 dev %s onlink\n' "$m" "$m" "$VXLAN_DEV"
				printf 'neigh add 10.244.%d.0 lladdr %s dev %s nud permanent\n' "$m" "$(vtep_mac "$m")" "$VXLAN_DEV"
			done
		} | ip -n "sonde-node-$n" -b -
		for ((m = 1; m <= nodes; m++)); do
			((m == n)) && continue
			printf 'fdb add %s dev %s dst 172.30.0.%d self permanent\n' "$(vtep_mac "$m")" "$VXLAN_DEV" "$m"
		done | bridge -n "sonde-node-$n" -b -
	done
}

# ---------------------------------------------------------------- up: pods and services

# Pod table (index = position in POD_ORDER).
declare -a POD_ORDER=()
declare -A P_SANDBOX P_NAME P_NS P_WL P_APP P_VERSION P_NODE P_IP P_UID P_CID P_CONTAINER P_VETH P_PORT P_LABELS P_PID P_CREATED

plan_pods() { # NODES WORKLOAD
	local nodes=$1 workload=$2 i wl node hash
	declare -A next_ip=()
	for ((i = 0; i < ${#PLACEMENT[@]}; i++)); do
		wl=${PLACEMENT[i]}
		[ "$workload" = bookinfo ] || [ "$wl" = coredns ] || continue
		node=$((i % nodes + 1))
		hash=$(rand_str "$NAME_ALPHABET" 10)
		P_NAME[$i]=$wl-$hash-$(rand_str "$NAME_ALPHABET" 5)
		P_WL[$i]=$wl
		P_NODE[$i]=$node
		P_IP[$i]=10.244.$node.${next_ip[$node]:-2}
		next_ip[$node]=$((${next_ip[$node]:-2} + 1))
		P_UID[$i]=$(</proc/sys/kernel/random/uuid)
		P_CID[$i]=$(container_id)
		P_SANDBOX[$i]=$(container_id)
		P_VETH[$i]=veth$(rand_hex32)
		P_PID[$i]=0
		case $wl in
		coredns)
			P_NS[$i]=kube-system P_APP[$i]=kube-dns P_VERSION[$i]="" P_CONTAINER[$i]=coredns P_PORT[$i]=53
			P_LABELS[$i]='{"k8s-app":"kube-dns"}'
			;;
		loadgen)
			P_NS[$i]=bookinfo P_APP[$i]=loadgen P_VERSION[$i]="" P_CONTAINER[$i]=loadgen P_PORT[$i]=""
			P_LABELS[$i]='{"app":"loadgen"}'
			;;
		*)
			P_NS[$i]=bookinfo P_APP[$i]=${wl%-v*} P_VERSION[$i]=${wl##*-} P_PORT[$i]=$HTTP_PORT
			P_CONTAINER[$i]=${P_APP[$i]}
			P_LABELS[$i]=$(printf '{"app":"%s","version":"%s"}' "${P_APP[$i]}" "${P_VERSION[$i]}")
			;;
		esac
		POD_ORDER+=("$i")
	done
}

pod_netns() { printf 'sonde-pod-%s' "${P_NAME[$1]}"; }
pod_dir() { printf '%s/pods/%s' "$RUN" "${P_NAME[$1]}"; }
pod_cgroup() {
	printf '%s/node-%s/kubepods/besteffort/pod%s/%s' "$CG_ROOT" "${P_NODE[$1]}" "${P_UID[$1]}" "${P_CID[$1]}"
}
# The sandbox ("pause") container's cgroup, a sibling of the app container's.
sandbox_cgroup() {
	printf '%s/node-%s/kubepods/besteffort/pod%s/%s' "$CG_ROOT" "${P_NODE[$1]}" "${P_UID[$1]}" "${P_SANDBOX[$1]}"
}

# Services: S_* indexed by position; endpoints are pods whose labels match.
declare -a SVC_ORDER=()
declare -A S_NS S_NAME S_IP S_SEL_KEY S_SEL_VAL S_PORTS

plan_services() { # WORKLOAD
	local workload=$1 i=0 ip
	declare -A used=(["$DNS_IP"]=1 [10.96.0.1]=1)
	add_svc() { # NS NAME SEL_KEY SEL_VAL PORTS(name/port/proto,...) IP
		S_NS[$i]=$1 S_NAME[$i]=$2 S_SEL_KEY[$i]=$3 S_SEL_VAL[$i]=$4 S_PORTS[$i]=$5 S_IP[$i]=$6
		SVC_ORDER+=("$i")
		i=$((i + 1))
	}
	add_svc kube-system kube-dns k8s-app kube-dns dns/53/UDP,dns-tcp/53/TCP "$DNS_IP"
	[ "$workload" = bookinfo ] || return 0
	local svc
	for svc in productpage details reviews ratings; do
		# A random cluster IP, as the API server allocates them, so nothing
		# can depend on a fixed address instead of reading the state or DNS.
		while :; do
			ip=10.96.$((SRANDOM % 254 + 1)).$((SRANDOM % 254 + 1))
			[ -z "${used[$ip]:-}" ] && break
		done
		used[$ip]=1
		add_svc bookinfo "$svc" app "$svc" "http/$HTTP_PORT/TCP" "$ip"
	done
}

# Pod indexes selected by service S (in placement order).
# Every selector here is on the pod's app label (k8s-app for kube-dns),
# which P_APP holds.
svc_endpoints() { # S
	local s=$1 p
	for p in "${POD_ORDER[@]}"; do
		[ "${P_NS[$p]}" = "${S_NS[$s]}" ] && [ "${P_APP[$p]}" = "${S_SEL_VAL[$s]}" ] || continue
		printf '%s\n' "$p"
	done
}
declare -A S_EPS

# kube-proxy (iptables mode) rules, same on every node, as one
# iptables-restore input: nat for services, mangle hooks for faults.
gen_rules() {
	local s p port pname pnum proto lproto spn svc_chain sep_chain n k prob comment
	local -a ports eps
	printf '%s\n' '*mangle' ':PREROUTING ACCEPT [0:0]' ':INPUT ACCEPT [0:0]' ':FORWARD ACCEPT [0:0]' \
		':OUTPUT ACCEPT [0:0]' ':POSTROUTING ACCEPT [0:0]' ':SONDE-LOSS - [0:0]' ':SONDE-DELAY - [0:0]'
	# Faults act on what leaves the node's uplink (the VXLAN-encapsulated
	# packets). Loss is hooked before delay: an NFQUEUE verdict ends the
	# table, so a rule after it would never see the packet.
	printf '%s\n' \
		'-A POSTROUTING -o eth0 -m comment --comment "sonde lab fault: loss" -j SONDE-LOSS' \
		'-A POSTROUTING -o eth0 -m comment --comment "sonde lab fault: delay" -j SONDE-DELAY' \
		'COMMIT'
	local -a chains=() rules=()
	load_kube_hash_memo
	for s in "${SVC_ORDER[@]}"; do
		IFS=, read -ra ports <<<"${S_PORTS[$s]}"
		for port in "${ports[@]}"; do
			IFS=/ read -r pname pnum proto <<<"$port"
			lproto=${proto,,}
			spn="${S_NS[$s]}/${S_NAME[$s]}:$pname"
			kube_hash "$spn$lproto"
			svc_chain=KUBE-SVC-$KUBE_HASH
			chains+=("$svc_chain")
			rules+=("-A KUBE-SERVICES -d ${S_IP[$s]}/32 -p $lproto -m comment --comment \"$spn cluster IP\" -m $lproto --dport $pnum -j $svc_chain")
			rules+=("-A $svc_chain ! -s $CLUSTER_CIDR -d ${S_IP[$s]}/32 -p $lproto -m comment --comment \"$spn cluster IP\" -m $lproto --dport $pnum -j KUBE-MARK-MASQ")
			read -ra eps <<<"${S_EPS[$s]}"
			n=${#eps[@]}
			for ((k = 0; k < n; k++)); do
				p=${eps[k]}
				kube_hash "$spn$lproto${P_IP[$p]}:$pnum"
				sep_chain=KUBE-SEP-$KUBE_HASH
				chains+=("$sep_chain")
				comment="$spn -> ${P_IP[$p]}:$pnum"
				if ((k < n - 1)); then
					prob=$(awk -v r=$((n - k)) 'BEGIN { printf "%.10f", 1 / r }')
					rules+=("-A $svc_chain -m comment --comment \"$comment\" -m statistic --mode random --probability $prob -j $sep_chain")
				else
					rules+=("-A $svc_chain -m comment --comment \"$comment\" -j $sep_chain")
				fi
				rules+=("-A $sep_chain -s ${P_IP[$p]}/32 -m comment --comment \"$spn\" -j KUBE-MARK-MASQ")
				rules+=("-A $sep_chain -p $lproto -m comment --comment \"$spn\" -m $lproto -j DNAT --to-destination ${P_IP[$p]}:$pnum")
			done
		done
	done
	printf '%s\n' '*nat' ':PREROUTING ACCEPT [0:0]' ':INPUT ACCEPT [0:0]' ':OUTPUT ACCEPT [0:0]' \
		':POSTROUTING ACCEPT [0:0]' ':KUBE-SERVICES - [0:0]' ':KUBE-POSTROUTING - [0:0]' ':KUBE-MARK-MASQ - [0:0]'
	for k in "${chains[@]}"; do printf ':%s - [0:0]\n' "$k"; done
	printf '%s\n' \
		'-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' \
		'-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' \
		'-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' \
		'-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000' \
		'-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN' \
		'-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000' \
		'-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully'
	printf '%s\n' "${rules[@]}" 'COMMIT'
}

make_pod_network() { # POD
	local p=$1 ns node_ns n=${P_NODE[$1]}
	ns=$(pod_netns "$p")
	node_ns=sonde-node-$n
	ip netns add "$ns"
	# tcp_tw_reuse=1: the Bookinfo services call each other with a new
	# connection per request (nginx's proxy with a variable upstream has no
	# keep-alive), and the caller closes first, so at 1000 pages/s
	# productpage holds ~28 k sockets in TIME_WAIT after 28 s: the whole
	# ephemeral port range. connect() then scans the full range for every
	# call and the page rate collapses (measured: 5000 pages per 5 s down to
	# ~1000 from the 35th second, without any sensor). Reusing a TIME_WAIT
	# port for a new outgoing connection (safe with TCP timestamps, which
	# the kernel checks) is what busy Kubernetes nodes are tuned to do.
	ns_sysctls "$ns" net.ipv4.tcp_tw_reuse=1
	# Created in the node netns with the pod end born inside the pod netns.
	ip -n "$node_ns" link add "${P_VETH[$p]}" mtu "$POD_MTU" type veth peer name eth0 mtu "$POD_MTU" netns "$ns"
	ip -n "$node_ns" link set "${P_VETH[$p]}" master cni0 up
	# Hairpin, as flannel's CNI sets it: a pod reaching itself through its
	# service's cluster IP gets the packet back out of the same bridge port.
	bridge -n "$node_ns" link set dev "${P_VETH[$p]}" hairpin on
	ip -n "$ns" -b - <<-EOF
		link set lo up
		addr add ${P_IP[$p]}/24 dev eth0
		link set eth0 up
		route add default via 10.244.$n.1 dev eth0
	EOF
	mkdir -p "/etc/netns/$ns"
	printf 'nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n' \
		"$DNS_IP" "${P_NS[$p]}" "$DOMAIN" "$DOMAIN" "$DOMAIN" >"/etc/netns/$ns/resolv.conf"
	mkdir -p "$(pod_cgroup "$p")" "$(sandbox_cgroup "$p")" "$(pod_dir "$p")"
	# Like kubelet's pause container: a process that holds the pod's netns
	# for the pod's whole life, whatever its app containers do (the load
	# generator at rate 0 has none). Node discovery finds a pod's netns
	# through its processes, as on a real node.
	spawn "$(sandbox_cgroup "$p")" /dev/null ip netns exec "$ns" sleep infinity
}

# Renders a pod's configuration into its directory.
configure_pod() { # POD
	local p=$1 dir wl common s records=""
	dir=$(pod_dir "$p")
	wl=${P_WL[$p]}
	common=(POD="${P_NAME[$p]}" NODE="node-${P_NODE[$p]}" DIR="$dir" WORKLOAD="$wl"
		NAMESPACE="${P_NS[$p]}" PORT="$HTTP_PORT" SERVICE="${P_APP[$p]}" VERSION="${P_VERSION[$p]}")
	case $wl in
	coredns)
		for s in "${SVC_ORDER[@]}"; do
			records+="host-record=${S_NAME[$s]}.${S_NS[$s]}.svc.$DOMAIN,${S_IP[$s]}"$'\n'
		done
		render "$LAB_DIR/dns/dnsmasq.conf.in" "$dir/dnsmasq.conf" "${common[@]}" HOST_RECORDS="$records"
		;;
	loadgen) ;;
	*)
		mkdir -p "$dir/www" "$dir"/tmp/{client_body,proxy,fastcgi,uwsgi,scgi}
		chown -R www-data "$dir/tmp"
		render "$LAB_DIR/bookinfo/nginx.conf.in" "$dir/nginx.conf" "${common[@]}"
		render "$LAB_DIR/bookinfo/${P_APP[$p]}.conf.in" "$dir/app.conf" "${common[@]}"
		case $wl in
		productpage-v1) render "$LAB_DIR/bookinfo/productpage.html.in" "$dir/www/productpage.html" "${common[@]}" ;;
		reviews-v1) render "$LAB_DIR/bookinfo/reviews-v1.json.in" "$dir/www/reviews.json" "${common[@]}" ;;
		reviews-v2) render "$LAB_DIR/bookinfo/reviews-rated.json.in" "$dir/www/reviews.json" "${common[@]}" STAR_COLOR=black ;;
		reviews-v3) render "$LAB_DIR/bookinfo/reviews-rated.json.in" "$dir/www/reviews.json" "${common[@]}" STAR_COLOR=red ;;
		esac
		;;
	esac
}

# Starts a pod's container process: in its cgroup, in its netns, with its
# resolv.conf (ip netns exec binds /etc/netns/<netns>/resolv.conf).
start_pod() { # POD RATE
	local p=$1 rate=$2 dir ns
	dir=$(pod_dir "$p")
	ns=$(pod_netns "$p")
	case ${P_WL[$p]} in
	coredns)
		spawn "$(pod_cgroup "$p")" "$dir/container.log" ip netns exec "$ns" \
			dnsmasq --keep-in-foreground --conf-file="$dir/dnsmasq.conf"
		;;
	loadgen)
		if ((rate == 0)); then
			P_PID[$p]=0
			return 0
		fi
		spawn "$(pod_cgroup "$p")" "$dir/container.log" ip netns exec "$ns" \
			"$SONDE_BIN" lab loadgen --url "http://productpage.bookinfo.svc.$DOMAIN:$HTTP_PORT/productpage" \
			--rate "$rate" --log "$dir/requests.log"
		;;
	*)
		spawn "$(pod_cgroup "$p")" "$dir/container.log" ip netns exec "$ns" \
			nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;'
		;;
	esac
	P_PID[$p]=$SPAWN_PID
}

# The last lines of log files, on one line, for an error message.
log_tail() {
	local f
	for f in "$@"; do
		[ -s "$f" ] && printf '[%s] %s ' "${f##*/}" "$(tail -n 3 "$f" | tr '\n' ' ')"
	done
	return 0
}

pod_fail() { # POD WHAT
	local dir
	dir=$(pod_dir "$1")
	die "pod ${P_NAME[$1]} $2; its logs ($dir): $(log_tail "$dir/container.log" "$dir/error.log" | cut -c1-500)"
}

# Waits until every server answers from its node (as a kubelet probe) and
# kube-dns answers from every node, then one Bookinfo request end to end.
wait_ready() {
	local p end=$((SECONDS + READY_TIMEOUT)) n nodes=$1 answer body
	for p in "${POD_ORDER[@]}"; do
		[ "${P_PID[$p]}" != 0 ] && [ "${P_WL[$p]}" != loadgen ] || continue
		while :; do
			pid_alive_in "${P_PID[$p]}" "$(pod_cgroup "$p")" || pod_fail "$p" "exited while starting"
			case ${P_WL[$p]} in
			coredns) in_ns "sonde-node-${P_NODE[$p]}" dig +time=1 +tries=1 +short "@${P_IP[$p]}" \
				"kube-dns.kube-system.svc.$DOMAIN" 2>/dev/null | grep -qx "$DNS_IP" && break ;;
			*) in_ns "sonde-node-${P_NODE[$p]}" curl -fsS -o /dev/null --max-time 1 \
				"http://${P_IP[$p]}:$HTTP_PORT/health" 2>/dev/null && break ;;
			esac
			((SECONDS < end)) || pod_fail "$p" "not ready after ${READY_TIMEOUT}s"
			sleep 0.1
		done
	done
	# The service path: cluster IP DNAT from every node, local and remote.
	for ((n = 1; n <= nodes; n++)); do
		while :; do
			answer=$(in_ns "sonde-node-$n" dig +time=1 +tries=1 +short "@$DNS_IP" "kube-dns.kube-system.svc.$DOMAIN" 2>/dev/null || true)
			[ "$answer" = "$DNS_IP" ] && break
			((SECONDS < end)) || die "kube-dns ($DNS_IP) does not answer from node-$n: check the overlay (ip -n sonde-node-$n route) and the nat table (sonde lab status)"
			sleep 0.1
		done
	done
	for p in "${POD_ORDER[@]}"; do
		[ "${P_WL[$p]}" = loadgen ] || continue
		while :; do
			body=$(ip netns exec "$(pod_netns "$p")" curl -fsS --max-time 5 \
				"http://productpage.bookinfo.svc.$DOMAIN:$HTTP_PORT/productpage" 2>/dev/null || true)
			[[ $body == *'"pod": "details-v1-'* && $body == *'"pod": "reviews-v'* ]] && break
			((SECONDS < end)) || die "Bookinfo does not answer end to end (loadgen -> productpage -> details, reviews); see $RUN/pods/*/error.log"
			sleep 0.2
		done
	done
}

# ---------------------------------------------------------------- up: state

# The state is assembled in bash and checked by one jq run (each jq run
# costs ~25 ms; one per field made `up` slower than the rest together).
# Every value written here is a name, an address or a number the lab chose
# itself, none needs JSON escaping.

# host_veth -> ifindex for every veth of a node, from one `ip link` call.
declare -A VETH_IFINDEX
read_ifindexes() { # NODE_INDEX
	local idx name rest
	while read -r idx name rest; do
		name=${name%%@*}
		VETH_IFINDEX[$name]=${idx%:}
	done < <(ip -n "sonde-node-$1" -o link show type veth)
}

pod_json() { # POD
	local p=$1 port_list=""
	[ -z "${P_PORT[$p]}" ] || port_list=${P_PORT[$p]}
	printf '{"uid":"%s","namespace":"%s","name":"%s","workload":"%s","workload_kind":"Deployment",' \
		"${P_UID[$p]}" "${P_NS[$p]}" "${P_NAME[$p]}" "${P_WL[$p]}"
	printf '"labels":%s,"node":"node-%s","ip":"%s","netns":"%s","netns_path":"/run/netns/%s",' \
		"${P_LABELS[$p]}" "${P_NODE[$p]}" "${P_IP[$p]}" "$(pod_netns "$p")" "$(pod_netns "$p")"
	printf '"cgroup":"%s","container":"%s","container_id":"%s","host_veth":"%s","host_veth_ifindex":%s,' \
		"$(pod_cgroup "$p")" "${P_CONTAINER[$p]}" "${P_CID[$p]}" "${P_VETH[$p]}" "${VETH_IFINDEX[${P_VETH[$p]}]}"
	printf '"sandbox_id":"%s","sandbox_cgroup":"%s",' "${P_SANDBOX[$p]}" "$(sandbox_cgroup "$p")"
	printf '"ports":[%s],"dir":"%s","created":"%s","pid":%s}\n' \
		"$port_list" "$(pod_dir "$p")" "${P_CREATED[$p]:-$CREATED}" "${P_PID[$p]}"
}

svc_json() { # S
	local s=$1 p port pname pnum proto sep="" eps_s="" ports_s=""
	for p in ${S_EPS[$s]}; do
		eps_s+=$(printf '%s{"pod":"%s","ip":"%s","port":%s,"node":"node-%s"}' \
			"$sep" "${P_NAME[$p]}" "${P_IP[$p]}" "${P_PORT[$p]}" "${P_NODE[$p]}")
		sep=,
	done
	sep=""
	IFS=, read -ra plist <<<"${S_PORTS[$s]}"
	for port in "${plist[@]}"; do
		IFS=/ read -r pname pnum proto <<<"$port"
		ports_s+=$(printf '%s{"name":"%s","port":%s,"target_port":%s,"protocol":"%s"}' "$sep" "$pname" "$pnum" "$pnum" "$proto")
		sep=,
	done
	printf '{"namespace":"%s","name":"%s","cluster_ip":"%s","ports":[%s],"selector":{"%s":"%s"},"endpoints":[%s]}\n' \
		"${S_NS[$s]}" "${S_NAME[$s]}" "${S_IP[$s]}" "$ports_s" "${S_SEL_KEY[$s]}" "${S_SEL_VAL[$s]}" "$eps_s"
}

node_json() { # INDEX
	local n=$1 cg=$CG_ROOT/node-$1
	printf '{"name":"node-%s","index":%s,"netns":"sonde-node-%s","netns_path":"/run/netns/sonde-node-%s",' "$n" "$n" "$n" "$n"
	printf '"ip":"172.30.0.%s","uplink":"eth0","underlay_veth":"node-%s",' "$n" "$n"
	printf '"pod_cidr":"10.244.%s.0/24","bridge":"cni0","bridge_ip":"10.244.%s.1",' "$n" "$n"
	printf '"vxlan":"%s","vxlan_vni":%s,"vxlan_port":%s,"vtep_ip":"10.244.%s.0","vtep_mac":"%s",' \
		"$VXLAN_DEV" "$VXLAN_VNI" "$VXLAN_PORT" "$n" "$(vtep_mac "$n")"
	printf '"cgroup":"%s","system_cgroup":"%s/system"}\n' "$cg" "$cg"
}

write_initial_state() { # NODES RATE WORKLOAD
	local nodes=$1 rate=$2 workload=$3 n p s
	CREATED=$(now_rfc3339)
	for ((n = 1; n <= nodes; n++)); do read_ifindexes "$n"; done
	{
		printf '{"version":1,"cluster":"%s","created":"%s","cgroup2":"%s","cgroup_root":"%s",' \
			"$CLUSTER" "$CREATED" "$CGROUP2" "$CG_ROOT"
		printf '"params":{"nodes":%s,"rate":%s,"workload":"%s"},' "$nodes" "$rate" "$workload"
		printf '"underlay":{"netns":"%s","bridge":"%s","cidr":"%s"},' "$UNDERLAY_NS" "$UNDERLAY_BR" "$UNDERLAY_CIDR"
		printf '"dns":{"ip":"%s","domain":"%s"},"cluster_cidr":"%s","service_cidr":"%s",' \
			"$DNS_IP" "$DOMAIN" "$CLUSTER_CIDR" "$SERVICE_CIDR"
		printf '"nodes":['
		for ((n = 1; n <= nodes; n++)); do ((n == 1)) || printf ,; node_json "$n"; done
		printf '],"pods":['
		s=""
		for p in "${POD_ORDER[@]}"; do printf '%s' "$s"; pod_json "$p"; s=,; done
		printf '],"services":['
		s=""
		for p in "${SVC_ORDER[@]}"; do printf '%s' "$s"; svc_json "$p"; s=,; done
		printf '],"faults":[]}\n'
	} | jq . | write_state
}

# ---------------------------------------------------------------- up

# Healthy = every netns present and every pod's process alive in its cgroup.
lab_healthy() {
	state_exists || return 1
	local ns pid cg
	while read -r ns; do
		[ -e "/run/netns/$ns" ] || return 1
	done < <(jq -r '.underlay.netns, .nodes[].netns, .pods[].netns' "$STATE")
	while read -r pid cg; do
		[ "$pid" = 0 ] || pid_alive_in "$pid" "$cg" || return 1
	done < <(jq -r '.pods[] | "\(.pid) \(.cgroup)"' "$STATE")
}

cmd_up() {
	local nodes=${1:?nodes} rate=${2:?rate} workload=${3:?workload} start=$SECONDS n p s
	[[ $nodes =~ ^[0-9]+$ ]] && ((nodes >= 2 && nodes <= 64)) || die "nodes must be 2..64, not '$nodes'"
	[[ $rate =~ ^[0-9]+$ ]] || die "rate must be a number of requests/s, not '$rate'"
	case $workload in bookinfo | none) ;; *) die "workload must be bookinfo or none, not '$workload'" ;; esac
	[ "$workload" = bookinfo ] || rate=0
	require_tools
	lock
	if state_exists && [ "$(jq -c .params "$STATE")" = "$(jq -cn --argjson n "$nodes" --argjson r "$rate" --arg w "$workload" \
		'{nodes: $n, rate: $r, workload: $w}')" ] && lab_healthy; then
		api_start
		say "lab is already up and healthy with $nodes nodes, workload $workload, rate $rate/s: left as it is"
		return 0
	fi
	if state_exists || [ -d "$CG_ROOT" ] || [ -n "$(lab_netns_names)" ]; then
		say "removing the previous lab"
		do_down
	fi
	say "building: $nodes nodes, workload $workload, load $rate requests/s"
	BUILDING=1
	mkdir -p "$RUN/pods" "$RUN/nodes" "$CG_ROOT"
	make_underlay
	for ((n = 1; n <= nodes; n++)); do make_node "$n"; done
	make_overlay "$nodes"

	plan_pods "$nodes" "$workload"
	plan_services "$workload"
	for s in "${SVC_ORDER[@]}"; do
		S_EPS[$s]=$(svc_endpoints "$s" | tr '\n' ' ')
	done
	gen_rules >"$RUN/iptables.rules"
	for ((n = 1; n <= nodes; n++)); do
		in_ns "sonde-node-$n" iptables-legacy-restore -w 5 <"$RUN/iptables.rules"
	done

	for p in "${POD_ORDER[@]}"; do
		make_pod_network "$p"
		configure_pod "$p"
	done
	# The load generator starts last, once Bookinfo answers, so that its
	# log does not open with the errors of a cluster still starting.
	for p in "${POD_ORDER[@]}"; do
		[ "${P_WL[$p]}" = loadgen ] || start_pod "$p" "$rate"
	done
	wait_ready "$nodes"
	for p in "${POD_ORDER[@]}"; do
		[ "${P_WL[$p]}" != loadgen ] || start_pod "$p" "$rate"
	done
	# Every process must still run (a load generator that crashes at start
	# would otherwise go unnoticed).
	sleep 0.3
	for p in "${POD_ORDER[@]}"; do
		[ "${P_PID[$p]}" = 0 ] || pid_alive_in "${P_PID[$p]}" "$(pod_cgroup "$p")" || pod_fail "$p" "exited"
	done
	write_initial_state "$nodes" "$rate" "$workload"
	api_start
	BUILDING=0
	say "lab is up in $((SECONDS - start))s: $nodes nodes, ${#POD_ORDER[@]} pods, ${#SVC_ORDER[@]} services (sonde lab status)"
}


# ---------------------------------------------------------------- API stand-in

# The Kubernetes API stand-in (`sonde lab apiserver`, docs/k8s.md): HTTPS on
# loopback only, a self-signed certificate (SAN 127.0.0.1, also its own CA),
# a random bearer token, a kubeconfig for kubectl and the Python client, and
# a service-account directory laid out as in a pod, for in-cluster config.
readonly API_DIR=$RUN/api API_ADDR=127.0.0.1:6443
readonly KUBECONFIG_FILE=$RUN/kubeconfig

api_credentials() {
	local ca_b64 tok
	[ -s "$API_DIR/token" ] && return 0
	mkdir -p "$API_DIR/serviceaccount"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$API_DIR/server.key" -out "$API_DIR/ca.crt" -days 30 \
		-subj /CN=sonde-lab-apiserver \
		-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-addext "basicConstraints=critical,CA:TRUE" 2>/dev/null ||
		die "openssl cannot make the API stand-in's certificate (apt-get install openssl)"
	tok=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	(umask 077 && printf '%s\n' "$tok" >"$API_DIR/token")
	cp "$API_DIR/ca.crt" "$API_DIR/serviceaccount/ca.crt"
	cp "$API_DIR/token" "$API_DIR/serviceaccount/token"
	printf 'default\n' >"$API_DIR/serviceaccount/namespace"
	ca_b64=$(base64 -w0 "$API_DIR/ca.crt")
	(umask 077 && cat >"$KUBECONFIG_FILE" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: $CLUSTER
		  cluster:
		    server: https://$API_ADDR
		    certificate-authority-data: $ca_b64
		users:
		- name: $CLUSTER-admin
		  user:
		    token: $tok
		contexts:
		- name: $CLUSTER
		  context:
		    cluster: $CLUSTER
		    user: $CLUSTER-admin
		    namespace: default
		current-context: $CLUSTER
	EOF
	)
}

api_pid() {
	local pid
	pid=$(cat "$API_DIR/pid" 2>/dev/null || true)
	pid_alive_in "$pid" "$CG_ROOT/system/apiserver" && printf '%s\n' "$pid"
}

# Starts the API stand-in unless it runs; waits until it listens.
api_start() {
	local pid i
	pid=$(api_pid || true)
	[ -z "$pid" ] || return 0
	api_credentials
	mkdir -p "$CG_ROOT/system/apiserver"
	rm -f "$API_DIR/ready"
	# SONDE_LAB_API_ARGS: extra options for tests (--history, --bookmark-interval).
	local -a extra=()
	read -ra extra <<<"${SONDE_LAB_API_ARGS:-}"
	spawn "$CG_ROOT/system/apiserver" "$API_DIR/apiserver.log" "$SONDE_BIN" lab apiserver \
		--listen "$API_ADDR" --state "$STATE" --token-file "$API_DIR/token" \
		--tls-cert "$API_DIR/ca.crt" --tls-key "$API_DIR/server.key" \
		--rv-file "$API_DIR/resource-version" --ready-file "$API_DIR/ready" \
		"${extra[@]}"
	printf '%s\n' "$SPAWN_PID" >"$API_DIR/pid"
	for ((i = 0; i < 100; i++)); do
		[ -s "$API_DIR/ready" ] && break
		# kill -0: the spawned shell may not have entered its cgroup yet.
		kill -0 "$SPAWN_PID" 2>/dev/null ||
			die "the API stand-in exited at start: $(log_tail "$API_DIR/apiserver.log")"
		sleep 0.05
	done
	[ -s "$API_DIR/ready" ] || die "the API stand-in does not listen on $API_ADDR after 5s: $(log_tail "$API_DIR/apiserver.log")"
	update_state '.api = {server: $s, kubeconfig: $k, token_file: $t, ca_file: $c,
		serviceaccount_dir: $sa, pid: $pid}' --arg s "https://$API_ADDR" --arg k "$KUBECONFIG_FILE" \
		--arg t "$API_DIR/token" --arg c "$API_DIR/ca.crt" --arg sa "$API_DIR/serviceaccount" \
		--argjson pid "$SPAWN_PID"
}

api_stop() {
	local cg=$CG_ROOT/system/apiserver
	[ -d "$cg" ] || return 0
	# SIGTERM ends the watches cleanly; cgroup.kill after a grace period.
	local pid
	while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$cg/cgroup.procs"
	for _ in $(seq 40); do cgroup_empty "$cg" && return 0; sleep 0.05; done
	cgroup_kill "$cg" || die "the API stand-in does not die"
}

cmd_api() { # start|stop|restart|drop-watches|status
	lock
	require_up
	case ${1:-status} in
	start) api_start ;;
	stop) api_stop ;;
	restart) api_stop && api_start ;;
	drop-watches)
		local pid
		pid=$(api_pid) || die "the API stand-in is not running (sonde lab api start)"
		kill -USR1 "$pid"
		;;
	status)
		local pid
		if pid=$(api_pid); then say "API stand-in: https://$API_ADDR (pid $pid), kubeconfig $KUBECONFIG_FILE"
		else say "API stand-in: not running (sonde lab api start)"; exit 1; fi
		;;
	*) die "api: start, stop, restart, drop-watches or status, not '$1'" ;;
	esac
}

# ---------------------------------------------------------------- status

# Per-pod phase: Running when the netns exists and its process is alive (or
# none is expected: loadgen at rate 0), Dead otherwise.
phases_json() {
	local name ns pid cg phase
	while read -r name ns pid cg; do
		phase=Running
		[ -e "/run/netns/$ns" ] || phase=Dead
		[ "$pid" = 0 ] || pid_alive_in "$pid" "$cg" || phase=Dead
		jq -n --arg n "$name" --arg ph "$phase" '{($n): $ph}'
	done < <(jq -r '.pods[] | "\(.name) \(.netns) \(.pid) \(.cgroup)"' "$STATE") | jq -s 'add // {}'
}

cmd_status() {
	local json=0 phases
	[ "${1:-}" = --json ] && json=1
	if ! state_exists; then
		if ((json)); then printf '{"up":false}\n'; fi
		echo "lab is down" >&2
		exit 1
	fi
	phases=$(phases_json)
	if ((json)); then
		jq --argjson ph "$phases" '. + {up: true} | .pods |= map(. + {phase: $ph[.name]})
			| . + {healthy: all(.pods[]; .phase == "Running")}' "$STATE"
		return 0
	fi
	jq -r --argjson ph "$phases" '
		def table(rows): rows as $r
			| [range(0; $r[0] | length) as $c | [$r[][$c] | tostring | length] | max] as $w
			| $r[] | [range(0; length) as $c | .[$c] | tostring | . + " " * ($w[$c] - length)]
			| join("  ") | sub(" +$"; "");
		"lab \(.cluster): \(.params.nodes) nodes, workload \(.params.workload), load \(.params.rate) requests/s, created \(.created)",
		"",
		"NODES",
		table([["NAME", "IP", "POD-CIDR", "VTEP-MAC", "NETNS", "CGROUP"]]
			+ [.nodes[] | [.name, .ip, .pod_cidr, .vtep_mac, .netns, .cgroup]]),
		"",
		"PODS",
		table([["NAMESPACE", "NAME", "NODE", "IP", "STATUS", "PID"]]
			+ [.pods[] | [.namespace, .name, .node, .ip, $ph[.name], (if .pid == 0 then "-" else .pid end)]]),
		"",
		"SERVICES",
		table([["NAMESPACE", "NAME", "CLUSTER-IP", "PORTS", "ENDPOINTS"]]
			+ [.services[] | [.namespace, .name, .cluster_ip,
				([.ports[] | "\(.port)/\(.protocol)"] | join(",")),
				([.endpoints[] | "\(.ip):\(.port)"] | join(","))]]),
		"",
		"FAULTS",
		(if (.faults | length) == 0 then "none" else
			table([["NODE", "KIND", "VALUE"]] + [.faults[] | [.node, .kind,
				(if .kind == "delay" then "\(.value_us)us" else "\(.probability * 100000 | round / 1000)%" end)]])
		end)' "$STATE"
	if jq -e 'map(select(. != "Running")) | length > 0' <<<"$phases" >/dev/null; then
		printf '\nlab is degraded: some pods are Dead; rebuild with: sonde lab up\n'
	fi
}

# ---------------------------------------------------------------- exec

# Resolves a pod by name, workload, or unique name prefix; prints its JSON.
find_pod() { # NAME
	local q=$1 pod
	pod=$(jq -c --arg q "$q" '[.pods[] | select(.name == $q)][0]
		// [.pods[] | select(.workload == $q)][0]
		// ([.pods[] | select(.name | startswith($q))] | if length == 1 then .[0] else null end)' "$STATE")
	if [ "$pod" = null ]; then
		local matches
		matches=$(jq -r --arg q "$q" '[.pods[] | select(.name | startswith($q)) | .name] | join(" ")' "$STATE")
		[ -z "$matches" ] || die "'$q' matches several pods: $matches; name one of them"
		die "no pod or workload named '$q' (sonde lab status lists them)"
	fi
	printf '%s\n' "$pod"
}

cmd_exec() {
	(($# >= 2)) || die "usage: sonde lab exec POD -- CMD [ARGS...]"
	require_up
	local pod cg netns
	pod=$(find_pod "$1")
	shift
	cg=$(jq -r .cgroup <<<"$pod")
	netns=$(jq -r .netns <<<"$pod")
	[ -e "/run/netns/$netns" ] && [ -d "$cg" ] || die "pod $(jq -r .name <<<"$pod") is gone; rebuild with: sonde lab up"
	# Into the pod's cgroup, then its netns with its resolv.conf, as
	# kubectl exec runs a process in the container.
	echo $$ >"$cg/cgroup.procs"
	exec ip netns exec "$netns" "$@"
}

# ---------------------------------------------------------------- faults

require_node() { # NAME -> prints index
	local idx
	idx=$(jq -r --arg n "$1" '.nodes[] | select(.name == $n) | .index' "$STATE")
	[ -n "$idx" ] || die "no node '$1'; nodes: $(jq -r '[.nodes[].name] | join(" ")' "$STATE")"
	printf '%s\n' "$idx"
}

stop_delayer() { # INDEX
	local n=$1 cg=$CG_ROOT/node-$1/system/delayer pid i
	# The rule first, so no new packet is queued; then SIGTERM, on which the
	# delayer accepts every packet it still holds and writes its statistics
	# (SIGKILL would make the kernel drop the held packets). SIGKILL only if
	# it is still there after the longest possible delay (10 s).
	ipt "sonde-node-$n" -t mangle -F SONDE-DELAY
	[ -d "$cg" ] || return 0
	while read -r pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done <"$cg/cgroup.procs"
	for ((i = 0; i < 220; i++)); do
		cgroup_empty "$cg" && return 0
		sleep 0.05
	done
	cgroup_kill "$cg" || die "the delayer of node-$n does not die"
}

cmd_delay() { # NODE US|clear
	local node=${1:?node} value=${2:?delay} n cg dir ready pid i
	lock
	require_up
	n=$(require_node "$node")
	stop_delayer "$n"
	update_state '.faults |= map(select(.node != $n or .kind != "delay"))' --arg n "$node"
	if [ "$value" = clear ]; then
		say "node $node: delay cleared"
		return 0
	fi
	[[ $value =~ ^[0-9]+$ ]] && ((value > 0)) || die "delay must be a positive number of microseconds, not '$value'"
	cg=$CG_ROOT/node-$n/system/delayer
	dir=$RUN/nodes/node-$n
	ready=$dir/delayer.ready
	mkdir -p "$cg" "$dir"
	rm -f "$ready"
	# nsenter, not ip netns exec: the delayer needs the host's /sys (FACTS.md).
	spawn "$cg" "$dir/delayer.log" nsenter --net="/run/netns/sonde-node-$n" \
		"$SONDE_BIN" lab delayer --queue "$n" --delay "${value}us" --ready-file "$ready" \
		--stats "$dir/delayer-stats.json"
	pid=$SPAWN_PID
	for ((i = 0; i < 100; i++)); do
		[ -e "$ready" ] && break
		kill -0 "$pid" 2>/dev/null || die "the delayer exited at start: $(log_tail "$dir/delayer.log")"
		sleep 0.05
	done
	[ -e "$ready" ] || {
		cgroup_kill "$cg" || true
		die "the delayer did not become ready in 5 s; see $dir/delayer.log"
	}
	# The rule only after the delayer is bound: --queue-bypass lets packets
	# through while no one listens, never drops them.
	ipt "sonde-node-$n" -t mangle -A SONDE-DELAY -m comment --comment "sonde lab delay ${value}us" \
		-j NFQUEUE --queue-num "$n" --queue-bypass
	update_state '.faults += [{node: $n, kind: "delay", value_us: $v, queue: $q, pid: $pid, stats: $stats}]' \
		--arg n "$node" --argjson v "$value" --argjson q "$n" --argjson pid "$pid" --arg stats "$dir/delayer-stats.json"
	say "node $node: every packet leaving eth0 is delayed by ${value}us (NFQUEUE $n, delayer pid $pid)"
}

cmd_loss() { # NODE PROBABILITY|clear
	local node=${1:?node} value=${2:?probability} n
	lock
	require_up
	n=$(require_node "$node")
	ipt "sonde-node-$n" -t mangle -F SONDE-LOSS
	update_state '.faults |= map(select(.node != $n or .kind != "loss"))' --arg n "$node"
	if [ "$value" = clear ]; then
		say "node $node: loss cleared"
		return 0
	fi
	awk -v p="$value" 'BEGIN { exit !(p ~ /^[0-9.]+$/ && p > 0 && p <= 1) }' ||
		die "loss must be a probability in (0, 1], not '$value'"
	ipt "sonde-node-$n" -t mangle -A SONDE-LOSS -m comment --comment "sonde lab loss $value" \
		-m statistic --mode random --probability "$value" -j DROP
	update_state '.faults += [{node: $n, kind: "loss", probability: $p}]' --arg n "$node" --argjson p "$value"
	say "node $node: packets leaving eth0 are dropped with probability $value"
}

cmd_load() { # RATE
	local rate=${1:?rate} pod name cg dir netns pid
	[[ $rate =~ ^[0-9]+$ ]] || die "rate must be a number of requests/s, not '$rate'"
	lock
	require_up
	[ "$(jq -r .params.workload "$STATE")" = bookinfo ] ||
		die "the lab runs no workload (up --no-workload); rebuild with: sonde lab up"
	pod=$(find_pod loadgen)
	name=$(jq -r .name <<<"$pod")
	cg=$(jq -r .cgroup <<<"$pod")
	dir=$(jq -r .dir <<<"$pod")
	netns=$(jq -r .netns <<<"$pod")
	cgroup_kill "$cg" || die "the load generator of $name does not die"
	pid=0
	if ((rate > 0)); then
		spawn "$cg" "$dir/container.log" ip netns exec "$netns" \
			"$SONDE_BIN" lab loadgen --url "http://productpage.bookinfo.svc.$DOMAIN:$HTTP_PORT/productpage" \
			--rate "$rate" --log "$dir/requests.log"
		pid=$SPAWN_PID
		sleep 0.3
		pid_alive_in "$pid" "$cg" || die "the load generator exited at start: $(log_tail "$dir/container.log")"
	fi
	update_state '.params.rate = $r | .pods |= map(if .name == $n then .pid = $pid else . end)' \
		--argjson r "$rate" --arg n "$name" --argjson pid "$pid"
	if ((rate > 0)); then say "load generator: $rate requests/s to productpage (pid $pid)"; else say "load generator stopped"; fi
}


# ---------------------------------------------------------------- move

# Loads the pod and service tables from the state, so that `move` reuses
# the functions `up` builds pods and kube-proxy rules with.
load_tables() {
	local i=0 name ns wl node ip uid cid sb cont veth port labels pid created app version
	local US=$'\x1f'
	CREATED=$(jq -r .created "$STATE")
	while IFS=$US read -r name ns wl node ip uid cid sb cont veth port labels pid created app version; do
		P_NAME[$i]=$name P_NS[$i]=$ns P_WL[$i]=$wl P_NODE[$i]=${node#node-} P_IP[$i]=$ip
		P_UID[$i]=$uid P_CID[$i]=$cid P_SANDBOX[$i]=$sb P_CONTAINER[$i]=$cont P_VETH[$i]=$veth
		P_PORT[$i]=$port P_LABELS[$i]=$labels P_PID[$i]=$pid P_CREATED[$i]=$created
		P_APP[$i]=$app P_VERSION[$i]=$version
		POD_ORDER+=("$i")
		i=$((i + 1))
	done < <(jq -r '.pods[] | [.name, .namespace, .workload, .node, .ip, .uid, .container_id,
		.sandbox_id, .container, .host_veth, (.ports[0] // "" | tostring), (.labels | tojson),
		(.pid | tostring), .created, (.labels.app // .labels["k8s-app"] // ""),
		(.labels.version // "")] | join("\u001f")' "$STATE")
	i=0
	local sel_key sel_val ports cip
	while IFS=$US read -r ns name cip sel_key sel_val ports; do
		S_NS[$i]=$ns S_NAME[$i]=$name S_IP[$i]=$cip S_SEL_KEY[$i]=$sel_key S_SEL_VAL[$i]=$sel_val S_PORTS[$i]=$ports
		SVC_ORDER+=("$i")
		i=$((i + 1))
	done < <(jq -r '.services[] | [.namespace, .name, .cluster_ip, (.selector | keys[0]),
		(.selector | to_entries[0].value), ([.ports[] | "\(.name)/\(.port)/\(.protocol)"] | join(","))]
		| join("\u001f")' "$STATE")
}

# Endpoints of every service from the pods in POD_ORDER; kube-proxy's
# rules get only the ready ones (READY_EXCLUDE names a pod not ready yet).
set_endpoints() { # [NOT_READY_POD]
	local s p nr=${1:-}
	for s in "${SVC_ORDER[@]}"; do
		S_EPS[$s]=$(svc_endpoints "$s" | tr '\n' ' ')
		S_READY_EPS[$s]=""
		for p in ${S_EPS[$s]}; do
			[ "$p" = "$nr" ] || S_READY_EPS[$s]+="$p "
		done
	done
}
declare -A S_READY_EPS

apply_rules() { # NODES
	local n s
	declare -A saved=()
	for s in "${SVC_ORDER[@]}"; do saved[$s]=${S_EPS[$s]}; S_EPS[$s]=${S_READY_EPS[$s]}; done
	gen_rules >"$RUN/iptables.rules"
	for s in "${SVC_ORDER[@]}"; do S_EPS[$s]=${saved[$s]}; done
	# Only the nat table (restore replaces the tables its input names):
	# the mangle table holds the faults' rules.
	for ((n = 1; n <= $1; n++)); do
		sed -n '/^\*nat/,/^COMMIT/p' "$RUN/iptables.rules" | in_ns "sonde-node-$n" iptables-legacy-restore -w 5
	done
}

# Replaces the state's pods and services with the tables; NOT_READY marks
# one pod "ready": false (the API shows it Pending, its endpoint not ready).
write_tables_state() { # [NOT_READY_POD]
	local nr=${1:-} p s n pods="" svcs="" sep=""
	for ((n = 1; n <= $(jq -r '.nodes | length' "$STATE"); n++)); do read_ifindexes "$n"; done
	for p in "${POD_ORDER[@]}"; do
		pods+=$sep$(pod_json "$p")
		[ "$p" != "$nr" ] || pods=${pods%\}}',"ready":false}'
		sep=,
	done
	sep=""
	for s in "${SVC_ORDER[@]}"; do svcs+=$sep$(svc_json "$s"); sep=,; done
	update_state '.pods = $p | .services = $s' --argjson p "[$pods]" --argjson s "[$svcs]"
}

now_ns() { date +%s%N; }

# A reschedule, as Kubernetes does it: the old pod is deleted (its
# processes killed, its netns and veth removed, its endpoint withdrawn),
# then a new pod of the same ReplicaSet (new name suffix, uid, container
# ids, veth, IP from the target node's subnet) is created on the target
# node, Pending until its server answers its probe, then Ready. Each step
# is written to the state, so the API stand-in sends DELETED, ADDED
# (Pending), MODIFIED (Ready) and the Endpoints changes, and appended to
# $RUN/moves.jsonl with its time (for the relocation measurements).
cmd_move() { # POD NODE
	(($# == 2)) || die "usage: sonde lab move POD NODE"
	lock
	require_up
	local pod old_name target nodes i=-1 p old_node rate new t_del t_add t_ready k end
	pod=$(find_pod "$1")
	old_name=$(jq -r .name <<<"$pod")
	target=$(require_node "$2")
	nodes=$(jq -r '.nodes | length' "$STATE")
	rate=$(jq -r .params.rate "$STATE")
	load_tables
	for p in "${POD_ORDER[@]}"; do [ "${P_NAME[$p]}" = "$old_name" ] && i=$p; done
	old_node=${P_NODE[$i]}
	((old_node != target)) || die "pod $old_name already runs on node-$target"
	local t0
	t0=$(now_ns)

	# 1. Delete the old pod.
	cgroup_kill "$CG_ROOT/node-$old_node/kubepods/besteffort/pod${P_UID[$i]}" ||
		die "the processes of pod $old_name do not die"
	ip netns del "$(pod_netns "$i")" 2>/dev/null || true
	rm -rf "/etc/netns/$(pod_netns "$i")"
	find "$CG_ROOT/node-$old_node/kubepods/besteffort/pod${P_UID[$i]}" -depth -type d -exec rmdir {} + 2>/dev/null || true
	local -a rest=()
	for p in "${POD_ORDER[@]}"; do [ "$p" = "$i" ] || rest+=("$p"); done
	POD_ORDER=("${rest[@]}")
	set_endpoints
	apply_rules "$nodes"
	write_tables_state
	t_del=$(now_ns)

	# 2. Create its replacement on the target node.
	new=${#P_NAME[@]}
	P_WL[$new]=${P_WL[$i]} P_NS[$new]=${P_NS[$i]} P_APP[$new]=${P_APP[$i]} P_VERSION[$new]=${P_VERSION[$i]}
	P_CONTAINER[$new]=${P_CONTAINER[$i]} P_PORT[$new]=${P_PORT[$i]} P_LABELS[$new]=${P_LABELS[$i]}
	P_NAME[$new]=${old_name%-*}-$(rand_str "$NAME_ALPHABET" 5)
	P_NODE[$new]=$target
	P_UID[$new]=$(</proc/sys/kernel/random/uuid)
	P_CID[$new]=$(container_id)
	P_SANDBOX[$new]=$(container_id)
	P_VETH[$new]=veth$(rand_hex32)
	P_PID[$new]=0
	P_CREATED[$new]=$(now_rfc3339)
	# The next address after the node's last allocation, as host-local
	# IPAM hands them out: an address freed by a move is not reused at once
	# (a neighbour entry on the bridge may still point at the old veth).
	local last used
	last=$(jq -r --arg n "node-$target" '.ipam_last[$n] // ([.pods[] | select(.node == $n) | .ip
		| split(".")[3] | tonumber] | max) // 1' "$STATE")
	used=" $(jq -r --arg n "node-$target" '[.pods[] | select(.node == $n) | .ip | split(".")[3]] | join(" ")' "$STATE") "
	k=$last
	for ((end = 0; end < 253; end++)); do
		k=$((k % 254 + 1))
		((k >= 2)) || continue
		[[ $used == *" $k "* ]] || break
	done
	[[ $used != *" $k "* ]] || die "node-$target has no free pod address"
	P_IP[$new]=10.244.$target.$k
	ip -n "sonde-node-$target" neigh del "${P_IP[$new]}" dev cni0 2>/dev/null || true
	update_state '.ipam_last[$n] = $k' --arg n "node-$target" --argjson k "$k"
	POD_ORDER+=("$new")
	make_pod_network "$new"
	configure_pod "$new"
	start_pod "$new" "$rate"
	set_endpoints "$new"
	t_add=$(now_ns) # the state write that makes the API's ADDED follows
	write_tables_state "$new"

	# 3. Ready once it answers its probe, as kubelet's readiness probe.
	end=$((SECONDS + READY_TIMEOUT))
	while [ "${P_PID[$new]}" != 0 ]; do
		pid_alive_in "${P_PID[$new]}" "$(pod_cgroup "$new")" || pod_fail "$new" "exited while starting"
		case ${P_WL[$new]} in
		coredns) in_ns "sonde-node-$target" dig +time=1 +tries=1 +short "@${P_IP[$new]}" \
			"kube-dns.kube-system.svc.$DOMAIN" 2>/dev/null | grep -qx "$DNS_IP" && break ;;
		loadgen) break ;;
		*) in_ns "sonde-node-$target" curl -fsS -o /dev/null --max-time 1 \
			"http://${P_IP[$new]}:$HTTP_PORT/health" 2>/dev/null && break ;;
		esac
		((SECONDS < end)) || pod_fail "$new" "not ready after ${READY_TIMEOUT}s"
		sleep 0.02
	done
	set_endpoints
	apply_rules "$nodes"
	t_ready=$(now_ns)
	write_tables_state
	jq -cn --arg o "$old_name" --arg n "${P_NAME[$new]}" --arg ou "${P_UID[$i]}" --arg nu "${P_UID[$new]}" \
		--arg from "node-$old_node" --arg to "node-$target" --arg ip "${P_IP[$new]}" \
		--argjson t0 "$t0" --argjson td "$t_del" --argjson ta "$t_add" --argjson tr "$t_ready" \
		'{old_pod: $o, new_pod: $n, old_uid: $ou, new_uid: $nu, from: $from, to: $to, new_ip: $ip,
		  start_ns: $t0, deleted_ns: $td, added_ns: $ta, ready_ns: $tr}' >>"$RUN/moves.jsonl"
	say "moved $old_name (node-$old_node) -> ${P_NAME[$new]} on node-$target, IP ${P_IP[$new]}, ready in $(((t_ready - t0) / 1000000)) ms"
}

# ---------------------------------------------------------------- main

[ "$(id -u)" = 0 ] || die "the lab needs root (network namespaces, cgroups, iptables): run with sudo"
verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
up) cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status "$@" ;;
exec) cmd_exec "$@" ;;
delay) cmd_delay "$@" ;;
loss) cmd_loss "$@" ;;
load) cmd_load "$@" ;;
move) cmd_move "$@" ;;
api) cmd_api "$@" ;;
*) die "unknown verb '$verb' (lab.sh is run by sonde lab: up, down, status, exec, delay, loss, load, move, api)" ;;
esac
