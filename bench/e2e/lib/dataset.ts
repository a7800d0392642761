/**
 * Seeded generator for a layered, rootfs-like image used by the end-to-end benchmarks.
 *
 * The image is first built as an in-memory model (one entry map per layer), then the
 * merged view is computed from the model with overlayfs rules, and finally both the
 * layers and a flattened copy of the merged view ("plain") are written to disk.
 *
 * Layer index 0 is the BOTTOM layer (l1). The overlay lowerdir string therefore lists
 * the layers in reverse order: "l3:l2:l1" (leftmost = topmost).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Rng, WeightedPicker } from './rng.js';

export type Entry =
  | { kind: 'dir'; mode: number; opaque: boolean }
  | { kind: 'file'; mode: number; size: number; offset: number; big: boolean }
  | { kind: 'symlink'; target: string }
  | { kind: 'whiteout' };

export interface Layer {
  /** Directory name on disk (l1, l2, l3). */
  name: string;
  /** Relative path ('' = layer root) to entry. */
  entries: Map<string, Entry>;
  /** Directory path to the names it holds in this layer. */
  children: Map<string, Set<string>>;
}

export interface MergedEntry {
  entry: Exclude<Entry, { kind: 'whiteout' }>;
  /** Index of the layer the visible entry comes from (for directories: the topmost one). */
  layer: number;
}

export interface DatasetOptions {
  files: number;
  bigBytes: number;
  seed: number;
  layers?: number;
  /** Entries of a merged directory spread over all layers, at WIDE_PATH (full benchmark). */
  wide?: number;
  /** Files of a tree spread over the lower layers, at RM_PATH (full benchmark). */
  rmFiles?: number;
}

export interface DatasetStats {
  seed: number;
  requestedFiles: number;
  layers: Array<{
    name: string;
    dirs: number;
    files: number;
    symlinks: number;
    whiteouts: number;
    opaqueDirs: number;
    bytes: number;
  }>;
  overrides: number;
  fileWhiteouts: number;
  dirWhiteouts: string[];
  opaqueDirs: string[];
  merged: { dirs: number; files: number; symlinks: number; bytes: number; maxDepth: number; maxFanout: number };
  bigFile: string;
  bigBytes: number;
  /** Directories made for single workloads of the full benchmark. */
  workloadDirs?: {
    wide?: { path: string; entries: number; whiteouts: number; overrides: number };
    rm?: { path: string; files: number; subdirs: number };
  };
}

export interface Dataset {
  layers: Layer[];
  merged: Map<string, MergedEntry>;
  stats: DatasetStats;
  /** Paths of files whose visible version comes from an override (for content checks). */
  overridden: string[];
  /** Relative path of the big file. */
  bigPath: string;
  /** Seeded byte pool the small files are sliced from. */
  pool: Buffer;
  seed: number;
}

const KiB = 1024;
const MAX_SMALL = 16 * KiB;
const POOL_BYTES = 1024 * KiB + MAX_SMALL;
export const BIG_PATH = 'var/lib/bench/big.img';
/** A directory with many entries from every layer (for `ls -l`). */
export const WIDE_PATH = 'usr/share/bench-wide';
/** A tree of files in the lower layers that the `rm -rf` workload deletes. */
export const RM_PATH = 'var/cache/bench-rm';

