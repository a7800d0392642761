// src/path-reads.ts: reads by name (D26) open each file once, keep at most `capacity` fds, never
// close an fd under a read in flight, retry a failed open, and close everything at the end.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FsError } from '../../src/errno.js';
import { PathReads, type PathReadsIO } from '../../src/path-reads.js';
import type { RealPath, VPath } from '../../src/path.js';
import { scratch } from '../helpers/env.js';
import { until } from '../helpers/wait.js';

const space = scratch(test);

/** fds of this process open on files under dir (other tests share the process: count only ours). */
function fdsUnder(dir: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/`)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

async function files(name: string, n: number): Promise<string> {
  const dir = await space.dir(name);
  for (let i = 0; i < n; i++) fs.writeFileSync(path.join(dir, `f${i}`), `content of file ${i}\n`.repeat(i + 1));
  return dir;
}

/** One turn of the event loop. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** PathReads over dir, counting how often each name was located (opened). */
function reader(dir: string, capacity: number): { r: PathReads; located: Map<string, number> } {
  const located = new Map<string, number>();
  const r = new PathReads(async (p) => {
    located.set(p, (located.get(p) ?? 0) + 1);
    const real = path.join(dir, p);
    if (!fs.existsSync(real)) throw new FsError('ENOENT', 'read', p);
    return { real: real as RealPath };
  }, capacity);
  return { r, located };
}

async function readAll(r: PathReads, p: string): Promise<string> {
  const chunks: Buffer[] = [];
  for (let pos = 0; ; ) {
    const buf = Buffer.alloc(7); // small pieces: many reads of one file
    const n = await r.read(p as VPath, buf, buf.length, pos);
    if (n === 0) break;
    chunks.push(buf.subarray(0, n));
    pos += n;
  }
  return Buffer.concat(chunks).toString();
}

test('a file read in many pieces, and by many readers at once, is opened once', async (t) => {
  const dir = await files('once', 3);
  const { r, located } = reader(dir, 8);
  const all = await Promise.all(Array.from({ length: 5 }, () => readAll(r, 'f2')));
  for (const s of all) t.is(s, fs.readFileSync(path.join(dir, 'f2'), 'utf8'));
  t.is(located.get('f2'), 1);
  await r.close();
});

test('at most capacity fds stay open; each file still reads right after it fell out', async (t) => {
  const dir = await files('bounded', 40);
  const { r, located } = reader(dir, 4);
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 40; i++) t.is(await readAll(r, `f${i}`), fs.readFileSync(path.join(dir, `f${i}`), 'utf8'));
    t.true(r.size <= 4);
    await turn(); // the fds pushed out are closed once the answers being made are written
    t.true(fdsUnder(dir) <= 4, `${fdsUnder(dir)} fds open`);
  }
  t.is(located.get('f0'), 2, 'reopened after it fell out');
  await r.close();
  t.is(fdsUnder(dir), 0, 'close() closes every fd');
});

test('an fd that falls out while a read uses it stays open until that read is done', async (t) => {
  // Host calls that the test finishes by hand: a read stays in flight until released.
  const closed: number[] = [];
  const pending = new Map<number, () => void>();
  let next = 100;
  const io: PathReadsIO = {
    open: async () => next++,
    read: (fd) => new Promise((resolve) => pending.set(fd, () => resolve(1))),
    close: async (fd) => void closed.push(fd),
  };
  const r = new PathReads(async (p) => ({ real: p as string as RealPath }), 1, io);
  const buf = Buffer.alloc(1);
  const first = r.read('a' as VPath, buf, 1, 0); // fd 100, in flight
  await until(() => pending.has(100));
  const second = r.read('b' as VPath, buf, 1, 0); // fd 101: pushes 'a' out (capacity 1)
  await until(() => pending.has(101));
  t.deepEqual(closed, [], 'the fd of a read in flight is not closed');
  pending.get(100)!();
  t.is(await first, 1);
  await until(() => closed.length > 0);
  t.deepEqual(closed, [100], 'closed once its read is done');
  pending.get(101)!();
  t.is(await second, 1);
  t.deepEqual(closed, [100], "'b' is still in the set");
  await r.close();
  t.deepEqual(closed, [100, 101]);
});

test('reads that push each other out still read the right files', async (t) => {
  const dir = await files('in-flight', 20);
  const { r } = reader(dir, 1);
  const reads = Array.from({ length: 20 }, (_, i) => {
    const buf = Buffer.alloc(4096);
    return r.read(`f${i}` as VPath, buf, buf.length, 0).then((n) => buf.subarray(0, n).toString());
  });
  const got = await Promise.all(reads);
  got.forEach((s, i) => t.is(s, fs.readFileSync(path.join(dir, `f${i}`), 'utf8')));
  await r.close();
  await turn();
  t.is(fdsUnder(dir), 0);
});

test('a failed open is reported and not kept: the next read tries again', async (t) => {
  const dir = await files('retry', 1);
  const { r, located } = reader(dir, 4);
  const buf = Buffer.alloc(16);
  const err = await t.throwsAsync(r.read('late' as VPath, buf, 16, 0));
  t.is((err as FsError).code, 'ENOENT');
  t.is(r.size, 0);
  fs.writeFileSync(path.join(dir, 'late'), 'here now');
  t.is(await r.read('late' as VPath, buf, 16, 0), 8);
  t.is(buf.subarray(0, 8).toString(), 'here now');
  t.is(located.get('late'), 2);
  await r.close();
});
