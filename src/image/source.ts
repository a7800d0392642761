// Where an image's files come from: a directory (an OCI image layout, or an unpacked `docker
// save`), or a tar of one (optionally gzip-compressed, as `docker save | gzip` makes).
//
// A tar has no random access. It is read in passes instead, each a plain sequential read:
//  - open() reads it once, hashing every entry (see digest.ts) and keeping the small JSON ones
//    (index, manifests, configs) in memory;
//  - readEach() reads it again and hands over the entries asked for, in archive order.
// So mounting an image reads its archive once to verify it and once more when layers must be
// unpacked; nothing is copied to disk first. (An index of entry offsets for ranged reads would
// skip the second sequential read, but only for an uncompressed archive, and it would rest on
// parser internals; extracting the blobs to a temporary directory would write every byte twice.)
// The second pass is verified again against the first pass's digests by the caller, so a file
// that changes in between is caught.
import { posix } from 'node:path';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import * as io from '../host/store-io.js';
import { BlobHasher, hashStream, sniffCompression, type BlobDigests } from './digest.js';
import { ImageError } from './errors.js';

/** A JSON entry larger than this is not kept from the first pass (it is read again if needed). */
const KEEP_JSON_MAX = 16 << 20;
/** Total memory for kept JSON entries. */
const KEEP_TOTAL_MAX = 128 << 20;
/** Any JSON document the readers parse (index, manifest, config) must be smaller than this. */
export const JSON_MAX = 64 << 20;

export interface ImageSource {
  /** The image as the user named it (for messages). */
  readonly description: string;
  /** The name an entry is stored under (symbolic and hard links followed), or undefined. */
  resolve(name: string): Promise<string | undefined>;
  /** An entry's bytes, for small documents. */
  read(name: string): Promise<Buffer>;
  /** An entry's digests (computed once). */
  digests(name: string): Promise<BlobDigests>;
  /** Call fn with a stream of each entry named (resolved names), one at a time, in the source's order. */
  readEach(names: readonly string[], fn: (name: string, data: ByteStream) => Promise<void>): Promise<void>;
}

/** An entry's bytes: a Node stream (directory) or tar-stream's entry stream (archive). */
export type ByteStream = AsyncIterable<unknown>;

/**
 * An entry name made canonical: relative, no "." components, no trailing slash. Undefined for a
 * name that leaves the archive ("..", or absolute after removing a leading "./").
 */
export function canonicalName(name: string): string | undefined {
  const n = posix.normalize(name.replace(/^\/+/, ''));
  if (n === '.' || n === '' || n === '..' || n.startsWith('../')) return undefined;
  return n.replace(/\/+$/, '');
}

/** Open an image at path: a directory or a tar file. */
export async function openSource(path: string): Promise<ImageSource> {
  const st = await io.lstatOrUndefined(path);
  if (st === undefined) throw new ImageError(`${path}: no such file or directory`);
  const real = await io.realpath(path);
  const rst = await io.stat(real);
  if (rst.isDirectory()) return new DirSource(path, real);
  if (rst.isFile()) return TarSource.open(path, real);
  throw new ImageError(`${path}: not a directory or a tar file`);
}

class DirSource implements ImageSource {
  private readonly cache = new Map<string, Promise<BlobDigests>>();
  constructor(
    readonly description: string,
    private readonly root: string,
  ) {}

  /** The host path of an entry: a regular file inside the directory (a symlink may not leave it). */
  async resolve(name: string): Promise<string | undefined> {
    const n = canonicalName(name);
    if (n === undefined) return undefined;
    let real: string;
    try {
      real = await io.realpath(`${this.root}/${n}`);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT' || (e as { code?: string }).code === 'ENOTDIR') return undefined;
      throw e;
    }
    if (!real.startsWith(`${this.root}/`)) throw new ImageError(`${this.description}: ${name} leads outside the image directory`);
    const st = await io.stat(real);
    if (!st.isFile()) throw new ImageError(`${this.description}: ${name} is not a regular file`);
    return real.slice(this.root.length + 1);
  }

  private async pathOf(name: string): Promise<string> {
    const r = await this.resolve(name);
    if (r === undefined) throw new ImageError(`${this.description}: ${name} is missing`);
    return `${this.root}/${r}`;
  }

  async read(name: string): Promise<Buffer> {
    const p = await this.pathOf(name);
    if ((await io.stat(p)).size > JSON_MAX) throw new ImageError(`${this.description}: ${name} is too large for a JSON document`);
    return io.readFile(p);
  }

  digests(name: string): Promise<BlobDigests> {
    let d = this.cache.get(name);
    if (d === undefined) {
      d = this.pathOf(name).then((p) => hashStream(io.readStream(p)));
      this.cache.set(name, d);
    }
    return d;
  }

  async readEach(names: readonly string[], fn: (name: string, data: ByteStream) => Promise<void>): Promise<void> {
    for (const n of names) {
      const s = io.readStream(await this.pathOf(n));
      try {
        await fn(n, s);
      } finally {
        s.destroy();
      }
    }
  }
}

type TarEntry =
  | { kind: 'file'; digests: BlobDigests; data?: Buffer }
  | { kind: 'link'; target: string }
  | { kind: 'other' };

class TarSource implements ImageSource {
  private constructor(
    readonly description: string,
    private readonly path: string,
    private readonly gzipped: boolean,
    private readonly entries: Map<string, TarEntry>,
    private readonly duplicates: Set<string>,
  ) {}

