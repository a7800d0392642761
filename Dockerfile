# layerfs in a container: the test suite and the demo need FUSE and the kernel's overlayfs,
# so run the container privileged (see docker-compose.yml):
#   docker compose run --rm test
#   docker compose run --rm demo
FROM node:20-bookworm

# libfuse2: libfuse.so.2, loaded by fuse-native; fuse3: fusermount3; attr: setfattr/getfattr;
# fuse-overlayfs: second reference for the differential tests; kmod: modprobe.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libfuse2 fuse3 attr fuse-overlayfs kmod \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /layerfs

# Dependencies first, so that they stay cached while the sources change. --ignore-scripts
# skips "prepare" (the TypeScript build), which cannot run before the sources are copied;
# `npm rebuild` then runs the dependencies' own install scripts (fuse-native's binding).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund && npm rebuild

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
