// `layerfs commit`: an upper directory as an OCI image layer (a tar changeset), streamed.
//
// Order: a pre-order walk (every directory before what is in it), and in each directory first
// its opaque marker ".wh..wh..opq", then its whiteouts, then its entries, each group in byte
// order of the names (OCI: whiteouts SHOULD come before sibling entries). Names are relative,
// without "./", directories end in "/", and the root itself is not an entry (all as Docker
// writes them).
// Whiteouts (char 0:0, xattr whiteouts, ".wh.X" files) become empty regular files ".wh.X" with
// mode 0600 and the whiteout's owner and mtime (Docker's converter). An opaque directory gets a
// ".wh..wh..opq" entry with its own permissions and owner.
// Metadata: mode, uid/gid (uname/gname empty, as Docker writes them: no user database lookups),
// mtime to the nanosecond (a PAX "mtime" record when it is not whole seconds), xattrs as PAX
// SCHILY.xattr.* records (all but the overlay's own and security.selinux: upper.ts). A file
// with more links than one is written once; its other names become hard link entries to the
// first name written. Sockets are left out, as Docker and tar do.
// `reproducible` sets every mtime to `epoch` (default 0): the same tree then gives the same
// bytes, and so the same diff_id, whatever its timestamps.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { basename, dirname, resolve } from 'node:path';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { BigIntStats } from 'node:fs';
import type { Header, Pack } from 'tar-stream';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { RealPath } from '../path.js';
import { OCI_OPAQUE, OCI_PREFIX } from '../whiteout.js';
import { LayerError } from './errors.js';
import { joinRel, parentRel, sortByBytes } from './names.js';
import { XATTR_RECORD, fitsUstarLink, fitsUstarName, layerPack, type LayerHeaders, type PaxRecord } from './tar.js';
import { layerXattrs, readUpperDir, type UpperDir, type UpperNode } from './upper.js';
import { encodeName, nameByteLength } from '../name-bytes.js';

