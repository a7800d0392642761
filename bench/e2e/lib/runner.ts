/**
 * The end-to-end benchmark engine behind `bench/e2e/full.ts` (every workload of issue 4) and
 * `bench/e2e/readonly.ts` (its read-only subset with the earlier defaults).
 *
 * One run = every selected workload, each on every selected variant in an order rotated per
 * run; every (workload, variant) step gets a fresh mount (and, for writes, a fresh upper),
 * dropped caches, the timed command (cold), and for read workloads the same command again
 * (warm). Before any timing every variant's merged view, and the result of every writable
 * workload, is compared with the plain directory's. See bench/README.md.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  BIG_PATH,
  RM_PATH,
  WIDE_PATH,
  buildDataset,
  estimateTmpfsBytes,
  pickAppendTargets,
  smallFilePaths,
  writeLayers,
  writePlain,
  writeUnionfsLayers,
} from './dataset.js';
import type { Dataset, MergedEntry } from './dataset.js';
import { FuseTrace, totalOf, type TraceResult } from './fusetrace.js';
import { Rng } from './rng.js';
import { writeLayerStacks } from './stacks.js';
import type { Stacks } from './stacks.js';
import { fmtCount, fmtMiB, fmtMs, fmtRatio, mdTable, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { ratioChart } from './svg.js';
import { writeSourceTarball } from './tarball.js';
import type { TarballStats } from './tarball.js';
import {
  describe,
  dropCaches,
  ensureDebianTools,
  holdCpuLatency,
  isMounted,
  killWorkload,
  liveChildren,
  readCpuLatency,
  readCpuMs,
  readMem,
  run,
  runTimed,
  unmountWith,
  which,
} from './sys.js';
import type { TimedResult } from './sys.js';
import { VARIANT_NAMES, VARIANT_TOOLS, Variant, parseVariant } from './variants.js';
import type { MountSpec } from './variants.js';
import { diffContents, diffTrees, listTree, snapshotPaths } from './verify.js';
import type { TreeDiff } from './verify.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

// ---------------------------------------------------------------------------------------------
// Workloads

export const WORKLOAD_GROUPS = ['find', 'du', 'ls-R', 'read-small', 'read-big', 'ls-wide', 'create', 'append', 'rm', 'untar', 'lookup'] as const;
export type WorkloadGroup = (typeof WORKLOAD_GROUPS)[number];
const WRITE_GROUPS: readonly WorkloadGroup[] = ['create', 'append', 'rm', 'untar'];
type Phase = 'cold' | 'warm' | 'run';

interface Workload {
  /** Series id: the group, or `lookup-<L>`. */
  id: string;
  group: WorkloadGroup;
  label: string;
  write: boolean;
  /** Layer count of a lookup stack, or undefined for the main image. */
  stack?: number;
  cmd: (root: string) => string;
  /** Asks xattrs of every file (ls -l): unionfs-fuse answers none, so no layerfs/unionfs-fuse ratio. */
  xattrs: boolean;
  /** (size at the preset's defaults) / (size of this run): scales this run's times to an estimate. */
  scale: number;
  /** Writable workloads: paths whose state afterwards must match the plain directory's. */
  check?: { paths: string[]; hash: boolean };
}

const phasesOf = (w: Workload): Phase[] => (w.write ? ['run'] : ['cold', 'warm']);
const seriesKey = (w: Workload, p: Phase): string => `${w.id}:${p}`;
const seriesLabel = (w: Workload, p: Phase): string => (p === 'run' ? w.label : `${w.label} (${p})`);

// ---------------------------------------------------------------------------------------------
// Options

export interface Preset {
  /** Report file prefix and name in messages. */
  name: string;
  /** Script path shown in usage and reports. */
  script: string;
  /** Defaults (as on the command line) that differ from the full benchmark's. */
  defaults?: Partial<Record<string, string>>;
}

interface Options {
  files: number;
  bigMiB: number;
  runs: number;
  /** Variant ids (variants.ts parseVariant). */
  variants: string[];
  workloads: WorkloadGroup[];
  layers: number[];
  wide: number;
  rmFiles: number;
  create: number;
  append: number;
  tarMiB: number;
  lookupPaths: number;
  out: string;
  seed: number;
  timeoutS: number;
  scratchParent: string;
  layerfsBin: string;
  layerfsOpts: string;
  install: boolean;
  /** --pin: the one CPU every process of the run is kept on (undefined: no pinning). */
  pin: number | undefined;
  /** --cpu-latency: the CPU wake-up latency limit held for the whole run, in µs (undefined: none). */
  cpuLatency: number | undefined;
  /** --tag: added to the report's name (full-DATE-TAG.md), '' for none. */
  tag: string;
  /** --requests: count the FUSE requests of every workload in the first run (fusetrace.ts). */
  requests: boolean;
}

const FULL_DEFAULTS: Record<string, string> = {
  files: '50000',
  'big-mib': '1024',
  runs: '3',
  variants: VARIANT_NAMES.join(','),
  workloads: WORKLOAD_GROUPS.join(','),
  layers: '1,4,16,64',
  // "auto": proportional to --files (12000, 10000, 5000, 2000, 50 and 5000 at 50000 files).
  wide: 'auto',
  'rm-files': 'auto',
  create: 'auto',
  append: 'auto',
  'tar-mib': 'auto',
  'lookup-paths': 'auto',
  out: 'bench/results',
  seed: '1',
  timeout: '600',
};
const AUTO_FRACTION: Record<string, number> = {
  wide: 0.24,
  'rm-files': 0.2,
  create: 0.1,
  append: 0.04,
  'tar-mib': 50 / 50000,
  'lookup-paths': 0.1,
};

function usage(preset: Preset, d: Record<string, string>): string {
  const auto = (k: string, how: string): string => (d[k] === 'auto' ? `auto: ${how}` : (d[k] as string));
  return `usage: node ${preset.script} [options]          (as root)
  --files N          small files in the image, all layers (default ${d.files})
  --big-mib N        size of the big lower file in MiB (default ${d['big-mib']})
  --runs N           measured runs (default ${d.runs})
  --variants LIST    subset of ${VARIANT_NAMES.join(',')} (default ${d.variants});
                     KIND@OPT[+OPT...] adds a layerfs variant with mount options of its own,
                     e.g. layerfs@spin_us=0, measured interleaved with the rest
  --workloads LIST   subset of ${WORKLOAD_GROUPS.join(',')}
                     (default ${d.workloads})
  --layers LIST      layer counts of the lookup workload (default ${d.layers})
  --wide N           entries of the merged directory listed by ls-wide (default ${auto('wide', 'files*0.24')})
  --rm-files N       files of the lower tree removed by rm (default ${auto('rm-files', 'files*0.2')})
  --create N         files created by create (default ${auto('create', 'files*0.1')})
  --append N         lower files appended to by append (default ${auto('append', 'files*0.04')})
  --tar-mib N        content size of the untar tarball (default ${auto('tar-mib', '50 per 50000 files')})
  --lookup-paths N   paths stat'ed by lookup (default ${auto('lookup-paths', 'files*0.1')})
  --out DIR          where ${preset.name}-<date>.md/.json/.svg go (default ${d.out})
  --tag NAME         name them ${preset.name}-<date>-NAME.* instead (letters, digits, . _ -), so that
                     a report kept in bench/results needs no renaming (its chart link follows)
  --seed N           RNG seed of the data (default ${d.seed})
  --timeout S        per-command timeout in seconds (default ${d.timeout})
  --scratch DIR      parent of the private tmpfs mount point (default ${os.tmpdir()})
  --layerfs-bin P    layerfs CLI (default ${path.join(repoRoot, 'bin/layerfs.js')})
  --layerfs-opts S   extra layerfs mount options, e.g. "default_permissions"
  --pin CPU          run everything (servers, daemon, workloads, this script) on that one CPU:
                     no wake-up crosses CPUs, so times count the work done, not where the
                     scheduler put client and server (bench/README.md: "Pinned runs")
  --cpu-latency US   hold a CPU latency request of US microseconds for the whole run
                     (/dev/cpu_dma_latency, as tuned's latency-performance profile does): idle
                     CPUs then wake within US (0: they poll instead of halting), for every
                     variant alike (bench/README.md: "A host tuned for latency")
  --requests         count each FUSE variant's requests in the first run, by opcode, with the
                     time the kernel waited for their answers (its fuse tracepoints, Linux 6.13+)
  --no-install       do not apt-get install missing fuse-overlayfs / unionfs-fuse`;
}

