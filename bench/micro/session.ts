// The kernel engine's request handling alone: FUSE requests laid out as the kernel lays them out,
// answered in-process by a KernelSession over a real union, no /dev/fuse and no mount. What it
// measures is what a mount's server thread spends per request, without the wake-ups between the
// kernel, the program and the server that set most of a real mount's time on this machine (D75).
// `npm run bench:session` (root for the append scenario: copy-ups write trusted.* xattrs).
//
//   lookup L   a LOOKUP of every file of an L-layer stack (bench/e2e/lib/stacks.ts: the files in
//              the bottom layer, every directory merged through all L), read-only policy
//   append     what `echo >> f` asks of 2,000 lower files of the full benchmark's 3-layer image
//              (LOOKUPs of the path, OPEN O_WRONLY|O_APPEND, which copies the file and any
//              missing parent directories up, RELEASE), writable policy; the parent GETATTRs
//              the kernel sends after being told to forget a directory's attributes (D74) included
//
// Every round has a fresh union and session (nothing resolved, nothing listed). Round 1 of a run
// is reported apart: its code is not compiled yet, as in a fresh mount; the rest as a median.
// Scenarios are interleaved round by round.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { KernelSession } from '../../src/fuse/kernel/session.js';
import { IN_HEADER, Op } from '../../src/fuse/kernel/wire.js';
import { kernelPolicyFor } from '../../src/server.js';
import type { ServeConfig } from '../../src/serve-config.js';
import { OpCounters } from '../../src/stats.js';
import { createUnion, type Union } from '../../src/union.js';
import { buildDataset, pickAppendTargets, writeLayers } from '../e2e/lib/dataset.js';
import { writeLayerStacks } from '../e2e/lib/stacks.js';
import { mdTable, summarize, writeReport } from '../e2e/lib/stats.js';

interface Options {
  layers: number[];
  paths: number;
  appends: number;
  files: number;
  rounds: number;
  out: string;
  tag: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { layers: [1, 4, 16, 64], paths: 5000, appends: 2000, files: 20000, rounds: 7, out: 'bench/results', tag: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--layers') o.layers = v.split(',').map(Number);
    else if (k === '--paths') o.paths = Number(v);
    else if (k === '--appends') o.appends = Number(v);
    else if (k === '--files') o.files = Number(v);
    else if (k === '--rounds') o.rounds = Number(v);
    else if (k === '--out') o.out = v;
    else if (k === '--tag') o.tag = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (o.rounds < 2) throw new Error('--rounds must be at least 2 (round 1 is reported apart)');
  return o;
}

const INIT_IN = 64;
const O_WRONLY = 0o1;
const O_APPEND = 0o2000;

/** A kernel stand-in: numbers requests, hands them to a session, waits for each reply. */
class Kernel {
  private unique = 1n;
  private readonly waiting = new Map<bigint, (r: { error: number; body: Buffer }) => void>();
  /** Nodes the session told us to forget the attributes of: GETATTR before next using them. */
  private readonly stale = new Set<bigint>();
  readonly session: KernelSession;
  private readonly wire = Buffer.alloc(1 << 17);
  /** What `layerfs stats` would show: each operation's time in the session, as it measures it. */
  readonly stats = new OpCounters();

  constructor(readonly union: Union, config: ServeConfig) {
    const log = { tracing: false, stats: this.stats, info(): void {}, bug(what: string, e: unknown): void { throw new Error(`${what}: ${String(e)}`); }, trace(): void {} };
    this.session = new KernelSession(union.ops, kernelPolicyFor(config), log, (b) => {
      const unique = b.readBigUInt64LE(8);
      if (unique === 0n) {
        // fuse_notify_inval_inode: what the kernel keeps of this node's attributes is gone.
        this.stale.add(b.readBigUInt64LE(16));
        return;
      }
      this.waiting.get(unique)?.({ error: -b.readInt32LE(4), body: b.subarray(16, b.readUInt32LE(0)) });
      this.waiting.delete(unique);
    });
    union.tellFixedXattrNames(this.session.knowXattrs);
    union.tellCopiedUp(this.session.copiedUp);
  }