/** Top-level and well-known directories of a Debian-like rootfs, with a file-density weight. */
const SKELETON: ReadonlyArray<readonly [string, number]> = [
  ['etc', 2], ['etc/default', 1], ['etc/systemd/system', 1], ['etc/ssl/certs', 6], ['etc/apt', 1],
  ['usr', 0.1], ['usr/bin', 40], ['usr/sbin', 10], ['usr/lib', 4], ['usr/lib/x86_64-linux-gnu', 35],
  ['usr/lib/python3/dist-packages', 4], ['usr/libexec', 2], ['usr/include', 4], ['usr/include/linux', 15],
  ['usr/share', 0.2], ['usr/share/doc', 1], ['usr/share/man/man1', 25], ['usr/share/man/man3', 12],
  ['usr/share/man/man5', 4], ['usr/share/man/man8', 6], ['usr/share/locale', 0.5], ['usr/share/zoneinfo', 3],
  ['usr/share/i18n/charmaps', 8], ['usr/share/perl5', 2], ['usr/local/bin', 0.5],
  ['var', 0.1], ['var/lib/dpkg/info', 30], ['var/cache/apt', 1], ['var/log', 1], ['var/lib/bench', 0],
  ['opt', 0.1], ['srv', 0.1], ['root', 0.3], ['home', 0.1], ['boot', 0.5], ['lib', 0.1], ['lib/modules', 1],
];
/** Directories that, as in a real rootfs, collect many subdirectories. */
const HUBS = [
  'usr/share/doc', 'usr/share/locale', 'usr/lib/x86_64-linux-gnu', 'usr/include', 'usr/lib/python3/dist-packages',
  'usr/share/perl5', 'usr/share', 'usr/lib', 'etc', 'lib/modules', 'usr/share/zoneinfo',
];
const EXTENSIONS = ['', '', '', '.so', '.so.1', '.h', '.conf', '.gz', '.py', '.pm', '.txt', '.mo', '.html', '.list', '.md5sums', '.json'];
const NAME_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz_-';

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function depthOf(p: string): number {
  return p === '' ? 0 : p.split('/').length;
}

function newLayer(name: string): Layer {
  const layer: Layer = { name, entries: new Map(), children: new Map() };
  layer.entries.set('', { kind: 'dir', mode: 0o755, opaque: false });
  layer.children.set('', new Set());
  return layer;
}

/** Creates dir `p` and its parents in `layer`. Returns false when a non-directory is in the way. */
function ensureDir(layer: Layer, p: string): boolean {
  const existing = layer.entries.get(p);
  if (existing) return existing.kind === 'dir';
  if (!ensureDir(layer, parentOf(p))) return false;
  layer.entries.set(p, { kind: 'dir', mode: 0o755, opaque: false });
  layer.children.set(p, new Set());
  layer.children.get(parentOf(p))?.add(path.posix.basename(p));
  return true;
}

/** Adds a non-directory entry; returns false if the path is taken or a parent is not a dir. */
function addLeaf(layer: Layer, p: string, entry: Entry): boolean {
  if (layer.entries.has(p)) return false;
  if (!ensureDir(layer, parentOf(p))) return false;
  layer.entries.set(p, entry);
  layer.children.get(parentOf(p))?.add(path.posix.basename(p));
  return true;
}

function randomName(rng: Rng, withExt: boolean): string {
  const len = rng.int(3, 14);
  let s = '';
  for (let i = 0; i < len; i++) s += NAME_CHARS[rng.int(0, NAME_CHARS.length - 1)];
  if (/^[-_]/.test(s)) s = 'x' + s;
  if (!withExt) return rng.chance(0.15) ? `${s}-${rng.int(0, 9)}.${rng.int(0, 30)}` : s;
  return s + rng.pick(EXTENSIONS);
}

function smallSize(rng: Rng): number {
  if (rng.chance(0.04)) return 0;
  // Skewed towards small files, as in a real rootfs (median around 2-3 KiB), capped at 16 KiB.
  return Math.min(MAX_SMALL, Math.floor((MAX_SMALL + 1) * Math.pow(rng.float(), 2.3)));
}

function pickLayer(rng: Rng, weights: readonly number[]): number {
  const x = rng.float() * weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  for (let i = 0; i < weights.length; i++) {
    acc += weights[i] as number;
    if (x < acc) return i;
  }
  return weights.length - 1;
}

