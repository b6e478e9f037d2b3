#!/usr/bin/env bash
# `make bench`: runs every bench/*.sh (or those matching $BENCH), each of
# which writes its figures to bench/results/<name>.md with the command that
# made them and the machine. Benchmarks bring up the lab, so each runs under
# the same session lock as the integration tests.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
LAB_LOCK=/run/sonde-lab-session.lock
rc=0
for b in bench/*.sh; do
	name=$(basename "$b" .sh)
	[ "$name" = run ] && continue
	[ -n "${BENCH:-}" ] && [[ "$name" != *$BENCH* ]] && continue
	echo "== bench $name"
	flock -o "$LAB_LOCK" bash "$b" || { echo "== bench $name failed"; rc=1; }
done
exit $rc
