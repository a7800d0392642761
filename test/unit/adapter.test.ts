// src/fuse/adapter.ts: every FUSE handler replies exactly once and never throws, whatever the
// union's operation does; errors become the right negative errno; statfs counts fit uint32.
import test from 'ava';
import * as fs from 'node:fs';
import type { StatsFs } from 'node:fs';
import { constants } from 'node:os';
import { FsError } from '../../src/errno.js';
import { toFuseOps, toFuseStat, toFuseStatfs, type LayerfsFuseOps as FuseOps } from '../../src/fuse/adapter.js';
import { attrOfEntry } from '../../src/attr.js';
import { lstatEntry } from '../../src/host/fs.js';
import type { Log } from '../../src/log.js';
import { createUnion, type UnionOps } from '../../src/union.js';
import { makeScratch, symlink } from './fixture.js';
import type { RealPath } from '../../src/path.js';

const E = constants.errno;
const { S_IFDIR, S_IFREG } = fs.constants;

const s = await makeScratch('adapter');
test.after.always(s.cleanup);

type Handler = Exclude<keyof FuseOps, 'init'>;
type AnyCb = (...args: unknown[]) => void;

/** How to call each handler, as fuse-native does, with a given path and callback. */
const CALLS: Record<Handler, (o: FuseOps, path: string, cb: AnyCb) => void> = {
  getattr: (o, p, cb) => o.getattr!(p, cb),
  access: (o, p, cb) => o.access!(p, fs.constants.R_OK, cb),
  statfs: (o, p, cb) => o.statfs!(p, cb),
  readlink: (o, p, cb) => o.readlink!(p, cb),
  readdir: (o, p, cb) => o.readdir!(p, cb),
  open: (o, p, cb) => o.open!(p, fs.constants.O_RDONLY, cb),
  read: (o, p, cb) => o.read!(p, 7, Buffer.alloc(16), 16, 2 ** 33, cb),
  release: (o, p, cb) => o.release!(p, 7, cb),
  getxattr: (o, p, cb) => o.getxattr!(p, 'user.a', 0, cb),
  listxattr: (o, p, cb) => o.listxattr!(p, cb),
  write: (o, p, cb) => o.write!(p, 7, Buffer.from('x'), 1, 0, cb),
  create: (o, p, cb) => o.create!(p, 0o644, cb),
  truncate: (o, p, cb) => o.truncate!(p, 0, cb),
  ftruncate: (o, p, cb) => o.ftruncate!(p, 7, 0, cb),
  utimens: (o, p, cb) => o.utimens!(p, 0, 0, cb),
  chown: (o, p, cb) => o.chown!(p, 0, 0, cb),
  chmod: (o, p, cb) => o.chmod!(p, 0o600, cb),
  mknod: (o, p, cb) => o.mknod!(p, 0o010644, 0, cb),
  unlink: (o, p, cb) => o.unlink!(p, cb),
  rename: (o, p, cb) => o.rename!(p, '/dest', cb),
  link: (o, p, cb) => o.link!('/src', p, cb),
  symlink: (o, p, cb) => o.symlink!('target', p, cb),
  mkdir: (o, p, cb) => o.mkdir!(p, 0o755, cb),
  rmdir: (o, p, cb) => o.rmdir!(p, cb),
  setxattr: (o, p, cb) => o.setxattr!(p, 'user.a', Buffer.from('v'), 0, 0, cb),
  removexattr: (o, p, cb) => o.removexattr!(p, 'user.a', cb),
  flush: (o, p, cb) => o.flush!(p, 7, cb),
  fsync: (o, p, cb) => o.fsync!(p, 0, 7, cb),
  fsyncdir: (o, p, cb) => o.fsyncdir!(p, 0, 7, cb),
  fgetattr: (o, p, cb) => o.fgetattr(p, 7, cb),
};
const HANDLERS = Object.keys(CALLS) as Handler[];
/** Handlers that never look at their path (they work on a file handle). */
const PATHLESS = new Set<Handler>(['read', 'release', 'write', 'ftruncate', 'flush', 'fsync']);

