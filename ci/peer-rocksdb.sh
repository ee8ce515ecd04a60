#!/usr/bin/env bash
# Peer comparison: RocksDB's db_bench against o3-bench with identical
# parameters, runs alternating A B A B ... (A = RocksDB, B = o3) so drift in
# the machine's state hits both engines alike.
#
# Each run of an engine is four processes on a fresh database directory:
#   1. --benchmarks=fillrandom                               (then: on-disk size)
#   2. --use_existing_db=1 --benchmarks=readrandom,seekrandom   "defaults":
#      the tree the fill left, each engine as configured by default (o3's
#      idle compaction merges level 0 while these reads run; RocksDB reads
#      through its remaining level-0 files)
#   3. --use_existing_db=1 --benchmarks=compact (o3) or
#      compact,waitforcompaction (RocksDB): one full manual compaction
#   4. --use_existing_db=1 --benchmarks=readrandom,seekrandom   "settled":
#      both engines read one compacted tree
# Each is measured with GNU time (peak RSS). The table gives ops/sec per
# pair, the o3/RocksDB ratio per pair and the median ratio, for the fill and
# both read variants; peak RSS per phase and on-disk size after the fill.
#
# Usage: ci/peer-rocksdb.sh [NAME=VALUE ...]     (or set them in the environment)
#   ROCKSDB=release    which db_bench: release = RocksDB 9.9.3 built once from
#                      the crates.io source by ci/rocksdb-release.sh (-O3
#                      -DNDEBUG, static; ~10 min the first time), debian =
#                      Debian's rocksdb-tools (7.8.3 on bookworm, built with
#                      assertions), or a path to any db_bench binary
#   SWEEP=0            1 = the three rows of the peer table, one after the
#                      other: 2M x (16+100) B with THREADS=1 and 2, and
#                      5M x (16+64) B with THREADS=1 (other settings apply
#                      to all three)
#   NUM=2000000        keys (fillrandom writes NUM random keys in [0, NUM))
#   READS=-1           reads and seeks per run (-1 = NUM)
#   KEY_SIZE=16  VALUE_SIZE=100  THREADS=1
#   COMPRESSION=none  SYNC=0  DISABLE_WAL=0  BLOOM_BITS=10
#   CACHE_SIZE=8388608 block cache bytes (same for both)
#   SEEK_NEXTS=0       Next() calls after each seek
#   BLOCK_SIZE=        data block bytes for both; empty = each engine's default
#                      (RocksDB 4096, o3 2048)
#   SEED=42            key generator seed (both tools)
#   O3_ARGS=           extra o3-bench flags, e.g. "--cache_admission=always"
#                      to run o3's block cache without its admission filter
#   PAIRS=5            A B pairs
#   WORK_DIR=${TMPDIR:-/tmp}/o3-peer-rocksdb   databases and logs (the
#                      databases are removed after each run; logs stay)
# Background jobs and write buffer size (and, unless BLOCK_SIZE is set, block
# size) are left at each engine's default.
# Installs time (and, for ROCKSDB=debian, rocksdb-tools) with apt-get when
# missing (root or sudo).
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    *=*) export "${arg%%=*}=${arg#*=}" ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "peer-rocksdb.sh: argument '$arg' is not NAME=VALUE" >&2; exit 2 ;;
  esac
done

if [ "${SWEEP:-0}" = 1 ]; then
  # Each row is a run of this script of its own, with its own table.
  for row in "NUM=2000000 VALUE_SIZE=100 THREADS=1" \
    "NUM=2000000 VALUE_SIZE=100 THREADS=2" \
    "NUM=5000000 VALUE_SIZE=64 THREADS=1"; do
    echo "peer-rocksdb.sh: row $row"
    base="${WORK_DIR:-${TMPDIR:-/tmp}/o3-peer-rocksdb}"
    # shellcheck disable=SC2086
    env SWEEP=0 WORK_DIR="$base/$(echo "$row" | tr ' =' '_-')" $row "$0" || exit 1
  done
  exit 0
fi

ROCKSDB="${ROCKSDB:-release}"
NUM="${NUM:-2000000}"
READS="${READS:--1}"
KEY_SIZE="${KEY_SIZE:-16}"
VALUE_SIZE="${VALUE_SIZE:-100}"
THREADS="${THREADS:-1}"
COMPRESSION="${COMPRESSION:-none}"
SYNC="${SYNC:-0}"
DISABLE_WAL="${DISABLE_WAL:-0}"
BLOOM_BITS="${BLOOM_BITS:-10}"
CACHE_SIZE="${CACHE_SIZE:-8388608}"
SEEK_NEXTS="${SEEK_NEXTS:-0}"
BLOCK_SIZE="${BLOCK_SIZE:-}"
SEED="${SEED:-42}"
O3_ARGS="${O3_ARGS:-}"
PAIRS="${PAIRS:-5}"
WORK_DIR="${WORK_DIR:-${TMPDIR:-/tmp}/o3-peer-rocksdb}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fail() {
  echo "peer-rocksdb.sh: $*" >&2
  exit 1
}

