#!/usr/bin/env bash
# The README's main job: YCSB workload A (50% reads, 50% updates, zipfian)
# on the embedded default engine, load then run, in a release build.
# Sized to finish in under two minutes on a 2-core machine.
#
# Usage: ci/bench.sh [extra o3-bench ycsb flags, e.g. -p operationcount=500000]
# Output: the report on stdout, JSON and SVG plots under $OUT
# (default target/bench/workloada).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-target/bench/workloada}"
mkdir -p "$OUT"

cargo build --release -p o3-bench --quiet
exec target/release/o3-bench ycsb \
  --workload bench/workloads/workloada \
  -p recordcount=${RECORDCOUNT:-500000} -p operationcount=${OPERATIONCOUNT:-2000000} \
  --db "${DB:-${TMPDIR:-/tmp}/o3-bench-workloada}" \
  --json "$OUT/report.json" --plots "$OUT" \
  "$@"