const UNION_METHODS: Array<keyof UnionOps> = [
  'getattr', 'access', 'readlink', 'readdir', 'open', 'read', 'release', 'statfs', 'getxattr', 'listxattr',
  ...WRITE_METHODS(),
];

function WRITE_METHODS(): Array<keyof UnionOps> {
  return ['create', 'write', 'truncate', 'ftruncate', 'flush', 'fsync', 'fsyncdir', 'fgetattr', 'mkdir', 'mknod', 'symlink', 'link', 'unlink', 'rmdir', 'rename', 'chmod', 'chown', 'utimens', 'setxattr', 'removexattr'];
}

/** A UnionOps whose every method fails the same way. */
function failingOps(fail: () => Promise<never>): UnionOps {
  return Object.fromEntries(UNION_METHODS.map((m) => [m, fail])) as unknown as UnionOps;
}

interface RecordingLog extends Log {
  readonly bugs: string[];
  readonly traces: Array<{ op: string; result: string }>;
}

function recordingLog(tracing: boolean): RecordingLog {
  const bugs: string[] = [];
  const traces: Array<{ op: string; result: string }> = [];
  return {
    tracing, bugs, traces,
    trace: (op, _args, result) => traces.push({ op, result }),
    bug: (op) => bugs.push(op),
    info: () => {},
  };
}

/** Let every pending promise settle (each op here settles within microtasks; no timers). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r)).then(() => new Promise((r) => setImmediate(r)));

/** Call a handler; return every reply it made. Fails the test if the handler throws. */
async function replies(o: FuseOps, h: Handler, path: string): Promise<unknown[][]> {
  const got: unknown[][] = [];
  CALLS[h](o, path, (...args) => got.push(args));
  await settle();
  return got;
}

test('the adapter serves exactly the handlers this test knows about', (t) => {
  const o = toFuseOps(failingOps(() => Promise.reject(new Error('x'))), recordingLog(false));
  t.deepEqual(Object.keys(o).sort(), [...HANDLERS].sort());
});

const FAILURES: Array<{ name: string; fail: () => Promise<never>; errno: number; bug: boolean }> = [
  { name: 'throws a plain Error', fail: () => { throw new Error('boom'); }, errno: E.EIO, bug: true },
  { name: 'rejects with a plain Error', fail: () => Promise.reject(new Error('boom')), errno: E.EIO, bug: true },
  { name: 'throws a TypeError', fail: () => { throw new TypeError('x is undefined'); }, errno: E.EIO, bug: true },
  { name: 'rejects with a Node system error', fail: () => Promise.reject(Object.assign(new Error('ENOENT'), { code: 'ENOENT', errno: -2 })), errno: E.EIO, bug: true },
  { name: 'rejects with a string', fail: () => Promise.reject('boom'), errno: E.EIO, bug: true },
  { name: 'rejects with undefined', fail: () => Promise.reject(undefined), errno: E.EIO, bug: true },
  { name: 'throws FsError(ENOENT)', fail: () => { throw new FsError('ENOENT', 'x'); }, errno: E.ENOENT, bug: false },
  { name: 'rejects with FsError(ENOENT)', fail: () => Promise.reject(new FsError('ENOENT', 'x')), errno: E.ENOENT, bug: false },
  { name: 'rejects with FsError(EACCES)', fail: () => Promise.reject(new FsError('EACCES', 'x')), errno: E.EACCES, bug: false },
  { name: 'throws FsError(ENODATA)', fail: () => { throw new FsError('ENODATA', 'x'); }, errno: E.ENODATA, bug: false },
];