/** Builds the in-memory model of the layered image and its merged view. */
export function buildDataset(opts: DatasetOptions): Dataset {
  const rng = new Rng(opts.seed);
  const nLayers = opts.layers ?? 3;
  const layerWeights = nLayers === 3 ? [0.6, 0.25, 0.15] : Array.from({ length: nLayers }, () => 1);
  const layers = Array.from({ length: nLayers }, (_, i) => newLayer(`l${i + 1}`));
  const top = nLayers - 1;
  const pool = rng.fill(Buffer.alloc(POOL_BYTES));

  // 1. Directory tree (the union of all layers' directories).
  const dirs: string[] = [];
  const dirNames = new Map<string, Set<string>>([['', new Set()]]);
  const dirWeight = new Map<string, number>();
  const skeleton = new Set<string>(['']);
  const addDir = (p: string): void => {
    if (dirNames.has(p)) return;
    addDir(parentOf(p));
    dirNames.set(p, new Set());
    dirNames.get(parentOf(p))?.add(path.posix.basename(p));
    dirs.push(p);
  };
  for (const [p, w] of SKELETON) {
    addDir(p);
    dirWeight.set(p, w);
  }
  for (const d of dirs) skeleton.add(d);
  const targetDirs = Math.max(dirs.length + 1, Math.round(opts.files / 9));
  const hubs = HUBS.filter((h) => dirNames.has(h));
  while (dirs.length < targetDirs) {
    const r = rng.float();
    let parent: string;
    if (r < 0.45) parent = rng.pick(dirs);
    else if (r < 0.8) parent = parentOf(rng.pick(dirs)); // siblings of a random dir: wide dirs get wider
    else parent = rng.pick(hubs);
    if (parent === '' || depthOf(parent) >= 11) continue;
    const names = dirNames.get(parent);
    if (!names) continue;
    const name = randomName(rng, false);
    if (names.has(name)) continue;
    addDir(`${parent}/${name}`);
  }

  // Per-directory file density (log-normal, boosted for the well-known big dirs) and "home" layer:
  // most files of a directory come from one layer, as when image layers add packages.
  const fileDirs = dirs.filter((d) => (dirWeight.get(d) ?? 1) > 0);
  const picker = new WeightedPicker(fileDirs.map((d) => Math.exp(1.2 * rng.normal()) * (dirWeight.get(d) ?? 1)));
  const homeLayer = new Map<string, number>(fileDirs.map((d) => [d, pickLayer(rng, layerWeights)]));

  // 2. Files and symlinks: each path is created in exactly one layer here.
  const placed: Array<{ path: string; layer: number }> = [];
  const namesInDir = new Map<string, Set<string>>();
  let created = 0;
  let attempts = 0;
  while (created < opts.files && attempts < opts.files * 20) {
    attempts++;
    const dir = fileDirs[picker.pick(rng)] as string;
    let taken = namesInDir.get(dir);
    if (!taken) namesInDir.set(dir, (taken = new Set(dirNames.get(dir))));
    const name = randomName(rng, true);
    if (taken.has(name)) continue;
    const layer = rng.chance(0.7) ? (homeLayer.get(dir) ?? 0) : pickLayer(rng, layerWeights);
    const p = `${dir}/${name}`;
    let entry: Entry;
    if (rng.chance(0.03) && taken.size > 0) {
      entry = { kind: 'symlink', target: rng.chance(0.7) ? rng.pick([...taken]) : `../${randomName(rng, true)}` };
    } else {
      const exec = /(^|\/)s?bin(\/|$)|libexec/.test(dir) || rng.chance(0.05);
      entry = { kind: 'file', mode: exec ? 0o755 : 0o644, size: smallSize(rng), offset: rng.int(0, POOL_BYTES - MAX_SMALL), big: false };
    }
    if (!addLeaf(layers[layer] as Layer, p, entry)) continue;
    taken.add(name);
    placed.push({ path: p, layer });
    created++;
  }
  // Directories that got no files still exist in some layer (empty dirs are part of a rootfs too).
  for (const d of dirs) {
    if (!layers.some((l) => l.entries.has(d))) ensureDir(layers[homeLayer.get(d) ?? 0] as Layer, d);
  }

  // The big file, in the bottom layer.
  addLeaf(layers[0] as Layer, BIG_PATH, { kind: 'file', mode: 0o644, size: opts.bigBytes, offset: 0, big: true });

  // 3. Overrides: an upper layer replaces the file with a different version.
  const topmost = new Map<string, number>(placed.map((x) => [x.path, x.layer]));
  const overridden: string[] = [];
  for (const x of placed) {
    if (x.layer >= top || !rng.chance(0.06)) continue;
    const l = rng.int(x.layer + 1, top);
    const entry: Entry = { kind: 'file', mode: 0o644, size: smallSize(rng), offset: rng.int(0, POOL_BYTES - MAX_SMALL), big: false };
    if (addLeaf(layers[l] as Layer, x.path, entry)) {
      topmost.set(x.path, l);
      overridden.push(x.path);
    }
  }

  // 4. File whiteouts: a layer above every copy of the file hides it.
  let fileWhiteouts = 0;
  for (const x of placed) {
    const t = topmost.get(x.path) ?? x.layer;
    if (t >= top || !rng.chance(0.03)) continue;
    if (addLeaf(layers[rng.int(t + 1, top)] as Layer, x.path, { kind: 'whiteout' })) fileWhiteouts++;
  }

  // Subtree sizes over the union of all layers, to choose dirs for dir whiteouts and opaque dirs.
  const subtreeCount = (d: string, onlyLayer?: number): number => {
    const prefix = `${d}/`;
    let n = 0;
    layers.forEach((l, i) => {
      if (onlyLayer !== undefined && i !== onlyLayer) return;
      for (const p of l.entries.keys()) if (p.startsWith(prefix)) n++;
    });
    return n;
  };
  const insideAny = (p: string, roots: readonly string[]): boolean =>
    roots.some((r) => p === r || p.startsWith(`${r}/`) || r.startsWith(`${p}/`));
  const candidates = rng.shuffle(dirs.filter((d) => !skeleton.has(d) && d !== parentOf(BIG_PATH)));

  // 5. Two directory whiteouts in the top layer (whole subtrees of lower layers disappear).
  const dirWhiteouts: string[] = [];
  for (const d of candidates) {
    if (dirWhiteouts.length >= 2) break;
    if (insideAny(d, dirWhiteouts)) continue;
    if ((layers[top] as Layer).entries.has(d) || subtreeCount(d, top) > 0) continue;
    const n = subtreeCount(d);
    if (n < 5 || n > 400) continue;
    if (addLeaf(layers[top] as Layer, d, { kind: 'whiteout' })) dirWhiteouts.push(d);
  }

  // 6. Two opaque directories in the middle layer: its own content replaces the lower one,
  // with a few new files inside.
  const opaqueDirs: string[] = [];
  const opaqueLayer = Math.min(1, top);
  for (const d of candidates) {
    if (opaqueDirs.length >= 2 || opaqueLayer === 0) break;
    if (insideAny(d, [...dirWhiteouts, ...opaqueDirs])) continue;
    const below = subtreeCount(d, 0);
    if (below < 5 || below > 600) continue;
    const l = layers[opaqueLayer] as Layer;
    if (!ensureDir(l, d)) continue;
    const e = l.entries.get(d);
    if (e?.kind !== 'dir') continue;
    e.opaque = true;
    opaqueDirs.push(d);
    const taken = new Set(l.children.get(d));
    for (let i = rng.int(3, 8); i > 0; i--) {
      const name = randomName(rng, true);
      if (taken.has(name)) continue;
      taken.add(name);
      addLeaf(l, `${d}/${name}`, { kind: 'file', mode: 0o644, size: smallSize(rng), offset: rng.int(0, POOL_BYTES - MAX_SMALL), big: false });
    }
  }

  // 7. Directories for single workloads of the full benchmark, from their own RNG streams so
  // that the rest of the image stays the same with or without them.
  const workloadDirs: NonNullable<DatasetStats['workloadDirs']> = {};
  if (opts.wide) workloadDirs.wide = addWideDir(layers, WIDE_PATH, opts.wide, new Rng(opts.seed ^ 0x3a1de), layerWeights);
  if (opts.rmFiles) workloadDirs.rm = addRmTree(layers, RM_PATH, opts.rmFiles, new Rng(opts.seed ^ 0x4e3f), layerWeights);

  const merged = mergeLayers(layers);
  const visibleOverrides = overridden.filter((p) => {
    const m = merged.get(p);
    return m !== undefined && m.layer > 0;
  });
  const stats = computeStats(opts, layers, merged, {
    overrides: overridden.length,
    fileWhiteouts,
    dirWhiteouts,
    opaqueDirs,
  });
  if (opts.wide || opts.rmFiles) stats.workloadDirs = workloadDirs;
  return { layers, merged, stats, overridden: visibleOverrides, bigPath: BIG_PATH, pool, seed: opts.seed };
}

