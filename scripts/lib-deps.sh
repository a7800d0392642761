# shellcheck shell=bash
# Shared helpers for installing layerfs' system dependencies on Debian/Ubuntu.
# Sourced (not executed) by scripts/setup.sh and .ci/run:
#
#   source scripts/lib-deps.sh
#   layerfs_install_packages libfuse2 fuse3 attr
#
# Only packages that are not installed yet are installed; `apt-get update` runs at most once
# per shell, and only when something actually has to be installed.

# Print a message prefixed so it stands out among npm's and apt's output.
layerfs_log() {
  printf '==> %s\n' "$*"
}

layerfs_warn() {
  printf '!!! %s\n' "$*" >&2
}

# Runs a command as root: directly when we are root, through sudo otherwise.
layerfs_as_root() {
  if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    layerfs_warn "need root to run: $* (run this script as root, or install sudo)"
    return 1
  fi
}

# True when the Debian package is installed (not merely known, or removed with its config kept).
layerfs_pkg_installed() {
  local status
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
  [[ $status == "install ok installed" ]]
}

LAYERFS_APT_UPDATED=${LAYERFS_APT_UPDATED:-0}

layerfs_apt_update_once() {
  if [[ $LAYERFS_APT_UPDATED != 1 ]]; then
    layerfs_log "apt-get update"
    layerfs_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    LAYERFS_APT_UPDATED=1
  fi
}

# True when apt knows an installable version of the package (apt-cache policy prints
# "Candidate: (none)" or nothing at all otherwise).
layerfs_pkg_available() {
  local candidate
  candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
  [[ -n $candidate && $candidate != "(none)" ]]
}

# Maps the requested name to the package that should really be installed.
# `fuse3` ships fusermount3 (and a `fusermount` link) and, on Debian 12 and Ubuntu 22.04+,
# Breaks/Replaces the old `fuse` (v2) package. Older releases only have `fuse`. Either is fine
# for layerfs: libfuse2 (the library fuse-native loads) is a separate package, and as root the
# tests unmount with plain umount(8).
layerfs_resolve_pkg() {
  local pkg=$1
  case $pkg in
    fuse3|fuse)
      if layerfs_pkg_installed fuse3; then echo fuse3
      elif layerfs_pkg_installed fuse; then echo fuse
      elif layerfs_pkg_available fuse3; then echo fuse3
      else echo fuse
      fi
      ;;
    *) echo "$pkg" ;;
  esac
}

# layerfs_install_packages PKG... : installs the packages among PKG... that are missing.
layerfs_install_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    layerfs_warn "not a Debian/Ubuntu system (no dpkg/apt-get): install these yourself: $*"
    return 1
  fi
  local pkg resolved
  local -a missing=()
  for pkg in "$@"; do
    # Resolving fuse/fuse3 asks apt-cache, whose lists may be empty before the first update.
    if [[ $pkg == fuse || $pkg == fuse3 ]] && ! layerfs_pkg_installed fuse3 && ! layerfs_pkg_installed fuse; then
      layerfs_apt_update_once
    fi
    resolved=$(layerfs_resolve_pkg "$pkg")
    if layerfs_pkg_installed "$resolved"; then
      layerfs_log "package $resolved: already installed"
    else
      missing+=("$resolved")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  layerfs_apt_update_once
  layerfs_log "apt-get install ${missing[*]}"
  layerfs_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
}

# Fails unless node is at least the version package.json's "engines" asks for.
layerfs_require_node() {
  local want_major=$1 want_minor=$2
  if ! command -v node >/dev/null 2>&1; then
    layerfs_warn "node is not installed: install Node.js ${want_major}.${want_minor} or newer (e.g. from nodejs.org or NodeSource)"
    return 1
  fi
  local version major minor
  version=$(node --version)
  version=${version#v}
  major=${version%%.*}
  minor=${version#*.}
  minor=${minor%%.*}
  if (( major < want_major || (major == want_major && minor < want_minor) )); then
    layerfs_warn "node v$version is too old: layerfs needs Node.js ${want_major}.${want_minor} or newer"
    return 1
  fi
  layerfs_log "node v$version, npm $(npm --version)"
}