for (const f of FAILURES) {
  for (const tracing of [false, true]) {
    test(`every handler replies once with -errno when the op ${f.name}${tracing ? ' (tracing)' : ''}`, async (t) => {
      const log = recordingLog(tracing);
      const o = toFuseOps(failingOps(f.fail), log);
      for (const h of HANDLERS) {
        let got: unknown[][] = [];
        await t.notThrowsAsync(async () => {
          got = await replies(o, h, '/some/path');
        }, h);
        // Exactly one reply, carrying only the negative errno (no value).
        t.deepEqual(got, [[-f.errno]], h);
      }
      // Anything that is not an FsError is a bug: logged once per request, with the op's name.
      t.deepEqual(log.bugs, f.bug ? HANDLERS : []);
      if (tracing) {
        const code = f.bug ? 'EIO' : (Object.entries(E).find(([, v]) => v === f.errno)?.[0] ?? '?');
        t.deepEqual(log.traces, HANDLERS.map((op) => ({ op, result: code })));
      } else {
        t.deepEqual(log.traces, []);
      }
    });
  }
}

test('a path that is not a mount path is a bug answered with -EIO, once', async (t) => {
  const calls: string[] = [];
  const ok = new Proxy({}, { get: (_o, m: string) => () => { calls.push(m); return Promise.resolve(undefined); } }) as unknown as UnionOps;
  const log = recordingLog(false);
  const o = toFuseOps(ok, log);
  const withPath = HANDLERS.filter((h) => !PATHLESS.has(h));
  for (const h of withPath) {
    for (const bad of ['relative', '/a/', '//a', '/a/../b', '']) {
      t.deepEqual(await replies(o, h, bad), [[-E.EIO]], `${h} ${JSON.stringify(bad)}`);
    }
  }
  t.deepEqual(calls, [], 'the union never sees a bad path');
  t.is(log.bugs.length, withPath.length * 5);
});

test('successful replies carry the value, once, with 0 as the error', async (t) => {
  const st = attrOfEntry(lstatEntry(s.root as RealPath), 7);
  const sfs: StatsFs = { type: 1, bsize: 4096, blocks: 100, bfree: 50, bavail: 40, files: 1000, ffree: 900 };
  const xattr = Buffer.from('value');
  const seen: unknown[][] = [];
  const rec = <T>(name: string, v: T) => (...args: unknown[]): Promise<T> => {
    seen.push([name, ...args.map((a) => (Buffer.isBuffer(a) ? `buf${a.length}` : a))]);
    return Promise.resolve(v);
  };
  const ops: UnionOps = {
    getattr: rec('getattr', st),
    access: rec('access', undefined),
    readlink: rec('readlink', '../target'),
    readdir: rec('readdir', [{ name: '.', type: S_IFDIR, ino: 1 }, { name: '..', type: S_IFDIR, ino: 0 }, { name: 'f', type: S_IFREG, ino: 77 }]),
    open: rec('open', { fh: 42 }),
    read: rec('read', 5),
    release: rec('release', undefined),
    statfs: rec('statfs', sfs),
    getxattr: rec('getxattr', xattr),
    listxattr: rec('listxattr', ['user.a', 'trusted.b']),
    ...Object.fromEntries(WRITE_METHODS().map((m) => [m, () => Promise.reject(new FsError('EROFS', m))])),
  } as unknown as UnionOps;
  const log = recordingLog(false);
  const o = toFuseOps(ops, log);
  t.deepEqual(await replies(o, 'getattr', '/a'), [[0, toFuseStat(st)]]);
  t.deepEqual(await replies(o, 'access', '/a'), [[0]]);
  t.deepEqual(await replies(o, 'readlink', '/a'), [[0, '../target']]);
  const rd = await replies(o, 'readdir', '/d');
  t.is(rd.length, 1);
  t.is(rd[0]![0], 0);
  t.deepEqual(rd[0]![1], ['.', '..', 'f']);
  t.deepEqual((rd[0]![2] as Array<{ mode: number }>).map((x) => x.mode), [S_IFDIR, S_IFDIR, S_IFREG]);
  t.deepEqual(await replies(o, 'open', '/a'), [[0, 42]]);
  t.deepEqual(await replies(o, 'read', '/a'), [[5]], 'read replies with the byte count alone');
  t.deepEqual(await replies(o, 'release', '/a'), [[0]]);
  t.deepEqual(await replies(o, 'statfs', '/'), [[0, toFuseStatfs(sfs)]]);
  t.deepEqual(await replies(o, 'getxattr', '/a'), [[0, xattr]]);
  t.deepEqual(await replies(o, 'listxattr', '/a'), [[0, ['user.a', 'trusted.b']]]);
  t.deepEqual(seen, [
    ['getattr', '/a'], ['access', '/a', fs.constants.R_OK], ['readlink', '/a'], ['readdir', '/d'],
    ['open', '/a', fs.constants.O_RDONLY], ['read', 7, 'buf16', 16, 2 ** 33], ['release', 7], ['statfs', '/'],
    ['getxattr', '/a', 'user.a'], ['listxattr', '/a'],
  ]);
  t.deepEqual(log.bugs, []);
});