function smallFile(rng: Rng): Entry {
  return { kind: 'file', mode: 0o644, size: smallSize(rng), offset: rng.int(0, POOL_BYTES - MAX_SMALL), big: false };
}

/**
 * A directory present in every layer whose merged view has exactly `entries` files: names
 * spread over the layers by weight, ~5 % of them overridden by a higher layer, and ~3 % more
 * names in lower layers hidden by whiteouts above them.
 */
function addWideDir(
  layers: Layer[],
  dir: string,
  entries: number,
  rng: Rng,
  weights: readonly number[],
): { path: string; entries: number; whiteouts: number; overrides: number } {
  const top = layers.length - 1;
  for (const l of layers) ensureDir(l, dir);
  const hidden = top > 0 ? Math.round(entries * 0.03) : 0;
  const names = new Set<string>();
  while (names.size < entries + hidden) names.add(randomName(rng, true));
  let whiteouts = 0;
  let overrides = 0;
  let i = 0;
  for (const name of names) {
    const p = `${dir}/${name}`;
    const hide = i++ < hidden;
    let layer = pickLayer(rng, weights);
    if (hide && layer === top) layer = rng.int(0, top - 1);
    addLeaf(layers[layer] as Layer, p, smallFile(rng));
    if (hide) {
      if (addLeaf(layers[rng.int(layer + 1, top)] as Layer, p, { kind: 'whiteout' })) whiteouts++;
    } else if (layer < top && rng.chance(0.05)) {
      if (addLeaf(layers[rng.int(layer + 1, top)] as Layer, p, smallFile(rng))) overrides++;
    }
  }
  return { path: dir, entries, whiteouts, overrides };
}

