// Snapshots of a directory tree (typically a mount point), for comparing layerfs with the kernel.
//
// A snapshot maps each virtual path ("/" for the root, "/a/b" below it) to what a user of the tree
// can observe through readdir + lstat (+ readlink, read, listxattr/getxattr):
//   type, permission bits (incl. setuid/setgid/sticky), uid, gid, size (files and symlinks),
//   sha256 of the content (files), link target (symlinks), rdev (devices), mtime truncated to ms
//   (every type: overlayfs shows the topmost layer's directory, mtime included), nlink (non-dirs),
//   and all extended attributes (names and hex values) from one `getfattr -R` run.
//
// Deliberately NOT compared (documented so nobody "fixes" it):
//   - st_ino and st_dev values: overlayfs and a FUSE server legitimately number inodes and devices
//     differently (xino, FUSE node ids, the FUSE connection's anonymous device). They are recorded
//     (SnapNode.ino) for RELATIONAL checks only: which paths share an inode (hard links, and no
//     false sharing), and that a path keeps its inode number (see inodeGroupDiffs/inodeStability);
//   - atime: reading for the snapshot changes it, and relatime makes it racy;
//   - ctime: cannot be set by the builder; copies/conversions legitimately change it;
//   - nlink of directories: overlayfs reports 1 for merged directories and the real count otherwise,
//     and tools treat 1 as "unknown"; a union file system may report either;
//   - st_blocks/st_blksize: storage details of the backing file system.
// Listed-but-unstatable names (lstat says ENOENT right after readdir listed them) are recorded as
// type "phantom": the kernel shows such entries for whiteouts in directories that exist in a single
// layer (see the differential suite).

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket' | 'phantom';

export interface SnapNode {
  type: NodeType;
  /** Permission bits (mode & 0o7777). */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Files and symlinks. */
  size?: number;
  /** Files: hex sha256 of the content read through the tree, or "skipped:<reason>". */
  sha256?: string;
  /** Symlinks. */
  target?: string;
  /** Devices: "major:minor". */
  rdev?: string;
  mtimeMs?: number;
  /** Non-directories. */
  nlink?: number;
  /** "st_dev:st_ino". NOT compared by diffNodes (see the header); used for relational checks only
   *  (inodeGroupDiffs: which paths share an inode, and stability over time). */
  ino?: string;
  /** All extended attributes, name -> hex value ("0x..."), when snapshotted with xattrs. */
  xattrs?: Record<string, string>;
  /** Phantoms: the lstat error code. */
  error?: string;
}

export interface Snapshot {
  root: string;
  nodes: Map<string, SnapNode>;
  /** Anomalies that are bugs whatever the other side shows: duplicate names in a listing, a d_type
   *  that disagrees with lstat, short reads, readdir/readlink errors. */
  problems: string[];
}

export interface SnapshotOptions {
  xattrs: boolean;
  content: boolean;
  /** Files larger than this are not hashed (sha256 "skipped:..."); default 64 MiB. */
  maxHashBytes?: number;
  /** Include directory mtimes (default true). */
  dirMtime?: boolean;
  /** Parallel lstat/read operations (default 16). */
  concurrency?: number;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
}

function typeOf(mode: bigint): NodeType {
  switch (Number(mode & 0o170000n)) {
    case 0o100000: return 'file';
    case 0o040000: return 'dir';
    case 0o120000: return 'symlink';
    case 0o010000: return 'fifo';
    case 0o020000: return 'chardev';
    case 0o060000: return 'blockdev';
    case 0o140000: return 'socket';
    default: throw new Error(`unknown file type in mode ${mode.toString(8)}`);
  }
}

function direntType(de: import('node:fs').Dirent): NodeType | undefined {
  if (de.isFile()) return 'file';
  if (de.isDirectory()) return 'dir';
  if (de.isSymbolicLink()) return 'symlink';
  if (de.isFIFO()) return 'fifo';
  if (de.isCharacterDevice()) return 'chardev';
  if (de.isBlockDevice()) return 'blockdev';
  if (de.isSocket()) return 'socket';
  return undefined; // DT_UNKNOWN
}

export function vjoin(dirV: string, name: string): string {
  return dirV === '/' ? `/${name}` : `${dirV}/${name}`;
}

export function realPath(root: string, vpath: string): string {
  return vpath === '/' ? root : root + vpath;
}

