/**
 * End-to-end benchmark of issue 4 (`npm run bench`): a plain directory, the kernel's overlayfs,
 * fuse-overlayfs, unionfs-fuse and layerfs, interleaved, on a generated ~50k-file image in
 * 3 layers: find / du / ls -lR / reading every file / a 1 GiB sequential read (cold and warm),
 * ls -l of a 12k-entry merged directory, creating 5k files, copy-up by appending to 2k lower
 * files, rm -rf of a 10k-file lower tree, untar of a 50 MB source tarball, and lookups through
 * 1 to 64 layers. Writes bench/results/full-DATE.md, .json and .svg.
 *
 *   npm run build
 *   sudo node dist/bench/e2e/full.js [--files 50000] [--big-mib 1024] [--runs 3]
 *        [--variants ...] [--workloads ...] [--out bench/results]     (--help for all options)
 *
 * Needs root (mount, mknod, trusted.* xattrs, drop_caches). See bench/README.md.
 */
import { runBench } from './lib/runner.js';

process.exit(await runBench(process.argv.slice(2), { name: 'full', script: 'dist/bench/e2e/full.js' }));
