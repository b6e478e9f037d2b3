#!/usr/bin/env bash
# lab_lifecycle: up, a second up (no-op), up with other params or with a dead
# pod (rebuild), status and status --json, the state against the kernel,
# down (nothing left), an up killed with kill -9 mid-way then down (nothing
# left), and up again. Ground truth: the kernel's view (/proc, netns inodes,
# cgroup files, ip/iptables in the host's root netns).
source "$(dirname "$0")/../lib.sh"

STATE=/run/sonde-lab/state.json
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
URL=http://productpage.bookinfo.svc.cluster.local:9080/productpage

# The host's root netns as it is before the lab: links, addresses, routes,
# iptables (legacy and nft), the sysctls the lab sets in its own netns.
host_snapshot() {
	ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//'
	ip -o addr show | awk '{ print $2, $4 }'
	ip route show table all
	iptables-legacy-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
	iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
	sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv6.conf.all.disable_ipv6
}
# Everything a lab could leave behind; prints one line per leftover.
leftovers() {
	ip netns list | awk '/^sonde-/ { print "netns " $1 }'
	find /run/netns /etc/netns -maxdepth 1 -name 'sonde-*' 2>/dev/null | sed 's/^/file /'
	[ ! -e "$CG2/sonde-lab" ] || echo "cgroup $CG2/sonde-lab"
	[ ! -e /run/sonde-lab ] || echo "dir /run/sonde-lab"
	# Live (non-zombie) processes that run lab daemons or sit in a lab cgroup.
	local pid
	for pid in /proc/[0-9]*; do
		pid=${pid#/proc/}
		[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ] && continue
		# (Processes come and go while we look: ignore those that vanish.)
		if grep -qs '/sonde-lab/' "/proc/$pid/cgroup" ||
			{ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q '/run/sonde-lab/'; then
			echo "process $pid $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)"
		fi
	done
	return 0
}
pod_pids() { jq -r '.pods[] | select(.pid != 0) | .pid' "$STATE"; }
starttime() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }

lab down >/dev/null 2>&1 || true
host_snapshot >"$TMP/host.before"

# --- up, and the state checked against the kernel
lab_fresh_up --rate 0
uids1=$(jq -c '[.pods[].uid]' "$STATE")
pids1=$(pod_pids | tr '\n' ' ')
starts1=$(for p in $pids1; do starttime "$p"; done | tr '\n' ' ')
assert_eq 7 "$(pod_pids | wc -l)" "7 pods run a process (loadgen has none at rate 0)"

jq -e '.version == 1 and .cluster == "sonde-lab" and .params == {nodes: 2, rate: 0, workload: "bookinfo"}
	and .underlay.netns == "sonde-underlay" and .dns.ip == "10.96.0.10" and (.nodes | length) == 2
	and (.pods | length) == 8 and (.services | length) == 5 and .faults == []
	and (.created | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))' "$STATE" >/dev/null ||
	fail "state.json top level does not have the documented shape"
