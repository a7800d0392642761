#!/usr/bin/env bash
# One-step setup for a fresh Debian/Ubuntu machine with Node.js 20 (run as root, or with sudo
# available): installs the system libraries layerfs needs, installs the npm dependencies,
# builds, and runs the demo, which mounts three sample layers and shows the merged view.
#
#   sudo scripts/setup.sh            # or as root: scripts/setup.sh
#   SKIP_DEMO=1 scripts/setup.sh     # everything but the demo
set -euo pipefail

# libfuse2: the FUSE library that fuse-native loads (libfuse.so.2).
# fuse3:    the fuse utilities (fusermount3); replaces Debian's old `fuse` v2 package.
# attr:     setfattr/getfattr, used by the demo to mark an opaque directory.
SETUP_PACKAGES=(libfuse2 fuse3 attr)

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=scripts/lib-deps.sh
source "$repo_root/scripts/lib-deps.sh"

layerfs_log "layerfs setup in $repo_root"
layerfs_require_node 20 19

layerfs_log "system packages: ${SETUP_PACKAGES[*]}"
layerfs_install_packages "${SETUP_PACKAGES[@]}"

if [[ -f package-lock.json ]]; then
  layerfs_log "npm ci (exact versions from package-lock.json)"
  npm ci
else
  layerfs_log "npm install"
  npm install
fi

layerfs_log "npm run build"
npm run build

if [[ ${SKIP_DEMO:-0} == 1 ]]; then
  layerfs_log "SKIP_DEMO=1: not running the demo (run it with: node dist/scripts/demo.js)"
  exit 0
fi

if [[ ! -e /dev/fuse ]]; then
  layerfs_warn "/dev/fuse is missing: try 'modprobe fuse'; in a container start it with --device /dev/fuse --cap-add SYS_ADMIN"
  exit 1
fi

layerfs_log "node dist/scripts/demo.js"
node dist/scripts/demo.js
layerfs_log "setup complete. Mount your own layers with:"
layerfs_log "  node bin/layerfs.js mount -o lowerdir=TOP:MIDDLE:BASE MOUNTPOINT"
layerfs_log "  node bin/layerfs.js umount MOUNTPOINT"
