// `layerfs apply`: extract a layer tar (plain, gzip or zstd, told apart by its first bytes) into
// a directory, with its whiteouts in one of three forms:
//   overlay  ".wh.X" -> char device 0:0 named X (owned as the header says), ".wh..wh..opq" ->
//            trusted.overlay.opaque=y on the directory: DIR becomes an upper / lower for a mount;
//   oci      ".wh." files are kept as they are (layerfs mounts those too);
//   flatten  they are applied: ".wh.X" deletes X, ".wh..wh..opq" deletes what the directory held
//            before this layer (an image unpacked onto a root filesystem).
// OCI: a whiteout hides only what lower layers hold, never an entry of its own layer, wherever
// the two come in the tar. So the paths this layer writes are remembered, and a whiteout or an
// opaque marker never removes one of them (in flatten mode), and in overlay mode a directory of
// this layer that a whiteout names, or that replaces a whiteout, becomes opaque instead.
// Metadata: mode, owner (when running as root), mtime/atime (PAX times to the nanosecond;
// directories' times set last, after everything inside them is written), xattrs from PAX
// SCHILY.xattr.* (never trusted.overlay.*: the overlay's bookkeeping is not taken from a tar).
// An entry replaces an existing non-directory of its name; a directory over a directory merges
// (its attributes replaced); anything over a directory replaces the directory and its contents.
//
// A hostile tar cannot reach outside DIR (src/layer/names.ts: absolute names, "..", NUL are
// refused): every directory on an entry's way is checked with lstat, component by component from
// DIR, and one that is a symbolic link stops the layer (so a link an earlier entry made is never
// followed by a later one); files are created with O_CREAT|O_EXCL|O_NOFOLLOW after the old entry
// is unlinked; metadata calls never follow links; a hard link's target passes the same checks.
// Device nodes are refused unless allowDevices. A refused entry throws a LayerError naming it;
// what the layer wrote into DIR before it stays (DIR is then partly written: apply into a fresh
// directory and rename it into place, or discard it, to make a layer appear whole or not at all).
// Concurrent changes to DIR by other processes while applying are not defended against.
import { constants } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Header } from 'tar-stream';
import { FsError, fromNodeError, isErrnoCode } from '../errno.js';
import * as host from '../host/fs.js';
import { listXattr, mknod, removeXattr, setTimes, setXattr } from '../host/libc.js';
import type { RealPath } from '../path.js';
import { XATTR_OPAQUE, XATTR_PREFIX, isKernelWhiteout } from '../whiteout.js';
import { LayerError } from './errors.js';
import { ancestorsOf, entryComponents, joinRel, markerOf, type MarkerKind } from './names.js';
import { XATTR_RECORD, layerExtract, paxOf, type PaxValues } from './tar.js';
import { isLayerXattr } from './upper.js';
import { createZstdDecompress } from './zstd.js';

export type WhiteoutMode = 'overlay' | 'oci' | 'flatten';

export interface ApplyOptions {
  readonly whiteout: WhiteoutMode;
  /** Create character and block devices (default: refused). A char 0:0 (a whiteout) is always allowed. */
  readonly allowDevices?: boolean;
}

export interface ApplyStats {
  /** Tar entries read. */
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Fifos and device nodes. */
  special: number;
  /** ".wh.X" entries (written as whiteouts, kept, or applied, by the mode). */
  whiteouts: number;
  opaques: number;
  /** Entries of DIR removed by whiteouts and replacements. */
  removed: number;
  /** File data bytes written. */
  bytes: number;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const OPAQUE_Y = Buffer.from('y');
const { S_IFCHR, S_IFBLK, S_IFIFO } = constants;

/** Apply the layer tar read from `input` to `dir` (created if missing). */
export async function applyLayer(input: Readable, dir: string, opts: ApplyOptions): Promise<ApplyStats> {
  await makeDirs(resolve(dir) as RealPath);
  const applier = new Applier(host.realpathSync(dir) as RealPath, opts);
  const tarStream = await decompressed(input);
  const extract = layerExtract();
  // What failed first is what to report: a cut or corrupt stream also ends the entry being read
  // with an error of its own ("Stream was destroyed"), which says nothing.
  let sourceError: Error | undefined;
  tarStream.on('error', (e: Error) => {
    sourceError ??= e;
    extract.destroy(e);
  });
  tarStream.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      try {
        await applier.entry(entry.header, entry);
      } finally {
        await drain(entry);
      }
    }
  } catch (e) {
    tarStream.unpipe();
    tarStream.destroy();
    throw asLayerError(sourceError ?? e);
  }
  await applier.finish();
  return applier.stats;
}

