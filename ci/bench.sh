#!/usr/bin/env bash
# The README's main job: YCSB workload A (50% reads, 50% updates, zipfian
# keys, 1 KB records) on the embedded default engine, load then run, in a
# release build.
#
# Usage: ci/bench.sh [extra o3-bench ycsb flags]
#   e.g. ci/bench.sh -p operationcount=2000000 --repeat 3
#        ci/bench.sh --db /data/o3-workloada     (kept afterwards)
# Environment: RECORDCOUNT (default 200000), OPERATIONCOUNT (default
# 1000000), OUT (JSON and SVG plots, default target/bench/workloada),
# KEEP_DB=1 keeps the default database instead of removing it,
# O3_BENCH_BIN=PATH runs that o3-bench instead of building one (for tests).
#
# The database goes to $TMPDIR (default /tmp)/o3-bench-workloada unless --db
# is given; the default one (about 0.3 GB) is removed at the end, even after
# Ctrl-C, unless KEEP_DB=1. A database named with --db is always kept.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-target/bench/workloada}"
RECORDCOUNT="${RECORDCOUNT:-200000}"
OPERATIONCOUNT="${OPERATIONCOUNT:-1000000}"

# Did the caller name the database?
own_db=""
for arg in "$@"; do
  case "$arg" in
    --db | --db=*) own_db=1 ;;
  esac
done

db_args=()
if [[ -z "$own_db" ]]; then
  DB="${TMPDIR:-/tmp}/o3-bench-workloada"
  db_args=(--db "$DB")
  cleanup() {
    if [[ "${KEEP_DB:-}" == "1" ]]; then
      echo "bench.sh: database kept at $DB (remove it with: rm -r $DB)"
    elif [[ -d "$DB" ]]; then
      rm -rf "$DB"
      echo "bench.sh: removed the database $DB (KEEP_DB=1 keeps it)"
    fi
  }
  trap cleanup EXIT
fi

mkdir -p "$OUT"
if [[ -n "${O3_BENCH_BIN:-}" ]]; then
  # The script's own test runs it with the binary it has built.
  bin="$O3_BENCH_BIN"
else
  echo "bench.sh: building o3-bench in release mode (the first build compiles"
  echo "bench.sh: the whole workspace: several minutes on 2 cores; later ones are quick)"
  cargo build --release -p o3-bench
  bin="${CARGO_TARGET_DIR:-target}/release/o3-bench"
fi
echo "bench.sh: YCSB workload A: load $RECORDCOUNT records, then $OPERATIONCOUNT operations"
echo "bench.sh: report and plots go to $OUT"
"$bin" ycsb \
  -P bench/workloads/workloada \
  -p "recordcount=$RECORDCOUNT" -p "operationcount=$OPERATIONCOUNT" \
  "${db_args[@]}" \
  --json "$OUT/report.json" --plots "$OUT" \
  "$@"
