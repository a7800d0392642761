// Digests of image blobs. A blob has two: its own digest (sha256 of the bytes as stored, what an
// OCI descriptor names) and, for a layer, its diff_id (sha256 of the uncompressed tar, what the
// image config lists in rootfs.diff_ids). Both are computed in one read of the blob: the bytes are
// hashed as they come and, when they start with gzip's or zstd's magic, also decompressed and
// hashed.
import { createHash, type Hash } from 'node:crypto';
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { createZstdDecompress } from '../layer/zstd.js';
import { ImageError } from './errors.js';

const SHA256 = /^sha256:[0-9a-f]{64}$/;

export function isSha256Digest(s: unknown): s is string {
  return typeof s === 'string' && SHA256.test(s);
}

/** The 64 hex digits of a sha256 digest (which must be one). */
export function digestHex(d: string): string {
  if (!isSha256Digest(d)) throw new ImageError(`not a sha256 digest: ${JSON.stringify(d)}`);
  return d.slice('sha256:'.length);
}

export const sha256Of = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export type Compression = 'gzip' | 'zstd' | 'none';

/** What the first bytes of a blob say about its compression. */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export interface BlobDigests {
  /** Bytes as stored. */
  readonly size: number;
  /** sha256 of the bytes as stored. */
  readonly digest: string;
  readonly compression: Compression;
  /** sha256 of the uncompressed bytes (the digest itself when uncompressed), or why there is none. */
  readonly uncompressed: { readonly digest: string } | { readonly error: string };
}

/** Hashes a blob fed chunk by chunk; see the module comment. */
export class BlobHasher {
  private readonly hash = createHash('sha256');
  private size = 0;
  private head: Buffer[] | undefined = [];
  private headLen = 0;
  private compression: Compression = 'none';
  private inflate: Gunzip | Transform | undefined;
  private inner: Hash | undefined;
  private innerError: string | undefined;
  private innerDone: Promise<void> | undefined;

  /** Feed the next chunk; resolves when the chunk may be reused and more may come. */
  async update(chunk: Buffer): Promise<void> {
    this.hash.update(chunk);
    this.size += chunk.length;
    if (this.head !== undefined) {
      // The magic is a few bytes: collect that many before deciding (a chunk may be tiny).
      this.head.push(chunk);
      this.headLen += chunk.length;
      if (this.headLen < 4) return;
      await this.decide();
      return;
    }
    await this.feed(chunk);
  }

  private async decide(): Promise<void> {
    const head = Buffer.concat(this.head ?? []);
    this.head = undefined;
    this.compression = sniffCompression(head);
    if (this.compression !== 'none') {
      const zstd = this.compression === 'zstd';
      const inflate = zstd ? createZstdDecompress() : createGunzip();
      const inner = createHash('sha256');
      this.inflate = inflate;
      this.inner = inner;
      inflate.on('data', (d: Buffer) => inner.update(d));
      this.innerDone = new Promise((resolve) => {
        inflate.on('end', resolve);
        inflate.on('error', (e) => {
          this.innerError = `not valid ${zstd ? 'zstd' : 'gzip'} data (${e.message})`;
          resolve();
        });
      });
    }
    if (head.length > 0) await this.feed(head);
  }

  private async feed(chunk: Buffer): Promise<void> {
    const inflate = this.inflate;
    if (inflate === undefined || this.innerError !== undefined) return;
    if (inflate.write(chunk)) return;
    // Backpressure: wait until the decompressor has room again, or has failed (then it never drains).
    await Promise.race([new Promise((r) => inflate.once('drain', r)), this.innerDone]);
  }

  async digests(): Promise<BlobDigests> {
    if (this.head !== undefined) await this.decide();
    const digest = `sha256:${this.hash.digest('hex')}`;
    let uncompressed: BlobDigests['uncompressed'];
    if (this.compression !== 'none') {
      this.inflate!.end();
      await this.innerDone;
      uncompressed = this.innerError !== undefined ? { error: this.innerError } : { digest: `sha256:${this.inner!.digest('hex')}` };
    } else {
      uncompressed = { digest };
    }
    return { size: this.size, digest, compression: this.compression, uncompressed };
  }
}

/** Read a stream to its end, hashing it. */
export async function hashStream(s: AsyncIterable<unknown>): Promise<BlobDigests> {
  const h = new BlobHasher();
  for await (const chunk of s) await h.update(chunk as Buffer);
  return h.digests();
}

/**
 * Hand `src` to `consume` while hashing every byte of it as stored. Whatever `consume` leaves
 * unread (a tar reader may stop at the end-of-archive blocks) is still read and hashed, so the
 * digest is always that of the whole blob. If `consume` fails, reading stops and its error is
 * thrown.
 */
export async function consumeHashing<T>(src: AsyncIterable<unknown>, consume: (r: Readable) => Promise<T>): Promise<{ result: T; digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const pass = new PassThrough({ highWaterMark: 1 << 20 });
  let settled = false;
  let failed = false;
  let wake: (() => void) | undefined;
  const consumed = consume(pass).then(
    (r) => {
      settled = true;
      wake?.();
      return r;
    },
    (e: unknown) => {
      settled = failed = true;
      wake?.();
      throw e;
    },
  );
  consumed.catch(() => undefined); // awaited below; this only keeps it from being "unhandled" meanwhile
  try {
    for await (const chunk of src) {
      const b = chunk as Buffer;
      hash.update(b);
      size += b.length;
      if (failed) break;
      if (!settled && !pass.write(b)) {
        await new Promise<void>((r) => {
          wake = r;
          pass.once('drain', r);
        });
        wake = undefined;
      }
    }
  } catch (e) {
    pass.destroy(e as Error);
    await consumed.catch(() => undefined);
    throw e;
  }
  pass.end();
  const result = await consumed;
  return { result, digest: `sha256:${hash.digest('hex')}`, size };
}
