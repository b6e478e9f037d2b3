#!/usr/bin/env bash
# `make bench`: every benchmark; each prints its figures (record them in
# bench/results/<name>.md with the command and the machine).
set -u
cd "$(dirname "$0")/.." || exit 1
echo "== store (collector ingest and queries)"
bench/store.sh
echo "== store spool: the issue's 60 s server outage under load"
STORE_OUTAGE_S=60 flock -o /run/sonde-lab-session.lock bash tests/integration/store_spool.sh