export interface CommitOptions {
  /** Compress with gzip (fixed header: no name, mtime 0), and report the compressed digest. */
  readonly gzip?: boolean;
  /** Every mtime set to `epoch`, so that the same tree gives the same bytes. */
  readonly reproducible?: boolean;
  /** Seconds since 1970 for `reproducible` (SOURCE_DATE_EPOCH); default 0. */
  readonly epoch?: number;
  /** Called as file data is written: bytes done, of total (total is measured by a first walk). */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface CommitResult {
  /** sha256 of the uncompressed tar: the layer's diff_id ("sha256:<hex>"). */
  readonly diffId: string;
  /** sha256 of the gzip bytes, when compressed: the layer's blob digest. */
  readonly digest?: string;
  /** Bytes written to the output (the compressed size when compressed). */
  readonly size: number;
  /** Tar entries written (PAX headers not counted). */
  readonly entries: number;
}

const S_IFMT = 0o170000n;
const T = { dir: 0o040000n, file: 0o100000n, link: 0o120000n, fifo: 0o010000n, chr: 0o020000n, blk: 0o060000n, sock: 0o140000n };
const NS = 1_000_000_000n;
/** tar-stream writes the ustar mtime as a 32-bit signed number of seconds. */
const USTAR_MAX_TIME = 2 ** 31 - 1;
/** ustar's uid/gid fields hold 7 octal digits. */
const USTAR_MAX_ID = 0o7777777;
/** Header bytes the walk may run ahead of the output by before it waits. */
const AHEAD = 8 << 20;

/** Stream `upper` as a layer tar into `out`; resolves once `out` has finished. */
export async function commitLayer(upper: string, out: Writable, opts: CommitOptions = {}): Promise<CommitResult> {
  const root = host.realpathSync(upper) as RealPath;
  const total = opts.onProgress === undefined ? 0 : await measure(root, '');
  const tarTap = new HashTap();
  const gzTap = opts.gzip === true ? new HashTap() : undefined;
  const pack = layerPack();
  const writer = new LayerWriter(root, pack, tarTap, opts, total);
  const source = async function* (): AsyncGenerator<Buffer> {
    for await (const chunk of pack) yield chunk as Buffer;
  };
  const flowing = gzTap === undefined ? pipeline(source, tarTap, out) : pipeline(source, tarTap, createGzip(), gzTap, out);
  const producing = writer.run().then(
    () => pack.finalize(),
    (e: unknown) => {
      pack.destroy(e as Error);
      throw e;
    },
  );
  const [made, flowed] = await Promise.allSettled([producing, flowing.finally(() => tarTap.abort())]);
  if (made.status === 'rejected' && (isOwnError(made.reason) || flowed.status === 'fulfilled')) throw made.reason;
  if (flowed.status === 'rejected') throw flowed.reason;
  const result = { diffId: tarTap.digest(), size: (gzTap ?? tarTap).bytes, entries: writer.entries };
  return gzTap === undefined ? result : { ...result, digest: gzTap.digest() };
}

/**
 * commitLayer into a file: written under a temporary name in the same directory, flushed to
 * disk, then renamed over `file`, so a failed or interrupted commit leaves no partial layer.
 */
export async function commitLayerToFile(upper: string, file: string, opts: CommitOptions = {}): Promise<CommitResult> {
  // Layers are read in zstd but written plain or gzip'd: a name that says zstd would mislead.
  if (/\.zstd?$/.test(file)) throw new LayerError('unsupported', undefined, `layers are written as plain or gzip'd tars, not zstd: name the file .tar or .tar.gz (${file})`);
  const target = resolve(file) as RealPath;
  const tmp = `${dirname(target)}/.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp` as RealPath;
  const fd = await host.open(tmp, host.O.O_WRONLY | host.O.O_CREAT | host.O.O_EXCL, 0o644);
  let open = true;
  try {
    const result = await commitLayer(upper, host.fdWriteStream(fd), opts);
    await host.fsync(fd, false);
    open = false;
    await host.close(fd);
    await host.rename(tmp, target);
    return result;
  } catch (e) {
    if (open) await host.close(fd).catch(() => undefined);
    await host.unlink(tmp).catch(() => undefined);
    throw e;
  }
}

function isOwnError(e: unknown): boolean {
  return e instanceof LayerError || e instanceof FsError;
}

/** Passes bytes through, hashing and counting them; lets a producer wait until it catches up. */
class HashTap extends Transform {
  readonly #hash = createHash('sha256');
  bytes = 0;
  #waiters: { at: number; resolve: () => void }[] = [];

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    this.#wake(false);
    done(null, chunk);
  }

  /** Resolves once `at` bytes have gone through (or the pipeline is over). */
  reached(at: number): Promise<void> {
    if (this.bytes >= at) return Promise.resolve();
    return new Promise((r) => this.#waiters.push({ at, resolve: r }));
  }

  abort(): void {
    this.#wake(true);
  }

  #wake(all: boolean): void {
    const ready = this.#waiters.filter((w) => all || this.bytes >= w.at);
    this.#waiters = this.#waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }

  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

/** Bytes of file data in the upper (each file once however many names it has), for progress. */
async function measure(root: RealPath, rel: string, seen = new Set<string>()): Promise<number> {
  let sum = 0;
  for (const c of (await readUpperDir(root, rel)).children) {
    const type = c.st.mode & S_IFMT;
    if (type === T.dir) sum += await measure(root, c.rel, seen);
    if (type !== T.file) continue;
    const key = `${c.st.dev}:${c.st.ino}`;
    if (c.st.nlink > 1n && seen.has(key)) continue;
    seen.add(key);
    sum += Number(c.st.size);
  }
  return sum;
}

const padded = (n: number): number => Math.ceil(n / 512) * 512;

class LayerWriter {
  entries = 0;
  #done = 0;
  #produced = 0;
  /** "dev:ino" of files with several links -> the name written first. */
  readonly #links = new Map<string, string>();

  constructor(
    readonly root: RealPath,
    readonly pack: Pack,
    readonly tap: HashTap,
    readonly opts: CommitOptions,
    readonly total: number,
  ) {}

  async run(): Promise<void> {
    await this.#dir('', await host.lstatNs(this.root));
  }

  async #dir(rel: string, st: BigIntStats): Promise<void> {
    const d = await readUpperDir(this.root, rel);
    if (d.opaque) await this.#opaque(rel, st, d);
    for (const w of d.whiteouts) await this.#whiteout(w);
    for (const c of d.children) await this.#node(c);
  }

  async #opaque(rel: string, dirSt: BigIntStats, d: UpperDir): Promise<void> {
    const st = d.opaqueMarker?.st ?? dirSt;
    const mode = T.file | (d.opaqueMarker === undefined ? st.mode & 0o777n : st.mode & 0o7777n);
    await this.#emit(this.#header(joinRel(rel, OCI_OPAQUE), { ...attrs(st), mode }, 'file'));
  }

