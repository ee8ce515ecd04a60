#!/usr/bin/env bash
# The test entry point: the README's test command and what CI runs.
# Installs system packages, checks formatting and lints (default features and
# the rdma feature), that the API docs build without warnings and that no
# crate declares a dependency it does not use, then runs every test of the
# workspace with the rdma feature built in (the RDMA conformance run prints
# why it is skipped where no device exists).
set -euo pipefail
cd "$(dirname "$0")/.."

ci/setup.sh

# A fresh clone gains nothing from incremental caches, and they double the
# size of target/ (CI's disk is shared and has run out before).
if [[ "${CI:-}" == "true" ]]; then
  export CARGO_INCREMENTAL=0
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (default features)"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo clippy (rdma feature)"
cargo clippy --workspace --all-targets --features o3-transport/rdma -- -D warnings

echo "== cargo doc (no warnings)"
# Broken or private intra-doc links fail here; the crate front pages'
# examples run with the doc tests below.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --features o3-transport/rdma

echo "== cargo machete (no unused dependencies)"
cargo machete

echo "== fuzz targets compile (run them with cargo-fuzz on nightly)"
cargo check --manifest-path storage/fuzz/Cargo.toml

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doc tests; run them first so that nextest's summary
  # is the last line
  cargo test --workspace --doc --features o3-transport/rdma
  cargo nextest run --workspace --features o3-transport/rdma --no-fail-fast --failure-output final
else
  cargo test --workspace --features o3-transport/rdma --no-fail-fast
fi
