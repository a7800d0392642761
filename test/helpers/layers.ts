// Declarative builder for overlay layer sets, in the kernel's on-disk format or in the OCI format.
//
// A layer set is a list of LayerSpec, TOP FIRST (the same order as overlayfs' lowerdir=top:...:bottom).
// Each spec lists entries by virtual path ("a/b/c", no leading slash needed); missing parent
// directories are created implicitly (mode 0755, root-owned, with the layer's default mtime).
//
//   kernel format: whiteout = char device 0:0 named like the hidden entry;
//                  opaque dir = xattr trusted.overlay.opaque=y on the directory.
//   OCI format:    whiteout = empty regular file ".wh.NAME" next to where NAME would be;
//                  opaque dir = empty regular file ".wh..wh..opq" inside the directory.
//
// Every entry gets a deterministic mtime (explicit, or a per-layer default) so that snapshots are
// reproducible and the two formats of one layer set carry the same timestamps. Timestamps are set
// last, after everything that could touch a directory's mtime (creating entries, markers, fifos...).
//
// Privileged or non-Node operations (mknod, mkfifo, setfattr) are batched into one `sh` script per
// layer, which keeps building thousands of entries fast.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export type XattrValue = string | Buffer;

interface Owned {
  /** Virtual path inside the layer, e.g. "etc/passwd". "" or "/" means the layer root (dirs only). */
  path: string;
  uid?: number;
  gid?: number;
  /** Modification time in ms since the epoch (integral ms; may be 0 or negative). */
  mtime?: number;
}

export interface FileEntry extends Owned {
  type: 'file';
  content?: string | Buffer;
  /** Permission bits including setuid/setgid/sticky; default 0o644. */
  mode?: number;
  xattrs?: Record<string, XattrValue>;
  /** Extend (sparsely) or cut the file to this size after writing `content`. */
  size?: number;
  /** Extra writes at offsets (after `size`), e.g. a marker far into a sparse file. */
  writes?: { offset: number; data: string | Buffer }[];
}

export interface DirEntry extends Owned {
  type: 'dir';
  /** Default 0o755. */
  mode?: number;
  opaque?: boolean;
  xattrs?: Record<string, XattrValue>;
}

export interface SymlinkEntry extends Owned {
  type: 'symlink';
  target: string;
}

export interface FifoEntry extends Owned {
  type: 'fifo';
  /** Default 0o644. */
  mode?: number;
}

/** A character device that is NOT a whiteout (major:minor must not be 0:0). */
export interface CharDevEntry extends Owned {
  type: 'chardev';
  major: number;
  minor: number;
  /** Default 0o666. */
  mode?: number;
}

export interface HardlinkEntry {
  type: 'hardlink';
  path: string;
  /** Virtual path of a file made EARLIER in the same layer. */
  target: string;
}

export interface WhiteoutEntry {
  type: 'whiteout';
  path: string;
}

export type Entry = FileEntry | DirEntry | SymlinkEntry | FifoEntry | CharDevEntry | HardlinkEntry | WhiteoutEntry;

export interface LayerSpec {
  /** Directory name of the layer under the build root; default "L<index>" (index 0 = top). */
  name?: string;
  entries: Entry[];
}

export type LayerFormat = 'kernel' | 'oci';

/** An entry with every default filled in, as it was written to disk. */
export type ResolvedEntry =
  | (Required<Omit<FileEntry, 'size' | 'writes' | 'content'>> & {
      content: Buffer;
      size: number;
      writes: { offset: number; data: Buffer }[];
    })
  | (Required<DirEntry> & { implicit: boolean })
  | Required<SymlinkEntry>
  | Required<FifoEntry>
  | Required<CharDevEntry>
  | HardlinkEntry
  | WhiteoutEntry;

export interface BuiltLayer {
  dir: string;
  /** Entries in creation order; implicit parent dirs included; the root is path "". */
  entries: ResolvedEntry[];
}

export interface BuiltLayers {
  /** Layer directories, top first: ready for lowerdir=dirs.join(':') (after escaping). */
  dirs: string[];
  layers: BuiltLayer[];
}

/** Default mtime of layer `layerIndex` (0 = top), entry number `n`: distinct per layer, integral ms. */
export function defaultMtime(layerIndex: number, n: number): number {
  return Date.UTC(2021, 0, 1) - layerIndex * 86_400_000 + n * 1000 + 7;
}