async function hashFile(p: string, expectedSize: number): Promise<{ sha: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const s = createReadStream(p, { highWaterMark: 1 << 20 });
    s.on('data', (chunk) => {
      const b = chunk as Buffer;
      bytes += b.length;
      h.update(b);
    });
    s.on('error', reject);
    s.on('end', () => resolve());
  });
  void expectedSize;
  return { sha: h.digest('hex'), bytes };
}

/** lstat one path and describe it (no xattrs). Exported for sampled comparisons of huge trees. */
export async function statNode(
  p: string,
  opts: { content: boolean; maxHashBytes?: number; dirMtime?: boolean },
  problems?: string[],
  vpath?: string,
): Promise<SnapNode> {
  let st: import('node:fs').BigIntStats;
  try {
    st = await fsp.lstat(p, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return { type: 'phantom', error: code };
  }
  const type = typeOf(st.mode);
  const n: SnapNode = {
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
  };
  if (type !== 'dir' || opts.dirMtime !== false) n.mtimeMs = Number(floorDiv(st.mtimeNs, 1_000_000n));
  if (type !== 'dir') n.nlink = Number(st.nlink);
  n.ino = `${st.dev}:${st.ino}`;
  if (type === 'file' || type === 'symlink') n.size = Number(st.size);
  if (type === 'chardev' || type === 'blockdev') {
    const rdev = st.rdev;
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    n.rdev = `${major}:${minor}`;
  }
  if (type === 'symlink') {
    try {
      n.target = await fsp.readlink(p);
    } catch (e) {
      problems?.push(`${vpath ?? p}: readlink failed: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  if (type === 'file' && opts.content) {
    const max = opts.maxHashBytes ?? 64 * 1024 * 1024;
    if (Number(st.size) > max) {
      n.sha256 = `skipped:size>${max}`;
    } else {
      try {
        const { sha, bytes } = await hashFile(p, Number(st.size));
        n.sha256 = sha;
        if (bytes !== Number(st.size)) problems?.push(`${vpath ?? p}: read ${bytes} bytes but st_size is ${st.size}`);
      } catch (e) {
        n.sha256 = `error:${(e as NodeJS.ErrnoException).code ?? String(e)}`;
      }
    }
  }
  return n;
}

async function pool<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(limit, items.length); w++) {
    workers.push((async () => {
      while (i < items.length) {
        const x = items[i++] as T;
        await fn(x);
      }
    })());
  }
  await Promise.all(workers);
}

/** Decode getfattr's escaping of file names (\ooo octal bytes, \\) into bytes, then UTF-8. */
function unescapeGetfattr(b: Buffer): string {
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number;
    if (c === 0x5c /* \ */ && i + 3 < b.length && /^[0-7]{3}$/.test(b.subarray(i + 1, i + 4).toString('latin1'))) {
      out.push(parseInt(b.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else if (c === 0x5c && b[i + 1] === 0x5c) {
      out.push(0x5c);
      i += 1;
    } else {
      out.push(c);
    }
  }
  return Buffer.from(out).toString('utf8');
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Spawn a command asynchronously (never blocks the event loop on a hung FUSE mount). */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        if (child.pid !== undefined) {
          try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
        }
      }, opts.timeoutMs);
    }
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => { if (timer) clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => undefined); // EPIPE when the child exits without reading
      child.stdin.end(opts.input);
    }
  });
}

/** All xattrs of every entry under root (symlinks not followed): vpath -> name -> hex value. */
export async function dumpXattrs(root: string): Promise<{ map: Map<string, Record<string, string>>; stderr: string }> {
  const r = await run('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], {
    env: { ...process.env, LC_ALL: 'C' },
    timeoutMs: 300_000,
  });
  // getfattr exits non-zero when one entry fails (e.g. a phantom); the rest of its output is valid.
  const map = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  const prefix = root.endsWith('/') ? root.slice(0, -1) : root;
  let start = 0;
  const buf = r.stdout;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    const line = buf.subarray(start, end);
    start = end + 1;
    if (line.length === 0) { cur = undefined; continue; }
    const s = line.toString('latin1');
    if (s.startsWith('# file: ')) {
      const p = unescapeGetfattr(line.subarray(8));
      let v: string;
      if (p === prefix) v = '/';
      else if (p.startsWith(prefix + '/')) v = p.slice(prefix.length);
      else throw new Error(`getfattr printed a path outside ${root}: ${p}`);
      cur = {};
      map.set(v, cur);
      continue;
    }
    const eq = s.indexOf('=');
    if (cur === undefined) throw new Error(`unexpected getfattr output line: ${s}`);
    if (eq < 0) cur[unescapeGetfattr(line)] = '';
    else cur[unescapeGetfattr(line.subarray(0, eq))] = s.slice(eq + 1);
  }
  if (r.code !== 0 && r.stderr.trim() === '') throw new Error(`getfattr failed (${r.code ?? r.signal}) on ${root}`);
  return { map, stderr: r.stderr };
}

/** Snapshot the tree under `root`. */
export async function snapshot(root: string, opts: SnapshotOptions): Promise<Snapshot> {
  const nodes = new Map<string, SnapNode>();
  const problems: string[] = [];
  const sopts = {
    content: opts.content,
    ...(opts.maxHashBytes !== undefined ? { maxHashBytes: opts.maxHashBytes } : {}),
    ...(opts.dirMtime !== undefined ? { dirMtime: opts.dirMtime } : {}),
  };
  const conc = opts.concurrency ?? 16;

  const rootNode = await statNode(root, sopts, problems, '/');
  nodes.set('/', rootNode);
  const queue: string[] = rootNode.type === 'dir' ? ['/'] : [];
  while (queue.length > 0) {
    const dv = queue.shift() as string;
    let ents: import('node:fs').Dirent[];
    try {
      ents = await fsp.readdir(realPath(root, dv), { withFileTypes: true });
    } catch (e) {
      problems.push(`${dv}: readdir failed: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      continue;
    }
    const seen = new Set<string>();
    const todo: { v: string; dt: NodeType | undefined }[] = [];
    for (const de of ents) {
      if (de.name === '.' || de.name === '..') continue;
      if (seen.has(de.name)) {
        problems.push(`${vjoin(dv, de.name)}: listed more than once in ${dv}`);
        continue;
      }
      seen.add(de.name);
      todo.push({ v: vjoin(dv, de.name), dt: direntType(de) });
    }
    const subdirs: string[] = [];
    await pool(todo, conc, async ({ v, dt }) => {
      const n = await statNode(realPath(root, v), sopts, problems, v);
      nodes.set(v, n);
      if (n.type !== 'phantom' && dt !== undefined && dt !== n.type) {
        problems.push(`${v}: readdir d_type says ${dt} but lstat says ${n.type}`);
      }
      if (n.type === 'dir') subdirs.push(v);
    });
    subdirs.sort();
    queue.push(...subdirs);
  }

  if (opts.xattrs) {
    const { map } = await dumpXattrs(root);
    for (const [v, n] of nodes) {
      if (n.type === 'phantom') continue;
      n.xattrs = map.get(v) ?? {};
    }
    for (const v of map.keys()) {
      if (!nodes.has(v)) problems.push(`${v}: getfattr -R found it but the snapshot walk did not`);
    }
  }

  const sorted = new Map([...nodes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { root, nodes: sorted, problems };
}

function fmt(field: string, v: unknown): string {
  if (v === undefined) return '(none)';
  if (field === 'mode' && typeof v === 'number') return `0${v.toString(8)}`;
  if (field === 'mtimeMs' && typeof v === 'number') {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? `${v} (out of Date range)` : `${v} (${d.toISOString()})`;
  }
  return JSON.stringify(v);
}

const FIELDS: (keyof SnapNode)[] = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'mtimeMs', 'nlink', 'xattrs', 'error'];

/** Compare two nodes; returns "field: a vs b" strings. */
export function diffNodes(a: SnapNode, b: SnapNode, labels: [string, string] = ['a', 'b']): string[] {
  const out: string[] = [];
  for (const f of FIELDS) {
    const va = a[f];
    const vb = b[f];
    if (f === 'xattrs') {
      const xa = (va ?? {}) as Record<string, string>;
      const xb = (vb ?? {}) as Record<string, string>;
      if (va === undefined || vb === undefined) continue; // one side did not collect xattrs
      for (const k of [...new Set([...Object.keys(xa), ...Object.keys(xb)])].sort()) {
        if (xa[k] !== xb[k]) out.push(`xattr ${k}: ${labels[0]} ${xa[k] ?? '(absent)'} vs ${labels[1]} ${xb[k] ?? '(absent)'}`);
      }
      continue;
    }
    if (JSON.stringify(va) !== JSON.stringify(vb)) out.push(`${f}: ${labels[0]} ${fmt(f, va)} vs ${labels[1]} ${fmt(f, vb)}`);
  }
  return out;
}

/**
 * Human-readable differences between two snapshots (the first `limit`, default 50, plus a count of
 * the rest). Problems are reported per side too. Empty when equal.
 */
export function diffSnapshots(a: Snapshot, b: Snapshot, labels: [string, string] = ['a', 'b'], limit = 50): string[] {
  const out: string[] = [];
  const keys = [...new Set([...a.nodes.keys(), ...b.nodes.keys()])].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  for (const k of keys) {
    const na = a.nodes.get(k);
    const nb = b.nodes.get(k);
    if (na === undefined) out.push(`${k}: only in ${labels[1]} (${nb?.type})`);
    else if (nb === undefined) out.push(`${k}: only in ${labels[0]} (${na.type})`);
    else for (const d of diffNodes(na, nb, labels)) out.push(`${k}: ${d}`);
  }
  const pa = new Set(a.problems);
  const pb = new Set(b.problems);
  for (const p of b.problems) if (!pa.has(p)) out.push(`problem in ${labels[1]}: ${p}`);
  for (const p of a.problems) if (!pb.has(p)) out.push(`problem in ${labels[0]}: ${p}`);
  if (out.length > limit) return [...out.slice(0, limit), `... and ${out.length - limit} more differences`];
  return out;
}

/**
 * Which paths share an inode ("st_dev:st_ino"): for each path with a number, the sorted names of
 * its inode, joined by " = " (a path of its own inode maps to itself).
 */
export function inodeGroups(s: Snapshot): Map<string, string> {
  const byIno = new Map<string, string[]>();
  for (const [v, n] of s.nodes) {
    if (n.ino === undefined || n.type === 'phantom') continue;
    const g = byIno.get(n.ino) ?? [];
    g.push(v);
    byIno.set(n.ino, g);
  }
  const of = new Map<string, string>();
  for (const g of byIno.values()) {
    const key = [...g].sort().join(' = ');
    for (const v of g) of.set(v, key);
  }
  return of;
}

/**
 * Compare which paths share an inode on each side: paths that are one inode on `a` (hard links)
 * must be one inode on `b`, and paths that are distinct on `a` must be distinct on `b` (a false
 * match makes tar, rsync -H, du and cp -a treat unrelated files as hard links). `excused(v)` may
 * excuse the difference of path v.
 */
export function inodeGroupDiffs(
  a: Snapshot, b: Snapshot, labels: [string, string] = ['a', 'b'], limit = 50,
  excused: (v: string) => boolean = () => false,
): string[] {
  const ga = inodeGroups(a);
  const gb = inodeGroups(b);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const [v, ka] of ga) {
    const kb = gb.get(v);
    if (kb === undefined || ka === kb || excused(v)) continue;
    const msg = `${v}: same inode as [${ka}] on ${labels[0]} but as [${kb}] on ${labels[1]}`;
    if (!seen.has(ka + '|' + kb)) { seen.add(ka + '|' + kb); out.push(msg); }
  }
  if (out.length > limit) return [...out.slice(0, limit), `... and ${out.length - limit} more`];
  return out;
}

// Node's readdir gives no d_ino; Python's os.scandir does (DirEntry.inode()).
const DINO_SCRIPT = `
import os, sys
bad = []
def walk(d):
    with os.scandir(d) as it:
        for e in it:
            try: ino = os.lstat(e.path).st_ino
            except FileNotFoundError: continue
            if e.inode() != ino: bad.append('%s: d_ino %d, st_ino %d' % (e.path[len(sys.argv[1]):], e.inode(), ino))
            if e.is_dir(follow_symlinks=False): walk(e.path)
walk(sys.argv[1])
print('\\n'.join(bad))
`;

/**
 * Entries whose d_ino (readdir) differs from their st_ino (lstat), below `root`: find, du and
 * tar take the two for one number (fuse-overlayfs#391 showed them apart). Listed but gone names
 * are left out.
 */
export async function dinoMismatches(root: string): Promise<string[]> {
  const r = await run('python3', ['-c', DINO_SCRIPT, root], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`d_ino walk of ${root} failed: ${r.stderr.trim()}`);
  return r.stdout.toString('utf8').split('\n').filter((l) => l !== '');
}

/** Paths whose "st_dev:st_ino" changed between two snapshots of the same mount. */
export function inodeStability(before: Snapshot, after: Snapshot, limit = 50): string[] {
  const out: string[] = [];
  for (const [v, n] of before.nodes) {
    const m = after.nodes.get(v);
    if (m === undefined || n.ino === undefined || m.ino === undefined) continue;
    if (n.ino !== m.ino) out.push(`${v}: st_dev:st_ino was ${n.ino}, later ${m.ino}`);
  }
  if (out.length > limit) return [...out.slice(0, limit), `... and ${out.length - limit} more`];
  return out;
}
