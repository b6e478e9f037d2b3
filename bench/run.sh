#!/usr/bin/env bash
# `make bench`: every benchmark, each taking the lab session lock itself.
# Results are printed; the recorded figures live in bench/results/*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== latency: seed 000's Fig. 11 (bench/fig11.sh)"
bench/fig11.sh
echo "== latency: stamping overhead (bench/latency_overhead.sh)"
bench/latency_overhead.sh 3