export function normVpath(p: string): string {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  for (const c of parts) if (c === '..') throw new Error(`".." in virtual path ${JSON.stringify(p)}`);
  return parts.join('/');
}

/** Single-quote a string for sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A `touch -d` argument for an exact time in ns since the epoch (signed decimal seconds). */
export function touchStamp(ns: bigint): string {
  const neg = ns < 0n;
  const absNs = neg ? -ns : ns;
  return `@${neg ? '-' : ''}${absNs / 1_000_000_000n}.${String(absNs % 1_000_000_000n).padStart(9, '0')}`;
}

function hexValue(v: XattrValue): string {
  const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  return `0x${b.toString('hex')}`;
}

export function runScript(lines: string[], what: string): void {
  if (lines.length === 0) return;
  const r = spawnSync('sh', ['-e'], { input: lines.join('\n') + '\n', encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    throw new Error(`${what}: shell script failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().slice(0, 2000)}`);
  }
}

function buildOne(dir: string, spec: LayerSpec, layerIndex: number, format: LayerFormat): BuiltLayer {
  // The layer directory may exist already if it is empty (e.g. a mount point for its own tmpfs).
  if (!fs.existsSync(dir)) fs.mkdirSync(dir);
  else if (fs.readdirSync(dir).length > 0) throw new Error(`layer directory ${dir} is not empty`);
  let n = 0;
  const resolved: ResolvedEntry[] = [];
  const dirs = new Map<string, Required<DirEntry> & { implicit: boolean }>();
  const exists = new Set<string>(); // vpaths of non-dir entries made in this layer
  const script: string[] = [];
  const abs = (vp: string) => (vp === '' ? dir : path.join(dir, vp));

  const root: Required<DirEntry> & { implicit: boolean } = {
    type: 'dir', path: '', mode: 0o755, uid: 0, gid: 0, mtime: defaultMtime(layerIndex, n++),
    opaque: false, xattrs: {}, implicit: true,
  };
  dirs.set('', root);
  resolved.push(root);

  const ensureParents = (vp: string) => {
    const parts = vp.split('/');
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (dirs.has(p)) continue;
      if (exists.has(p)) throw new Error(`layer ${dir}: ${p} is not a directory (needed for ${vp})`);
      fs.mkdirSync(abs(p));
      const d: Required<DirEntry> & { implicit: boolean } = {
        type: 'dir', path: p, mode: 0o755, uid: 0, gid: 0, mtime: defaultMtime(layerIndex, n++),
        opaque: false, xattrs: {}, implicit: true,
      };
      dirs.set(p, d);
      resolved.push(d);
    }
  };
  const claim = (vp: string) => {
    if (vp === '') throw new Error(`layer ${dir}: only a dir entry may name the root`);
    if (dirs.has(vp) || exists.has(vp)) throw new Error(`layer ${dir}: ${vp} is listed twice`);
    ensureParents(vp);
    exists.add(vp);
  };

  for (const e of spec.entries) {
    const vp = normVpath(e.path);
    const a = abs(vp);
    switch (e.type) {
      case 'file': {
        claim(vp);
        const content = typeof e.content === 'string' ? Buffer.from(e.content, 'utf8') : (e.content ?? Buffer.alloc(0));
        fs.writeFileSync(a, content);
        if (e.size !== undefined) fs.truncateSync(a, e.size);
        const writes = (e.writes ?? []).map((w) => ({
          offset: w.offset,
          data: typeof w.data === 'string' ? Buffer.from(w.data, 'utf8') : w.data,
        }));
        if (writes.length > 0) {
          const fd = fs.openSync(a, 'r+');
          try {
            for (const w of writes) fs.writeSync(fd, w.data, 0, w.data.length, w.offset);
          } finally {
            fs.closeSync(fd);
          }
        }
        const size = fs.statSync(a).size;
        const r = {
          type: 'file' as const, path: vp, content, size, writes, mode: e.mode ?? 0o644, uid: e.uid ?? 0,
          gid: e.gid ?? 0, mtime: e.mtime ?? defaultMtime(layerIndex, n++), xattrs: e.xattrs ?? {},
        };
        for (const [k, v] of Object.entries(r.xattrs)) script.push(`setfattr -n ${shq(k)} -v ${hexValue(v)} ${shq(a)}`);
        resolved.push(r);
        break;
      }
      case 'dir': {
        if (exists.has(vp)) throw new Error(`layer ${dir}: ${vp} is listed twice`);
        if (vp !== '') ensureParents(vp);
        let d = dirs.get(vp);
        if (d === undefined) {
          fs.mkdirSync(a);
          d = {
            type: 'dir', path: vp, mode: 0o755, uid: 0, gid: 0, mtime: 0, opaque: false, xattrs: {}, implicit: false,
          };
          dirs.set(vp, d);
          resolved.push(d);
        } else if (!d.implicit && vp !== '') {
          throw new Error(`layer ${dir}: ${vp} is listed twice`);
        }
        d.implicit = false;
        d.mode = e.mode ?? 0o755;
        d.uid = e.uid ?? 0;
        d.gid = e.gid ?? 0;
        d.mtime = e.mtime ?? defaultMtime(layerIndex, n++);
        d.opaque = e.opaque ?? false;
        d.xattrs = e.xattrs ?? {};
        if (d.opaque) {
          if (vp === '') throw new Error('an opaque layer root is not supported');
          if (format === 'kernel') script.push(`setfattr -n trusted.overlay.opaque -v y ${shq(a)}`);
          else fs.writeFileSync(path.join(a, '.wh..wh..opq'), '');
        }
        for (const [k, v] of Object.entries(d.xattrs)) script.push(`setfattr -n ${shq(k)} -v ${hexValue(v)} ${shq(a)}`);
        break;
      }
      case 'symlink': {
        claim(vp);
        fs.symlinkSync(e.target, a);
        resolved.push({
          type: 'symlink', path: vp, target: e.target, uid: e.uid ?? 0, gid: e.gid ?? 0,
          mtime: e.mtime ?? defaultMtime(layerIndex, n++),
        });
        break;
      }
      case 'fifo': {
        claim(vp);
        const mode = e.mode ?? 0o644;
        script.push(`mkfifo ${shq(a)}`);
        resolved.push({
          type: 'fifo', path: vp, mode, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime: e.mtime ?? defaultMtime(layerIndex, n++),
        });
        break;
      }
      case 'chardev': {
        claim(vp);
        if (e.major === 0 && e.minor === 0) throw new Error('a 0:0 char device is a whiteout: use a whiteout entry');
        script.push(`mknod ${shq(a)} c ${e.major} ${e.minor}`);
        resolved.push({
          type: 'chardev', path: vp, major: e.major, minor: e.minor, mode: e.mode ?? 0o666, uid: e.uid ?? 0,
          gid: e.gid ?? 0, mtime: e.mtime ?? defaultMtime(layerIndex, n++),
        });
        break;
      }
      case 'hardlink': {
        const target = normVpath(e.target);
        if (!exists.has(target)) throw new Error(`layer ${dir}: hard link target ${target} not made yet`);
        claim(vp);
        fs.linkSync(abs(target), a);
        resolved.push({ type: 'hardlink', path: vp, target });
        break;
      }
      case 'whiteout': {
        claim(vp);
        if (format === 'kernel') {
          script.push(`mknod ${shq(a)} c 0 0`);
        } else {
          fs.writeFileSync(path.join(path.dirname(a), `.wh.${path.basename(a)}`), '');
        }
        resolved.push({ type: 'whiteout', path: vp });
        break;
      }
    }
  }

  runScript(script, `building layer ${dir}`);

  // Ownership, modes, then timestamps (children before parents is not needed: utimes/chown/chmod
  // never touch the parent's mtime, only creating/removing names does, and that is all done).
  const touch: string[] = [];
  for (const r of resolved) {
    if (r.type === 'hardlink' || r.type === 'whiteout') continue;
    const a = abs(r.path);
    fs.lchownSync(a, r.uid, r.gid);
    if (r.type !== 'symlink') fs.chmodSync(a, r.mode); // after chown: chown clears setuid/setgid
    // Node passes times as a double number of seconds, which cannot hold every ms exactly (1.123 s
    // may land on 1.122999999 s); half a microsecond more keeps the truncated-ms value exact.
    // Node replaces negative times with "now": those go through touch(1) instead.
    if (r.mtime < 0) {
      touch.push(`touch -h -d ${touchStamp(BigInt(r.mtime) * 1_000_000n)} ${shq(a)}`);
      continue;
    }
    const t = r.mtime / 1000 + 5e-7;
    fs.lutimesSync(a, t, t);
  }
  runScript(touch, `setting negative times in ${dir}`);
  return { dir, entries: resolved };
}