function parseOptions(argv: string[], preset: Preset): Options | undefined {
  const d: Record<string, string> = { ...FULL_DEFAULTS };
  for (const [k, v] of Object.entries(preset.defaults ?? {})) if (v !== undefined) d[k] = v;
  const str = (k: string): { type: 'string'; default: string } => ({ type: 'string', default: d[k] as string });
  const { values } = parseArgs({
    args: argv,
    options: {
      files: str('files'),
      'big-mib': str('big-mib'),
      runs: str('runs'),
      variants: str('variants'),
      workloads: str('workloads'),
      layers: str('layers'),
      wide: str('wide'),
      'rm-files': str('rm-files'),
      create: str('create'),
      append: str('append'),
      'tar-mib': str('tar-mib'),
      'lookup-paths': str('lookup-paths'),
      out: str('out'),
      seed: str('seed'),
      timeout: str('timeout'),
      scratch: { type: 'string', default: os.tmpdir() },
      'layerfs-bin': { type: 'string', default: path.join(repoRoot, 'bin/layerfs.js') },
      'layerfs-opts': { type: 'string', default: '' },
      'no-install': { type: 'boolean', default: false },
      pin: { type: 'string' },
      'cpu-latency': { type: 'string' },
      tag: { type: 'string', default: '' },
      requests: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage(preset, d));
    return undefined;
  }
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min} (got ${v})`);
    return n;
  };
  const files = int('files', values.files, 10);
  const sized = (name: keyof typeof AUTO_FRACTION, v: string, min: number): number =>
    v === 'auto' ? Math.max(min, Math.round(files * (AUTO_FRACTION[name] as number))) : int(name, v, min);
  const list = <T extends string>(name: string, v: string, known: readonly T[]): T[] => {
    const items = [...new Set(v.split(',').map((s) => s.trim()).filter(Boolean))];
    for (const x of items) if (!(known as readonly string[]).includes(x)) throw new Error(`unknown ${name} ${x}; known: ${known.join(', ')}`);
    if (items.length === 0) throw new Error(`--${name} is empty`);
    // Canonical order, whatever the order on the command line: tables and charts stay comparable.
    return (items as T[]).sort((a, b) => known.indexOf(a) - known.indexOf(b));
  };
  // Known variants in their canonical order, each followed by its option variants as given.
  const variantList = (v: string): string[] => {
    const items = [...new Set(v.split(',').map((x) => x.trim()).filter(Boolean))];
    if (items.length === 0) throw new Error('--variants is empty');
    const specs = items.map((x) => parseVariant(x));
    const rank = (k: string): number => (VARIANT_NAMES as readonly string[]).indexOf(k);
    return specs
      .map((x, i) => ({ x, i }))
      .sort((a, b) => rank(a.x.kind) - rank(b.x.kind) || Math.sign(a.x.options.length) - Math.sign(b.x.options.length) || a.i - b.i)
      .map(({ x }) => x.id);
  };
  const layers = [...new Set(values.layers.split(',').map((s) => int('layers', s.trim(), 1)))].sort((a, b) => a - b);
  if (layers.some((l) => l > 99)) throw new Error('--layers: at most 99 layers');
  return {
    files,
    bigMiB: int('big-mib', values['big-mib'], 1),
    runs: int('runs', values.runs, 1),
    variants: variantList(values.variants),
    workloads: list('workloads', values.workloads, WORKLOAD_GROUPS),
    layers,
    wide: sized('wide', values.wide, 0),
    rmFiles: sized('rm-files', values['rm-files'], 0),
    create: sized('create', values.create, 1),
    append: sized('append', values.append, 1),
    tarMiB: sized('tar-mib', values['tar-mib'], 1),
    lookupPaths: sized('lookup-paths', values['lookup-paths'], 10),
    out: path.resolve(values.out),
    seed: int('seed', values.seed, 0),
    timeoutS: int('timeout', values.timeout, 1),
    scratchParent: path.resolve(values.scratch),
    layerfsBin: path.resolve(values['layerfs-bin']),
    layerfsOpts: values['layerfs-opts'],
    install: !values['no-install'],
    pin: values.pin === undefined ? undefined : int('pin', values.pin, 0),
    cpuLatency: values['cpu-latency'] === undefined ? undefined : int('cpu-latency', values['cpu-latency'], 0),
    tag: tagOf(values.tag),
    requests: values.requests,
  };
}

/** The size options at the preset's defaults (for the run-time estimate). */
function defaultSizes(preset: Preset): Options {
  const o = parseOptions(['--variants', 'plain', '--workloads', 'find'], preset);
  if (!o) throw new Error('unreachable');
  return o;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: everything mounted is unmounted in a finally block and on SIGINT/SIGTERM/SIGHUP.

let scratchDir: string | undefined;
let tracer: FuseTrace | undefined;
/** --cpu-latency's request: the fd that holds it. */
let cpuLatencyFd: number | undefined;
const activeVariants: Variant[] = [];
let cleanedUp = false;
let interrupted = false;

function cleanup(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const child of liveChildren) killWorkload(child); // only our own workload shells and their commands
  for (const v of [...activeVariants].reverse()) {
    try {
      for (const p of [...v.unmount(), ...v.close()]) console.error(`cleanup: ${v.name}: ${p}`);
    } catch (err) {
      console.error(`cleanup: ${v.name}: ${(err as Error).message}`);
    }
  }
  tracer?.close();
  tracer = undefined;
  if (cpuLatencyFd !== undefined) {
    fs.closeSync(cpuLatencyFd);
    cpuLatencyFd = undefined;
  }
  if (scratchDir) {
    if (isMounted(scratchDir)) {
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

function installHandlers(): void {
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
}

// ---------------------------------------------------------------------------------------------

function log(msg: string): void {
  console.log(msg);
}

function localDate(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 90 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function envInfo(pin: number | undefined, cpuLatency: number | undefined): Record<string, string> {
  const first = (r: ReturnType<typeof run>): string => (r.stdout || r.stderr).trim().split('\n').filter((l) => !/unknown argument ignored/.test(l))[0] ?? '';
  const gitRev = run('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  const gitDirty = run('git', ['-C', repoRoot, 'status', '--porcelain']);
  const fo = run('fuse-overlayfs', ['--version']);
  const uf = run('unionfs-fuse', ['--version']);
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.arch();
  return {
    host: os.hostname(),
    kernel: os.release(),
    cpu: `${cpu} (${os.cpus().length} CPUs)`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    'fuse-overlayfs': /fuse-overlayfs:?\s*version\s*(\S+)/i.exec(`${fo.stdout}\n${fo.stderr}`)?.[1] ?? 'n/a',
    'unionfs-fuse': /unionfs-fuse version:?\s*(\S+)/i.exec(`${uf.stdout}\n${uf.stderr}`)?.[1] ?? 'n/a',
    fusermount3: first(run('fusermount3', ['--version'])).replace(/^.*version:?\s*/i, '') || 'n/a',
    layerfs: gitRev.ok ? `${gitRev.stdout.trim()}${gitDirty.stdout.trim() ? ' (dirty tree)' : ''}` : 'unknown',
    ...(pin === undefined ? {} : { pinned: `every process of the run on CPU ${pin} (--pin)` }),
    ...(cpuLatency === undefined ? {} : { 'cpu latency': `idle CPUs wake within ${cpuLatency} µs for the whole run (--cpu-latency)` }),
  };
}

/** --tag's value, checked: it becomes part of file names. */
function tagOf(v: string): string {
  if (v !== '' && !/^[A-Za-z0-9._-]+$/.test(v)) throw new Error(`--tag: only letters, digits, '.', '_' and '-' (got ${JSON.stringify(v)})`);
  return v;
}

/** The CPUs this process may run on, from /proc/self/status (e.g. "0-1" -> [0, 1]). */
function allowedCpus(): number[] {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  return list.split(',').flatMap((part) => {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => a + i);
  });
}

/**
 * --pin: runs this script again under `taskset -c CPU`, so that everything it starts (mount
 * helpers, FUSE servers, the daemon, the timed shells) inherits that one CPU. Returns the exit
 * code of that run; undefined when this process already runs there and should go on.
 */
function runPinned(pin: number, argv: readonly string[]): number | undefined {
  const allowed = allowedCpus();
  if (allowed.length === 1 && allowed[0] === pin) return undefined;
  if (!allowed.includes(pin)) throw new Error(`--pin ${pin}: this process may only run on CPUs ${allowed.join(',')}`);
  if (which('taskset') === undefined) throw new Error('--pin needs taskset (Debian package util-linux)');
  const script = process.argv[1];
  if (script === undefined) throw new Error('--pin: cannot tell which script to run again');
  const r = spawnSync('taskset', ['-c', String(pin), process.execPath, ...process.execArgv, script, ...argv], { stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

/** Files whose bytes are compared in every variant: visible overrides plus a random sample. */
function contentSample(ds: Dataset): string[] {
  const rng = new Rng(ds.seed ^ 0x5eed);
  const files = [...ds.merged.entries()].filter(([, m]) => m.entry.kind === 'file' && !m.entry.big).map(([p]) => p);
  const sample = new Set(ds.overridden.slice(0, 300));
  for (let i = 0; i < 200 && files.length > 0; i++) sample.add(rng.pick(files));
  return [...sample];
}

function writeNulList(file: string, items: readonly string[]): void {
  fs.writeFileSync(file, items.map((p) => `${p}\0`).join(''));
}

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

interface VerifyResult {
  ok: boolean;
  detail: string[];
}

function treeProblems(t: TreeDiff): string[] {
  if (t.same) return [];
  return [`entries expected ${t.expected}, got ${t.actual}`, ...t.missing.map((m) => `missing: ${m}`), ...t.extra.map((m) => `extra:   ${m}`)];
}

interface Failure {
  run: number;
  variant: string;
  workload: string;
  message: string;
}

// ---------------------------------------------------------------------------------------------

export async function runBench(argv: string[], preset: Preset): Promise<number> {
  installHandlers();
  let code = 1;
  try {
    code = await main(argv, preset);
  } catch (err) {
    console.error(`${preset.name} benchmark failed: ${(err as Error).stack ?? String(err)}`);
    code = 1;
  } finally {
    cleanup();
  }
  return code;
}

async function main(argv: string[], preset: Preset): Promise<number> {
  const opts = parseOptions(argv, preset);
  if (!opts) return 0;
  if (process.getuid?.() !== 0) {
    console.error(`${preset.name} benchmark: must run as root (mount, mknod, trusted.* xattrs, drop_caches)`);
    return 2;
  }
  if (opts.pin !== undefined) {
    const code = runPinned(opts.pin, argv);
    if (code !== undefined) return code;
  }
  const started = new Date();
  const t0 = Date.now();
  const sel = new Set(opts.workloads);
  log(
    `layerfs ${preset.name} benchmark: files=${opts.files} big=${opts.bigMiB} MiB runs=${opts.runs} seed=${opts.seed}\n` +
      `  variants ${opts.variants.join(',')}\n  workloads ${opts.workloads.join(',')}` +
      (sel.has('lookup') ? ` (layers ${opts.layers.join(',')})` : ''),
  );

  if (opts.install) {
    const tools = [...new Set(opts.variants.map((v) => parseVariant(v).kind))].flatMap((k) => VARIANT_TOOLS[k] ?? []);
    for (const p of ensureDebianTools(tools, log)) log(`WARNING: ${p}`);
  }
  if (opts.cpuLatency !== undefined) {
    // Held by this process, so that it ends with the run however the run ends.
    cpuLatencyFd = holdCpuLatency(opts.cpuLatency);
    const inForce = readCpuLatency();
    if (inForce > opts.cpuLatency) throw new Error(`--cpu-latency ${opts.cpuLatency}: the kernel reports ${inForce} µs in force`);
    log(`  CPU latency limited to ${inForce} µs for the run (--cpu-latency ${opts.cpuLatency})`);
  }
  const env = envInfo(opts.pin, opts.cpuLatency);

  // 1. Data: model, scratch tmpfs, layers (kernel and unionfs-fuse formats), plain copy,
  //    lists, tarball, lookup stacks.
  const ds = buildDataset({
    files: Math.max(10, opts.files - opts.wide - opts.rmFiles),
    bigBytes: opts.bigMiB * 2 ** 20,
    seed: opts.seed,
    ...(opts.wide > 0 ? { wide: opts.wide } : {}),
    ...(opts.rmFiles > 0 ? { rmFiles: opts.rmFiles } : {}),
  });
  const base = estimateTmpfsBytes(ds);
  const tmpfsMiB = Math.ceil((2 * base) / 2 ** 20) + opts.bigMiB + 4 * opts.tarMiB + 512;
  const availMiB = Number(/MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024;
  if (availMiB > 0 && base / 2 ** 20 > availMiB * 0.8) {
    log(`WARNING: the data needs about ${Math.round(base / 2 ** 20)} MiB of RAM (tmpfs), ${Math.round(availMiB)} MiB available`);
  }
  scratchDir = fs.mkdtempSync(path.join(opts.scratchParent, 'layerfs-bench-'));
  const mnt = run('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsMiB}m,mode=755`, 'layerfs-bench', scratchDir]);
  if (!mnt.ok) throw new Error(`mounting the scratch tmpfs failed: ${describe(mnt)}`);
  const S = scratchDir;
  log(`scratch tmpfs ${S} (limit ${tmpfsMiB} MiB)`);

  let t = Date.now();
  const layerRoots = writeLayers(ds, mkdir(path.join(S, 'layers')));
  const useUnionfs = opts.variants.includes('unionfs-fuse');
  const unionfsRoots = useUnionfs ? writeUnionfsLayers(ds, layerRoots, mkdir(path.join(S, 'layers-unionfs'))) : undefined;
  const plainDir = path.join(S, 'plain');
  writePlain(ds, layerRoots, plainDir);
  const mountBase = mkdir(path.join(S, 'mnt'));
  const rwBase = mkdir(path.join(S, 'rw'));
  const lists = mkdir(path.join(S, 'lists'));
  const smallList = path.join(lists, 'small-files');
  writeNulList(smallList, smallFilePaths(ds));
  const appendTargets = pickAppendTargets(ds, opts.append);
  const appendList = path.join(lists, 'append-targets');
  writeNulList(appendList, appendTargets);
  let tarball: TarballStats | undefined;
  if (sel.has('untar')) tarball = await writeSourceTarball(path.join(S, 'src.tar'), opts.tarMiB * 2 ** 20, opts.seed);
  let stacks: Stacks | undefined;
  const lookupList = path.join(lists, 'lookup-paths');
  if (sel.has('lookup')) {
    stacks = writeLayerStacks(mkdir(path.join(S, 'stacks')), opts.layers, opts.lookupPaths);
    writeNulList(lookupList, stacks.paths);
  }
  const st = ds.stats;
  const setupMs = Date.now() - t0;
  log(
    `data written in ${((Date.now() - t) / 1000).toFixed(1)} s: ` +
      st.layers.map((l) => `${l.name}: ${l.files} files, ${l.dirs} dirs, ${l.whiteouts} whiteouts, ${l.opaqueDirs} opaque`).join('; '),
  );
  log(
    `merged view: ${st.merged.files} files, ${st.merged.dirs} dirs, ${st.merged.symlinks} symlinks, ` +
      `${(st.merged.bytes / 2 ** 20).toFixed(0)} MiB, max depth ${st.merged.maxDepth}, max fanout ${st.merged.maxFanout}` +
      (tarball ? `; tarball ${tarball.files} files, ${(tarball.tarBytes / 2 ** 20).toFixed(1)} MiB` : '') +
      (stacks ? `; lookup stacks ${opts.layers.join('/')} layers, ${stacks.paths.length} paths in ${stacks.dirs} dirs` : ''),
  );

  // 2. Workloads.
  const dflt = defaultSizes(preset);
  const ratio = (a: number, b: number): number => (b > 0 ? a / b : 1);
  const createDir = 'usr/share/bench-create';
  const untarInto = 'opt';
  const workloads: Workload[] = [];
  const add = (w: Workload): void => {
    if (sel.has(w.group)) workloads.push(w);
  };
  const filesScale = ratio(dflt.files, opts.files);
  add({ id: 'find', group: 'find', label: 'find', write: false, cmd: (r) => `find ${shq(r)}`, xattrs: false, scale: filesScale });
  // A walk that stats every entry and asks no xattrs: issue 4's warm target for stat-only walks.
  add({ id: 'du', group: 'du', label: 'du -s', write: false, cmd: (r) => `du -s ${shq(r)}`, xattrs: false, scale: filesScale });
  add({ id: 'ls-R', group: 'ls-R', label: 'ls -lR', write: false, cmd: (r) => `ls -lR ${shq(r)}`, xattrs: true, scale: filesScale });
  add({
    id: 'read-small',
    group: 'read-small',
    label: `cat every small file (${st.merged.files})`,
    write: false,
    cmd: (r) => `cd ${shq(r)} && xargs -0 -a ${shq(smallList)} cat --`,
    xattrs: false,
    scale: filesScale,
  });
  add({
    id: 'read-big',
    group: 'read-big',
    label: `cat ${opts.bigMiB} MiB file`,
    write: false,
    cmd: (r) => `cat ${shq(path.join(r, BIG_PATH))}`,
    xattrs: false,
    scale: ratio(dflt.bigMiB, opts.bigMiB),
  });
  if (opts.wide > 0) {
    add({
      id: 'ls-wide',
      group: 'ls-wide',
      label: `ls -l ${opts.wide}-entry dir`,
      write: false,
      cmd: (r) => `ls -l ${shq(path.join(r, WIDE_PATH))}`,
      xattrs: true,
      scale: ratio(dflt.wide, opts.wide),
    });
  } else if (sel.has('ls-wide')) log('ls-wide skipped: --wide 0');
  add({
    id: 'create',
    group: 'create',
    label: `create ${opts.create} files`,
    write: true,
    cmd: (r) =>
      `set -e; mkdir ${shq(path.join(r, createDir))}; cd ${shq(path.join(r, createDir))}; ` +
      `i=0; while [ $i -lt ${opts.create} ]; do echo "file $i" > f$i; i=$((i+1)); done`,
    xattrs: false,
    scale: ratio(dflt.create, opts.create),
    check: { paths: [createDir], hash: false },
  });
  add({
    id: 'append',
    group: 'append',
    label: `append to ${appendTargets.length} lower files`,
    write: true,
    cmd: (r) => `cd ${shq(r)} && xargs -0 -a ${shq(appendList)} sh -ec 'for f; do echo appended >> "$f"; done' sh`,
    xattrs: false,
    scale: ratio(dflt.append, opts.append),
    check: { paths: appendTargets, hash: true },
  });
  if (opts.rmFiles > 0) {
    add({
      id: 'rm',
      group: 'rm',
      label: `rm -rf ${opts.rmFiles}-file lower dir`,
      write: true,
      cmd: (r) => `rm -rf ${shq(path.join(r, RM_PATH))} && test ! -e ${shq(path.join(r, RM_PATH))}`,
      xattrs: false,
      scale: ratio(dflt.rmFiles, opts.rmFiles),
      check: { paths: [path.posix.dirname(RM_PATH)], hash: false },
    });
  } else if (sel.has('rm')) log('rm skipped: --rm-files 0');
  if (tarball) {
    const tb = tarball;
    add({
      id: 'untar',
      group: 'untar',
      label: `untar ${(tb.tarBytes / 2 ** 20).toFixed(0)} MiB (${tb.files} files)`,
      write: true,
      cmd: (r) => `tar -xf ${shq(tb.path)} -C ${shq(path.join(r, untarInto))}`,
      xattrs: false,
      scale: ratio(dflt.tarMiB, opts.tarMiB),
      check: { paths: [`${untarInto}/${tb.root}`], hash: true },
    });
  }
  if (stacks) {
    for (const s of stacks.stacks) {
      add({
        id: `lookup-${s.layers}`,
        group: 'lookup',
        label: `stat ${stacks.paths.length} paths, ${s.layers} layer${s.layers > 1 ? 's' : ''}`,
        write: false,
        stack: s.layers,
        cmd: (r) => `cd ${shq(r)} && xargs -0 -a ${shq(lookupList)} stat -c %i --`,
        xattrs: false,
        scale: ratio(dflt.lookupPaths, opts.lookupPaths),
      });
    }
  }
  if (workloads.length === 0) throw new Error('no workload left to run');

  const mainSpec: MountSpec = { lowers: layerRoots, plain: plainDir, ...(unionfsRoots ? { unionfsLowers: unionfsRoots } : {}) };
  const stackSpec = (L: number): MountSpec => {
    const s = stacks?.stacks.find((x) => x.layers === L);
    if (!s) throw new Error(`no stack with ${L} layers`);
    return { lowers: s.roots, plain: s.flat };
  };
  let rwSeq = 0;
  /** A read-only spec, or a writable one with a fresh upper (for plain: a fresh copy). */
  const specFor = (w: Workload, v: Variant): { spec: MountSpec; rwDir?: string } => {
    if (w.stack !== undefined) return { spec: stackSpec(w.stack) };
    if (!w.write) return { spec: mainSpec };
    const rwDir = mkdir(path.join(rwBase, `${v.name}-${++rwSeq}`));
    const upper = path.join(rwDir, 'upper');
    if (v.name === 'plain') writePlain(ds, layerRoots, upper, true);
    else fs.mkdirSync(upper);
    const work = mkdir(path.join(rwDir, 'work'));
    return { spec: { ...mainSpec, upper, work }, rwDir };
  };
  const dropRw = (rwDir: string | undefined): void => {
    if (rwDir) fs.rmSync(rwDir, { recursive: true, force: true });
  };

  // 3. Variants: availability, and correctness before any timing.
  const cfg = { mountBase, layerfsBin: opts.layerfsBin, layerfsOpts: opts.layerfsOpts };
  const skipped: Record<string, string> = {};
  const verification: Record<string, Record<string, VerifyResult>> = {};
  const record = (v: string, what: string, r: VerifyResult): void => {
    (verification[v] ??= {})[what] = r;
    if (r.ok) log(`  ok   ${v.padEnd(14)} ${what}`);
    else {
      log(`  WARNING ${v}: ${what} differs from the plain directory`);
      for (const line of r.detail.slice(0, 8)) log(`      ${line}`);
    }
  };
  const variants: Variant[] = [];
  for (const name of opts.variants) {
    const v = new Variant(name, cfg);
    const why = v.unavailableReason();
    if (why) {
      skipped[name] = why;
      log(`SKIP ${name}: ${why}`);
      continue;
    }
    variants.push(v);
    activeVariants.push(v);
  }
  const plainRef = variants.find((v) => v.name === 'plain') ?? new Variant('plain', cfg);
  if (variants.length === 0) throw new Error('no variant can run');

  t = Date.now();
  log('checking every variant against the plain directory before timing:');
  const sample = contentSample(ds);
  const expectedMain = listTree(plainDir);
  const modelCount = ds.merged.size - 1;
  if (expectedMain.length !== modelCount) throw new Error(`plain copy has ${expectedMain.length} entries, model ${modelCount}`);
  const timeoutMs = opts.timeoutS * 1000;
  const broken = new Set<string>();
  // Time spent mounting and unmounting during the checks: it does not grow with the image.
  let checkMountMs = 0;
  const timedMount = (v: Variant, spec: MountSpec): void => {
    const m0 = Date.now();
    try {
      v.mount(spec);
    } finally {
      checkMountMs += Date.now() - m0;
    }
  };
  const timedUnmount = (v: Variant): void => {
    const m0 = Date.now();
    for (const p of v.unmount()) log(`  ${v.name}: ${p}`);
    checkMountMs += Date.now() - m0;
  };
  const readOnlyChecks: Array<{ what: string; spec: MountSpec; expected: string[]; contents: boolean }> = [];
  if (workloads.some((w) => !w.write && w.stack === undefined) || workloads.some((w) => w.write)) {
    readOnlyChecks.push({ what: 'merged view', spec: mainSpec, expected: expectedMain, contents: true });
  }
  for (const s of stacks?.stacks ?? []) {
    readOnlyChecks.push({ what: `${s.layers}-layer stack`, spec: stackSpec(s.layers), expected: listTree(s.flat), contents: false });
  }
  for (const v of variants) {
    for (const c of readOnlyChecks) {
      try {
        timedMount(v, c.spec);
        const problems = treeProblems(diffTrees(c.expected, listTree(v.root)));
        if (c.contents) problems.push(...diffContents(plainDir, v.root, sample, ds.bigPath).slice(0, 5).map((m) => `content differs: ${m}`));
        record(v.name, c.what, { ok: problems.length === 0, detail: problems });
      } catch (err) {
        record(v.name, c.what, { ok: false, detail: [(err as Error).message] });
        if (c.what === 'merged view') broken.add(v.name);
      } finally {
        timedUnmount(v);
      }
      if (interrupted) return 130;
    }
  }
  // Writable workloads: run each once per variant; the paths it touches must end up as in plain.
  const writes = workloads.filter((w) => w.write);
  const lowerProblems: string[] = [];
  for (const w of writes) {
    const check = w.check;
    if (!check) continue;
    const order = [plainRef, ...variants.filter((v) => v !== plainRef)];
    let expected: string[] | undefined;
    for (const v of order) {
      if (broken.has(v.name)) continue;
      let rwDir: string | undefined;
      let result: VerifyResult;
      try {
        const prep = specFor(w, v);
        rwDir = prep.rwDir;
        timedMount(v, prep.spec);
        const r = await runTimed(w.cmd(v.root), timeoutMs);
        if (!r.ok) result = { ok: false, detail: [`command failed: ${howFailed(r, opts.timeoutS)}`] };
        else {
          const snap = snapshotPaths(v.root, check.paths, check.hash);
          if (v === plainRef) {
            expected = snap;
            result = { ok: true, detail: [] };
          } else if (!expected) result = { ok: false, detail: ['no reference result from plain'] };
          else result = { ok: true, detail: treeProblems(diffTrees(expected, snap)) };
          result.ok = result.detail.length === 0;
        }
      } catch (err) {
        result = { ok: false, detail: [(err as Error).message] };
      } finally {
        timedUnmount(v);
        dropRw(rwDir);
      }
      if (v !== plainRef || !result.ok || opts.variants.includes('plain')) record(v.name, `${w.label}: result`, result);
      if (interrupted) return 130;
    }
  }
  if (writes.length > 0) {
    lowerProblems.push(...checkLowersIntact(ds, layerRoots, appendTargets));
    if (lowerProblems.length > 0) log(`WARNING: a lower layer changed during the checks: ${lowerProblems.slice(0, 3).join('; ')}`);
  }
  const verifyMs = Date.now() - t;
  log(`checks done in ${(verifyMs / 1000).toFixed(1)} s`);
  const measured = variants.filter((v) => !broken.has(v.name));
  for (const v of variants) if (broken.has(v.name)) skipped[v.name] = 'could not serve the merged view (see the checks)';
  if (measured.length === 0) throw new Error('no variant could run');

  // 4. Measurements.
  const samples = new Map<string, Map<string, number[]>>(); // variant -> series -> ms
  const cpu = new Map<string, Map<string, number[]>>(); // variant -> series -> daemon CPU ms
  const hwm = new Map<string, Map<string, number[]>>(); // variant -> workload id -> VmHWM KiB
  const mountMs = new Map<string, number[]>();
  const requests = new Map<string, Map<string, TraceResult>>(); // FUSE variant -> series -> first run's requests
  if (opts.requests) {
    const t = FuseTrace.open();
    if (typeof t === 'string') log(`WARNING: --requests: ${t}; requests not counted`);
    else tracer = t;
  }
  for (const v of measured) {
    samples.set(v.name, new Map());
    cpu.set(v.name, new Map());
    hwm.set(v.name, new Map());
    mountMs.set(v.name, []);
  }
  const push = (m: Map<string, Map<string, number[]>>, v: string, k: string, x: number): void => {
    const inner = m.get(v);
    if (!inner) return;
    const arr = inner.get(k) ?? [];
    arr.push(x);
    inner.set(k, arr);
  };
  const failures: Failure[] = [];
  const failCount = new Map<string, number>();
  const disabled = new Set<string>(); // `${variant}|${workload}` or `${variant}|*`
  const pidWarned = new Set<string>();
  const dropError = dropCaches();
  if (dropError) log(`WARNING: cannot drop caches (${dropError}); "cold" runs only remount`);
  const fail = (r: number, v: Variant, w: Workload, message: string): void => {
    failures.push({ run: r, variant: v.name, workload: w.label, message });
    log(`  FAILED ${v.name} ${w.label}: ${message}`);
    const k = `${v.name}|${w.id}`;
    const n = (failCount.get(k) ?? 0) + 1;
    failCount.set(k, n);
    if (n >= 2 && !disabled.has(k)) {
      disabled.add(k);
      log(`  ${v.name} ${w.label}: skipped for the remaining runs after repeated failures`);
    }
    if (failures.filter((f) => f.variant === v.name).length >= 6 && !disabled.has(`${v.name}|*`)) {
      disabled.add(`${v.name}|*`);
      log(`  ${v.name} disabled for the remaining runs after repeated failures`);
    }
  };
  // For the run-time estimate: per step, the timed part scaled to the defaults and the rest.
  let estWork = 0;
  let estOverhead = 0;
  const tMeasure = Date.now();
  const labelW = Math.max(...workloads.map((w) => w.label.length));

  for (let r = 0; r < opts.runs; r++) {
    const order = measured.map((_, i) => measured[(i + r) % measured.length] as Variant);
    log(`run ${r + 1}/${opts.runs}: order ${order.map((v) => v.name).join(', ')}`);
    for (const w of workloads) {
      for (const v of order) {
        if (disabled.has(`${v.name}|${w.id}`) || disabled.has(`${v.name}|*`)) continue;
        const stepStart = Date.now();
        let worked = 0;
        let rwDir: string | undefined;
        try {
          const prep = specFor(w, v);
          rwDir = prep.rwDir;
          const ms = v.mount(prep.spec);
          if (v.needsMount) mountMs.get(v.name)?.push(ms);
          const pidProblem = await v.locateServer();
          if (pidProblem && !pidWarned.has(v.name)) {
            pidWarned.add(v.name);
            log(`  WARNING ${v.name}: ${pidProblem}; daemon CPU and peak RSS not measured`);
          }
          if (!dropError) dropCaches();
          const cmd = w.cmd(v.root);
          const parts: string[] = [];
          for (const phase of phasesOf(w)) {
            const trace = r === 0 && v.fuse ? tracer : undefined;
            trace?.start();
            const c0 = v.pid !== undefined ? readCpuMs(v.pid) : undefined;
            const res = await runTimed(cmd, timeoutMs);
            const c1 = v.pid !== undefined ? readCpuMs(v.pid) : undefined;
            if (trace !== undefined) {
              const inner = requests.get(v.name) ?? new Map<string, TraceResult>();
              inner.set(seriesKey(w, phase), trace.stop());
              requests.set(v.name, inner);
            }
            worked += res.ms;
            if (!res.ok) {
              fail(r + 1, v, w, `${phase}: ${howFailed(res, opts.timeoutS)}`);
              break;
            }
            push(samples, v.name, seriesKey(w, phase), res.ms);
            if (c0 !== undefined && c1 !== undefined) push(cpu, v.name, seriesKey(w, phase), c1 - c0);
            parts.push(`${phase === 'run' ? '' : `${phase} `}${fmtMs(res.ms).padStart(8)}${c0 !== undefined && c1 !== undefined ? ` (cpu ${fmtMs(c1 - c0)})` : ''}`);
          }
          const mem = v.pid !== undefined ? readMem(v.pid) : undefined;
          if (mem) push(hwm, v.name, w.id, mem.hwmKiB);
          log(`  ${w.label.padEnd(labelW)} ${v.name.padEnd(14)} ${parts.join('  ')}${mem ? `  peak RSS ${fmtMiB(mem.hwmKiB)}` : ''}`);
        } catch (err) {
          fail(r + 1, v, w, (err as Error).message);
        } finally {
          for (const p of v.unmount()) log(`  ${v.name}: ${p}`);
          dropRw(rwDir);
        }
        estWork += worked * w.scale;
        // Copying the plain tree for writes grows with the image; mounts and the rest do not.
        estOverhead += (Date.now() - stepStart - worked) * (w.write && v.name === 'plain' ? filesScale : 1);
        if (interrupted) return 130;
      }
    }
  }
  const measureMs = Date.now() - tMeasure;
  tracer?.close();
  tracer = undefined;
  if (writes.length > 0) {
    const after = checkLowersIntact(ds, layerRoots, appendTargets);
    if (after.length > 0) log(`WARNING: a lower layer changed during the measurements: ${after.slice(0, 3).join('; ')}`);
    lowerProblems.push(...after);
  }

  // Run-time estimate of the same variants and workloads at the preset's default sizes.
  const bigScale = ratio(dflt.bigMiB, opts.bigMiB);
  const estFixedMs =
    (setupMs + verifyMs - checkMountMs) * Math.max(filesScale, 1) +
    checkMountMs +
    (bigScale > 1 ? (dflt.bigMiB - opts.bigMiB) * 4 : 0); // writing the big file and its plain copy (~4 ms/MiB)
  const estPerRunMs = (estWork + estOverhead) / opts.runs;
  const estimateMs = estFixedMs + estPerRunMs * dflt.runs;
  const totalMs = Date.now() - t0;

  // 5. Report.
  const finished = new Date();
  const present = measured.map((v) => v.name);
  const series = workloads.flatMap((w) => phasesOf(w).map((p) => ({ w, p, key: seriesKey(w, p), label: seriesLabel(w, p) })));
  const sum = (v: string, k: string): Summary | undefined => summarize(samples.get(v)?.get(k) ?? []);
  const med = (v: string, k: string): number | undefined => sum(v, k)?.median;
  const ratioOf = (a: string, b: string, k: string): number | undefined => {
    const x = med(a, k);
    const y = med(b, k);
    return x !== undefined && y !== undefined && y > 0 ? x / y : undefined;
  };
  const cell = (s: Summary | undefined): string => (!s ? '—' : s.n === 1 ? fmtMs(s.median) : `${fmtMs(s.median)} (${fmtMs(s.min)}–${fmtMs(s.max)})`);
  const timeRows = series.map((s) => [s.label, ...present.map((v) => cell(sum(v, s.key)))]);
  const mountSummary = present.map((v) => summarize(mountMs.get(v) ?? []));
  if (mountSummary.some((m) => m !== undefined)) timeRows.push(['mount', ...mountSummary.map((m) => (m ? cell(m) : '—'))]);

  // Each option variant against its own kind, then against the peers.
  const optionPairs = measured.filter((v) => v.options.length > 0).flatMap((v) => [
    [v.name, v.kind],
    [v.name, 'fuse-overlayfs'],
    [v.name, 'kernel'],
  ] as Array<[string, string]>);
  const ratioPairs = (
    [
      ['layerfs', 'fuse-overlayfs'],
      ['layerfs', 'unionfs-fuse'],
      ['layerfs', 'kernel'],
      ['layerfs', 'layerfs-libfuse'],
      ['layerfs-daemon', 'fuse-overlayfs'],
      ['layerfs-daemon', 'unionfs-fuse'],
      ['layerfs-daemon', 'kernel'],
      ['layerfs-libfuse', 'fuse-overlayfs'],
      ['fuse-overlayfs', 'kernel'],
      ['unionfs-fuse', 'kernel'],
      ['plain', 'kernel'],
      ...optionPairs,
    ] as Array<readonly [string, string]>
  ).filter(([a, b]) => present.includes(a) && present.includes(b));
  const ratioCell = (a: string, b: string, s: (typeof series)[number]): string => {
    if (b === 'unionfs-fuse' && s.w.xattrs) return 'n/c¹';
    return fmtRatio(ratioOf(a, b, s.key));
  };
  const ratioRows = series.map((s) => [s.label, ...ratioPairs.map(([a, b]) => ratioCell(a, b, s))]);
  const fusePresent = measured.filter((v) => v.fuse).map((v) => v.name);
  const cpuRows = series
    .filter((s) => fusePresent.some((v) => (cpu.get(v)?.get(s.key)?.length ?? 0) > 0))
    .map((s) => [
      s.label,
      ...fusePresent.map((v) => {
        const c = summarize(cpu.get(v)?.get(s.key) ?? []);
        const wall = med(v, s.key);
        return c ? `${fmtMs(c.median)}${wall ? ` (${Math.round((100 * c.median) / wall)} %)` : ''}` : '—';
      }),
    ]);
  const rssRows = workloads
    .filter((w) => fusePresent.some((v) => (hwm.get(v)?.get(w.id)?.length ?? 0) > 0))
    .map((w) => [w.label, ...fusePresent.map((v) => {
      const s = summarize(hwm.get(v)?.get(w.id) ?? []);
      return s ? fmtMiB(s.max) : '—';
    })]);
  const traced = fusePresent.filter((v) => requests.has(v));
  const requestRows = series.map((s) => [s.label, ...traced.map((v) => {
    const t = requests.get(v)?.get(s.key);
    if (t === undefined) return '—';
    const all = totalOf(t.counts);
    return `${fmtCount(all.n)}${t.lost > 0 ? '+' : ''} (${fmtMs(all.us / 1000)})`;
  })]);
  const opcodeRows = series.map((s) => [s.label, ...traced.map((v) => {
    const t = requests.get(v)?.get(s.key);
    if (t === undefined) return '—';
    const top = Object.entries(t.counts).sort(([, a], [, b]) => b.n - a.n).slice(0, 4);
    return top.length === 0 ? 'none' : top.map(([op, c]) => `${op} ${fmtCount(c.n)}`).join(', ');
  })]);
  const stackWorkloads = workloads.filter((w) => w.stack !== undefined);
  const lookupRows = stackWorkloads.map((w) => [
    `${w.stack} layer${w.stack === 1 ? '' : 's'}`,
    ...present.map((v) => {
      const c = med(v, seriesKey(w, 'cold'));
      const h = med(v, seriesKey(w, 'warm'));
      return c === undefined ? '—' : `${fmtMs(c)} / ${h === undefined ? '—' : fmtMs(h)}`;
    }),
  ]);
  if (stackWorkloads.length > 1) {
    const lo = stackWorkloads[0] as Workload;
    const hi = stackWorkloads[stackWorkloads.length - 1] as Workload;
    lookupRows.push([
      `${hi.stack} vs ${lo.stack} layer${lo.stack === 1 ? '' : 's'}`,
      ...present.map((v) => {
        const c = (k: Workload, p: Phase): number | undefined => med(v, seriesKey(k, p));
        const rc = c(hi, 'cold') !== undefined && c(lo, 'cold') ? (c(hi, 'cold') as number) / (c(lo, 'cold') as number) : undefined;
        const rw = c(hi, 'warm') !== undefined && c(lo, 'warm') ? (c(hi, 'warm') as number) / (c(lo, 'warm') as number) : undefined;
        return `${fmtRatio(rc)} / ${fmtRatio(rw)}`;
      }),
    ]);
  }

  fs.mkdirSync(opts.out, { recursive: true });
  const day = localDate(started);
  const stem = `${preset.name}-${day}${opts.tag === '' ? '' : `-${opts.tag}`}`;
  let outBase = path.join(opts.out, stem);
  for (let i = 2; ['.md', '.json', '.svg'].some((e) => fs.existsSync(`${outBase}${e}`)); i++) outBase = path.join(opts.out, `${stem}-${i}`);
  const svgName = `${path.basename(outBase)}.svg`;

  const cmdLine = `node ${preset.script} ${argv.join(' ')}`.trim();
  const md: string[] = [];
  md.push(`# ${preset.name === 'full' ? 'End-to-end' : preset.name === 'readonly' ? 'Read-only' : preset.name} benchmark (${day})`, '');
  md.push(`Command: \`${cmdLine}\` (total ${fmtDuration(totalMs)})`, '');
  md.push(Object.entries(env).map(([k, v]) => `- ${k}: ${v}`).join('\n'), '');
  const wd = st.workloadDirs;
  md.push(
    `Image (seed ${opts.seed}) on a private tmpfs: ${st.layers.map((l) => `${l.name} ${l.files} files/${l.dirs} dirs/${l.whiteouts} whiteouts${l.opaqueDirs ? `/${l.opaqueDirs} opaque` : ''}`).join('; ')}; ` +
      `${st.overrides} overrides, ${st.fileWhiteouts} file whiteouts, ${st.dirWhiteouts.length} dir whiteouts. ` +
      `Merged view: ${st.merged.files} files, ${st.merged.dirs} dirs, ${st.merged.symlinks} symlinks, ${(st.merged.bytes / 2 ** 20).toFixed(0)} MiB ` +
      `(max depth ${st.merged.maxDepth}, max fanout ${st.merged.maxFanout}), including a ${opts.bigMiB} MiB file in the bottom layer` +
      (wd?.wide ? `, a ${wd.wide.entries}-entry directory merged from all layers (${wd.wide.overrides} overrides, ${wd.wide.whiteouts} whiteouts)` : '') +
      (wd?.rm ? `, a ${wd.rm.files}-file tree in ${wd.rm.subdirs} directories spread over the layers (removed by rm)` : '') +
      '.' +
      (tarball ? ` Tarball: ${tarball.files} source-like text files in ${tarball.dirs} dirs, ${(tarball.contentBytes / 2 ** 20).toFixed(1)} MiB of content, uncompressed.` : '') +
      (stacks ? ` Lookup stacks: ${opts.layers.join(', ')} layers, each with the same ${stacks.dirs} directories; the ${stacks.paths.length} stat'ed files are in the bottom layer only.` : ''),
    '',
  );
  md.push(
    'Each run takes every workload in turn and, for each, every variant in an order rotated per run. ' +
      'Every step mounts afresh (a FUSE server starts with empty caches) and runs `sync; echo 3 > /proc/sys/vm/drop_caches`; ' +
      'read workloads are then timed twice: cold, and warm right after. Writable workloads get a fresh upper/work (unionfs-fuse: a fresh RW branch; ' +
      'plain: a fresh copy of the merged view, copied untimed) and are timed once. Times are wall clock of `sh -c "CMD > /dev/null"`. ' +
      'Cells: median (min–max) over the runs.' +
      (dropError ? ` **Caches could not be dropped (${dropError}).**` : ''),
    '',
  );
  md.push(`![median time relative to the kernel's overlayfs](${svgName})`, '');
  md.push('## Correctness (before timing)', '');
  const checkNames = [...new Set(Object.values(verification).flatMap((r) => Object.keys(r)))];
  md.push(
    mdTable(
      ['check', ...opts.variants],
      checkNames.map((c) => [
        c,
        ...opts.variants.map((v) => {
          const r = verification[v]?.[c];
          return r === undefined ? (skipped[v] ? 'skipped' : '—') : r.ok ? 'same' : `**differs** (${r.detail.length})`;
        }),
      ]),
    ),
    '',
  );
  md.push('## Times', '', mdTable(['workload', ...present], timeRows), '');
  if (ratioPairs.length > 0) {
    md.push(
      '## Ratios of medians (lower is faster)',
      '',
      mdTable(['workload', ...ratioPairs.map(([a, b]) => `${a} / ${b}`)], ratioRows),
      '',
    );
    if (ratioPairs.some(([, b]) => b === 'unionfs-fuse')) {
      md.push(
        '¹ not compared: unionfs-fuse as packaged answers no xattr request (EOPNOTSUPP, which the kernel then stops asking), ' +
          'while `ls -l` asks two xattrs of every file; compare layerfs with fuse-overlayfs there.',
        '',
      );
    }
  }
  if (lookupRows.length > 0) {
    md.push('## Lookup cost against the number of layers (median cold / warm)', '', mdTable(['layers', ...present], lookupRows), '');
  }
  if (cpuRows.length > 0) {
    md.push(
      '## FUSE server CPU (median utime+stime during the command, and as a share of its wall time)',
      '',
      mdTable(['workload', ...fusePresent], cpuRows),
      '',
    );
  }
  if (traced.length > 0) {
    md.push(
      '## FUSE requests (first run: the kernel\'s fuse tracepoints)',
      '',
      'Requests the command sent to the FUSE server, and (in brackets) the time the kernel waited for their answers, summed; ' +
        'the rest of a request\'s round trip is the wake-up of the caller after the answer. "+": the trace buffer overflowed, a lower bound.',
      '',
      mdTable(['workload', ...traced], requestRows),
      '',
      'The most frequent requests:',
      '',
      mdTable(['workload', ...traced], opcodeRows),
      '',
    );
  }
  if (rssRows.length > 0) {
    md.push('## FUSE server peak RSS (VmHWM after the workload on a fresh mount; max over runs)', '', mdTable(['workload', ...fusePresent], rssRows), '');
  }
  const notes: string[] = [];
  for (const [v, why] of Object.entries(skipped)) notes.push(`- ${v} skipped: ${why}`);
  for (const [v, checks] of Object.entries(verification)) {
    for (const [c, r] of Object.entries(checks)) if (!r.ok) notes.push(`- ${v}, ${c}: ${r.detail.slice(0, 3).join('; ')}`);
  }
  for (const p of [...new Set(lowerProblems)].slice(0, 5)) notes.push(`- a lower layer changed: ${p}`);
  for (const f of failures) notes.push(`- run ${f.run} ${f.variant} ${f.workload}: ${f.message}`);
  if (present.includes('unionfs-fuse')) {
    notes.push(
      "- unionfs-fuse serves the same layers converted to its own format (hard links to the same files; a whiteout becomes " +
        '`.unionfs-fuse/PATH_HIDDEN~`, an opaque directory the directory plus a hide marker for itself) and runs with `-o cow,hide_meta_files`.',
    );
  }
  if (present.includes('layerfs-daemon')) {
    notes.push(
      '- layerfs-daemon: layerfs mounted with `-o daemon`, every mount of the run served by one `layerfs daemon` started at the first of them (D36). ' +
        'From its second mount on it answers with code V8 has already compiled, as a host daemon that has served earlier containers does; ' +
        'each mount still starts with empty caches. Its CPU is measured per command as the others\' is; its peak RSS is the daemon\'s over every mount so far.',
    );
  }
  for (const v of measured.filter((x) => x.options.length > 0)) {
    notes.push(`- ${v.name}: ${v.kind} as above, mounted with \`${v.options.join(',')}\` as well${opts.layerfsOpts ? ' (and, as every layerfs variant, --layerfs-opts)' : ''}.`);
  }
  if (opts.pin !== undefined) {
    notes.push(
      `- Pinned run (--pin ${opts.pin}): every server, the daemon and every timed command ran on CPU ${opts.pin} alone. ` +
        'A client and its FUSE server then take turns on one CPU and no wake-up crosses CPUs, so a time is the CPU work of client, kernel and server together; ' +
        'background threads (V8\'s compiler and GC, libuv\'s pool) take their share of that CPU too. It is not how the variants run when left free: see bench/README.md, "Pinned runs".',
    );
  }
  if (opts.cpuLatency !== undefined) {
    notes.push(
      `- Latency-tuned run (--cpu-latency ${opts.cpuLatency}): the bench held a CPU latency request of ${opts.cpuLatency} µs (/dev/cpu_dma_latency) for the whole run, ` +
        'so idle CPUs ' + (opts.cpuLatency === 0 ? 'polled instead of halting' : `kept to idle states they leave within ${opts.cpuLatency} µs`) +
        ', for every variant alike. A wake-up of a program or server on an idle CPU then costs little, and a time is mostly the work done: ' +
        'see bench/README.md, "A host tuned for latency".',
    );
  }
  notes.push(
    '- Each tool runs with its default cache settings. Layers, uppers and the plain directory live on tmpfs, whose pages and dentries are the storage itself: ' +
      'drop_caches barely affects plain and kernel, for which cold vs warm mostly measures overlayfs dentry/inode setup after the remount.',
    `- The lookup workload's plain column stats the flattened view of each stack (no union at all).`,
  );
  if (present.includes('kernel') && stackWorkloads.some((w) => w.stack === 1)) {
    notes.push('- kernel, 1 layer: mounted with an empty second layer below it (a read-only overlay needs two lowerdirs).');
  }
  md.push('## Notes', '', ...notes, '');
  const mdText = md.join('\n');

  const colors: Record<string, string> = {
    plain: '#9e9e9e',
    kernel: '#4c78a8',
    'fuse-overlayfs': '#f58518',
    'unionfs-fuse': '#54a24b',
    layerfs: '#e45756',
    'layerfs-libfuse': '#b279a2',
    'layerfs-daemon': '#72b7b2',
  };
  const spare = ['#eeca3b', '#ff9da6', '#9d755d', '#bab0ac', '#17becf', '#bcbd22'];
  present.filter((v) => colors[v] === undefined).forEach((v, i) => (colors[v] = spare[i % spare.length] as string));
  const svg = ratioChart(
    series.map((s) => ({ label: s.label, medians: new Map(present.map((v) => [v as string, med(v, s.key)])) })),
    {
      title: `layerfs end-to-end benchmark, ${day}`,
      subtitle: `${st.merged.files} files in 3 layers, ${opts.runs} run${opts.runs > 1 ? 's' : ''}; bar labels: median time and ratio to the kernel's overlayfs`,
      variants: present,
      colors,
      reference: present.includes('kernel') ? 'kernel' : (present[0] as string),
    },
  );

  console.log(`\n${mdText}`);
  fs.writeFileSync(`${outBase}.md`, mdText);
  fs.writeFileSync(`${outBase}.svg`, svg);
  const obj = (m: Map<string, unknown> | undefined): Record<string, unknown> => Object.fromEntries(m ?? []);
  fs.writeFileSync(
    `${outBase}.json`,
    JSON.stringify(
      {
        benchmark: preset.name,
        command: cmdLine,
        started: started.toISOString(),
        finished: finished.toISOString(),
        totalMs,
        estimatedDefaultRunMs: { total: Math.round(estimateMs), dataAndChecks: Math.round(estFixedMs), perRun: Math.round(estPerRunMs) },
        options: { ...opts, out: path.relative(process.cwd(), opts.out) || '.' },
        env,
        dataset: st,
        tarball: tarball ? { ...tarball, path: path.basename(tarball.path) } : null,
        lookupStacks: stacks ? { layers: opts.layers, paths: stacks.paths.length, dirs: stacks.dirs } : null,
        workloads: workloads.map((w) => ({ id: w.id, label: w.label, write: w.write, phases: phasesOf(w), xattrs: w.xattrs })),
        dropCaches: dropError ? `failed: ${dropError}` : 'ok',
        skipped,
        verification,
        lowerLayerChanges: lowerProblems,
        failures,
        samplesMs: Object.fromEntries(present.map((v) => [v, obj(samples.get(v))])),
        summaryMs: Object.fromEntries(present.map((v) => [v, Object.fromEntries(series.map((s) => [s.key, sum(v, s.key) ?? null]))])),
        mountMs: Object.fromEntries(present.map((v) => [v, mountMs.get(v) ?? []])),
        ratios: Object.fromEntries(
          ratioPairs.map(([a, b]) => [
            `${a}/${b}`,
            Object.fromEntries(series.map((s) => [s.key, b === 'unionfs-fuse' && s.w.xattrs ? null : (ratioOf(a, b, s.key) ?? null)])),
          ]),
        ),
        serverCpuMs: Object.fromEntries(fusePresent.map((v) => [v, obj(cpu.get(v))])),
        serverPeakRssKiB: Object.fromEntries(fusePresent.map((v) => [v, obj(hwm.get(v))])),
        fuseRequestsFirstRun: Object.fromEntries(traced.map((v) => [v, obj(requests.get(v))])),
      },
      null,
      2,
    ) + '\n',
  );
  const shown = path.relative(process.cwd(), outBase);
  log(`\nwrote ${shown.startsWith('..') ? outBase : shown}.md, .json and .svg`);
  log(
    `this run took ${fmtDuration(totalMs)} (setup ${fmtDuration(setupMs)}, checks ${fmtDuration(verifyMs)}, measuring ${fmtDuration(measureMs)}); ` +
      `estimated ${preset.name} run at the default sizes (--files ${dflt.files} --big-mib ${dflt.bigMiB} --runs ${dflt.runs}) ` +
      `with these variants and workloads: ~${fmtDuration(estimateMs)} = data and checks ~${fmtDuration(estFixedMs)} + ` +
      `~${fmtDuration(estPerRunMs)} per run (rough: scaled linearly from this run)`,
  );
  return failures.length > 0 ? 1 : 0;
}

