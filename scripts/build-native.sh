#!/usr/bin/env bash
# Rebuild fuse-native's addon from its (patched) source, offline.
#
#   bash build-native.sh [PROJECT_DIR]     (default: the package root, above this script)
#
# Why this is needed: fuse-native's own "install": "node-gyp-build" (npm 11.19
# runs it with an "install scripts not yet covered by allowScripts" warning; a
# denying allowScripts policy or --ignore-scripts skips it) keeps the shipped
# prebuild (prebuilds/linux-x64/node.napi.node) because that loads fine; but
# that binary is the UNPATCHED code. node-gyp-build (4.x) loads
# build/Release/*.node in preference to prebuilds/, so building here is enough.
# The patched index.js refuses to load a binary without the patch ABI marker.
#
# Needs: make, g++ (gcc), python3, node headers, libfuse2 (runtime: libfuse.so.2).
# Node headers: node-gyp would download them (no internet here); instead point
# it at the headers the nodejs .deb installs in /usr/include/node (--nodedir=/usr),
# or at an already-populated node-gyp cache.
set -euo pipefail

project="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$project"

pkgdir="$(node -p "require('path').dirname(require.resolve('fuse-native/package.json', { paths: [process.cwd()] }))")"
nodever="$(node -p process.versions.node)"

# 1. node-gyp: the project's own, else the one npm names to its scripts (npm_config_node_gyp,
#    set by npm for every lifecycle script, e.g. our postinstall in a global install), else
#    the one bundled with the npm on PATH.
gyp=()
if [ -x node_modules/.bin/node-gyp ]; then
  gyp=(node_modules/.bin/node-gyp)
  gyp[0]="$project/${gyp[0]}"
elif [ -n "${npm_config_node_gyp:-}" ] && [ -f "$npm_config_node_gyp" ]; then
  gyp=(node "$npm_config_node_gyp")
else
  npm_root="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
  if [ -f "$npm_root/node_modules/node-gyp/bin/node-gyp.js" ]; then
    gyp=(node "$npm_root/node_modules/node-gyp/bin/node-gyp.js")
  else
    echo "build-native: node-gyp not found (neither node_modules/.bin nor npm's bundled copy)" >&2
    exit 1
  fi
fi

# 2. headers, without network.
nodedir=""
for cand in "${npm_config_nodedir:-}" "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" /usr /usr/local; do
  [ -n "$cand" ] || continue
  if [ -f "$cand/include/node/node_api.h" ] && [ -f "$cand/include/node/common.gypi" ]; then
    nodedir="$cand"
    break
  fi
done
gypargs=()
if [ -n "$nodedir" ]; then
  hdrver="$(sed -n 's/^#define NODE_\(MAJOR\|MINOR\|PATCH\)_VERSION \([0-9]*\).*/\2/p' "$nodedir/include/node/node_version.h" | paste -sd.)"
  [ "$hdrver" = "$nodever" ] || echo "build-native: note: headers in $nodedir are $hdrver, node is $nodever (fine for an N-API addon)" >&2
  gypargs+=("--nodedir=$nodedir")
elif [ -f "${XDG_CACHE_HOME:-$HOME/.cache}/node-gyp/$nodever/include/node/node_api.h" ]; then
  : # node-gyp finds its own cache
else
  echo "build-native: no node headers found (looked for <dir>/include/node/node_api.h); install the nodejs package's headers or set npm_config_nodedir" >&2
  exit 1
fi

# 3. build (binding.gyp takes fuse.h from fuse-shared-library-linux's bundled
#    libfuse 2.9 headers and links -lfuse; the result NEEDs libfuse.so.2, which
#    resolves to the system /usr/lib/x86_64-linux-gnu/libfuse.so.2 at runtime).
(cd "$pkgdir" && "${gyp[@]}" rebuild "${gypargs[@]}" --loglevel=warn)

# 3b. layerfs's own addon (native/fuse-dev: reads /dev/fuse on the JS thread for the kernel
#     engine, DECISIONS D28). Plain N-API, no library to link.
(cd "$project/native/fuse-dev" && "${gyp[@]}" rebuild "${gypargs[@]}" --loglevel=warn)

# 4. check that the patched JS + the fresh binary are what gets loaded.
node -e "
  const dir = '$pkgdir'
  const bin = require(require.resolve('node-gyp-build', { paths: [dir] })).resolve(dir)
  const Fuse = require(dir)
  if (Fuse.PATCH_ABI !== 4) { console.error('build-native: fuse-native is not patched (run patch-package first)'); process.exit(1) }
  console.log('build-native: ok, fuse-native patch ABI ' + Fuse.PATCH_ABI + ', addon ' + bin)
  const dev = require('$project/native/fuse-dev/build/Release/fuse_dev.node')
  if (typeof dev.start !== 'function') { console.error('build-native: native/fuse-dev did not build'); process.exit(1) }
  console.log('build-native: ok, native/fuse-dev')
"
