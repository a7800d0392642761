# layerfs in a container: the test suite and the demo need FUSE and the kernel's overlayfs,
# so run the container privileged (see docker-compose.yml):
#   docker compose run --rm test
#   docker compose run --rm demo
FROM node:20-bookworm

# libfuse2: libfuse.so.2, loaded by fuse-native; fuse3: fusermount3; attr: setfattr/getfattr;
# acl: setfacl/getfacl; fuse-overlayfs: second reference for the differential tests; kmod:
# modprobe; zstd: makes the zstd layers the image tests read; the rest: the real tools the
# writable-mount tests run (tar, git, make + cc, rsync, sqlite3). The same list as CI_PACKAGES
# in .ci/run.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libfuse2 fuse3 attr acl fuse-overlayfs kmod util-linux mount zstd \
      tar git make gcc libc6-dev rsync sqlite3 coreutils \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /layerfs

# Dependencies first, so that they stay cached while the sources change. --ignore-scripts
# skips "prepare" (the TypeScript build), which cannot run before the sources are copied, and
# also our "postinstall": its two steps run by hand, applying the fuse-native patch and
# building the patched binding (native-notes/fuse-native-patch.md; without it layerfs refuses
# to mount).
COPY package.json package-lock.json ./
COPY patches/ patches/
COPY scripts/build-native.sh scripts/
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npx patch-package && bash scripts/build-native.sh

# The sources are copied one by one (not `COPY . .`) so that a host's node_modules/ or
# dist/ never ends up in the image.
COPY tsconfig.json ava.unit.config.js ava.mount.config.js ./
COPY bin/ bin/
COPY native-notes/ native-notes/
COPY src/ src/
COPY test/ test/
COPY bench/ bench/
COPY scripts/ scripts/
RUN npm run build

CMD ["npm", "test"]