function mkdir(p: string): string {
  fs.mkdirSync(p, { recursive: true });
  return p;
}

function howFailed(r: TimedResult, timeoutS: number): string {
  const how = r.timedOut ? `timed out after ${timeoutS} s` : `exit ${String(r.status ?? r.signal)}`;
  const first = r.stderr.split('\n')[0] ?? '';
  return first ? `${how}: ${first}` : how;
}

/**
 * Writable workloads must never change a lower layer: the files appended to keep their size
 * and the removed tree is still there (a cheap guard against writes going through).
 */
function checkLowersIntact(ds: Dataset, layerRoots: readonly string[], appendTargets: readonly string[]): string[] {
  const problems: string[] = [];
  for (const p of appendTargets) {
    const m = ds.merged.get(p) as MergedEntry | undefined;
    if (m?.entry.kind !== 'file') continue;
    try {
      const size = fs.statSync(path.join(layerRoots[m.layer] as string, p)).size;
      if (size !== m.entry.size) problems.push(`${p} in ${ds.layers[m.layer]?.name}: size ${size}, expected ${m.entry.size}`);
    } catch (err) {
      problems.push(`${p} in ${ds.layers[m.layer]?.name}: ${(err as Error).message}`);
    }
  }
  ds.layers.forEach((l, i) => {
    if (l.entries.has(RM_PATH) && !fs.existsSync(path.join(layerRoots[i] as string, RM_PATH))) problems.push(`${RM_PATH} gone from ${l.name}`);
  });
  return problems;
}