/** mkdir -p, 0755 (DIR and what leads to it are the user's, not layerfs's private dirs). */
async function makeDirs(p: RealPath): Promise<void> {
  if (host.lstatSyncOrUndefined(p) !== undefined) return;
  await makeDirs(dirname(p) as RealPath);
  try {
    await host.mkdir(p, 0o755);
  } catch (e) {
    if (!(e instanceof FsError && e.code === 'EEXIST')) throw e;
  }
}

/** The tar bytes: decompressed when the input starts with gzip's or zstd's magic. */
async function decompressed(input: Readable): Promise<Readable> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size < 4 && !ended) {
    const r = await it.next();
    if (r.done === true) ended = true;
    else {
      head.push(Buffer.from(r.value));
      size += r.value.length;
    }
  }
  const first = Buffer.concat(head);
  const rest = Readable.from((async function* () {
    if (first.length > 0) yield first;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done === true) return;
      yield r.value;
    }
  })());
  const zstd = startsWith(first, ZSTD_MAGIC);
  if (!zstd && !startsWith(first, GZIP_MAGIC)) return rest;
  const inflate = zstd ? createZstdDecompress() : createGunzip();
  rest.on('error', (e) => inflate.destroy(e));
  inflate.on('error', (e) => {
    (e as Error).message = `the layer's ${zstd ? 'zstd' : 'gzip'} data is corrupt (${(e as Error).message})`;
  });
  return rest.pipe(inflate);
}

function startsWith(b: Buffer, magic: readonly number[]): boolean {
  return b.length >= magic.length && magic.every((m, i) => b[i] === m);
}

async function drain(data: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of data) {
    // discarded: a whiteout's or a refused entry's bytes
  }
}

