#!/usr/bin/env bash
# Build (once) a release db_bench of RocksDB 9.9.3 and print its path.
#
# The source is the one that ships inside the crates.io crate
# librocksdb-sys 0.17.1+9.9.3 (under rocksdb/), downloaded from
# static.crates.io and checked against the checksum the crates.io index
# gives. cmake builds only the db_bench target: Release (-O3 -DNDEBUG),
# gflags on, no tests or other tools, portable code, statically linked
# RocksDB. About 10 minutes on 2 cores (553 s measured), once: the binary is kept as
# <cargo target dir>/peer-rocksdb/9.9.3/db_bench and later calls print its
# path at once. The build directory (about 1 GB) is removed afterwards.
#
# Usage: ci/rocksdb-release.sh          (progress on stderr, the path on stdout)
# Installs cmake, g++, make, curl and libgflags-dev with apt-get when missing
# (root or sudo).
set -euo pipefail

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "rocksdb-release.sh: takes no arguments (got '$1')" >&2; exit 2 ;;
esac

VERSION=9.9.3
CRATE=librocksdb-sys-0.17.1+9.9.3
SHA256=2b7869a512ae9982f4d46ba482c2a304f1efd80c6412a3d4bf57bb79a619679f
URL="https://static.crates.io/crates/librocksdb-sys/$CRATE.crate"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { echo "rocksdb-release.sh: $*" >&2; }
fail() {
  say "$*"
  exit 1
}

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
out="$target_dir/peer-rocksdb/$VERSION"
bin="$out/db_bench"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

# shellcheck source=ci/apt.sh
. "$repo_root/ci/apt.sh"

missing=()
for tool in cmake g++ make curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -e /usr/include/gflags/gflags.h ] || missing+=(libgflags-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

mkdir -p "$out"
crate="$out/$CRATE.crate"
if [ ! -s "$crate" ] || ! echo "$SHA256  $crate" | sha256sum --check --status; then
  say "downloading $URL"
  curl -fsSL --retry 3 -o "$crate.part" "$URL" || fail "download of $URL failed"
  echo "$SHA256  $crate.part" | sha256sum --check --status \
    || fail "$crate.part does not have the crates.io checksum $SHA256"
  mv "$crate.part" "$crate"
fi

work="$out/work"
rm -rf "$work"
mkdir -p "$work"
tar -xzf "$crate" -C "$work" "$CRATE/rocksdb"
src="$work/$CRATE/rocksdb"
log="$out/build.log"
jobs="$(nproc)"
say "building RocksDB $VERSION db_bench (Release, $jobs jobs, about 10 minutes on 2 cores); log: $log"
start=$(date +%s)
{
  cmake -S "$src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release -DWITH_GFLAGS=ON -DWITH_TESTS=OFF \
    -DWITH_BENCHMARK_TOOLS=ON -DWITH_TOOLS=OFF -DWITH_CORE_TOOLS=OFF \
    -DPORTABLE=1 -DROCKSDB_BUILD_SHARED=OFF -DFAIL_ON_WARNINGS=OFF &&
    cmake --build "$work/build" --target db_bench -j "$jobs"
} >"$log" 2>&1 || fail "the build failed; the end of $log:
$(tail -n 20 "$log")"
cp "$work/build/db_bench" "$bin.part"
mv "$bin.part" "$bin"
rm -rf "$work"
say "built $bin in $(($(date +%s) - start)) s"
echo "$bin"