test('changes reach the union with their arguments; new entries are owned by the caller', async (t) => {
  const asked: unknown[][] = [];
  const ops = failingOps(() => Promise.reject(new Error('not a change')));
  for (const m of WRITE_METHODS()) {
    (ops as unknown as Record<string, unknown>)[m] = (...args: unknown[]) => {
      asked.push([m, ...args.map((a) => (Buffer.isBuffer(a) ? `buf${a.length}` : a))]);
      return Promise.resolve(m === 'create' ? 9 : m === 'write' ? 1 : undefined);
    };
  }
  const log = recordingLog(false);
  const o = toFuseOps(ops, log, () => ({ uid: 1234, gid: 5678 }));
  for (const h of ['create', 'mkdir', 'mknod', 'symlink', 'unlink', 'rename', 'link', 'chmod', 'truncate'] as Handler[]) {
    t.is((await replies(o, h, '/p'))[0]![0], 0, h);
  }
  const owner = { uid: 1234, gid: 5678 };
  t.deepEqual(asked, [
    ['create', '/p', 0o644, 0, owner], ['mkdir', '/p', 0o755, owner], ['mknod', '/p', 0o010644, 0, owner],
    ['symlink', 'target', '/p', owner], ['unlink', '/p'], ['rename', '/p', '/dest'], ['link', '/src', '/p'],
    ['chmod', '/p', 0o600], ['truncate', '/p', 0],
  ]);
  t.deepEqual(log.bugs, []);
});

test('over a real union: the errno of each failure reaches the reply', async (t) => {
  const [root] = s.branches({ f: 'data', l: symlink('/etc'), d: { type: 'dir' } });
  const u = createUnion({ lowers: [root!] });
  t.teardown(() => u.close());
  const log = recordingLog(false);
  const o = toFuseOps(u.ops, log);
  const one = async (call: (cb: AnyCb) => void): Promise<unknown[][]> => {
    const got: unknown[][] = [];
    call((...a) => got.push(a));
    // Real file system calls: wait for the reply, then make sure no second one follows.
    while (got.length === 0) await new Promise((r) => setImmediate(r));
    await settle();
    return got;
  };
  t.deepEqual(await one((cb) => o.getattr!('/missing', cb)), [[-E.ENOENT]]);
  t.deepEqual(await one((cb) => o.getattr!('/f/x', cb)), [[-E.ENOTDIR]]);
  t.deepEqual(await one((cb) => o.readdir!('/f', cb)), [[-E.ENOTDIR]]);
  t.deepEqual(await one((cb) => o.readlink!('/f', cb)), [[-E.EINVAL]]);
  t.deepEqual(await one((cb) => o.open!('/d', fs.constants.O_RDONLY, cb)), [[-E.EISDIR]]);
  t.deepEqual(await one((cb) => o.open!('/f', fs.constants.O_WRONLY, cb)), [[-E.EROFS]]);
  t.deepEqual(await one((cb) => o.access!('/f', fs.constants.W_OK, cb)), [[-E.EROFS]]);
  t.deepEqual(await one((cb) => o.getxattr!('/f', 'user.none', 0, cb)), [[-E.ENODATA]]);
  t.deepEqual(await one((cb) => o.read!('/f', 987654, Buffer.alloc(4), 4, 0, cb)), [[-E.EBADF]]);
  t.deepEqual(await one((cb) => o.mkdir!('/new', 0o755, cb)), [[-E.EROFS]]);
  const opened = await one((cb) => o.open!('/f', fs.constants.O_RDONLY, cb));
  t.is(opened.length, 1);
  t.is(opened[0]![0], 0);
  const fh = opened[0]![1] as number;
  const buf = Buffer.alloc(10);
  t.deepEqual(await one((cb) => o.read!('/f', fh, buf, 10, 0, cb)), [[4]]);
  t.is(buf.subarray(0, 4).toString(), 'data');
  t.deepEqual(await one((cb) => o.release!('/f', fh, cb)), [[0]]);
  t.deepEqual(log.bugs, []);
});

