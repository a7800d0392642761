/**
 * End-to-end read-only benchmark: layerfs vs kernel overlayfs vs fuse-overlayfs vs a plain
 * directory, on a seeded rootfs-like image of 3 lower layers (whiteouts, opaque dirs,
 * overrides) plus one big file, all on a private tmpfs.
 *
 *   npm run build
 *   node dist/bench/e2e/readonly.js [--files 30000] [--big-mib 1024] [--runs 5]
 *        [--variants plain,kernel,fuse-overlayfs,layerfs] [--out bench/results]
 *
 * Needs root (mount, mknod, trusted.* xattrs, drop_caches). See bench/README.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildDataset, estimateTmpfsBytes, writeLayers, writePlain } from './lib/dataset.js';
import type { Dataset } from './lib/dataset.js';
import { Rng } from './lib/rng.js';
import { fmtMiB, fmtMs, fmtRatio, mdTable, summarize } from './lib/stats.js';
import type { Summary } from './lib/stats.js';
import { describe, dropCaches, isMounted, liveChildren, readMem, run, runTimed, unmountWith } from './lib/sys.js';
import { Variant, VARIANT_NAMES } from './lib/variants.js';
import type { VariantName } from './lib/variants.js';
import { diffContents, diffTrees, listTree } from './lib/verify.js';
import type { TreeDiff } from './lib/verify.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const WORKLOADS = [
  { id: 'find', label: 'find', cmd: (root: string, _big: string) => `find ${root}` },
  { id: 'ls', label: 'ls -lR', cmd: (root: string, _big: string) => `ls -lR ${root}` },
  { id: 'cat', label: 'cat big', cmd: (root: string, big: string) => `cat ${root}/${big}` },
] as const;
type WorkloadId = (typeof WORKLOADS)[number]['id'];
type Phase = 'cold' | 'warm';
type SeriesKey = `${WorkloadId}-${Phase}` | 'mount';
const SERIES: readonly SeriesKey[] = ['find-cold', 'find-warm', 'ls-cold', 'ls-warm', 'cat-cold', 'cat-warm', 'mount'];

interface Options {
  files: number;
  bigMiB: number;
  runs: number;
  variants: VariantName[];
  out: string;
  seed: number;
  timeoutS: number;
  scratchParent: string;
  layerfsBin: string;
  layerfsOpts: string;
}

function usage(): string {
  return `usage: node dist/bench/e2e/readonly.js [options]
  --files N          small files in the image (default 30000)
  --big-mib N        size of the big file in MiB (default 1024)
  --runs N           measured runs per variant and workload (default 5)
  --variants LIST    comma-separated subset of ${VARIANT_NAMES.join(',')} (default: all)
  --out DIR          where readonly-<date>.md/.json go (default bench/results)
  --seed N           RNG seed of the data set (default 1)
  --timeout S        per-command timeout in seconds (default 600)
  --scratch DIR      parent of the private tmpfs mount point (default ${os.tmpdir()})
  --layerfs-bin P    layerfs CLI (default ${path.join(repoRoot, 'bin/layerfs.js')})
  --layerfs-opts S   extra layerfs mount options, e.g. "default_permissions"`;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '30000' },
      'big-mib': { type: 'string', default: '1024' },
      runs: { type: 'string', default: '5' },
      variants: { type: 'string', default: VARIANT_NAMES.join(',') },
      out: { type: 'string', default: 'bench/results' },
      seed: { type: 'string', default: '1' },
      timeout: { type: 'string', default: '600' },
      scratch: { type: 'string', default: os.tmpdir() },
      'layerfs-bin': { type: 'string', default: path.join(repoRoot, 'bin/layerfs.js') },
      'layerfs-opts': { type: 'string', default: '' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage());
    process.exit(0);
  }
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min} (got ${v})`);
    return n;
  };
  const variants = values.variants.split(',').map((s) => s.trim()).filter(Boolean);
  for (const v of variants) {
    if (!(VARIANT_NAMES as readonly string[]).includes(v)) throw new Error(`unknown variant ${v}; known: ${VARIANT_NAMES.join(', ')}`);
  }
  if (variants.length === 0) throw new Error('--variants is empty');
  return {
    files: int('files', values.files, 10),
    bigMiB: int('big-mib', values['big-mib'], 1),
    runs: int('runs', values.runs, 1),
    variants: [...new Set(variants)] as VariantName[],
    out: path.resolve(values.out),
    seed: int('seed', values.seed, 0),
    timeoutS: int('timeout', values.timeout, 1),
    scratchParent: path.resolve(values.scratch),
    layerfsBin: path.resolve(values['layerfs-bin']),
    layerfsOpts: values['layerfs-opts'],
  };
}

// ---------------------------------------------------------------------------------------------
// Cleanup: everything mounted is unmounted in a finally block and on SIGINT/SIGTERM/SIGHUP.

let scratchDir: string | undefined;
let scratchMounted = false;
const activeVariants: Variant[] = [];
let cleanedUp = false;

function cleanup(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const child of liveChildren) child.kill('SIGKILL'); // only our own workload shells
  for (const v of [...activeVariants].reverse()) {
    try {
      for (const p of v.unmount()) console.error(`cleanup: ${v.name}: ${p}`);
    } catch (err) {
      console.error(`cleanup: ${v.name}: ${(err as Error).message}`);
    }
  }
  if (scratchDir) {
    if (scratchMounted || isMounted(scratchDir)) {
      for (const p of unmountWith(scratchDir, ['umount', scratchDir])) console.error(`cleanup: scratch: ${p}`);
    }
    if (!isMounted(scratchDir)) {
      try {
        fs.rmSync(scratchDir, { recursive: true, force: true });
      } catch (err) {
        console.error(`cleanup: could not remove ${scratchDir}: ${(err as Error).message}`);
      }
    }
  }
}

let interrupted = false;
// Last resort (uncaught errors, a closed stdout pipe...): 'exit' listeners may run synchronous code.
process.on('exit', cleanup);
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', () => {
    /* e.g. EPIPE when piped into `head`: keep going so that the finally block unmounts */
  });
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${sig}: unmounting everything and exiting`);
    cleanup();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------

interface Failure {
  run: number;
  variant: VariantName;
  workload: string;
  message: string;
}

interface VerifyResult {
  tree: TreeDiff;
  contentMismatches: string[];
  ok: boolean;
  error?: string;
}

function log(msg: string): void {
  console.log(msg);
}

function localDate(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function envInfo(): Record<string, string> {
  const first = (r: ReturnType<typeof run>): string => (r.stdout || r.stderr).trim().split('\n').filter((l) => !/unknown argument ignored/.test(l))[0] ?? '';
  const gitRev = run('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const gitDirty = run('git', ['-C', repoRoot, 'status', '--porcelain']);
  const foVersion = run('fuse-overlayfs', ['--version']);
  const foText = `${foVersion.stdout}\n${foVersion.stderr}`;
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.arch();
  return {
    host: os.hostname(),
    kernel: os.release(),
    cpu: `${cpu} (${os.cpus().length} CPUs)`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    'fuse-overlayfs': /fuse-overlayfs:?\s*version\s*(\S+)/i.exec(foText)?.[1] ?? 'n/a',
    fusermount3: first(run('fusermount3', ['--version'])).replace(/^.*version:?\s*/i, '') || 'n/a',
    layerfs: gitRev.ok ? `${gitRev.stdout.trim()}${gitDirty.stdout.trim() ? ' (dirty tree)' : ''}` : 'unknown',
  };
}

/** Files whose bytes are compared in every variant: visible overrides plus a random sample. */
function contentSample(ds: Dataset): string[] {
  const rng = new Rng(ds.seed ^ 0x5eed);
  const files = [...ds.merged.entries()].filter(([, m]) => m.entry.kind === 'file' && !(m.entry.kind === 'file' && m.entry.big)).map(([p]) => p);
  const sample = new Set(ds.overridden.slice(0, 300));
  for (let i = 0; i < 200 && files.length > 0; i++) sample.add(rng.pick(files));
  return [...sample];
}

async function main(): Promise<number> {
  const opts = parseOptions();
  if (process.getuid?.() !== 0) {
    console.error('readonly benchmark: must run as root (mount, mknod, trusted.* xattrs, drop_caches)');
    return 2;
  }
  const started = new Date();
  const env = envInfo();
  log(`layerfs read-only benchmark: files=${opts.files} big=${opts.bigMiB} MiB runs=${opts.runs} variants=${opts.variants.join(',')} seed=${opts.seed}`);

  // 1. Data set (model first, then a tmpfs big enough for layers + plain copy).
  let t = Date.now();
  const ds = buildDataset({ files: opts.files, bigBytes: opts.bigMiB * 1024 * 1024, seed: opts.seed });
  const tmpfsMiB = Math.ceil(estimateTmpfsBytes(ds) / 2 ** 20) + opts.bigMiB * 2;
  scratchDir = fs.mkdtempSync(path.join(opts.scratchParent, 'layerfs-bench-'));
  const mnt = run('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsMiB}m,mode=755`, 'layerfs-bench', scratchDir]);
  if (!mnt.ok) throw new Error(`mounting the scratch tmpfs failed: ${describe(mnt)}`);
  scratchMounted = true;
  log(`scratch tmpfs ${scratchDir} (size ${tmpfsMiB} MiB); model built in ${Date.now() - t} ms`);

  t = Date.now();
  const layersDir = path.join(scratchDir, 'layers');
  fs.mkdirSync(layersDir);
  const layerRoots = writeLayers(ds, layersDir);
  const plainDir = path.join(scratchDir, 'plain');
  writePlain(ds, layerRoots, plainDir);
  const mountBase = path.join(scratchDir, 'mnt');
  fs.mkdirSync(mountBase);
  const st = ds.stats;
  log(
    `data written in ${((Date.now() - t) / 1000).toFixed(1)} s: ` +
      st.layers.map((l) => `${l.name}: ${l.files} files, ${l.dirs} dirs, ${l.whiteouts} whiteouts, ${l.opaqueDirs} opaque`).join('; '),
  );
  log(
    `merged view: ${st.merged.files} files, ${st.merged.dirs} dirs, ${st.merged.symlinks} symlinks, ` +
      `${(st.merged.bytes / 2 ** 20).toFixed(0)} MiB, max depth ${st.merged.maxDepth}, max fanout ${st.merged.maxFanout}`,
  );

  // 2. Variants: availability, a test mount, and a correctness check against the plain copy.
  const ctx = { layerRoots, plainDir, mountBase, layerfsBin: opts.layerfsBin, layerfsOpts: opts.layerfsOpts };
  const expectedTree = listTree(plainDir);
  const modelCount = ds.merged.size - 1;
  if (expectedTree.length !== modelCount) throw new Error(`plain copy has ${expectedTree.length} entries, model ${modelCount}`);
  const sample = contentSample(ds);
  const skipped: Record<string, string> = {};
  const verification: Record<string, VerifyResult> = {};
  const variants: Variant[] = [];
  for (const name of opts.variants) {
    const v = new Variant(name, ctx);
    const why = v.unavailableReason();
    if (why) {
      skipped[name] = why;
      log(`SKIP ${name}: ${why}${name === 'layerfs' ? ' (run the benchmark again once the layerfs CLI works)' : ''}`);
      continue;
    }
    activeVariants.push(v);
    try {
      v.mount();
      const pidProblem = await v.locateServer();
      if (pidProblem) log(`  WARNING ${name}: ${pidProblem}`);
    } catch (err) {
      skipped[name] = (err as Error).message;
      log(`SKIP ${name}: ${(err as Error).message}`);
      for (const p of v.unmount()) log(`  ${name}: ${p}`);
      continue;
    }
    try {
      const tree = diffTrees(expectedTree, listTree(v.root));
      const contentMismatches = diffContents(plainDir, v.root, sample, ds.bigPath);
      verification[name] = { tree, contentMismatches, ok: tree.same && contentMismatches.length === 0 };
    } catch (err) {
      verification[name] = { tree: diffTrees(expectedTree, []), contentMismatches: [], ok: false, error: (err as Error).message };
    }
    const problems = v.unmount();
    for (const p of problems) log(`  ${name}: ${p}`);
    const vr = verification[name] as VerifyResult;
    if (vr.ok) log(`verified ${name}: ${vr.tree.actual} entries and ${sample.length + 1} files match the plain copy`);
    else {
      log(`WARNING ${name}: merged view differs from the plain copy${vr.error ? ` (${vr.error})` : ''}`);
      log(`  entries expected ${vr.tree.expected}, got ${vr.tree.actual}`);
      for (const m of vr.tree.missing) log(`  missing: ${m}`);
      for (const m of vr.tree.extra) log(`  extra:   ${m}`);
      for (const m of vr.contentMismatches.slice(0, 5)) log(`  content differs: ${m}`);
      if (vr.error && name === 'layerfs') {
        skipped[name] = `verification failed: ${vr.error}`;
        continue;
      }
    }
    variants.push(v);
  }
  if (variants.length === 0) throw new Error('no variant could run');

  // 3. Measurements. Each run: for each workload, each variant in a per-run rotated order:
  //    (re)mount, drop caches, time cold, time warm, read the server's peak RSS, unmount.
  const samples = new Map<VariantName, Map<SeriesKey, number[]>>();
  const hwm = new Map<VariantName, Map<WorkloadId, number[]>>();
  for (const v of variants) {
    samples.set(v.name, new Map(SERIES.map((k) => [k, [] as number[]])));
    hwm.set(v.name, new Map(WORKLOADS.map((w) => [w.id, [] as number[]])));
  }
  const failures: Failure[] = [];
  const disabled = new Set<VariantName>();
  const pidWarned = new Set<VariantName>();
  const dropError = dropCaches();
  if (dropError) log(`WARNING: cannot drop caches (${dropError}); "cold" runs only remount`);
  const timeoutMs = opts.timeoutS * 1000;
  const push = (v: VariantName, k: SeriesKey, ms: number): void => {
    samples.get(v)?.get(k)?.push(ms);
  };
  const fail = (run: number, v: Variant, workload: string, message: string): void => {
    failures.push({ run, variant: v.name, workload, message });
    log(`  FAILED ${v.name} ${workload}: ${message}`);
    if (failures.filter((f) => f.variant === v.name).length >= 2 && !disabled.has(v.name)) {
      disabled.add(v.name);
      log(`  ${v.name} disabled for the remaining runs after repeated failures`);
    }
  };

  for (let r = 0; r < opts.runs; r++) {
    const order = variants.map((_, i) => variants[(i + r) % variants.length] as Variant);
    log(`run ${r + 1}/${opts.runs}: order ${order.map((v) => v.name).join(', ')}`);
    for (const w of WORKLOADS) {
      for (const v of order) {
        if (disabled.has(v.name)) continue;
        try {
          if (v.mounted) for (const p of v.unmount()) log(`  ${v.name}: ${p}`);
          if (v.needsMount) push(v.name, 'mount', v.mount());
          const pidProblem = await v.locateServer();
          if (pidProblem && !pidWarned.has(v.name)) {
            pidWarned.add(v.name);
            log(`  WARNING ${v.name}: ${pidProblem}; peak RSS not measured`);
          }
          if (!dropError) dropCaches();
          const cmd = w.cmd(v.root, ds.bigPath);
          const cold = await runTimed(cmd, timeoutMs);
          const warm = cold.ok ? await runTimed(cmd, timeoutMs) : undefined;
          const mem = v.pid !== undefined ? readMem(v.pid) : undefined;
          if (mem) hwm.get(v.name)?.get(w.id)?.push(mem.hwmKiB);
          if (cold.ok) push(v.name, `${w.id}-cold`, cold.ms);
          if (warm?.ok) push(v.name, `${w.id}-warm`, warm.ms);
          const bad = !cold.ok ? cold : warm && !warm.ok ? warm : undefined;
          if (bad) {
            const how = bad.timedOut ? `timed out after ${opts.timeoutS} s` : `exit ${String(bad.status ?? bad.signal)}`;
            fail(r + 1, v, w.label, `${how}: ${bad.stderr.split('\n')[0] ?? ''}`);
          }
          log(
            `  ${w.label.padEnd(7)} ${v.name.padEnd(14)} cold ${fmtMs(cold.ms).padStart(8)}  warm ${warm ? fmtMs(warm.ms).padStart(8) : '       —'}` +
              (mem ? `  server peak RSS ${fmtMiB(mem.hwmKiB)}` : v.fuse ? '  (server pid not found)' : ''),
          );
        } catch (err) {
          fail(r + 1, v, w.label, (err as Error).message);
        } finally {
          for (const p of v.unmount()) log(`  ${v.name}: ${p}`);
        }
        if (interrupted) return 130;
      }
    }
  }

  // 4. Report.
  const finished = new Date();
  const present = variants.map((v) => v.name);
  const summary = new Map<VariantName, Map<SeriesKey, Summary | undefined>>();
  for (const v of present) summary.set(v, new Map(SERIES.map((k) => [k, summarize(samples.get(v)?.get(k) ?? [])])));
  const med = (v: VariantName, k: SeriesKey): number | undefined => summary.get(v)?.get(k)?.median;
  const ratio = (v: VariantName, ref: VariantName, k: SeriesKey): number | undefined => {
    const a = med(v, k);
    const b = med(ref, k);
    return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
  };
  const rowLabel = (k: SeriesKey): string => {
    if (k === 'mount') return 'mount';
    const [wid, phase] = k.split('-') as [WorkloadId, Phase];
    return `${WORKLOADS.find((w) => w.id === wid)?.label ?? wid} (${phase})`;
  };
  const measured = SERIES.filter((k) => present.some((v) => (samples.get(v)?.get(k)?.length ?? 0) > 0));

  const timeRows = measured.map((k) => [
    rowLabel(k),
    ...present.map((v) => {
      const s = summary.get(v)?.get(k);
      return s ? `${fmtMs(s.median)} (${fmtMs(s.min)}–${fmtMs(s.max)})` : '—';
    }),
  ]);
  // Ratio columns: every variant vs kernel, then the others vs fuse-overlayfs (no inverse pairs;
  // plain only against the first reference present).
  const refs = (['kernel', 'fuse-overlayfs'] as const).filter((x) => present.includes(x));
  const ratioCols: Array<{ v: VariantName; ref: VariantName }> = [];
  refs.forEach((ref, ri) => {
    for (const v of present) {
      if (v === ref || refs.slice(0, ri).includes(v as (typeof refs)[number])) continue;
      if (v === 'plain' && ri > 0) continue;
      ratioCols.push({ v, ref });
    }
  });
  const ratioRows = measured
    .filter((k) => k !== 'mount' || ratioCols.some((c) => c.v !== 'plain'))
    .map((k) => [rowLabel(k), ...ratioCols.map((c) => fmtRatio(ratio(c.v, c.ref, k)))]);
  const fuseVariants = present.filter((v) => v === 'fuse-overlayfs' || v === 'layerfs');
  const rssRows = fuseVariants.map((v) => [
    v,
    ...WORKLOADS.map((w) => {
      const s = summarize(hwm.get(v)?.get(w.id) ?? []);
      return s ? `${fmtMiB(s.max)} (median ${fmtMiB(s.median)})` : 'n/a';
    }),
  ]);
  const bigMiBs = (v: VariantName, k: SeriesKey): string => {
    const m = med(v, k);
    return m ? `${((opts.bigMiB * 1000) / m).toFixed(0)} MiB/s` : '—';
  };

  const md: string[] = [];
  md.push(`# Read-only benchmark (${localDate(started)})`, '');
  md.push(
    `Command: \`node dist/bench/e2e/readonly.js --files ${opts.files} --big-mib ${opts.bigMiB} --runs ${opts.runs} --variants ${opts.variants.join(',')}${opts.seed !== 1 ? ` --seed ${opts.seed}` : ''}\``,
    '',
  );
  md.push(Object.entries(env).map(([k, v]) => `- ${k}: ${v}`).join('\n'), '');
  md.push(
    `Data set (seed ${opts.seed}) on a private tmpfs: ${st.layers.map((l) => `${l.name} ${l.files} files/${l.dirs} dirs/${l.whiteouts} whiteouts${l.opaqueDirs ? `/${l.opaqueDirs} opaque` : ''}`).join('; ')}; ` +
      `${st.overrides} overrides, ${st.fileWhiteouts} file whiteouts, ${st.dirWhiteouts.length} dir whiteouts. ` +
      `Merged view: ${st.merged.files} files, ${st.merged.dirs} dirs, ${st.merged.symlinks} symlinks, ${(st.merged.bytes / 2 ** 20).toFixed(0)} MiB ` +
      `(max depth ${st.merged.maxDepth}, max fanout ${st.merged.maxFanout}), plus a ${opts.bigMiB} MiB file in the bottom layer.`,
    '',
  );
  md.push(
    'Each run takes every workload in turn and, for each, every variant in an order rotated per run. ' +
      'Cold = fresh mount + `sync; echo 3 > /proc/sys/vm/drop_caches`, then the command; warm = the same command again right after. ' +
      'Times are wall clock of `sh -c "CMD > /dev/null"`. Cells: median (min–max) over the runs.' +
      (dropError ? ` **Caches could not be dropped (${dropError}).**` : ''),
    '',
  );
  md.push('## Times', '', mdTable(['workload', ...present], timeRows), '');
  if (ratioCols.length > 0) {
    md.push('## Ratios of medians (lower is faster)', '', mdTable(['workload', ...ratioCols.map((c) => `${c.v} / ${c.ref}`)], ratioRows), '');
  }
  md.push(
    '## cat big throughput (median)',
    '',
    mdTable(['', ...present], [
      ['cold', ...present.map((v) => bigMiBs(v, 'cat-cold'))],
      ['warm', ...present.map((v) => bigMiBs(v, 'cat-warm'))],
    ]),
    '',
  );
  if (rssRows.length > 0) {
    md.push(
      '## FUSE server peak RSS (VmHWM after cold + warm on a fresh mount; max over runs)',
      '',
      mdTable(['variant', ...WORKLOADS.map((w) => w.label)], rssRows),
      '',
    );
  }
  const notes: string[] = [];
  for (const [v, why] of Object.entries(skipped)) notes.push(`- ${v} skipped: ${why}`);
  for (const [v, vr] of Object.entries(verification)) {
    if (!vr.ok) notes.push(`- ${v}: merged view differs from the plain copy (${vr.tree.missing.length + vr.tree.extra.length}+ entries, ${vr.contentMismatches.length} files)`);
  }
  for (const f of failures) notes.push(`- run ${f.run} ${f.variant} ${f.workload}: ${f.message}`);
  notes.push(
    '- plain and kernel read from tmpfs, whose pages and dentries are the storage itself, so drop_caches barely affects them; ' +
      'for them cold vs warm mostly measures overlayfs dentry/inode setup after the remount.',
  );
  md.push('## Notes', '', ...notes, '');
  const mdText = md.join('\n');

  console.log(`\n${mdText}`);
  fs.mkdirSync(opts.out, { recursive: true });
  let base = path.join(opts.out, `readonly-${localDate(started)}`);
  for (let i = 2; fs.existsSync(`${base}.md`) || fs.existsSync(`${base}.json`); i++) base = path.join(opts.out, `readonly-${localDate(started)}-${i}`);
  fs.writeFileSync(`${base}.md`, mdText);
  const obj = (m: Map<string, unknown>): Record<string, unknown> => Object.fromEntries(m);
  fs.writeFileSync(
    `${base}.json`,
    JSON.stringify(
      {
        benchmark: 'readonly',
        started: started.toISOString(),
        finished: finished.toISOString(),
        options: { ...opts, out: path.relative(process.cwd(), opts.out) || '.' },
        env,
        dataset: st,
        dropCaches: dropError ? `failed: ${dropError}` : 'ok',
        skipped,
        verification,
        failures,
        samplesMs: Object.fromEntries(present.map((v) => [v, obj(samples.get(v) as Map<string, unknown>)])),
        summaryMs: Object.fromEntries(present.map((v) => [v, obj(summary.get(v) as Map<string, unknown>)])),
        ratios: Object.fromEntries(
          ratioCols.map((c) => [`${c.v}/${c.ref}`, Object.fromEntries(measured.map((k) => [k, ratio(c.v, c.ref, k) ?? null]))]),
        ),
        serverPeakRssKiB: Object.fromEntries(fuseVariants.map((v) => [v, obj(hwm.get(v) as Map<string, unknown>)])),
      },
      null,
      2,
    ) + '\n',
  );
  const shown = path.relative(process.cwd(), base);
  log(`\nwrote ${shown.startsWith('..') ? base : shown}.md and .json`);
  return failures.length > 0 ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`readonly benchmark failed: ${(err as Error).stack ?? String(err)}`);
  code = 1;
} finally {
  cleanup();
}
process.exit(code);
