#!/usr/bin/env bash
# Run the RDMA conformance suite on soft-RoCE (rxe).
#
# Usage: ci/rxe.sh [NETDEV]
#   NETDEV       the Ethernet interface rxe runs over (default: the device of
#                the default route)
#   O3_RXE_NAME  name of the rxe link to create or reuse (default: rxe0)
#
# Loads rdma_rxe, adds the rxe link over NETDEV unless it exists, checks that
# the verbs library sees it, then runs the `rdma` conformance suite against
# it. On a host that cannot do this (no rdma_rxe module, no `rdma` or
# `ibv_devices` tool, not root) it says what is missing and exits non-zero.
set -euo pipefail

rxe_name="${O3_RXE_NAME:-rxe0}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fail() {
  echo "rxe.sh: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (loading rdma_rxe and 'rdma link add' need it)"
command -v modprobe >/dev/null 2>&1 || fail "missing 'modprobe' (package kmod)"
command -v rdma >/dev/null 2>&1 || fail "missing the 'rdma' tool (package iproute2)"
command -v ibv_devices >/dev/null 2>&1 || fail "missing 'ibv_devices' (package ibverbs-utils)"
command -v cargo >/dev/null 2>&1 || fail "missing 'cargo' (install Rust with rustup)"

if ! modprobe rdma_rxe 2>/dev/null; then
  fail "this kernel ($(uname -r)) has no rdma_rxe module: soft-RoCE is unavailable here"
fi

netdev="${1:-}"
if [ -z "$netdev" ]; then
  netdev="$(ip -o route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')"
fi
[ -n "$netdev" ] || fail "no network interface given and no default route to take one from"
[ -e "/sys/class/net/$netdev" ] || fail "network interface '$netdev' does not exist"

if rdma link show "$rxe_name/1" >/dev/null 2>&1; then
  echo "rxe.sh: reusing existing link $rxe_name"
else
  echo "rxe.sh: adding $rxe_name over $netdev"
  rdma link add "$rxe_name" type rxe netdev "$netdev" \
    || fail "'rdma link add $rxe_name type rxe netdev $netdev' failed"
fi

if ! ibv_devices | awk 'NR > 2 { print $1 }' | grep -qx "$rxe_name"; then
  fail "$rxe_name does not appear in ibv_devices (is the rxe provider of rdma-core installed?)"
fi
echo "rxe.sh: $rxe_name is visible to the verbs library"

# The suite prints a skip line when it finds no device; here that is a
# failure, since the device was just checked.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$repo_root"
O3_RDMA_DEVICE="$rxe_name" cargo test -p o3-transport --features rdma \
  --test conformance_rdma -- --nocapture 2>&1 | tee "$log"
if grep -q '^rdma: skipped' "$log"; then
  fail "the conformance suite skipped although $rxe_name exists"
fi
echo "rxe.sh: rdma conformance passed on $rxe_name"