# shellcheck source=ci/apt.sh
. "$repo_root/ci/apt.sh"

find_db_bench() {
  local b
  for b in rocksdb_db_bench db_bench; do
    if command -v "$b" >/dev/null 2>&1; then
      command -v "$b"
      return 0
    fi
  done
  if dpkg -s rocksdb-tools >/dev/null 2>&1; then
    dpkg -L rocksdb-tools | grep -E '/(rocksdb_)?db_bench$' | head -n 1
  fi
}

case "$ROCKSDB" in
  release)
    db_bench="$("$repo_root/ci/rocksdb-release.sh")" || fail "could not build the release db_bench (ci/rocksdb-release.sh)"
    ;;
  debian)
    db_bench="$(find_db_bench || true)"
    if [ -z "$db_bench" ]; then
      apt_install rocksdb-tools
      db_bench="$(find_db_bench || true)"
    fi
    ;;
  *) db_bench="$ROCKSDB" ;;
esac
[ -n "$db_bench" ] && [ -x "$db_bench" ] || fail "no db_bench binary (ROCKSDB=$ROCKSDB)"
rocksdb_version="$("$db_bench" --version 2>/dev/null | head -n 1 || true)"
[ -n "$rocksdb_version" ] || fail "$db_bench --version printed nothing: is it db_bench?"
echo "peer-rocksdb.sh: RocksDB: $db_bench ($rocksdb_version)"
[ -x /usr/bin/time ] || apt_install time
/usr/bin/time -v true 2>/dev/null || fail "/usr/bin/time is not GNU time (package time)"

echo "peer-rocksdb.sh: building o3-bench (release)"
(cd "$repo_root" && cargo build --release -p o3-bench --quiet)
target_dir="$(cd "$repo_root" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
o3_bench="$target_dir/release/o3-bench"
[ -x "$o3_bench" ] || fail "built o3-bench not found at $o3_bench"

mkdir -p "$WORK_DIR"
results="$WORK_DIR/results.tsv"
: >"$results"

common=(
  "--num=$NUM" "--reads=$READS" "--key_size=$KEY_SIZE" "--value_size=$VALUE_SIZE"
  "--threads=$THREADS" "--compression_type=$COMPRESSION" "--sync=$SYNC"
  "--disable_wal=$DISABLE_WAL" "--bloom_bits=$BLOOM_BITS" "--cache_size=$CACHE_SIZE"
  "--seek_nexts=$SEEK_NEXTS" "--seed=$SEED"
)
[ -n "$BLOCK_SIZE" ] && common+=("--block_size=$BLOCK_SIZE")

# ops/sec of benchmark $2 in db_bench-format output $1.
ops_per_sec() {
  awk -v b="$2" '$1 == b && $2 == ":" { for (i = 3; i <= NF; i++) if ($i ~ /^ops\/sec;?$/) { print $(i - 1); exit } }' "$1"
}

# Peak RSS in KiB from GNU time's report $1.
peak_rss_kib() {
  awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"
}

# One process of engine $1 (rocksdb|o3) for pair $2, phase $3, with the
# db_bench flags that follow; output in $WORK_DIR/$1-pair$2-$3.{out,err,time}.
run_phase() {
  local engine="$1" pair="$2" phase="$3" bin
  shift 3
  case "$engine" in
    rocksdb) bin="$db_bench" ;;
    o3) bin="$o3_bench dbbench $O3_ARGS" ;;
  esac
  local log="$WORK_DIR/$engine-pair$pair-$phase"
  echo "peer-rocksdb.sh: pair $pair: $engine $phase ($*)"
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$log.time" $bin --db="$WORK_DIR/db-$engine" "${common[@]}" "$@" \
    >"$log.out" 2>"$log.err" || fail "$engine $phase failed; see $log.err"
}

# One run: engine $1 (rocksdb|o3), pair $2. Appends rows to $results:
# engine pair metric value
run_engine() {
  local engine="$1" pair="$2" log="$WORK_DIR/$1-pair$2"
  rm -rf "$WORK_DIR/db-$engine"
  run_phase "$engine" "$pair" fill --benchmarks=fillrandom
  local disk
  disk="$(du -sb "$WORK_DIR/db-$engine" | cut -f1)"
  run_phase "$engine" "$pair" read-defaults --use_existing_db=1 --benchmarks=readrandom,seekrandom
  if [ "$engine" = rocksdb ]; then
    run_phase "$engine" "$pair" compact --use_existing_db=1 --benchmarks=compact,waitforcompaction
  else
    run_phase "$engine" "$pair" compact --use_existing_db=1 --benchmarks=compact
  fi
  run_phase "$engine" "$pair" read-settled --use_existing_db=1 --benchmarks=readrandom,seekrandom
  local fill
  fill="$(ops_per_sec "$log-fill.out" fillrandom)"
  [ -n "$fill" ] || fail "could not parse $engine fillrandom in $log-fill.out"
  printf '%s\t%s\t%s\t%s\n' \
    "$engine" "$pair" fillrandom "$fill" \
    "$engine" "$pair" rss_fill_kib "$(peak_rss_kib "$log-fill.time")" \
    "$engine" "$pair" rss_compact_kib "$(peak_rss_kib "$log-compact.time")" \
    "$engine" "$pair" disk_after_fill "$disk" >>"$results"
  local variant b ops
  for variant in defaults settled; do
    for b in readrandom seekrandom; do
      ops="$(ops_per_sec "$log-read-$variant.out" "$b")"
      [ -n "$ops" ] || fail "could not parse $engine $b in $log-read-$variant.out"
      printf '%s\t%s\t%s\t%s\n' "$engine" "$pair" "$b@$variant" "$ops" >>"$results"
    done
    printf '%s\t%s\t%s\t%s\n' "$engine" "$pair" "rss_read_${variant}_kib" \
      "$(peak_rss_kib "$log-read-$variant.time")" >>"$results"
  done
  rm -rf "$WORK_DIR/db-$engine"
}