/** A tree of `files` files in ~sqrt(files) subdirectories, spread over the layers by weight. */
function addRmTree(
  layers: Layer[],
  dir: string,
  files: number,
  rng: Rng,
  weights: readonly number[],
): { path: string; files: number; subdirs: number } {
  const nSub = Math.max(1, Math.round(Math.sqrt(files)));
  const subs = Array.from({ length: nSub }, (_, i) => `${dir}/${randomName(rng, false)}.${i}`);
  const taken = new Map<string, Set<string>>(subs.map((d) => [d, new Set()]));
  for (let i = 0; i < files; ) {
    const sub = subs[i % nSub] as string;
    const name = randomName(rng, true);
    const names = taken.get(sub) as Set<string>;
    if (names.has(name)) continue;
    names.add(name);
    addLeaf(layers[pickLayer(rng, weights)] as Layer, `${sub}/${name}`, smallFile(rng));
    i++;
  }
  return { path: dir, files, subdirs: nSub };
}

/** Relative paths of every visible regular file except the big one, sorted. */
export function smallFilePaths(ds: Dataset): string[] {
  const out: string[] = [];
  for (const [p, m] of ds.merged) if (m.entry.kind === 'file' && !m.entry.big) out.push(p);
  return out.sort();
}

/**
 * `n` visible regular files of the rootfs part (not in the workload directories), chosen with
 * a seeded RNG, sorted: the copy-up workload appends to them.
 */
export function pickAppendTargets(ds: Dataset, n: number): string[] {
  const skip = [WIDE_PATH, RM_PATH].map((d) => `${d}/`);
  const files = smallFilePaths(ds).filter((p) => !skip.some((d) => p.startsWith(d)));
  return new Rng(ds.seed ^ 0xa99e).shuffle(files).slice(0, n).sort();
}

/**
 * Merged view with overlayfs rules: the topmost entry of a name wins; a whiteout hides the
 * name; a directory merges with same-named directories below it until an opaque directory,
 * a whiteout or a non-directory is met.
 */
export function mergeLayers(layers: readonly Layer[]): Map<string, MergedEntry> {
  const out = new Map<string, MergedEntry>();
  const topDown = layers.map((_, i) => i).reverse();
  const walk = (dir: string, stack: readonly number[]): void => {
    const names = new Set<string>();
    for (const li of stack) for (const n of (layers[li] as Layer).children.get(dir) ?? []) names.add(n);
    for (const name of names) {
      const p = dir === '' ? name : `${dir}/${name}`;
      let first = -1;
      for (const li of stack) {
        if ((layers[li] as Layer).entries.has(p)) {
          first = li;
          break;
        }
      }
      const e = (layers[first] as Layer | undefined)?.entries.get(p);
      if (!e || e.kind === 'whiteout') continue;
      out.set(p, { entry: e, layer: first });
      if (e.kind !== 'dir') continue;
      const sub: number[] = [];
      for (const li of stack.slice(stack.indexOf(first))) {
        const x = (layers[li] as Layer).entries.get(p);
        if (!x) continue;
        if (x.kind !== 'dir') break;
        sub.push(li);
        if (x.opaque) break;
      }
      walk(p, sub);
    }
  };
  const root = (layers[layers.length - 1] as Layer).entries.get('');
  if (root?.kind === 'dir') out.set('', { entry: root, layer: layers.length - 1 });
  walk('', topDown);
  return out;
}