test('toFuseStat carries every field, times in ms and exact in ns', (t) => {
  const st = fs.lstatSync(s.root);
  const ns = fs.lstatSync(s.root, { bigint: true });
  const f = toFuseStat(attrOfEntry(lstatEntry(s.root as RealPath), st.ino + 1));
  t.deepEqual(f, {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, dev: 0, nlink: st.nlink, ino: st.ino + 1,
    rdev: st.rdev, blksize: st.blksize, blocks: st.blocks, atime: st.atimeMs, mtime: st.mtimeMs, ctime: st.ctimeMs,
    atimeNs: ns.atimeNs, mtimeNs: ns.mtimeNs, ctimeNs: ns.ctimeNs,
  });
});

const U32 = 0xffff_ffff;
const sfs = (o: Partial<StatsFs>): StatsFs => ({ type: 0xef53, bsize: 4096, blocks: 1000, bfree: 600, bavail: 500, files: 100, ffree: 90, ...o });

test('toFuseStatfs passes small numbers unchanged', (t) => {
  t.deepEqual(toFuseStatfs(sfs({})), { bsize: 4096, frsize: 4096, blocks: 1000, bfree: 600, bavail: 500, files: 100, ffree: 90, favail: 90, fsid: 0, flag: 0, namemax: 255 });
  const edge = toFuseStatfs(sfs({ blocks: U32, bfree: U32, bavail: U32 }));
  t.is(edge.frsize, 4096, 'exactly 2^32-1 blocks still fit');
  t.is(edge.blocks, U32);
});

test('toFuseStatfs scales block counts into uint32 and keeps the byte totals', (t) => {
  for (const [bsize, blocks, bfree, bavail] of [
    [4096, 2 ** 32, 2 ** 31, 2 ** 30],
    [4096, 2 ** 40, 2 ** 39 + 3, 2 ** 38 + 1],
    [512, 2 ** 33 + 12345, 2 ** 33, 2 ** 32 + 7],
    [1024, 2 ** 50 - 1, 2 ** 49, 12345],
    [4096, U32 + 1, U32 + 1, 0],
  ] as const) {
    const r = toFuseStatfs(sfs({ bsize, blocks, bfree, bavail }));
    const label = `bsize ${bsize} blocks ${blocks}`;
    for (const k of ['blocks', 'bfree', 'bavail', 'files', 'ffree', 'favail'] as const) {
      t.true(Number.isInteger(r[k]) && r[k] >= 0 && r[k] <= U32, `${label}: ${k}=${r[k]}`);
    }
    t.true(r.frsize > bsize && r.frsize % bsize === 0, `${label}: frsize ${r.frsize}`);
    t.is(r.bsize, r.frsize, 'f_bsize scales with f_frsize');
    // Each total in bytes is kept to within one (scaled) block.
    for (const [k, v] of [['blocks', blocks], ['bfree', bfree], ['bavail', bavail]] as const) {
      const diff = v * bsize - r[k] * r.frsize;
      t.true(diff >= 0 && diff < r.frsize, `${label}: ${k} off by ${diff} bytes`);
    }
    // Scaled no more than needed: half the block size would not fit.
    t.true(Math.floor((blocks * bsize) / (r.frsize / 2)) > U32, `${label}: over-scaled`);
  }
});

test('toFuseStatfs caps inode counts at uint32', (t) => {
  const r = toFuseStatfs(sfs({ files: 2 ** 40, ffree: 2 ** 33 }));
  t.is(r.files, U32);
  t.is(r.ffree, U32);
  t.is(r.favail, U32);
  t.is(r.blocks, 1000);
});
