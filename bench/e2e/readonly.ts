/**
 * The read-only subset of the end-to-end benchmark (`npm run bench:readonly`): find, ls -lR
 * and a big sequential read, cold and warm, on plain / kernel / fuse-overlayfs / layerfs, with
 * the earlier defaults (30000 files, no workload directories). Same engine and options as
 * bench/e2e/full.ts; writes bench/results/readonly-DATE.md, .json and .svg.
 *
 *   npm run build
 *   sudo node dist/bench/e2e/readonly.js [--files 30000] [--big-mib 1024] [--runs 5] [--variants ...]
 */
import { runBench } from './lib/runner.js';

process.exit(
  await runBench(process.argv.slice(2), {
    name: 'readonly',
    script: 'dist/bench/e2e/readonly.js',
    defaults: {
      files: '30000',
      runs: '5',
      variants: 'plain,kernel,fuse-overlayfs,layerfs',
      workloads: 'find,ls-R,read-big',
      wide: '0',
      'rm-files': '0',
    },
  }),
);