function computeStats(
  opts: DatasetOptions,
  layers: readonly Layer[],
  merged: Map<string, MergedEntry>,
  extra: { overrides: number; fileWhiteouts: number; dirWhiteouts: string[]; opaqueDirs: string[] },
): DatasetStats {
  const layerStats = layers.map((l) => {
    const s = { name: l.name, dirs: 0, files: 0, symlinks: 0, whiteouts: 0, opaqueDirs: 0, bytes: 0 };
    for (const e of l.entries.values()) {
      if (e.kind === 'dir') {
        s.dirs++;
        if (e.opaque) s.opaqueDirs++;
      } else if (e.kind === 'file') {
        s.files++;
        s.bytes += e.size;
      } else if (e.kind === 'symlink') s.symlinks++;
      else s.whiteouts++;
    }
    return s;
  });
  const m = { dirs: 0, files: 0, symlinks: 0, bytes: 0, maxDepth: 0, maxFanout: 0 };
  const fanout = new Map<string, number>();
  for (const [p, { entry }] of merged) {
    if (p === '') continue;
    if (entry.kind === 'dir') m.dirs++;
    else if (entry.kind === 'file') {
      m.files++;
      m.bytes += entry.size;
    } else m.symlinks++;
    m.maxDepth = Math.max(m.maxDepth, depthOf(p));
    const parent = parentOf(p);
    fanout.set(parent, (fanout.get(parent) ?? 0) + 1);
  }
  for (const n of fanout.values()) m.maxFanout = Math.max(m.maxFanout, n);
  return {
    seed: opts.seed,
    requestedFiles: opts.files,
    layers: layerStats,
    ...extra,
    merged: m,
    bigFile: BIG_PATH,
    bigBytes: opts.bigBytes,
  };
}

/** Bytes of tmpfs the layers plus the plain copy will use (page-rounded, with headroom). */
export function estimateTmpfsBytes(ds: Dataset): number {
  const page = 4096;
  const round = (n: number): number => Math.ceil(n / page) * page;
  let bytes = 0;
  let entries = 0;
  for (const l of ds.layers) {
    for (const e of l.entries.values()) {
      entries++;
      if (e.kind === 'file') bytes += round(e.size);
    }
  }
  for (const { entry } of ds.merged.values()) {
    entries++;
    if (entry.kind === 'file') bytes += round(entry.size);
  }
  // Directories, symlinks and inodes cost a little too; keep generous headroom.
  return Math.ceil(bytes * 1.05) + entries * 2048 + 128 * 1024 * 1024;
}

function writeBig(file: string, size: number, seed: number): void {
  const chunk = new Rng(seed ^ 0x0b16f11e).fill(Buffer.alloc(4 * 1024 * 1024 + 4096));
  const fd = fs.openSync(file, 'w', 0o644);
  try {
    let written = 0;
    let i = 0;
    while (written < size) {
      // Shift the window every chunk so the file does not repeat with a short period.
      const off = (i * 4093) % 4096;
      const n = Math.min(4 * 1024 * 1024, size - written);
      fs.writeSync(fd, chunk, off, n, written);
      written += n;
      i++;
    }
  } finally {
    fs.closeSync(fd);
  }
}

function contentOf(ds: Dataset, e: Extract<Entry, { kind: 'file' }>): Buffer {
  return ds.pool.subarray(e.offset, e.offset + e.size);
}

