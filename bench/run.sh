#!/usr/bin/env bash
# `make bench`: runs every bench/*.sh (or those matching $BENCH), each of
# which writes its figures to bench/results/<name>.md with the command that
# made them and the machine. Benchmarks bring up the lab, so each takes the
# same session lock as the integration tests itself (flock -o
# /run/sonde-lab-session.lock, re-exec'ing under it), which lets one be run
# alone by hand as well.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
rc=0
for b in bench/*.sh; do
	name=$(basename "$b" .sh)
	[ "$name" = run ] && continue
	# sourced helpers (bench/lib_*.sh), not benchmarks
	[[ "$name" == lib_* ]] && continue
	[ -n "${BENCH:-}" ] && [[ "$name" != *$BENCH* ]] && continue
	echo "== bench $name"
	bash "$b" || { echo "== bench $name failed"; rc=1; }
done
exit $rc