function asLayerError(e: unknown): unknown {
  if (e instanceof LayerError || e instanceof FsError) return e;
  if (isErrnoCode((e as { code?: unknown } | null)?.code)) return fromNodeError(e, 'read');
  const msg = e instanceof Error ? e.message : String(e);
  if (/the layer's (gzip|zstd) data/.test(msg)) return new LayerError('invalid', undefined, msg);
  return new LayerError('invalid', undefined, `the layer is not a valid tar (${msg})`);
}

interface Times {
  readonly atime: bigint;
  readonly mtime: bigint;
}

class Applier {
  readonly stats: ApplyStats = {
    entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, special: 0, whiteouts: 0, opaques: 0, removed: 0, bytes: 0,
  };
  /** Paths this layer wrote (entries and the parents it had to make). */
  readonly #written = new Set<string>();
  /** Directories with something this layer wrote below them. */
  readonly #writtenBelow = new Set<string>();
  /** Paths this layer whites out. */
  readonly #whitedOut = new Set<string>();
  /** Directories' times, set when everything is written (a later entry may still go into one). */
  readonly #dirTimes = new Map<RealPath, Times>();
  readonly #asRoot = process.getuid?.() === 0;

  constructor(
    readonly root: RealPath,
    readonly opts: ApplyOptions,
  ) {}

  async entry(h: Header, data: AsyncIterable<unknown>): Promise<void> {
    this.stats.entries++;
    const comps = entryComponents(h.name, h.name);
    if (comps.some((c) => markerOf(c, h.name).kind === 'aufs-meta')) return; // aufs bookkeeping: skipped, as Docker does
    for (const c of comps.slice(0, -1)) {
      if (c.startsWith('.wh.')) throw new LayerError('invalid', h.name, `a whiteout name ("${c}") cannot be a directory`);
    }
    this.#checkType(h);
    if (comps.length === 0) return this.#root(h);
    const marker = markerOf(comps[comps.length - 1]!, h.name);
    if (marker.kind === 'none') return this.#write(comps, h, data);
    if (h.type !== 'file' && h.type !== 'contiguous-file') throw new LayerError('invalid', h.name, 'a whiteout must be a regular file');
    const parentComps = comps.slice(0, -1);
    if (this.#underWhiteout(parentComps)) return; // inside what this layer deletes: nothing to record
    if (marker.kind === 'whiteout') this.#whitedOut.add(joinRel(parentComps.join('/'), marker.target));
    if (marker.kind === 'whiteout') this.stats.whiteouts++;
    else this.stats.opaques++;
    if (this.opts.whiteout === 'oci') return this.#write(comps, h, data);
    return this.opts.whiteout === 'flatten' ? this.#flattenMarker(parentComps, marker, h) : this.#overlayMarker(parentComps, marker, h);
  }

  /** Refuse what is not written at all before anything of the entry is done. */
  #checkType(h: Header): void {
    const known = ['file', 'contiguous-file', 'directory', 'symlink', 'link', 'fifo', 'character-device', 'block-device'];
    // Sparse files as GNU tar writes them (--sparse): a PAX entry carries the real name and the
    // hole map in GNU.sparse.* records, and its data is only the non-hole parts; written as it
    // is, it would be a file named GNUSparseFile.N/NAME holding the map. The old GNU form has
    // its own type flag ('S'), which tar-stream leaves unnamed (null), like any unknown one.
    if (Object.keys(paxOf(h)).some((k) => k.startsWith('GNU.sparse.'))) {
      throw new LayerError('unsupported', h.name, 'a sparse file (GNU tar --sparse) is not supported: make the layer without --sparse');
    }
    if (h.type === null) {
      throw new LayerError('unsupported', h.name, 'an entry of an unknown type (GNU tar --sparse makes one, type S) is not supported');
    }
    if (!known.includes(h.type as string)) throw new LayerError('unsupported', h.name, `entry type ${JSON.stringify(h.type)} is not supported`);
    if (h.type !== 'character-device' && h.type !== 'block-device') return;
    const whiteout = h.type === 'character-device' && (h.devmajor ?? 0) === 0 && (h.devminor ?? 0) === 0;
    if (whiteout || this.opts.allowDevices === true) return;
    const kind = h.type === 'block-device' ? 'block' : 'character';
    throw new LayerError('device', h.name, `a ${kind} device (${h.devmajor}:${h.devminor}); device nodes are refused unless allowed (--allow-devices)`);
  }

  async finish(): Promise<void> {
    for (const [abs, t] of this.#dirTimes) {
      if (host.lstatSyncOrUndefined(abs)?.isDirectory() === true) setTimes(abs, t.atime, t.mtime);
    }
  }

  #abs(rel: string): RealPath {
    return (rel === '' ? this.root : `${this.root}/${rel}`) as RealPath;
  }

  #markWritten(rel: string): void {
    this.#written.add(rel);
    for (const a of ancestorsOf(rel)) {
      if (this.#writtenBelow.has(a)) break;
      this.#writtenBelow.add(a);
    }
  }

  /** Is a directory on this path whited out by this layer (and not written by it again)? */
  #underWhiteout(comps: readonly string[]): boolean {
    let rel = '';
    for (const c of comps) {
      rel = joinRel(rel, c);
      if (this.#whitedOut.has(rel) && !this.#written.has(rel)) return true;
    }
    return false;
  }

  /**
   * The directory at comps, every component checked with lstat from DIR: a symbolic link is
   * refused; a missing one is made (create) or ends the walk (undefined). In overlay mode a
   * whiteout on the way ends the walk for a marker, and for an entry becomes an opaque
   * directory (the entry brings the directory back, without what lower layers had in it).
   */
  async #dirAt(comps: readonly string[], entry: string, how: { create: boolean; marker: boolean }): Promise<RealPath | undefined> {
    let rel = '';
    for (const c of comps) {
      rel = joinRel(rel, c);
      const abs = this.#abs(rel);
      const st = host.lstatSyncOrUndefined(abs);
      if (st?.isDirectory() === true) continue;
      if (st?.isSymbolicLink() === true) throw new LayerError('unsafe', entry, `"${rel}" on its path is a symbolic link; nothing is written through one`);
      if (!how.create) return undefined;
      if (st === undefined) {
        await host.mkdir(abs, 0o755);
      } else if (this.opts.whiteout === 'overlay' && isKernelWhiteout(st)) {
        if (how.marker) return undefined;
        await host.unlink(abs);
        await host.mkdir(abs, 0o755);
        setXattr(abs, XATTR_OPAQUE, OPAQUE_Y);
      } else {
        throw new LayerError('invalid', entry, `"${rel}" on its path is not a directory`);
      }
      this.#markWritten(rel);
    }
    return this.#abs(rel);
  }

  /** The layer's root entry ("./"): its attributes go on DIR. */
  async #root(h: Header): Promise<void> {
    if (h.type !== 'directory') throw new LayerError('invalid', h.name, 'the layer root must be a directory');
    await this.#attrs(this.root, h, true);
    this.#dirTimes.set(this.root, timesOf(h));
  }

  async #write(comps: readonly string[], h: Header, data: AsyncIterable<unknown>): Promise<void> {
    const rel = comps.join('/');
    const parent = await this.#dirAt(comps.slice(0, -1), h.name, { create: true, marker: false });
    const abs = `${parent!}/${comps[comps.length - 1]!}` as RealPath;
    if (h.type === 'directory') await this.#dir(abs, h);
    else if (h.type === 'file' || h.type === 'contiguous-file') await this.#file(abs, h, data);
    else if (h.type === 'symlink') await this.#symlink(abs, h);
    else if (h.type === 'link') await this.#hardlink(abs, h);
    else await this.#special(abs, h);
    this.#markWritten(rel);
  }

  /** Make room for a new entry at abs; says whether a directory stays (to merge into) and whether a whiteout went. */
  async #replace(abs: RealPath, isDir: boolean): Promise<{ merge: boolean; wasWhiteout: boolean }> {
    const st = host.lstatSyncOrUndefined(abs);
    if (st === undefined) return { merge: false, wasWhiteout: false };
    if (isDir && st.isDirectory()) return { merge: true, wasWhiteout: false };
    if (st.isDirectory()) await host.rmTree(abs);
    else await host.unlink(abs);
    this.stats.removed++;
    return { merge: false, wasWhiteout: isKernelWhiteout(st) };
  }

  async #dir(abs: RealPath, h: Header): Promise<void> {
    const r = await this.#replace(abs, true);
    if (!r.merge) await host.mkdir(abs, 0o700);
    if (this.opts.whiteout === 'overlay' && r.wasWhiteout) setXattr(abs, XATTR_OPAQUE, OPAQUE_Y);
    await this.#attrs(abs, h, r.merge);
    this.#dirTimes.set(abs, timesOf(h));
    this.stats.dirs++;
  }

  async #file(abs: RealPath, h: Header, data: AsyncIterable<unknown>): Promise<void> {
    await this.#replace(abs, false);
    const fd = await host.open(abs, host.O.O_WRONLY | host.O.O_CREAT | host.O.O_EXCL, 0o600);
    try {
      let pos = 0;
      for await (const chunk of data) {
        await host.writeAll(fd, chunk as Buffer, pos);
        pos += (chunk as Buffer).length;
      }
      this.stats.bytes += pos;
      const { uid, gid } = ownerOf(h);
      if (this.#asRoot) await host.fchown(fd, uid, gid);
      await host.fchmod(fd, (h.mode ?? 0o644) & 0o7777);
    } finally {
      await host.close(fd);
    }
    this.#xattrs(abs, h, false);
    this.#times(abs, h);
    this.stats.files++;
  }

  async #symlink(abs: RealPath, h: Header): Promise<void> {
    if (!h.linkname) throw new LayerError('invalid', h.name, 'a symbolic link without a target');
    await this.#replace(abs, false);
    await host.symlink(h.linkname, abs);
    const { uid, gid } = ownerOf(h);
    if (this.#asRoot) await host.lchown(abs, uid, gid);
    this.#xattrs(abs, h, false);
    this.#times(abs, h);
    this.stats.symlinks++;
  }

  async #hardlink(abs: RealPath, h: Header): Promise<void> {
    if (!h.linkname) throw new LayerError('invalid', h.name, 'a hard link without a target');
    const comps = entryComponents(h.linkname, h.name, 'the hard link target');
    if (comps.length === 0) throw new LayerError('invalid', h.name, 'a hard link to the layer root');
    const parent = await this.#dirAt(comps.slice(0, -1), h.name, { create: false, marker: false });
    const target = parent === undefined ? undefined : (`${parent}/${comps[comps.length - 1]!}` as RealPath);
    const st = target === undefined ? undefined : host.lstatSyncOrUndefined(target);
    if (target === undefined || st === undefined) throw new LayerError('invalid', h.name, `the hard link target "${h.linkname}" does not exist`);
    if (st.isDirectory()) throw new LayerError('invalid', h.name, `the hard link target "${h.linkname}" is a directory`);
    if (target === abs) return;
    await this.#replace(abs, false);
    await host.link(target, abs);
    this.stats.hardlinks++;
  }

  async #special(abs: RealPath, h: Header): Promise<void> {
    const type = h.type === 'fifo' ? S_IFIFO : h.type === 'block-device' ? S_IFBLK : S_IFCHR;
    await this.#replace(abs, false);
    mknod(abs, type | 0o600, h.type === 'fifo' ? 0 : makedev(h.devmajor ?? 0, h.devminor ?? 0, h.name));
    await this.#attrs(abs, h, false);
    this.#times(abs, h);
    this.stats.special++;
  }

  /** Owner, then mode (chown clears set-id bits), then xattrs (chown drops security.capability). */
  async #attrs(abs: RealPath, h: Header, replacing: boolean): Promise<void> {
    const { uid, gid } = ownerOf(h);
    if (this.#asRoot) await host.lchown(abs, uid, gid);
    await host.chmod(abs, (h.mode ?? 0o755) & 0o7777);
    this.#xattrs(abs, h, replacing);
  }

  /** Set the entry's xattrs; over an existing directory, also remove the ones it does not have. */
  #xattrs(abs: RealPath, h: Header, replacing: boolean): void {
    const want = xattrsOf(paxOf(h));
    if (replacing) {
      for (const name of listXattr(abs)) if (isLayerXattr(name) && !want.has(name)) removeXattr(abs, name);
    }
    for (const [name, value] of want) {
      try {
        setXattr(abs, name, value);
      } catch (e) {
        // Without privileges trusted.* and security.* cannot be set; the rest must be.
        if (!this.#asRoot && /^(trusted|security)\./.test(name) && e instanceof FsError && e.code === 'EPERM') continue;
        const code = e instanceof FsError ? e.code : String(e);
        throw new LayerError('unsupported', h.name, `cannot set the extended attribute ${name} (${code})`);
      }
    }
  }

  #times(abs: RealPath, h: Header): void {
    const t = timesOf(h);
    setTimes(abs, t.atime, t.mtime);
  }

  async #overlayMarker(parentComps: readonly string[], marker: MarkerKind, h: Header): Promise<void> {
    const parent = await this.#dirAt(parentComps, h.name, { create: true, marker: true });
    if (parent === undefined) return; // in a directory that is whited out: nothing to record
    if (marker.kind === 'opaque') return setXattr(parent, XATTR_OPAQUE, OPAQUE_Y);
    if (marker.kind !== 'whiteout') return;
    const rel = joinRel(parentComps.join('/'), marker.target);
    const abs = this.#abs(rel);
    const st = host.lstatSyncOrUndefined(abs);
    if (this.#written.has(rel)) {
      // This layer's own entry stays; if it is a directory, what lower layers had in it does not.
      if (st?.isDirectory() === true) setXattr(abs, XATTR_OPAQUE, OPAQUE_Y);
      return;
    }
    if (st !== undefined) await this.#replace(abs, false);
    try {
      mknod(abs, S_IFCHR, 0); // mode 0, as the kernel makes its whiteouts
    } catch (e) {
      if (!(e instanceof FsError && e.code === 'EPERM')) throw e;
      throw new LayerError('unsupported', h.name, 'making a whiteout (char device 0:0) needs root (CAP_MKNOD); use --whiteout oci');
    }
    const { uid, gid } = ownerOf(h);
    if (this.#asRoot) await host.lchown(abs, uid, gid);
    this.#times(abs, h);
  }

  async #flattenMarker(parentComps: readonly string[], marker: MarkerKind, h: Header): Promise<void> {
    const parent = await this.#dirAt(parentComps, h.name, { create: false, marker: true });
    if (parent === undefined) return; // nothing there to delete
    const prel = parentComps.join('/');
    if (marker.kind === 'opaque') {
      for (const d of await host.readdirTyped(parent)) await this.#removeLower(joinRel(prel, d.name));
    } else if (marker.kind === 'whiteout') {
      await this.#removeLower(joinRel(prel, marker.target));
    }
  }

  /** Remove what is at rel and was not written by this layer (keeping what this layer wrote below it). */
  async #removeLower(rel: string): Promise<void> {
    const abs = this.#abs(rel);
    const st = host.lstatSyncOrUndefined(abs);
    if (st === undefined) return;
    if (!this.#written.has(rel) && !this.#writtenBelow.has(rel)) {
      if (st.isDirectory()) await host.rmTree(abs);
      else await host.unlink(abs);
      this.stats.removed++;
      return;
    }
    if (!st.isDirectory()) return;
    for (const d of await host.readdirTyped(abs)) await this.#removeLower(joinRel(rel, d.name));
  }
}

