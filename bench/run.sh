#!/usr/bin/env bash
# `make bench`: runs every benchmark script in bench/ (each takes the lab
# session lock itself and prints its summary); results are recorded by hand
# in bench/results/<name>.md with the command, the machine and the figures.
set -u
cd "$(dirname "$0")/.." || exit 1
rc=0
for b in bench/*.sh; do
	[ "$b" = bench/run.sh ] && continue
	echo "== bench $b"
	bash "$b" || rc=1
done
exit $rc
