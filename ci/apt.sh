# Sourced by the ci/ scripts that install Debian packages: as_root runs a
# command as root (directly or through sudo), apt_install installs packages
# (an `apt-get update` first only if the install fails). The sourcing
# script defines fail (print its argument and exit non-zero).

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
  echo "$(basename "$0"): installing $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1 \
    || { as_root apt-get update >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; } \
    || fail "apt-get install $* failed"
}
