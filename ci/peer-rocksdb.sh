#!/usr/bin/env bash
# Peer comparison: RocksDB's db_bench against o3-bench with identical
# parameters, runs alternating A B A B ... (A = RocksDB, B = o3) so drift in
# the machine's state hits both engines alike.
#
# Each run of an engine is two processes on a fresh database directory:
#   1. --benchmarks=fillrandom                      (then: on-disk size)
#   2. --use_existing_db=1 --benchmarks=readrandom,seekrandom
# Both are measured with GNU time (peak RSS). The table gives ops/sec per
# pair, the o3/RocksDB ratio per pair and the median ratio, peak RSS and
# on-disk size after the fill for both.
#
# Usage: ci/peer-rocksdb.sh [NAME=VALUE ...]     (or set them in the environment)
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
#   PAIRS=3            A B pairs
#   WORK_DIR=${TMPDIR:-/tmp}/o3-peer-rocksdb   databases and logs
# Background jobs and write buffer size (and, unless BLOCK_SIZE is set, block
# size) are left at each engine's default.
# Installs rocksdb-tools and time with apt-get when missing (root or sudo).
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    *=*) export "${arg%%=*}=${arg#*=}" ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "peer-rocksdb.sh: argument '$arg' is not NAME=VALUE" >&2; exit 2 ;;
  esac
done

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
PAIRS="${PAIRS:-3}"
WORK_DIR="${WORK_DIR:-${TMPDIR:-/tmp}/o3-peer-rocksdb}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fail() {
  echo "peer-rocksdb.sh: $*" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    fail "need root or sudo to run: $*"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install $* by hand"
  echo "peer-rocksdb.sh: installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null \
    || { as_root apt-get update >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; } \
    || fail "apt-get install $* failed"
}

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

db_bench="$(find_db_bench || true)"
if [ -z "$db_bench" ]; then
  apt_install rocksdb-tools
  db_bench="$(find_db_bench || true)"
fi
[ -n "$db_bench" ] && [ -x "$db_bench" ] || fail "no db_bench binary in rocksdb-tools (dpkg -L rocksdb-tools)"
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

# One run: engine $1 (rocksdb|o3), pair $2. Appends rows to $results:
# engine pair metric value
run_engine() {
  local engine="$1" pair="$2" bin db log
  case "$engine" in
    rocksdb) bin="$db_bench" ;;
    o3) bin="$o3_bench dbbench $O3_ARGS" ;;
  esac
  db="$WORK_DIR/db-$engine"
  log="$WORK_DIR/$engine-pair$pair"
  rm -rf "$db"
  echo "peer-rocksdb.sh: pair $pair: $engine fillrandom"
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$log-fill.time" $bin --db="$db" "${common[@]}" \
    --benchmarks=fillrandom >"$log-fill.out" 2>"$log-fill.err" \
    || fail "$engine fillrandom failed; see $log-fill.err"
  local disk
  disk="$(du -sb "$db" | cut -f1)"
  echo "peer-rocksdb.sh: pair $pair: $engine readrandom,seekrandom"
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$log-read.time" $bin --db="$db" "${common[@]}" \
    --use_existing_db=1 --benchmarks=readrandom,seekrandom >"$log-read.out" 2>"$log-read.err" \
    || fail "$engine readrandom,seekrandom failed; see $log-read.err"
  local fill read seek rss_fill rss_read
  fill="$(ops_per_sec "$log-fill.out" fillrandom)"
  read="$(ops_per_sec "$log-read.out" readrandom)"
  seek="$(ops_per_sec "$log-read.out" seekrandom)"
  [ -n "$fill" ] && [ -n "$read" ] && [ -n "$seek" ] || fail "could not parse $engine output in $log-*.out"
  rss_fill="$(peak_rss_kib "$log-fill.time")"
  rss_read="$(peak_rss_kib "$log-read.time")"
  printf '%s\t%s\t%s\t%s\n' \
    "$engine" "$pair" fillrandom "$fill" \
    "$engine" "$pair" readrandom "$read" \
    "$engine" "$pair" seekrandom "$seek" \
    "$engine" "$pair" rss_fill_kib "$rss_fill" \
    "$engine" "$pair" rss_read_kib "$rss_read" \
    "$engine" "$pair" disk_after_fill "$disk" >>"$results"
  rm -rf "$db"
}

