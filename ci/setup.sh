#!/usr/bin/env bash
# Install every system package the build and the tests need, and the cargo
# tools ci/test.sh runs. Idempotent: what is already present is left alone, so
# a second run does nothing. Works as root or through sudo.
set -euo pipefail

# cargo-machete (unused dependencies). Pinned so that CI does not change under
# us; --locked builds it with the lock file its authors tested.
machete_version=0.9.2
if cargo machete --version >/dev/null 2>&1; then
  echo "setup: cargo-machete present"
else
  echo "setup: installing cargo-machete $machete_version"
  cargo install --locked --version "$machete_version" cargo-machete
fi

packages=(
  pkg-config        # rdma-sys finds libibverbs/librdmacm with it
  libibverbs-dev    # rdma feature: verbs headers and library
  librdmacm-dev     # rdma feature: connection manager
  libclang-dev      # bindgen (rdma-sys) needs libclang
  clang
  iproute2          # network namespaces for multi-host tests
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all system packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