  static async open(description: string, path: string): Promise<TarSource> {
    const gzipped = sniffCompression(await io.readHead(path, 4)) === 'gzip';
    const entries = new Map<string, TarEntry>();
    const duplicates = new Set<string>();
    let kept = 0;
    await eachTarEntry(path, gzipped, description, async (name, header, stream) => {
      if (entries.has(name)) duplicates.add(name);
      if (header.type === 'file' || header.type === 'contiguous-file') {
        const hasher = new BlobHasher();
        let chunks: Buffer[] | undefined = (header.size ?? 0) <= KEEP_JSON_MAX && kept + (header.size ?? 0) <= KEEP_TOTAL_MAX ? [] : undefined;
        let first = true;
        try {
          for await (const chunk of stream) {
            const b = chunk as Buffer;
            if (first && chunks !== undefined && !looksLikeJson(b)) chunks = undefined;
            first = false;
            chunks?.push(b);
            await hasher.update(b);
          }
        } catch (e) {
          throw archiveError(description, e);
        }
        const data = chunks === undefined ? undefined : Buffer.concat(chunks);
        if (data !== undefined) kept += data.length;
        entries.set(name, { kind: 'file', digests: await hasher.digests(), ...(data !== undefined ? { data } : {}) });
      } else if (header.type === 'symlink' || header.type === 'link') {
        const base = header.type === 'symlink' ? posix.dirname(name) : '';
        const target = canonicalName(posix.join(base, header.linkname ?? ''));
        stream.resume();
        entries.set(name, target === undefined ? { kind: 'other' } : { kind: 'link', target });
      } else {
        stream.resume();
        entries.set(name, { kind: 'other' });
      }
    });
    return new TarSource(description, path, gzipped, entries, duplicates);
  }

  async resolve(name: string): Promise<string | undefined> {
    let n = canonicalName(name);
    for (let hops = 0; n !== undefined && hops < 16; hops++) {
      const e = this.entries.get(n);
      if (e === undefined) return undefined;
      if (this.duplicates.has(n)) throw new ImageError(`${this.description}: ${n} is in the archive more than once`);
      if (e.kind === 'file') return n;
      if (e.kind === 'other') throw new ImageError(`${this.description}: ${name} is not a regular file`);
      n = e.target;
    }
    if (n === undefined) throw new ImageError(`${this.description}: ${name} links outside the archive`);
    throw new ImageError(`${this.description}: ${name}: too many levels of links`);
  }

  private async file(name: string): Promise<{ name: string; entry: Extract<TarEntry, { kind: 'file' }> }> {
    const r = await this.resolve(name);
    const e = r === undefined ? undefined : this.entries.get(r);
    if (r === undefined || e?.kind !== 'file') throw new ImageError(`${this.description}: ${name} is missing`);
    return { name: r, entry: e };
  }

  async read(name: string): Promise<Buffer> {
    const { name: r, entry } = await this.file(name);
    if (entry.data !== undefined) return entry.data;
    if (entry.digests.size > JSON_MAX) throw new ImageError(`${this.description}: ${name} is too large for a JSON document`);
    let out: Buffer | undefined;
    await this.readEach([r], async (_n, s) => {
      const chunks: Buffer[] = [];
      for await (const c of s) chunks.push(c as Buffer);
      out = Buffer.concat(chunks);
    });
    return out!;
  }

  async digests(name: string): Promise<BlobDigests> {
    return (await this.file(name)).entry.digests;
  }

  async readEach(names: readonly string[], fn: (name: string, data: ByteStream) => Promise<void>): Promise<void> {
    const want = new Set<string>();
    for (const n of names) want.add((await this.file(n)).name);
    const seen = new Set<string>();
    await eachTarEntry(this.path, this.gzipped, this.description, async (name, header, stream) => {
      if (!want.has(name) || (header.type !== 'file' && header.type !== 'contiguous-file')) {
        stream.resume();
        return;
      }
      seen.add(name);
      await fn(name, stream);
      stream.resume(); // whatever fn left unread
    });
    for (const n of want) if (!seen.has(n)) throw new ImageError(`${this.description}: ${n} went missing from the archive while it was read`);
  }
}

function looksLikeJson(first: Buffer): boolean {
  for (const b of first) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b || b === 0x5b; // { or [
  }
  return true; // only whitespace so far
}

/** Read a tar file entry by entry; fn must consume (or resume) each entry's stream. */
async function eachTarEntry(
  path: string,
  gzipped: boolean,
  description: string,
  fn: (name: string, header: tar.Header, stream: tar.Extract extends AsyncIterable<infer S> ? S : never) => Promise<void>,
): Promise<void> {
  const file = io.readStream(path);
  const extract = tar.extract();
  const input = gzipped ? file.pipe(createGunzip()) : file;
  const fail = (e: Error): void => void extract.destroy(e);
  file.on('error', fail);
  if (input !== file) input.on('error', (e) => fail(new ImageError(`${description}: not valid gzip data (${e.message})`)));
  input.pipe(extract);
  let fnError: unknown;
  try {
    for await (const entry of extract) {
      const name = canonicalName(entry.header.name);
      if (name === undefined) {
        entry.resume();
        continue;
      }
      try {
        await fn(name, entry.header, entry);
      } catch (e) {
        fnError = e;
        throw e;
      }
    }
  } catch (e) {
    // The callback's own errors as they are; the rest come from reading the archive.
    throw e === fnError ? e : archiveError(description, e);
  } finally {
    file.destroy();
  }
}

/** An error met reading the archive, told as such (system errors stay as they are). */
function archiveError(description: string, e: unknown): unknown {
  if (e instanceof ImageError || (e as { code?: string }).code !== undefined) return e;
  return new ImageError(`${description}: not a valid tar archive (${(e as Error).message})`);
}