function runScript(lines: string[], what: string): void {
  if (lines.length === 0) return;
  const r = spawnSync('/bin/sh', ['-e', '-s'], { input: lines.join('\n') + '\n', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what} failed: ${r.stderr || r.error?.message || `status ${r.status}`}`);
}

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Writes every layer under `base/<layer.name>`. Whiteouts are char 0:0 devices, opaque = xattr. */
export function writeLayers(ds: Dataset, base: string): string[] {
  const roots: string[] = [];
  for (const layer of ds.layers) {
    const root = path.join(base, layer.name);
    roots.push(root);
    fs.mkdirSync(root, { mode: 0o755 });
    const mknod: string[] = [];
    const xattr: string[] = [];
    const sorted = [...layer.entries.keys()].sort();
    for (const p of sorted) {
      const e = layer.entries.get(p) as Entry;
      const abs = p === '' ? root : path.join(root, p);
      switch (e.kind) {
        case 'dir':
          if (p !== '') fs.mkdirSync(abs, { mode: e.mode });
          fs.chmodSync(abs, e.mode);
          if (e.opaque) xattr.push(`setfattr -n trusted.overlay.opaque -v y -- ${shq(abs)}`);
          break;
        case 'file':
          if (e.big) writeBig(abs, e.size, ds.seed);
          else fs.writeFileSync(abs, contentOf(ds, e), { mode: e.mode });
          fs.chmodSync(abs, e.mode);
          break;
        case 'symlink':
          fs.symlinkSync(e.target, abs);
          break;
        case 'whiteout':
          mknod.push(`mknod -m 000 -- ${shq(abs)} c 0 0`);
          break;
      }
    }
    runScript(mknod, `mknod whiteouts in ${root}`);
    runScript(xattr, `setfattr opaque dirs in ${root}`);
  }
  return roots;
}

/**
 * Writes the merged view as a plain directory tree (copying file data from the layers).
 * With `linkBig` the big file is hard-linked from its layer instead of copied (for writable
 * copies whose workloads never touch it).
 */
export function writePlain(ds: Dataset, layerRoots: readonly string[], dest: string, linkBig = false): void {
  fs.mkdirSync(dest, { mode: 0o755 });
  for (const p of [...ds.merged.keys()].sort()) {
    if (p === '') continue;
    const { entry, layer } = ds.merged.get(p) as MergedEntry;
    const abs = path.join(dest, p);
    if (entry.kind === 'dir') {
      fs.mkdirSync(abs, { mode: entry.mode });
      fs.chmodSync(abs, entry.mode);
    } else if (entry.kind === 'file') {
      if (linkBig && entry.big) fs.linkSync(path.join(layerRoots[layer] as string, p), abs);
      else {
        fs.copyFileSync(path.join(layerRoots[layer] as string, p), abs);
        fs.chmodSync(abs, entry.mode);
      }
    } else {
      fs.symlinkSync(entry.target, abs);
    }
  }
}

/** unionfs-fuse's meta directory at the root of each branch (Debian's unionfs-fuse 1.0). */
export const UNIONFS_META = '.unionfs-fuse';
const UNIONFS_HIDE = '_HIDDEN~';

/**
 * Writes the layers again in unionfs-fuse's own format under `base/<layer.name>`, sharing file
 * data with the kernel-format layers through hard links: a whiteout becomes an empty file
 * `.unionfs-fuse/PATH_HIDDEN~`, and an opaque directory is the directory plus a hide marker for
 * itself in the same branch (unionfs-fuse finds the directory there first, and the marker
 * hides everything below it in lower branches: the way unionfs-fuse itself records rmdir +
 * mkdir). Needs `-o cow` at mount time, without which unionfs-fuse ignores hide markers.
 */
export function writeUnionfsLayers(ds: Dataset, layerRoots: readonly string[], base: string): string[] {
  const roots: string[] = [];
  ds.layers.forEach((layer, li) => {
    const root = path.join(base, layer.name);
    const src = layerRoots[li] as string;
    roots.push(root);
    fs.mkdirSync(root, { mode: 0o755 });
    const hide = (p: string, asDir: boolean): void => {
      const marker = path.join(root, UNIONFS_META, `${p}${UNIONFS_HIDE}`);
      fs.mkdirSync(path.dirname(marker), { recursive: true, mode: 0o755 });
      if (asDir) fs.mkdirSync(marker, { mode: 0o700 });
      else fs.writeFileSync(marker, '', { mode: 0o600 });
    };
    for (const p of [...layer.entries.keys()].sort()) {
      const e = layer.entries.get(p) as Entry;
      const abs = p === '' ? root : path.join(root, p);
      switch (e.kind) {
        case 'dir':
          if (p !== '') fs.mkdirSync(abs, { mode: e.mode });
          fs.chmodSync(abs, e.mode);
          if (e.opaque) hide(p, true);
          break;
        case 'file':
          fs.linkSync(path.join(src, p), abs);
          break;
        case 'symlink':
          fs.symlinkSync(e.target, abs);
          break;
        case 'whiteout':
          hide(p, false);
          break;
      }
    }
  });
  return roots;
}