for pair in $(seq 1 "$PAIRS"); do
  run_engine rocksdb "$pair"
  run_engine o3 "$pair"
done

rocksdb_version="$("$db_bench" --version 2>/dev/null | head -n 1 || true)"
echo
echo "== o3 vs RocksDB ($rocksdb_version; $db_bench)"
if [ -n "$BLOCK_SIZE" ]; then
  defaults="max_background_jobs and write_buffer_size"
else
  defaults="max_background_jobs, write_buffer_size and block_size"
fi
echo "parameters: ${common[*]} pairs=$PAIRS; $defaults at each engine's default"
echo "o3-bench: $o3_bench ($(nproc) CPUs)${O3_ARGS:+; o3 only: $O3_ARGS}"
echo
awk -F'\t' -v pairs="$PAIRS" '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { v[$1, $2, $3] = $4 }
  END {
    split("fillrandom readrandom seekrandom", bench, " ")
    target["fillrandom"] = 2.0; target["readrandom"] = 2.0; target["seekrandom"] = 1.5
    printf "%-11s %5s %14s %14s %12s\n", "benchmark", "pair", "rocksdb op/s", "o3 op/s", "o3/rocksdb"
    for (b = 1; b <= 3; b++) {
      n = 0
      for (p = 1; p <= pairs; p++) {
        r = v["rocksdb", p, bench[b]]; o = v["o3", p, bench[b]]
        ratio = (r > 0) ? o / r : 0
        ratios[++n] = ratio
        printf "%-11s %5d %14d %14d %12.3f\n", bench[b], p, r, o, ratio
      }
      m = median(ratios, n)
      printf "%-11s %5s %14s %14s %12.3f   (target >= %.1f: %s)\n", bench[b], "median", "", "", m, target[bench[b]], (m >= target[bench[b]]) ? "met" : "NOT met"
    }
    printf "\n%-30s %14s %14s\n", "per engine (max over pairs)", "rocksdb", "o3"
    split("rss_fill_kib rss_read_kib disk_after_fill", metric, " ")
    label["rss_fill_kib"] = "peak RSS fill (MiB)"; label["rss_read_kib"] = "peak RSS read+seek (MiB)"; label["disk_after_fill"] = "on-disk after fill (MiB)"
    for (m = 1; m <= 3; m++) {
      for (e = 1; e <= 2; e++) {
        eng = (e == 1) ? "rocksdb" : "o3"; best[eng] = 0
        for (p = 1; p <= pairs; p++) if (v[eng, p, metric[m]] + 0 > best[eng]) best[eng] = v[eng, p, metric[m]] + 0
      }
      div = (metric[m] == "disk_after_fill") ? 1048576 : 1024
      printf "%-30s %14.1f %14.1f\n", label[metric[m]], best["rocksdb"] / div, best["o3"] / div
    }
    # Each phase on its own: the peak of the fill would hide that of the reads.
    for (m = 1; m <= 2; m++) {
      for (e = 1; e <= 2; e++) {
        eng = (e == 1) ? "rocksdb" : "o3"; peak[eng] = 0
        for (p = 1; p <= pairs; p++) if (v[eng, p, metric[m]] + 0 > peak[eng]) peak[eng] = v[eng, p, metric[m]] + 0
      }
      printf "%s: o3 %.1f MiB vs RocksDB %.1f MiB: %s\n", label[metric[m]], peak["o3"] / 1024, peak["rocksdb"] / 1024, (peak["o3"] <= peak["rocksdb"]) ? "o3 uses no more memory" : "o3 uses MORE memory"
    }
  }' "$results"
if grep -qs "Assertions are enabled" "$WORK_DIR"/rocksdb-pair*-*.out; then
  echo "NOTE: this db_bench build runs with assertions enabled (it prints so); a release build of RocksDB would be faster."
fi
echo
echo "raw results: $results; logs: $WORK_DIR/*-pair*.{out,err,time}"
