#!/usr/bin/env bash
# Apply patches/fuse-native+2.2.6.patch, with patch-package, to the fuse-native that this
# package loads (the first half of "postinstall"; build-native.sh then builds its addon).
#
#   bash patch-fuse-native.sh [PROJECT_DIR]     (default: the package root, above this script)
#
# Why not a plain `patch-package`: it applies <cwd>/patches/ to <cwd>/node_modules/<name>. That
# is where fuse-native is in the development checkout and in a global install (npm keeps a
# global package's dependencies in its own node_modules), but not when layerfs is a dependency
# of another project: npm then usually hoists fuse-native into that project's node_modules,
# and a plain patch-package fails ("not present at node_modules/fuse-native"). So fuse-native
# is resolved as Node will resolve it from this package, and patch-package runs from the
# directory whose node_modules holds it, with --patch-dir pointing back at our patches/.
# A hoisted fuse-native is shared with the rest of that project: it gets patched too (the patch
# keeps fuse-native's API; see native-notes/DECISIONS.md D24).
#
# Idempotent: patch-package recognises a patch that is already applied and leaves it alone.
set -euo pipefail

project="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$project"

die() {
  echo "patch-fuse-native: $*" >&2
  exit 1
}

# Directory of an installed package, resolved from $project as require() would.
pkg_dir() {
  node -e '
    const path = require("path");
    process.stdout.write(path.dirname(require.resolve(process.argv[1] + "/package.json", { paths: [process.cwd()] })));
  ' "$1"
}

fuse_dir="$(pkg_dir fuse-native)" || die "fuse-native is not installed (it is a dependency of layerfs)"
pp_dir="$(pkg_dir patch-package)" || die "patch-package is not installed (it is a dependency of layerfs)"

# fuse-native must sit in a plain npm layout: <root>/node_modules/fuse-native, <root> a package.
# (patch-package's paths are relative to <root>; it finds <root> as the nearest package.json.)
# Elsewhere (pnpm's content-addressed store, a global folder without package.json) patching in
# place could change files shared beyond this install, so refuse instead.
nm="$(dirname "$fuse_dir")"
root="$(dirname "$nm")"
if [ "$(basename "$nm")" != node_modules ] || [ "$(basename "$fuse_dir")" != fuse-native ] || [ ! -f "$root/package.json" ]; then
  die "fuse-native resolved to $fuse_dir, which is not <package>/node_modules/fuse-native; apply patches/ to it by hand (git apply, from the directory above its node_modules), then run scripts/build-native.sh"
fi

patch_dir="$(realpath --relative-to="$root" "$project/patches")"
[ -d "$root/$patch_dir" ] || die "no patches/ directory in $project"
if [ "$(realpath "$root")" != "$(realpath "$project")" ]; then
  echo "patch-fuse-native: fuse-native is hoisted to $fuse_dir (shared with $root); patching it there" >&2
fi

cd "$root"
exec node "$pp_dir/index.js" --error-on-fail --patch-dir "$patch_dir"