  async #whiteout(w: UpperNode): Promise<void> {
    const name = joinRel(parentRel(w.rel), `${OCI_PREFIX}${w.name}`);
    await this.#emit(this.#header(name, { ...attrs(w.st), mode: T.file | 0o600n }, 'file'));
  }

  async #node(n: UpperNode): Promise<void> {
    const type = n.st.mode & S_IFMT;
    if (type === T.sock) return;
    if (type !== T.dir && n.st.nlink > 1n) {
      const key = `${n.st.dev}:${n.st.ino}`;
      const first = this.#links.get(key);
      if (first !== undefined) return this.#emit(this.#header(n.rel, attrs(n.st), 'link', first));
      this.#links.set(key, n.rel);
    }
    const xattrs = layerXattrs(n.abs);
    if (type === T.dir) {
      await this.#emit(this.#header(`${n.rel}/`, attrs(n.st), 'directory', undefined, xattrs));
      return this.#dir(n.rel, n.st);
    }
    if (type === T.file) return this.#file(n, this.#header(n.rel, attrs(n.st), 'file', undefined, xattrs));
    if (type === T.link) return this.#emit(this.#header(n.rel, attrs(n.st), 'symlink', await host.readlink(n.abs), xattrs));
    if (type === T.fifo) return this.#emit(this.#header(n.rel, attrs(n.st), 'fifo', undefined, xattrs));
    const h = this.#header(n.rel, attrs(n.st), type === T.chr ? 'character-device' : 'block-device', undefined, xattrs);
    return this.#emit({ ...h, devmajor: devMajor(n.st.rdev), devminor: devMinor(n.st.rdev) });
  }

  /** A tar header, with the PAX records for what ustar cannot hold. */
  #header(name: string, a: Attrs, type: Header['type'], linkname?: string, xattrs: readonly [string, Buffer][] = []): LayerHeaders {
    const records: PaxRecord[] = xattrs.map(([k, v]) => [`${XATTR_RECORD}${k}`, v]);
    const mtimeNs = this.opts.reproducible === true ? BigInt(Math.trunc(this.opts.epoch ?? 0)) * NS : a.mtimeNs;
    const sec = mtimeNs >= 0n ? mtimeNs / NS : -((-mtimeNs + NS - 1n) / NS);
    const ustarSec = Math.min(Math.max(Number(sec), 0), USTAR_MAX_TIME);
    if (mtimeNs % NS !== 0n || Number(sec) !== ustarSec) records.push(['mtime', text(paxTime(mtimeNs))]);
    const id = (k: 'uid' | 'gid', v: number): number => {
      if (v <= USTAR_MAX_ID) return v;
      records.push([k, text(String(v))]);
      return 0;
    };
    const h: LayerHeaders = {
      name: fitsUstarName(name) ? name : placeholder(name, records, 'path'),
      type, mode: Number(a.mode), uid: id('uid', a.uid), gid: id('gid', a.gid), mtime: new Date(ustarSec * 1000), uname: '', gname: '',
    };
    if (linkname !== undefined) h.linkname = fitsUstarLink(linkname) ? linkname : placeholder(linkname, records, 'linkpath');
    if (records.length > 0) {
      (h as { pax?: object }).pax = {}; // makes tar-stream hand the header to layerPack's PAX encoder
      h.paxRecords = sortByBytes(records, ([k]) => k);
    }
    return h;
  }

  async #emit(h: LayerHeaders): Promise<void> {
    await this.#ahead(512 + paxBytes(h));
    await new Promise<void>((ok, fail) => this.pack.entry(h, Buffer.alloc(0), (err) => (err ? fail(err) : ok())));
    this.entries++;
  }

  async #file(n: UpperNode, h: LayerHeaders): Promise<void> {
    const size = Number(n.st.size);
    if (size === 0) return this.#emit(h);
    await this.#ahead(512 + paxBytes(h)); // the data itself waits for the output as it goes (the entry's backpressure)
    const fd = await host.open(n.abs, host.O.O_RDONLY);
    const data = host.fdReadStream(fd, 0, size - 1);
    let written = 0;
    const finished = new Promise<void>((ok, fail) => {
      const sink = this.pack.entry({ ...h, size }, (err) => (err ? fail(err) : ok()));
      sink.on('error', () => undefined); // reported through the entry's callback and `fail`
      void (async () => {
        for await (const chunk of data) {
          written += (chunk as Buffer).length;
          if (!sink.write(chunk)) await drained(sink);
          this.#done += (chunk as Buffer).length;
          this.opts.onProgress?.(this.#done, this.total);
        }
        if (written !== size) throw new LayerError('invalid', undefined, `${n.abs} shrank while it was being committed`);
        (sink as unknown as { end(): void }).end();
      })().catch((e: unknown) => {
        data.destroy();
        sink.destroy(e as Error);
        fail(e);
      });
    });
    await finished;
    this.#produced += padded(size);
    this.entries++;
  }

  /** Wait until the output is within AHEAD bytes of what is produced (headers alone add up). */
  async #ahead(bytes: number): Promise<void> {
    this.#produced += bytes;
    if (this.#produced - this.tap.bytes > AHEAD) await this.tap.reached(this.#produced - AHEAD);
  }
}