  async send(op: Op, nodeid: bigint, body: Buffer): Promise<{ error: number; body: Buffer }> {
    const unique = this.unique++;
    const len = IN_HEADER + body.length;
    const b = this.wire;
    b.writeUInt32LE(len, 0);
    b.writeUInt32LE(op, 4);
    b.writeBigUInt64LE(unique, 8);
    b.writeBigUInt64LE(nodeid, 16);
    b.writeUInt32LE(0, 24);
    b.writeUInt32LE(0, 28);
    b.writeUInt32LE(process.pid, 32);
    b.writeUInt32LE(0, 36);
    body.copy(b, IN_HEADER);
    const reply = new Promise<{ error: number; body: Buffer }>((resolve) => this.waiting.set(unique, resolve));
    this.session.request(b, len);
    return reply;
  }

  async init(): Promise<void> {
    const b = Buffer.alloc(INIT_IN);
    b.writeUInt32LE(7, 0);
    b.writeUInt32LE(40, 4);
    b.writeUInt32LE(128 << 10, 8);
    b.writeUInt32LE(0xffffffff, 12);
    const r = await this.send(Op.INIT, 0n, b);
    if (r.error !== 0) throw new Error(`INIT: errno ${r.error}`);
  }

  /** A LOOKUP of `name` in `parent`, with the GETATTR of the parent the kernel would send first. */
  async lookup(parent: bigint, name: string): Promise<bigint> {
    if (this.stale.delete(parent)) {
      const g = await this.send(Op.GETATTR, parent, Buffer.alloc(16));
      if (g.error !== 0) throw new Error(`GETATTR ${parent}: errno ${g.error}`);
    }
    const r = await this.send(Op.LOOKUP, parent, Buffer.from(`${name}\0`));
    if (r.error !== 0) throw new Error(`LOOKUP ${name}: errno ${r.error}`);
    return r.body.readBigUInt64LE(0);
  }