/** The xattrs of an entry that may be set: all but the overlay's own. */
function xattrsOf(pax: PaxValues): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(pax)) {
    if (!k.startsWith(XATTR_RECORD)) continue;
    const name = k.slice(XATTR_RECORD.length);
    if (name === '' || name.startsWith(XATTR_PREFIX)) continue;
    out.set(name, typeof v === 'string' ? Buffer.from(v, 'utf8') : v);
  }
  return out;
}

function ownerOf(h: Header): { uid: number; gid: number } {
  const pax = paxOf(h);
  return { uid: paxInt(pax['uid']) ?? h.uid ?? 0, gid: paxInt(pax['gid']) ?? h.gid ?? 0 };
}

function paxInt(v: string | Buffer | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v.toString());
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function timesOf(h: Header): Times {
  const pax = paxOf(h);
  const mtime = paxTimeNs(pax['mtime']) ?? BigInt(h.mtime?.getTime() ?? 0) * 1_000_000n;
  return { mtime, atime: paxTimeNs(pax['atime']) ?? mtime };
}

/** A PAX time ("1700000000.123456789", "-1.5") in nanoseconds; undefined when malformed. */
export function paxTimeNs(v: string | Buffer | undefined): bigint | undefined {
  const m = v === undefined ? null : /^(-?)(\d+)(?:\.(\d*))?$/.exec(v.toString());
  if (m === null) return undefined;
  const ns = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0').slice(0, 9));
  return m[1] === '-' ? -ns : ns;
}

/** glibc's makedev(). */
function makedev(major: number, minor: number, entry: string): number {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  const dev = ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
  if (dev > BigInt(Number.MAX_SAFE_INTEGER)) throw new LayerError('unsupported', entry, `device number ${major}:${minor} is out of range`);
  return Number(dev);
}

/** Is this the gzip magic? (exported for the image store, which sniffs blobs the same way) */
export function isGzip(head: Buffer): boolean {
  return startsWith(head, GZIP_MAGIC);
}

