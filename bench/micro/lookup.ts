// The lookup hot path alone, without FUSE: how fast the Resolver answers, through 1 to 64 lower
// branches. `npm run bench:micro` (no root needed; branches go in a fresh temp dir).
//
// The image: D directories of F files each, every directory present in every branch (so every
// directory is merged across all of them, the worst case for a lookup), each file in one branch
// chosen at random (1 byte each), and as many names that exist nowhere. Measured, per branch count:
//   cold miss   a fresh Resolver: nothing known, branch directories read on first use
//   warm miss   resolutions forgotten (invalidateTree of the root), branch indexes kept
//               (both also without the merged lower index: every branch probed, lowerIndex: false)
//   hit         every path already resolved (the resolution cache)
//   negative    names that exist nowhere, already resolved
//   invalidate  invalidate(p) of one path; invalidateTree of one directory
//   memory      heap per cached resolution (with --expose-gc)
// Each figure is the median of --rounds rounds, the branch counts interleaved round by round.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { BranchSet } from '../../src/branch.js';
import { ROOT, vpath, type RealPath, type VPath } from '../../src/path.js';
import { Resolver } from '../../src/resolve.js';
import { Rng } from '../e2e/lib/rng.js';
import { mdTable, summarize, writeReport } from '../e2e/lib/stats.js';

interface Options {
  branches: number[];
  dirs: number;
  files: number;
  rounds: number;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { branches: [1, 4, 16, 64], dirs: 100, files: 100, rounds: 5, out: 'bench/results' };
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--branches') o.branches = v.split(',').map(Number);
    else if (k === '--dirs') o.dirs = Number(v);
    else if (k === '--files') o.files = Number(v);
    else if (k === '--rounds') o.rounds = Number(v);
    else if (k === '--out') o.out = v;
    else throw new Error(`unknown option ${k}`);
    i++;
  }
  return o;
}

interface Image {
  roots: RealPath[];
  present: VPath[];
  absent: VPath[];
  dirs: VPath[];
}

function buildImage(base: string, nBranches: number, o: Options): Image {
  const rng = new Rng(nBranches * 7919 + 1);
  const roots = Array.from({ length: nBranches }, (_, i) => path.join(base, `b${nBranches}-${i}`) as RealPath);
  const present: VPath[] = [];
  const absent: VPath[] = [];
  const dirs: VPath[] = [];
  for (const r of roots) fs.mkdirSync(r);
  for (let d = 0; d < o.dirs; d++) {
    const dir = `/dir${d}`;
    dirs.push(vpath(dir));
    for (const r of roots) fs.mkdirSync(path.join(r, dir));
    for (let f = 0; f < o.files; f++) {
      const b = roots[Math.floor(rng.float() * nBranches)] as string;
      // One byte: an empty regular file would also be checked for an xattr whiteout on lookup.
      fs.writeFileSync(path.join(b, dir, `file${f}`), 'x');
      present.push(vpath(`${dir}/file${f}`));
      absent.push(vpath(`${dir}/none${f}`));
    }
  }
  return { roots, present, absent, dirs };
}

/** ns per lookup of every path, awaited one after another (as a FUSE handler would). */
async function perLookup(r: Resolver, paths: readonly VPath[]): Promise<number> {
  const t0 = performance.now();
  for (const p of paths) await r.resolve(p);
  return ((performance.now() - t0) * 1e6) / paths.length;
}

const gc: (() => void) | undefined = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as (() => void) | undefined;
})();

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

interface Sample {
  coldMissNs: number;
  warmMissNs: number;
  /** The same two without the merged lower index (every branch probed). */
  coldMissEachNs: number;
  warmMissEachNs: number;
  hitNs: number;
  negativeNs: number;
  invalidateNs: number;
  invalidateTreeUs: number;
  bytesPerEntry: number;
}

async function misses(branches: BranchSet, img: Image, lowerIndex: boolean): Promise<{ cold: number; warm: number }> {
  const r = new Resolver(branches, { maxEntries: 200_000, maxDirs: 20_000, lowerIndex });
  const cold = await perLookup(r, img.present);
  r.invalidateTree(ROOT);
  return { cold, warm: await perLookup(r, img.present) };
}