for pair in $(seq 1 "$PAIRS"); do
  run_engine rocksdb "$pair"
  run_engine o3 "$pair"
done

if grep -qs "Assertions are enabled" "$WORK_DIR"/rocksdb-pair*-*.out; then
  assertions="with assertions (db_bench says so: slower than a release build)"
else
  assertions="without assertions"
fi
echo
echo "== o3 vs RocksDB ($rocksdb_version, $assertions; $db_bench)"
if [ -n "$BLOCK_SIZE" ]; then
  defaults="max_background_jobs and write_buffer_size"
else
  defaults="max_background_jobs, write_buffer_size and block_size"
fi
echo "parameters: ${common[*]} pairs=$PAIRS; $defaults at each engine's default"
echo "o3-bench: $o3_bench ($(nproc) CPUs)${O3_ARGS:+; o3 only: $O3_ARGS}"
echo "reads@defaults: the tree the fill left, each engine as configured by default (o3 merges level 0 when idle, RocksDB did not compact it)"
echo "reads@settled: after one full manual compaction in each (compact; RocksDB also waitforcompaction)"
echo
awk -F'\t' -v pairs="$PAIRS" '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { v[$1, $2, $3] = $4 }
  END {
    nb = split("fillrandom readrandom@defaults seekrandom@defaults readrandom@settled seekrandom@settled", bench, " ")
    target["fillrandom"] = 2.0
    target["readrandom@defaults"] = 2.0; target["seekrandom@defaults"] = 1.5
    target["readrandom@settled"] = 2.0; target["seekrandom@settled"] = 1.5
    printf "%-20s %6s %14s %14s %12s\n", "benchmark", "pair", "rocksdb op/s", "o3 op/s", "o3/rocksdb"
    for (b = 1; b <= nb; b++) {
      n = 0
      for (p = 1; p <= pairs; p++) {
        r = v["rocksdb", p, bench[b]]; o = v["o3", p, bench[b]]
        ratio = (r > 0) ? o / r : 0
        ratios[++n] = ratio
        printf "%-20s %6d %14d %14d %12.3f\n", bench[b], p, r, o, ratio
      }
      m = median(ratios, n)
      printf "%-20s %6s %14s %14s %12.3f   (target >= %.1f: %s)\n", bench[b], "median", "", "", m, target[bench[b]], (m >= target[bench[b]]) ? "met" : "NOT met"
    }
    printf "\n%-34s %14s %14s\n", "per engine (max over pairs)", "rocksdb", "o3"
    nm = split("rss_fill_kib rss_read_defaults_kib rss_compact_kib rss_read_settled_kib disk_after_fill", metric, " ")
    label["rss_fill_kib"] = "peak RSS fill (MiB)"
    label["rss_read_defaults_kib"] = "peak RSS reads@defaults (MiB)"
    label["rss_compact_kib"] = "peak RSS compact (MiB)"
    label["rss_read_settled_kib"] = "peak RSS reads@settled (MiB)"
    label["disk_after_fill"] = "on-disk after fill (MiB)"
    for (m = 1; m <= nm; m++) {
      for (e = 1; e <= 2; e++) {
        eng = (e == 1) ? "rocksdb" : "o3"; best[eng] = 0
        for (p = 1; p <= pairs; p++) if (v[eng, p, metric[m]] + 0 > best[eng]) best[eng] = v[eng, p, metric[m]] + 0
      }
      div = (metric[m] == "disk_after_fill") ? 1048576 : 1024
      printf "%-34s %14.1f %14.1f", label[metric[m]], best["rocksdb"] / div, best["o3"] / div
      # Each phase on its own: the peak of the fill would hide that of the reads.
      if (metric[m] != "disk_after_fill") printf "   %s", (best["o3"] <= best["rocksdb"]) ? "o3 uses no more memory" : "o3 uses MORE memory"
      printf "\n"
    }
  }' "$results"
echo
echo "raw results: $results; logs: $WORK_DIR/*-pair*-*.{out,err,time}"