/**
 * Build `spec` (top first) under `root` (which must exist) in the given format. Layer i goes to
 * root/<spec[i].name ?? "L<i>">. Returns the layer directories (top first) and the resolved entries.
 */
export async function buildLayers(
  root: string,
  spec: LayerSpec[],
  opts: { format: LayerFormat; beforeEach?: (layerDir: string) => void },
): Promise<BuiltLayers> {
  const layers: BuiltLayer[] = [];
  spec.forEach((s, i) => {
    const dir = path.join(root, s.name ?? `L${i}`);
    opts.beforeEach?.(dir);
    layers.push(buildOne(dir, s, i, opts.format));
  });
  return { dirs: layers.map((l) => l.dir), layers };
}

/**
 * Convert one OCI-format layer into the kernel's format, so that the kernel's overlayfs can mount the
 * same content as an oracle: `cp -a` (keeps owners, modes, times, xattrs, hard links and holes), then
 * ".wh.NAME" -> char device 0:0 "NAME" and ".wh..wh..opq" -> trusted.overlay.opaque=y on its dir.
 * Directory timestamps are restored afterwards (replacing markers changes them).
 */
export async function ociToKernel(srcLayerDir: string, dstLayerDir: string): Promise<void> {
  // dstLayerDir must not exist, or be an empty directory (e.g. the mount point of its own tmpfs).
  let cpArgs = ['-a', '--sparse=always', '--', srcLayerDir, dstLayerDir];
  if (fs.existsSync(dstLayerDir)) {
    if (fs.readdirSync(dstLayerDir).length > 0) throw new Error(`ociToKernel: ${dstLayerDir} is not empty`);
    cpArgs = ['-a', '--sparse=always', '-T', '--', srcLayerDir, dstLayerDir];
  }
  const cp = spawnSync('cp', cpArgs, { encoding: 'utf8' });
  if (cp.status !== 0) throw new Error(`cp -a ${srcLayerDir} ${dstLayerDir} failed: ${cp.stderr.trim()}`);

  const script: string[] = [];
  const dirs: string[] = [];
  const walk = (rel: string) => {
    const d = rel === '' ? dstLayerDir : path.join(dstLayerDir, rel);
    dirs.push(rel);
    const names = fs.readdirSync(d, { withFileTypes: true });
    const present = new Set(names.map((x) => x.name));
    for (const de of names) {
      const name = de.name;
      if (name === '.wh..wh..opq') {
        fs.unlinkSync(path.join(d, name));
        script.push(`setfattr -n trusted.overlay.opaque -v y ${shq(d)}`);
      } else if (name.startsWith('.wh.')) {
        const hidden = name.slice(4);
        if (hidden === '' || hidden === '.' || hidden === '..') throw new Error(`ociToKernel: bad marker ${path.join(d, name)}`);
        if (present.has(hidden)) throw new Error(`ociToKernel: ${path.join(d, name)} and ${hidden} both present`);
        fs.unlinkSync(path.join(d, name));
        script.push(`mknod ${shq(path.join(d, hidden))} c 0 0`);
      } else if (de.isDirectory()) {
        walk(rel === '' ? name : path.join(rel, name));
      }
    }
  };
  walk('');
  runScript(script, `converting ${srcLayerDir}`);

  // Restore directory mtimes exactly (ns) from the source.
  const touch: string[] = [];
  for (const rel of dirs) {
    const st = fs.statSync(rel === '' ? srcLayerDir : path.join(srcLayerDir, rel), { bigint: true });
    const stamp = touchStamp(st.mtimeNs);
    touch.push(`touch -h -d ${stamp} ${shq(rel === '' ? dstLayerDir : path.join(dstLayerDir, rel))}`);
  }
  runScript(touch, `restoring dir times in ${dstLayerDir}`);
}

/** Convert every layer of an OCI-format set; returns the converted dirs (same order). */
export async function ociSetToKernel(
  dirs: string[],
  dstRoot: string,
  beforeEach?: (dst: string) => void,
): Promise<string[]> {
  fs.mkdirSync(dstRoot, { recursive: true });
  const out: string[] = [];
  for (const d of dirs) {
    const dst = path.join(dstRoot, path.basename(d));
    beforeEach?.(dst);
    await ociToKernel(d, dst);
    out.push(dst);
  }
  return out;
}
