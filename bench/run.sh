#!/usr/bin/env bash
# `make bench`: every benchmark in bench/, each inside the lab session lock
# (the lab is one per machine). Results land in bench/results/.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
rc=0
for b in bench/*.sh; do
	[ "$b" = bench/run.sh ] && continue
	echo "== bench $b"
	flock -o /run/sonde-lab-session.lock bash "$b" || rc=1
done
exit $rc
