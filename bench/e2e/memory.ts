/**
 * The serving process's memory after walking a large image (`npm run bench:memory`). Issue 4:
 * under 200 MB RSS after a walk of 100k files, with the default cache bounds.
 *
 * Builds the bench generator's image (default 105,000 files in 3 layers, seed 3) on a private
 * tmpfs, mounts it with the CLI as a user does (the server is the process the CLI leaves
 * running), and after each step of a cold walk records that process's RSS (VmRSS) and peak RSS
 * (VmHWM): `find`, then `ls -lR`, then reading every file. The variants run interleaved:
 *   layerfs           the CLI's defaults;
 *   layerfs-v8young   the same with NODE_OPTIONS=--max-semi-space-size=16, V8's own default for
 *                     the young generation, which the CLI otherwise lowers for its servers (D39).
 * Writes bench/results/memory-DATE.md and .json.
 *
 *   npm run build
 *   sudo node dist/bench/e2e/memory.js [--files 105000] [--runs 3] [--variants layerfs,layerfs-v8young]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { buildDataset, estimateTmpfsBytes, writeLayers } from './lib/dataset.js';
import { fmtMs, mdTable, summarize } from './lib/stats.js';
import {
  CMD_ENV, describe, dropCaches, findServerPid, isMounted, readMem, run, runTimed, unmountWith, waitPidExit,
} from './lib/sys.js';

const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const BIN = path.join(repoRoot, 'bin/layerfs.js');
const LIMIT_MB = 200;

const VARIANTS: Record<string, NodeJS.ProcessEnv> = {
  layerfs: {},
  'layerfs-v8young': { NODE_OPTIONS: '--max-semi-space-size=16' },
};

const STEPS = [
  { name: 'find', cmd: (m: string) => `find ${m} > /dev/null` },
  { name: 'ls -lR', cmd: (m: string) => `ls -lR ${m} > /dev/null` },
  { name: 'read every file', cmd: (m: string) => `find ${m} -type f -print0 | xargs -0 cat > /dev/null` },
] as const;

interface Sample {
  variant: string;
  run: number;
  step: string;
  ms: number;
  rssKiB: number;
  hwmKiB: number;
}

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '105000' },
    seed: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    variants: { type: 'string', default: Object.keys(VARIANTS).join(',') },
    out: { type: 'string', default: path.join(repoRoot, 'bench/results') },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log('sudo node dist/bench/e2e/memory.js [--files N] [--seed N] [--runs N] [--variants a,b] [--out DIR]');
  process.exit(0);
}
const variants = args.variants.split(',').filter(Boolean);
for (const v of variants) if (!(v in VARIANTS)) throw new Error(`unknown variant ${v} (known: ${Object.keys(VARIANTS).join(', ')})`);
const runs = Number(args.runs);
const log = (msg: string): void => console.error(`[memory] ${msg}`);
const MB = (kib: number): number => (kib * 1024) / 1e6;

const ds = buildDataset({ files: Number(args.files), bigBytes: 1 << 20, seed: Number(args.seed) });
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-mem-'));
const tmpfsMiB = Math.ceil((2 * estimateTmpfsBytes(ds)) / 2 ** 20) + 512;
const mnt = run('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsMiB}m,mode=755`, 'layerfs-bench-mem', scratch]);
if (!mnt.ok) throw new Error(`mounting the scratch tmpfs failed: ${describe(mnt)}`);
const mountpoint = path.join(scratch, 'mnt');
const problems: string[] = [];

function cleanup(): void {
  if (isMounted(mountpoint)) problems.push(...unmountWith(mountpoint, ['node', BIN, 'umount', mountpoint]));
  if (isMounted(scratch)) run('umount', [scratch]);
  fs.rmSync(scratch, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

const samples: Sample[] = [];
let stats = '';
try {
  const layersDir = path.join(scratch, 'layers');
  fs.mkdirSync(layersDir);
  const lowers = writeLayers(ds, layersDir);
  fs.mkdirSync(mountpoint);
  const s = ds.stats.merged;
  stats = `${s.files} files, ${s.dirs} directories, ${s.symlinks} symlinks in ${lowers.length} layers (seed ${args.seed})`;
  log(`image: ${stats}`);
  for (let r = 1; r <= runs; r++) {
    for (const v of variants) {
      const upper = path.join(scratch, `upper-${v}-${r}`);
      const work = path.join(scratch, `work-${v}-${r}`);
      fs.mkdirSync(upper);
      fs.mkdirSync(work);
      const lowerdir = [...lowers].reverse().join(':'); // leftmost is topmost
      dropCaches();
      const env = { ...CMD_ENV, ...VARIANTS[v] };
      const m = run('node', [BIN, 'mount', '-o', `lowerdir=${lowerdir},upperdir=${upper},workdir=${work}`, mountpoint], 60_000, env);
      if (!m.ok) throw new Error(`${v}: mount failed: ${describe(m)}`);
      const { pid, problem } = await findServerPid(mountpoint);
      if (pid === undefined) throw new Error(`${v}: ${problem ?? 'no server pid'}`);
      try {
        for (const step of STEPS) {
          const t = await runTimed(step.cmd(mountpoint), 600_000);
          if (!t.ok || t.timedOut) throw new Error(`${v}: ${step.name} failed: ${t.stderr}`);
          const mem = readMem(pid);
          if (mem === undefined) throw new Error(`${v}: server ${pid} gone after ${step.name}`);
          samples.push({ variant: v, run: r, step: step.name, ms: t.ms, rssKiB: mem.rssKiB, hwmKiB: mem.hwmKiB });
          log(`run ${r} ${v} ${step.name}: ${fmtMs(t.ms)}, RSS ${MB(mem.rssKiB).toFixed(0)} MB, peak ${MB(mem.hwmKiB).toFixed(0)} MB`);
        }
      } finally {
        problems.push(...unmountWith(mountpoint, ['node', BIN, 'umount', mountpoint]));
        if (!waitPidExit(pid, 15_000)) problems.push(`${v}: server ${pid} still running after unmount`);
      }
      fs.rmSync(upper, { recursive: true, force: true });
      fs.rmSync(work, { recursive: true, force: true });
    }
  }
} finally {
  cleanup();
}

const range = (xs: number[]): string => {
  const s = summarize(xs);
  return s === undefined ? '—' : `${s.median.toFixed(0)} (${s.min.toFixed(0)}-${s.max.toFixed(0)})`;
};
const rows = variants.flatMap((v) =>
  STEPS.map((step) => {
    const xs = samples.filter((x) => x.variant === v && x.step === step.name);
    const peak = Math.max(...xs.map((x) => MB(x.hwmKiB)));
    return [v, step.name, range(xs.map((x) => MB(x.rssKiB))), range(xs.map((x) => MB(x.hwmKiB))),
      peak < LIMIT_MB ? 'yes' : '**no**', fmtMs(summarize(xs.map((x) => x.ms))?.median ?? NaN)];
  }),
);
const date = new Date().toISOString().slice(0, 10);
const md = [
  `# Server memory after a walk, ${date}`,
  '',
  `Image: ${stats}, on a private tmpfs. Each run: fresh mount by the CLI (default options, an empty`,
  'upper), caches dropped, then the steps in order; RSS and peak RSS (VmRSS, VmHWM) of the server',
  `process after each step, in MB (10^6 bytes); median (min-max) of ${runs} runs, variants interleaved.`,
  `"under ${LIMIT_MB}": the highest peak of all runs, against issue 4's bound.`,
  '',
  mdTable(['variant', 'after', 'RSS MB', 'peak RSS MB', `under ${LIMIT_MB}`, 'step time'], rows),
  '',
  ...Object.entries(VARIANTS).filter(([v]) => variants.includes(v)).map(([v, e]) => `- ${v}: ${e.NODE_OPTIONS === undefined ? 'the CLI as it is' : `NODE_OPTIONS=${e.NODE_OPTIONS}`}`),
  ...(problems.length > 0 ? ['', 'Problems:', ...problems.map((p) => `- ${p}`)] : []),
  '',
].join('\n');
fs.mkdirSync(args.out, { recursive: true });
const outBase = path.join(args.out, `memory-${date}`);
fs.writeFileSync(`${outBase}.md`, md);
fs.writeFileSync(`${outBase}.json`, `${JSON.stringify({ date, image: stats, runs, samples, problems }, null, 2)}\n`);
console.log(md);
log(`wrote ${outBase}.md and .json`);
process.exit(problems.length > 0 ? 1 : 0);
