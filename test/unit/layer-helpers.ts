// Shared helper of the layer tests (not a test file itself): tars built with tar-stream (for
// hostile layers), tars read back with their PAX records, and commit/apply on buffers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { applyLayer, type ApplyOptions, type ApplyStats } from '../../src/layer/apply.js';
import { commitLayer, type CommitOptions, type CommitResult } from '../../src/layer/commit.js';
import { layerExtract, paxOf, type PaxValues } from '../../src/layer/tar.js';

export interface TarEntry {
  name: string;
  type?: tar.Header['type'];
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  data?: string | Buffer;
  /** PAX records (text values), written by tar-stream itself. */
  pax?: Record<string, string>;
}

/** A tar of these entries, made by plain tar-stream (no checks: hostile layers too). */
export async function makeTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const h: Record<string, unknown> = { name: e.name, type: e.type ?? 'file', mode: e.mode ?? 0o644, mtime: e.mtime ?? new Date(1_600_000_000_000) };
    for (const k of ['uid', 'gid', 'linkname', 'devmajor', 'devminor', 'pax'] as const) if (e[k] !== undefined) h[k] = e[k];
    await new Promise<void>((ok, fail) => pack.entry(h as unknown as tar.Header, data, (err) => (err ? fail(err) : ok())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export interface ReadEntry {
  header: tar.Header;
  pax: PaxValues;
  data: Buffer;
}

/** The entries of a tar (gzip or not), with binary-safe PAX values. */
export async function readTar(buf: Buffer): Promise<ReadEntry[]> {
  const plain = buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf) : buf;
  const ex = layerExtract();
  const out: ReadEntry[] = [];
  Readable.from([plain]).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.push({ header: entry.header, pax: paxOf(entry.header), data: Buffer.concat(chunks) });
  }
  return out;
}

/** Commit an upper into memory. */
export async function commitToBuffer(upper: string, opts: CommitOptions = {}): Promise<{ result: CommitResult; bytes: Buffer }> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  const result = await commitLayer(upper, sink, opts);
  return { result, bytes: Buffer.concat(chunks) };
}

export function applyBuffer(buf: Buffer, dir: string, opts: ApplyOptions): Promise<ApplyStats> {
  return applyLayer(Readable.from([buf]), dir, opts);
}

/** Everything under root (relative paths, sorted), with each file's content. */
export function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(path.join(root, r));
      if (st.isDirectory()) {
        out.push(`${r}/`);
        walk(r);
      } else if (st.isSymbolicLink()) out.push(`${r} -> ${fs.readlinkSync(path.join(root, r))}`);
      else if (st.isFile()) out.push(`${r} = ${fs.readFileSync(path.join(root, r), 'utf8')}`);
      else if (st.isCharacterDevice()) out.push(`${r} (chr ${st.rdev})`);
      else out.push(`${r} (other)`);
    }
  };
  walk('');
  return out;
}

/** A directory with a canary file next to DIR: its state, to check nothing outside DIR changed. */
export interface Outside {
  readonly dir: string;
  readonly canary: string;
  untouched(): string[];
}

export function makeOutside(dir: string): Outside {
  fs.mkdirSync(dir, { recursive: true });
  const canary = path.join(dir, 'canary');
  fs.writeFileSync(canary, 'canary');
  fs.utimesSync(canary, 1_000_000, 1_000_000);
  const before = JSON.stringify(state());
  function state(): unknown {
    const st = fs.lstatSync(canary);
    return { list: listTree(dir), mode: st.mode, uid: st.uid, nlink: st.nlink, mtime: st.mtimeMs, xattrs: fs.readdirSync(dir) };
  }
  return {
    dir,
    canary,
    untouched: () => (JSON.stringify(state()) === before ? [] : [`outside changed: ${JSON.stringify(state())} (was ${before})`]),
  };
}