  async appendOpen(node: bigint): Promise<void> {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(O_WRONLY | O_APPEND, 0);
    const r = await this.send(Op.OPEN, node, b);
    if (r.error !== 0) throw new Error(`OPEN: errno ${r.error}`);
    const rel = Buffer.alloc(24);
    rel.writeBigUInt64LE(r.body.readBigUInt64LE(0), 0);
    rel.writeUInt32LE(O_WRONLY | O_APPEND, 8);
    const done = await this.send(Op.RELEASE, node, rel);
    if (done.error !== 0) throw new Error(`RELEASE: errno ${done.error}`);
  }
}

/** Looks every path up from the root, each directory once (as the kernel keeps its entries). */
async function walk(k: Kernel, paths: readonly string[], each?: (node: bigint) => Promise<void>): Promise<void> {
  const nodes = new Map<string, bigint>([['', 1n]]);
  for (const p of paths) {
    let at = '';
    for (const part of p.split('/')) {
      const next = at === '' ? part : `${at}/${part}`;
      if (!nodes.has(next)) nodes.set(next, await k.lookup(nodes.get(at) as bigint, part));
      at = next;
    }
    if (each !== undefined) await each(nodes.get(p) as bigint);
  }
}

interface Sample {
  us: number;
  requests: number;
  perRequestUs: number;
  /** Per operation, as the session counted and timed it: mean and median µs. */
  ops: Record<string, { count: number; meanUs: number; p50Us: number }>;
}

async function run(config: ServeConfig, work: string | undefined, paths: readonly string[], append: boolean): Promise<Sample> {
  const union = createUnion({ lowers: config.lowers, upper: config.upper, work, whiteout: 'overlay' });
  try {
    const k = new Kernel(union, config);
    await k.init();
    const t0 = performance.now();
    await walk(k, paths, append ? (node) => k.appendOpen(node) : undefined);
    const us = (performance.now() - t0) * 1000;
    const ops = Object.fromEntries(Object.entries(k.stats.snapshot()).filter(([op]) => op !== 'init')
      .map(([op, x]) => [op, { count: x.count, meanUs: x.meanMicros, p50Us: x.p50Micros }]));
    const requests = Object.values(ops).reduce((a, x) => a + x.count, 0);
    return { us: us / paths.length, requests, perRequestUs: us / requests, ops };
  } finally {
    await union.close();
  }
}

function config(lowers: readonly string[], upper?: string, work?: string): ServeConfig {
  return { lowers, upper, work, mountpoint: '/nonexistent', readOnly: upper === undefined, allowOther: false, fuseOptions: [] };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const root = process.geteuid?.() === 0;
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-session-'));
  try {
    const stacks = writeLayerStacks(path.join(base, 'stacks'), o.layers, o.paths);
    const scenarios: Array<{ name: string; per: string; go: (round: number) => Promise<Sample> }> = stacks.stacks.map((s) => ({
      name: `lookup, ${s.layers} layer${s.layers === 1 ? '' : 's'}`,
      per: 'file',
      // Topmost first, as lowerdir= names them.
      go: () => run(config([...s.roots].reverse()), undefined, stacks.paths, false),
    }));
    if (root) {
      const ds = buildDataset({ files: o.files, bigBytes: 1 << 20, seed: 42 });
      fs.mkdirSync(path.join(base, 'image'));
      const roots = writeLayers(ds, path.join(base, 'image'));
      const targets = pickAppendTargets(ds, o.appends);
      scenarios.push({
        name: 'append (copy-up)',
        per: 'append',
        go: async (round) => {
          const dir = path.join(base, `rw${round}`);
          const upper = path.join(dir, 'upper');
          const work = path.join(dir, 'work', 'work');
          fs.mkdirSync(upper, { recursive: true });
          fs.mkdirSync(work, { recursive: true });
          try {
            return await run(config([...roots].reverse(), upper, path.dirname(work)), work, targets, true);
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
          }
        },
      });
    } else {
      process.stderr.write('bench:session: not root, so no append scenario (a copy-up writes trusted.* xattrs)\n');
    }
    const samples = new Map<string, Sample[]>(scenarios.map((s) => [s.name, []]));
    for (let round = 0; round < o.rounds; round++) {
      for (const s of scenarios) samples.get(s.name)?.push(await s.go(round));
    }
    const rows = scenarios.map((s) => {
      const all = samples.get(s.name) ?? [];
      const first = all[0] as Sample;
      const warm = all.slice(1);
      const med = (f: (x: Sample) => number): number => summarize(warm.map(f))?.median ?? NaN;
      const counts = Object.entries(first.ops).map(([op, x]) => `${op} ${x.count}`).join(', ');
      return [
        s.name, `${first.us.toFixed(1)} µs / ${s.per}`, `${first.perRequestUs.toFixed(1)} µs`,
        `${med((x) => x.us).toFixed(1)} µs / ${s.per}`, `${med((x) => x.perRequestUs).toFixed(1)} µs`, counts,
      ];
    });
    const opNames = [...new Set([...samples.values()].flatMap((all) => all.flatMap((x) => Object.keys(x.ops))))].sort();
    const date = new Date().toISOString().slice(0, 10);
    const md = [
      `# Kernel-engine session without FUSE, ${date}${o.tag ? ` (${o.tag})` : ''}`,
      '',
      `\`npm run bench:session\` on ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}, branches in ${os.tmpdir()}.`,
      `Lookups: ${o.paths} files in ${stacks.dirs} directories. Append: ${o.appends} files of a ${o.files}-file 3-layer image.`,
      `Round 1 (code not yet compiled, as in a fresh mount) apart; then the median of ${o.rounds - 1} rounds, scenarios interleaved.`,
      '',
      mdTable(['scenario', 'round 1', 'per request', `rounds 2–${o.rounds}`, 'per request', 'requests in a round'], rows),
      '',
      'Per operation, as the session times it (`layerfs stats`: from the request read to the reply',
      `written), mean (median) µs in rounds 2–${o.rounds}:`,
      '',
      mdTable(['scenario', ...opNames], scenarios.map((s) => [s.name, ...opNames.map((op) => {
        const warm = (samples.get(s.name) ?? []).slice(1).map((x) => x.ops[op]).filter((x) => x !== undefined);
        if (warm.length === 0) return '';
        const mean = summarize(warm.map((x) => x.meanUs))?.median ?? NaN;
        const p50 = summarize(warm.map((x) => x.p50Us))?.median ?? NaN;
        return `${mean.toFixed(1)} (${p50.toFixed(1)})`;
      })])),
      '',
    ].join('\n');
    writeReport(o.out, `session-${date}${o.tag ? `-${o.tag}` : ''}`, md, { options: o, samples: Object.fromEntries(samples) });
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:session: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