while read -r pod; do
	name=$(jq -r .name <<<"$pod")
	[[ $name =~ ^[a-z0-9-]+-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$ ]] ||
		fail "pod name $name is not <deployment>-<10>-<5>"
	[[ $(jq -r .uid <<<"$pod") =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "$name: uid is not a UUID"
	cg=$(jq -r .cgroup <<<"$pod")
	[[ $cg =~ ^$CG2/sonde-lab/node-[0-9]+/kubepods/besteffort/pod$(jq -r .uid <<<"$pod")/$(jq -r .container_id <<<"$pod")$ ]] ||
		fail "$name: cgroup $cg is not <node>/kubepods/besteffort/pod<uid>/<container id>"
	[[ $(jq -r .container_id <<<"$pod") =~ ^[0-9a-f]{64}$ ]] || fail "$name: container id is not 64 hex"
	[ -d "$cg" ] || fail "$name: cgroup $cg does not exist"
	netns=$(jq -r .netns <<<"$pod")
	node=$(jq -r .node <<<"$pod")
	# The pod's addresses as its own kernel has them.
	real=$(ip -n "$netns" -4 -o addr show dev eth0 | awk '{ print $4 }')
	assert_eq "$(jq -r .ip <<<"$pod")/24" "$real" "$name: eth0 address"
	assert_eq "1450" "$(ip -n "$netns" -j link show dev eth0 | jq '.[0].mtu')" "$name: eth0 MTU"
	assert_eq "10.244.${node#node-}.1" "$(ip -n "$netns" -j route show default | jq -r '.[0].gateway')" "$name: default gateway is its node's cni0"
	veth=$(jq -r .host_veth <<<"$pod")
	[[ $veth =~ ^veth[0-9a-f]{8}$ ]] || fail "$name: host veth name $veth"
	vj=$(ip -n "sonde-$node" -j -d link show dev "$veth")
	assert_eq "$(jq -r .host_veth_ifindex <<<"$pod") cni0" "$(jq -r '.[0] | "\(.ifindex) \(.master)"' <<<"$vj")" "$name: host veth ifindex and bridge"
	# The veth's peer is the pod's eth0 (ifindex seen from the pod side).
	assert_eq "$(ip -n "$netns" -j link show dev eth0 | jq '.[0].ifindex')" "$(jq '.[0].link_index' <<<"$vj")" "$name: host veth is the peer of the pod's eth0"
	pid=$(jq -r .pid <<<"$pod")
	if [ "$pid" != 0 ]; then
		assert_eq "$(stat -L -c %i "/run/netns/$netns")" "$(stat -L -c %i "/proc/$pid/ns/net")" "$name: its process is in its netns"
		assert_eq "0::${cg#"$CG2"}" "$(grep '^0::' "/proc/$pid/cgroup")" "$name: its process is in its container cgroup"
	fi
done < <(jq -c '.pods[]' "$STATE")
# The nodes: uplink and VXLAN device as specified, read from the kernel.
for n in 1 2; do
	vx=$(ip -n "sonde-node-$n" -j -d link show dev flannel.1)
	assert_eq "1 8472 172.30.0.$n false 1450 02:5e:00:00:00:0$n" \
		"$(jq -r '.[0] | "\(.linkinfo.info_data.id) \(.linkinfo.info_data.port) \(.linkinfo.info_data.local) \(.linkinfo.info_data.learning) \(.mtu) \(.address)"' <<<"$vx")" \
		"node-$n: flannel.1 VNI, port, local, nolearning, MTU, MAC"
	assert_eq "172.30.0.$n/24" "$(ip -n "sonde-node-$n" -4 -o addr show dev eth0 | awk '{ print $4 }')" "node-$n: uplink address"
	assert_eq 1 "$(nsenter --net="/run/netns/sonde-node-$n" cat /proc/sys/net/bridge/bridge-nf-call-iptables)" "node-$n: bridge-nf-call-iptables"
done
# lab exec runs in the pod's cgroup and netns.
assert_eq "0::$(pod_field details-v1 .cgroup | sed "s|^$CG2||")" "$(lab exec details-v1 -- cat /proc/self/cgroup | grep '^0::')" \
	"lab exec runs in the pod's container cgroup"
assert_eq "$(stat -L -c %i "/run/netns/$(pod_field details-v1 .netns)")" "$(lab exec details-v1 -- stat -L -c %i /proc/self/ns/net)" \
	"lab exec runs in the pod's netns"
lab exec nosuchpod -- true >/dev/null 2>&1 && fail "lab exec of an unknown pod succeeds"
lab exec details -- sh -c 'exit 3'
assert_eq 3 $? "lab exec passes the command's exit status"

# --- a second up is a no-op
out=$(lab up --rate 0 2>&1) || fail "second up failed: $out"
assert_contains "$out" "already up" "second up says the lab is already up"
assert_eq "$uids1" "$(jq -c '[.pods[].uid]' "$STATE")" "second up keeps the pod uids"
assert_eq "$pids1" "$(pod_pids | tr '\n' ' ')" "second up keeps the pod PIDs"
assert_eq "$starts1" "$(for p in $pids1; do starttime "$p"; done | tr '\n' ' ')" "the processes were never restarted"

# --- status and status --json
out=$(lab status) || fail "status exits non-zero with the lab up"
while read -r ns name node ip; do
	assert_contains "$out" "$ns" "status lists namespace of $name"
	echo "$out" | grep -Eq "^$ns +$name +$node +$ip +Running" || fail "status has no row '$ns $name $node $ip Running'"
done < <(jq -r '.pods[] | "\(.namespace) \(.name) \(.node) \(.ip)"' "$STATE")
for s in $(jq -r '.services[] | "\(.name)=\(.cluster_ip)"' "$STATE"); do
	echo "$out" | grep -Eq "^[a-z-]+ +${s%%=*} +${s#*=} " || fail "status has no service row for $s"
done
echo "$out" | grep -Eq '^node-1 +172\.30\.0\.1 +10\.244\.1\.0/24' || fail "status has no row for node-1"
js=$(lab status --json) || fail "status --json exits non-zero"
assert_eq "Running Running Running Running Running Running Running Running" "$(jq -r '[.pods[].phase] | join(" ")' <<<"$js")" \
	"status --json: every pod Running"
assert_eq "$(jq -c 'del(.pods)' "$STATE")" "$(jq -c 'del(.pods, .up, .healthy)' <<<"$js")" "status --json carries the state"

# --- a dead pod: status shows it, up rebuilds
victim=$(pod_field details-v1 .pid)
kill -9 "$victim"
wait_for 5 sh -c "! kill -0 $victim 2>/dev/null || grep -q '^State:.*Z' /proc/$victim/status"
js=$(lab status --json)
assert_eq Dead "$(jq -r '.pods[] | select(.workload == "details-v1") | .phase' <<<"$js")" "status --json: killed pod is Dead"
assert_eq false "$(jq -r .healthy <<<"$js")" "status --json: lab not healthy"
lab status | grep -Eq "$(pod_field details-v1 .name) +node-[0-9]+ +[0-9.]+ +Dead" || fail "status table shows the pod Dead"
lab up --rate 0 >/dev/null || fail "up after a pod died failed"
assert_ne "$uids1" "$(jq -c '[.pods[].uid]' "$STATE")" "up rebuilt the unhealthy lab (new pod uids)"
# Different params: rebuilt with the new ones.
lab up --nodes 3 --rate 0 >/dev/null || fail "up --nodes 3 failed"
assert_eq 3 "$(jq '.params.nodes' "$STATE")" "up with other params rebuilds (nodes 3)"
assert_eq 3 "$(ip netns list | grep -c '^sonde-node-')" "3 node netns exist"

# --- load generator (its C side may not be built yet)
if "$SONDE" lab loadgen --help >/dev/null 2>&1; then
	lab load --rate 20 || fail "lab load --rate 20 failed"
	lg_ip=$(pod_field loadgen .ip)
	pplog=$(pod_field productpage-v1 .dir)/access.log
	b=$(jq -r --arg ip "$lg_ip" 'select(.remote_addr == $ip and .subrequest == false and .uri == "/productpage")' "$pplog" | jq -s length)
	sleep 3
	a=$(jq -r --arg ip "$lg_ip" 'select(.remote_addr == $ip and .subrequest == false and .uri == "/productpage")' "$pplog" | jq -s length)
	assert_between 45 75 "$((a - b))" "productpage got ~60 requests from loadgen in 3 s at 20/s"
	assert_eq 20 "$(jq .params.rate "$STATE")" "state records the new rate"
	lab load --rate 0 || fail "lab load --rate 0 failed"
	sleep 0.5
	b=$(jq -r --arg ip "$lg_ip" 'select(.remote_addr == $ip)' "$pplog" | jq -s length)
	sleep 2
	a=$(jq -r --arg ip "$lg_ip" 'select(.remote_addr == $ip)' "$pplog" | jq -s length)
	assert_eq 0 "$((a - b))" "no requests after lab load --rate 0"
else
	log "note: sonde lab loadgen is not built yet; lab load not exercised"
fi

# --- down leaves nothing
pids=$(pod_pids | tr '\n' ' ')
lab down >/dev/null || fail "down failed"
assert_eq "" "$(leftovers)" "nothing left after down"
for p in $pids; do
	if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then fail "pod process $p survived down"; fi
done
host_snapshot >"$TMP/host.after"
assert_eq "" "$(diff "$TMP/host.before" "$TMP/host.after")" "host root netns (links, addresses, routes, iptables, sysctls) unchanged"
out=$(lab down) || fail "down with nothing there exits non-zero"
assert_contains "$out" "nothing to remove" "down with nothing there says so"
lab status >/dev/null 2>&1
assert_eq 1 $? "status exits 1 when the lab is down"
assert_contains "$(lab status 2>&1)" "lab is down" "status says the lab is down"

# --- up killed with kill -9 (its whole process group) mid-way
setsid "$SONDE" lab up --rate 0 >"$TMP/killed-up.log" 2>&1 &
up_pid=$!
# Mid-way: pods exist and some daemons run, the state is not written yet.
wait_for 30 sh -c "ls /run/netns | grep -q sonde-pod- && [ -n \"\$(cat $CG2/sonde-lab/node-*/kubepods/besteffort/*/*/cgroup.procs 2>/dev/null)\" ]" ||
	fail "up never got to starting pods"
kill -9 -- -"$up_pid"
wait "$up_pid" 2>/dev/null
log "killed up at: $(tail -n 1 "$TMP/killed-up.log")"
assert_ne 0 "$(leftovers | wc -l)" "the killed up left things behind (else this part tests nothing)"
lab down >/dev/null || fail "down after a killed up failed"
assert_eq "" "$(leftovers)" "nothing left after down following a killed up"
host_snapshot >"$TMP/host.after2"
assert_eq "" "$(diff "$TMP/host.before" "$TMP/host.after2")" "host root netns unchanged after killed up + down"

# --- and up works again (with the load generator running, when it exists)
rate=0
"$SONDE" lab loadgen --help >/dev/null 2>&1 && rate=10
lab up --rate "$rate" >/dev/null || fail "up --rate $rate after the killed up failed"
code=$(lab exec loadgen -- curl -sS -o /dev/null -w '%{http_code}' "$URL")
assert_eq 200 "$code" "Bookinfo answers after the rebuild"
if [ "$rate" != 0 ]; then
	assert_eq Running "$(lab status --json | jq -r '.pods[] | select(.workload == "loadgen") | .phase')" "loadgen pod Running at rate 10"
	pplog=$(pod_field productpage-v1 .dir)/access.log
	lg_ip=$(pod_field loadgen .ip)
	b=$(jq -r --arg ip "$lg_ip" 'select(.remote_addr == $ip and .subrequest == false)' "$pplog" | jq -s length)
	sleep 2
	a=$(jq -r --arg ip "$lg_ip" 'select(.remote_addr == $ip and .subrequest == false)' "$pplog" | jq -s length)
	assert_between 14 26 "$((a - b))" "productpage got ~20 requests from loadgen in 2 s at 10/s"
fi

done_testing