async function measure(img: Image): Promise<Sample> {
  const branches = new BranchSet(img.roots, undefined);
  const each = await misses(branches, img, false);
  const h0 = heapUsed();
  const r = new Resolver(branches);
  const coldMissNs = await perLookup(r, img.present);
  await perLookup(r, img.absent);
  const bytesPerEntry = (heapUsed() - h0) / (img.present.length + img.absent.length + img.dirs.length);
  const hitNs = Math.min(await perLookup(r, img.present), await perLookup(r, img.present));
  const negativeNs = Math.min(await perLookup(r, img.absent), await perLookup(r, img.absent));
  r.invalidateTree(ROOT);
  const warmMissNs = await perLookup(r, img.present);
  await perLookup(r, img.absent);
  // invalidate(p) of single entries: each then costs a re-resolve, measured apart.
  const some = img.present.slice(0, 10_000);
  let t0 = performance.now();
  for (const p of some) r.invalidate(p);
  const invalidateNs = ((performance.now() - t0) * 1e6) / some.length;
  await perLookup(r, some);
  // invalidateTree of one directory walks the whole cache (every key is compared).
  t0 = performance.now();
  const dirsTried = img.dirs.slice(0, 20);
  for (const d of dirsTried) r.invalidateTree(d);
  const invalidateTreeUs = ((performance.now() - t0) * 1e3) / dirsTried.length;
  return {
    coldMissNs, warmMissNs, coldMissEachNs: each.cold, warmMissEachNs: each.warm, hitNs, negativeNs, invalidateNs,
    invalidateTreeUs, bytesPerEntry,
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-micro-'));
  try {
    const images = new Map(o.branches.map((n) => [n, buildImage(base, n, o)] as const));
    const samples = new Map<number, Sample[]>(o.branches.map((n) => [n, []]));
    for (let round = 0; round < o.rounds; round++) {
      for (const n of o.branches) samples.get(n)?.push(await measure(images.get(n) as Image));
    }
    const med = (n: number, k: keyof Sample): number => summarize((samples.get(n) ?? []).map((s) => s[k]))?.median ?? NaN;
    const rate = (ns: number): string => `${(1e9 / ns / 1e6).toFixed(2)} M/s (${ns.toFixed(0)} ns)`;
    const rows = o.branches.map((n) => [
      String(n), rate(med(n, 'hitNs')), rate(med(n, 'negativeNs')), `${(med(n, 'warmMissNs') / 1000).toFixed(2)} µs`,
      `${(med(n, 'warmMissEachNs') / 1000).toFixed(2)} µs`, `${(med(n, 'coldMissNs') / 1000).toFixed(2)} µs`,
      `${(med(n, 'coldMissEachNs') / 1000).toFixed(2)} µs`, `${med(n, 'invalidateNs').toFixed(0)} ns`,
      `${med(n, 'invalidateTreeUs').toFixed(0)} µs`, `${med(n, 'bytesPerEntry').toFixed(0)} B`,
    ]);
    const paths = o.dirs * o.files;
    const table = mdTable(
      ['lower branches', 'hit', 'negative hit', 'warm miss', 'warm miss, no index', 'cold miss', 'cold miss, no index', 'invalidate(p)', 'invalidateTree(dir)', 'heap per entry'],
      rows,
    );
    const flat = med(o.branches[o.branches.length - 1] as number, 'hitNs') / med(o.branches[0] as number, 'hitNs');
    const date = new Date().toISOString().slice(0, 10);
    const md = [
      `# Lookup hot path, ${date}`,
      '',
      `\`npm run bench:micro\` on ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}, branches in ${os.tmpdir()}.`,
      `${o.dirs} directories merged across every branch, ${paths} files (each in one random branch), ${paths} absent names;`,
      `medians of ${o.rounds} rounds, branch counts interleaved. A miss includes the lstat of the serving entry.`,
      '',
      table,
      '',
      `Warm hit with ${o.branches[o.branches.length - 1]} branches vs ${o.branches[0]}: ${flat.toFixed(2)}×.`,
      '',
    ].join('\n');
    writeReport(o.out, `micro-${date}`, md, { options: o, samples: Object.fromEntries(samples) });
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:micro: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
