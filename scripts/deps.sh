#!/bin/sh
# Installs the Debian packages sonde needs to build, test and run its lab,
# and only those that are missing: a second run does nothing and needs no
# network. `make demo` and `make test` call it first.
set -eu

# Grouped by why we need them; keep this list and docs/libraries.md in step.
BUILD="make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
       libjansson-dev libcurl4-openssl-dev libnetfilter-queue-dev libmnl-dev
       libnetfilter-conntrack-dev
       libmicrohttpd-dev libsqlite3-dev libyaml-dev"
TEST="libcmocka-dev libclang-rt-14-dev python3 clickhouse-server"
LAB="iproute2 iptables nginx-light dnsmasq-base jq curl dnsutils iputils-ping
     procps psmisc util-linux iperf3 prometheus openssl"
# Real Kubernetes clients that check the lab's API stand-in (kubectl is not
# in Debian 12: the tests that use it skip when it is missing).
K8S="python3-kubernetes"
# bench/: the load (wrk), plots, and what users would run instead of sonde.
BENCH="wrk gnuplot-nox tcpdump libbpf-tools"

missing=""
for pkg in $BUILD $TEST $LAB $K8S $BENCH; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $pkg" ;;
	esac
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
	echo "deps: not root; run as root: apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Package lists may be stale or absent on a fresh machine; refresh once.
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