function drained(sink: Emitter): Promise<void> {
  return new Promise((ok, fail) => {
    const done = (err: Error | undefined): void => {
      sink.off('drain', onDrain);
      sink.off('close', onClose);
      if (err) fail(err);
      else ok();
    };
    const onDrain = (): void => done(undefined);
    const onClose = (): void => done(new Error('the layer stream was closed'));
    sink.on('drain', onDrain);
    sink.on('close', onClose);
  });
}

interface Emitter {
  on(event: string, f: () => void): unknown;
  off(event: string, f: () => void): unknown;
}

interface Attrs {
  readonly mode: bigint;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeNs: bigint;
}

const attrs = (st: BigIntStats): Attrs => ({ mode: st.mode, uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs });

const text = (s: string): Buffer => Buffer.from(s, 'utf8');

/** A value too long or not ASCII for ustar: into a PAX record, with a harmless stand-in. */
function placeholder(value: string, records: PaxRecord[], key: 'path' | 'linkpath'): string {
  records.push([key, encodeName(value)]);
  const dirSuffix = value.endsWith('/') ? '/' : '';
  return value.replace(/\/$/, '').replace(/[^\x20-\x7e]/g, '_').slice(-90) + dirSuffix;
}

/** A PAX time: seconds, and a nanosecond fraction when there is one ("-1.5" is 1.5 s before 1970). */
export function paxTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  const frac = abs % NS;
  const s = `${neg ? '-' : ''}${abs / NS}`;
  return frac === 0n ? s : `${s}.${frac.toString().padStart(9, '0').replace(/0+$/, '')}`;
}

function paxBytes(h: LayerHeaders): number {
  if (h.paxRecords === undefined) return 0;
  return 512 + padded(h.paxRecords.reduce((n, [k, v]) => n + nameByteLength(k) + v.length + 12, 0));
}

/** glibc's major()/minor() of a dev_t. */
export const devMajor = (rdev: bigint): number => Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
export const devMinor = (rdev: bigint): number => Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
