// src/fuse/kernel/session.ts without a mount: FUSE requests laid out as the kernel lays them out,
// answered through a real union of temp branches, and the replies decoded. What a mount shows
// is checked in test/integration (every mount test runs on this engine by default); this checks
// the protocol corners a mount rarely reaches: paging of long listings, the xattr size probe,
// exact times, forgotten nodes, names that move under open handles.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isOpaqueDir } from '../../src/branch-dir.js';
import { createLog } from '../../src/log.js';
import type { RealPath } from '../../src/path.js';
import { OpCounters } from '../../src/stats.js';
import { KernelSession, type KernelPolicy, type SpliceRead } from '../../src/fuse/kernel/session.js';
import type { BackingFiles } from '../../src/fuse/kernel/passthrough.js';
import { IN_HEADER, Op } from '../../src/fuse/kernel/wire.js';
import { createUnion, type Union, type UnionOps } from '../../src/union.js';
import { file, hardlink, makeScratch, type Spec } from './fixture.js';

const s = await makeScratch('kernel-session');
const unions: Union[] = [];
test.after.always(async () => {
  await Promise.all(unions.map((u) => u.close()));
  await s.cleanup();
});

const WRITABLE: KernelPolicy = {
  entrySec: 1, attrSecFile: 0, attrSecDir: 1, attrSecLinked: 0, negativeSec: 0, keepCache: false, cacheDirs: false,
  cacheSymlinks: false, posixAcl: false, kernelOpens: false, maxWrite: 1 << 20, writable: true,
};

interface Reply { readonly error: number; readonly body: Buffer }

/** A kernel stand-in: numbers requests, sends them to a session, and hands back the replies. */
class Client {
  private unique = 1n;
  private readonly waiting = new Map<bigint, (r: Reply) => void>();
  readonly session: KernelSession;
  readonly upper: string;

  readonly traces: string[] = [];
  /** What `layerfs stats` would show of this session. */
  readonly stats = new OpCounters();
  /** Notifications sent to the kernel (unique 0): their code (in the error field) and body. */
  readonly notes: Reply[] = [];
  private readonly wire = Buffer.alloc(1 << 17);
  /** The caller's thread id every request carries. */
  pid = 0;
  /** The caller's uid every request carries. */
  uid = 0;

  constructor(
    lowers: Spec[], policy: KernelPolicy = WRITABLE, writable = true, wrap: (ops: UnionOps) => UnionOps = (ops) => ops,
    backing?: BackingFiles, splice?: SpliceRead,
  ) {
    const roots = s.branches(...lowers);
    this.upper = s.dir('upper');
    const work = s.dir('work');
    const u = writable ? createUnion({ lowers: roots, upper: this.upper, work, whiteout: 'overlay' }) : createUnion({ lowers: roots });
    unions.push(u);
    const log = { ...createLog({ tracing: true, write: (line) => this.traces.push(line) }), stats: this.stats };
    this.session = new KernelSession(wrap(u.ops), policy, log, (b) => {
      const unique = b.readBigUInt64LE(8);
      if (unique === 0n) this.notes.push({ error: b.readInt32LE(4), body: b.subarray(16, b.readUInt32LE(0)) });
      this.waiting.get(unique)?.({ error: -b.readInt32LE(4) || 0, body: b.subarray(16, b.readUInt32LE(0)) });
      this.waiting.delete(unique);
    }, undefined, backing, splice);
    u.tellFixedXattrNames(this.session.knowXattrs);
  }

  /** The unique the next request gets. */
  get nextUnique(): bigint {
    return this.unique;
  }

  send(op: Op, nodeid: number, ...args: Array<Buffer | string>): Promise<Reply> {
    const body = Buffer.concat(args.map((a) => (typeof a === 'string' ? Buffer.from(`${a}\0`) : a)));
    const b = Buffer.alloc(IN_HEADER + body.length);
    const unique = this.unique++;
    b.writeUInt32LE(b.length, 0);
    b.writeUInt32LE(op, 4);
    b.writeBigUInt64LE(unique, 8);
    b.writeBigUInt64LE(BigInt(nodeid), 16);
    b.writeUInt32LE(this.uid, 24);
    b.writeUInt32LE(this.pid, 32);
    body.copy(b, IN_HEADER);
    const reply = new Promise<Reply>((resolve) => this.waiting.set(unique, resolve));
    // One buffer for every request, as the device reads them: what a request needs after its
    // first await must have been copied out of it.
    b.copy(this.wire);
    this.session.request(this.wire, b.length);
    this.wire.fill(0xee);
    return reply;
  }

  async lookup(parent: number, name: string): Promise<{ nodeid: number; ino: number; mode: number; size: number; error: number }> {
    const r = await this.send(Op.LOOKUP, parent, name);
    if (r.error !== 0) return { nodeid: 0, ino: 0, mode: 0, size: 0, error: r.error };
    return { nodeid: Number(r.body.readBigUInt64LE(0)), ino: Number(r.body.readBigUInt64LE(40)), size: Number(r.body.readBigUInt64LE(48)), mode: r.body.readUInt32LE(40 + 60), error: 0 };
  }

  async open(nodeid: number, flags: number): Promise<bigint> {
    const r = await this.send(Op.OPEN, nodeid, u32s(flags, 0));
    if (r.error !== 0) throw new Error(`open: errno ${r.error}`);
    return r.body.readBigUInt64LE(0);
  }

  /**
   * Every name of a directory, read in pages of `size` bytes. Where OPENDIR answers ENOSYS the
   * pages are asked with handle 0, as the kernel then does (D55), and no RELEASEDIR is sent.
   */
  async list(nodeid: number, size: number): Promise<{ names: string[]; pages: number; handle: boolean }> {
    const opened = await this.send(Op.OPENDIR, nodeid, u32s(0, 0));
    if (opened.error !== 0 && opened.error !== ENOSYS) throw new Error(`opendir: errno ${opened.error}`);
    const handle = opened.error === 0;
    const fh = handle ? opened.body.readBigUInt64LE(0) : 0n;
    const names: string[] = [];
    let offset = 0n;
    let pages = 0;
    for (;;) {
      const r = await this.send(Op.READDIR, nodeid, u64s(fh, offset), u32s(size, 0), u64s(0n), u32s(0, 0));
      if (r.body.length === 0) break;
      pages++;
      for (let at = 0; at < r.body.length;) {
        const len = r.body.readUInt32LE(at + 16);
        names.push(r.body.toString('utf8', at + 24, at + 24 + len));
        offset = r.body.readBigUInt64LE(at + 8);
        at += (24 + len + 7) & ~7;
      }
    }
    if (handle) await this.send(Op.RELEASEDIR, nodeid, u64s(fh), u32s(0, 0), u64s(0n));
    return { names, pages, handle };
  }
}

function u32s(...v: number[]): Buffer {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32LE(x, 4 * i));
  return b;
}
function u64s(...v: bigint[]): Buffer {
  const b = Buffer.alloc(8 * v.length);
  v.forEach((x, i) => b.writeBigUInt64LE(x, 8 * i));
  return b;
}

const ROOT = 1;
const { ENOENT, ERANGE, ENODATA, ENOSYS, EBADF, EAGAIN, EIO, EMSGSIZE } = (await import('node:os')).constants.errno;

test('a listing longer than one reply is paged without a name lost or repeated', async (t) => {
  const spec: Spec = {};
  for (let i = 0; i < 500; i++) spec[`file-with-a-longish-name-${i}`] = `${i}`;
  const c = new Client([spec, { 'only-below': 'x', 'file-with-a-longish-name-7': 'hidden' }]);
  const { names, pages } = await c.list(ROOT, 4096);
  t.true(pages > 3, `pages: ${pages}`);
  const expected = ['.', '..', 'only-below', ...Object.keys(spec)].sort();
  t.deepEqual([...names].sort(), expected);
});

const READ_ONLY: KernelPolicy = {
  entrySec: 3600, attrSecFile: 3600, attrSecDir: 3600, attrSecLinked: 3600, negativeSec: 3600, keepCache: true, cacheDirs: true,
  cacheSymlinks: true, posixAcl: false, kernelOpens: true, maxWrite: 1 << 20, writable: false,
};
const NO_OPENDIR_SUPPORT = 1 << 24;

/** INIT from a kernel that offers exactly `flags` (protocol 7.40, no flags2). */
const initOffering = (c: Client, flags: number): Promise<Reply> =>
  c.send(Op.INIT, 0, u32s(7, 40, 128 * 1024, flags >>> 0, 0, ...new Array<number>(11).fill(0)));

test('D55: where the kernel keeps listings, OPENDIR answers ENOSYS and listings page without a handle', async (t) => {
  const top: Spec = { 'b/x': '1', 'b/y': '2' };
  const names = Array.from({ length: 400 }, (_, i) => `name-${i}`);
  for (const n of names) top[`a/${n}`] = n;
  const lowers = (): Spec[] => [top, { 'a/name-5': 'hidden', 'a/below': 'z', 'b/z': '3' }];
  const c = new Client(lowers(), READ_ONLY, false);
  t.is((await initOffering(c, 0xffff_ffff)).error, 0);
  const a = (await c.lookup(ROOT, 'a')).nodeid;
  const b = (await c.lookup(ROOT, 'b')).nodeid;
  t.is((await c.send(Op.OPENDIR, a, u32s(0, 0))).error, ENOSYS);
  const want = ['.', '..', 'below', ...names].sort();
  const one = await c.list(a, 4096);
  t.false(one.handle);
  t.true(one.pages > 3, `pages: ${one.pages}`);
  t.deepEqual([...one.names].sort(), want);
  t.is(new Set(one.names).size, one.names.length, 'no name twice');

  // Two listings paged at once, and one left half-read, keep to their own directories.
  const page = async (dir: number, offset: bigint): Promise<{ names: string[]; next: bigint }> => {
    const r = await c.send(Op.READDIR, dir, u64s(0n, offset), u32s(512, 0), u64s(0n), u32s(0, 0));
    t.is(r.error, 0);
    const names: string[] = [];
    let next = offset;
    for (let at = 0; at < r.body.length;) {
      const len = r.body.readUInt32LE(at + 16);
      names.push(r.body.toString('utf8', at + 24, at + 24 + len));
      next = r.body.readBigUInt64LE(at + 8);
      at += (24 + len + 7) & ~7;
    }
    return { names, next };
  };
  await page(a, 0n); // left half-read
  const got = { a: [] as string[], b: [] as string[] };
  let [oa, ob] = [0n, 0n];
  for (let doneA = false, doneB = false; !doneA || !doneB;) {
    if (!doneA) {
      const p = await page(a, oa);
      doneA = p.names.length === 0;
      got.a.push(...p.names);
      oa = p.next;
    }
    if (!doneB) {
      const p = await page(b, ob);
      doneB = p.names.length === 0;
      got.b.push(...p.names);
      ob = p.next;
    }
  }
  t.deepEqual(got.a.sort(), want);
  t.deepEqual(got.b.sort(), ['.', '..', 'x', 'y', 'z']);

  // A kernel that does not take ENOSYS to OPENDIR gets handles, as does a writable union.
  const old = new Client(lowers(), READ_ONLY, false);
  await initOffering(old, 0xffff_ffff & ~NO_OPENDIR_SUPPORT);
  const listed = await old.list((await old.lookup(ROOT, 'a')).nodeid, 4096);
  t.true(listed.handle);
  t.deepEqual([...listed.names].sort(), want);
  t.is((await old.send(Op.READDIR, ROOT, u64s(0n, 0n), u32s(4096, 0), u64s(0n), u32s(0, 0))).error, EBADF);
  const rw = new Client(lowers());
  await initOffering(rw, 0xffff_ffff);
  t.true((await rw.list(ROOT, 4096)).handle);
});

test('getxattr and listxattr: size 0 asks for the size, a short buffer gets ERANGE, absence ENODATA', async (t) => {
  const c = new Client([{ f: 'x' }]);
  const f = (await c.lookup(ROOT, 'f')).nodeid;
  const set = await c.send(Op.SETXATTR, f, u32s(5, 0), 'user.k', Buffer.from('value'));
  t.is(set.error, 0);
  const probe = await c.send(Op.GETXATTR, f, u32s(0, 0), 'user.k');
  t.is(probe.body.readUInt32LE(0), 5);
  t.is((await c.send(Op.GETXATTR, f, u32s(3, 0), 'user.k')).error, ERANGE);
  t.is((await c.send(Op.GETXATTR, f, u32s(64, 0), 'user.k')).body.toString(), 'value');
  t.is((await c.send(Op.GETXATTR, f, u32s(64, 0), 'user.none')).error, ENODATA);
  t.is((await c.send(Op.LISTXATTR, f, u32s(64, 0))).body.toString(), 'user.k\0');
  t.is((await c.send(Op.LISTXATTR, f, u32s(0, 0))).body.readUInt32LE(0), 7);
});

test('setattr sets exact times, one of them alone too, and answers with the new attributes', async (t) => {
  const c = new Client([{ f: 'x' }]);
  const f = (await c.lookup(ROOT, 'f')).nodeid;
  const MTIME = 1 << 5;
  const ATIME = 1 << 4;
  const setattr = (valid: number, atime: bigint, mtime: bigint, ansec: number, mnsec: number): Promise<Reply> => {
    const a = Buffer.alloc(88);
    a.writeUInt32LE(valid, 0);
    a.writeBigInt64LE(atime, 32);
    a.writeBigInt64LE(mtime, 40);
    a.writeUInt32LE(ansec, 56);
    a.writeUInt32LE(mnsec, 60);
    return c.send(Op.SETATTR, f, a);
  };
  const r = await setattr(MTIME, 0n, 1_000_000_000n, 0, 123_456_789);
  t.is(r.error, 0);
  t.is(r.body.readBigInt64LE(16 + 32), 1_000_000_000n); // attr.mtime in the reply
  t.is(r.body.readUInt32LE(16 + 52), 123_456_789);
  const st = fs.statSync(path.join(c.upper, 'f'), { bigint: true });
  t.is(st.mtimeNs, 1_000_000_000_123_456_789n);
  const atimeBefore = st.atimeNs;
  await setattr(ATIME, 2_000_000_000n, 0n, 7, 0);
  const st2 = fs.statSync(path.join(c.upper, 'f'), { bigint: true });
  t.is(st2.atimeNs, 2_000_000_000_000_000_007n);
  t.is(st2.mtimeNs, 1_000_000_000_123_456_789n, 'mtime untouched by an atime-only change');
  t.not(atimeBefore, st2.atimeNs);
});

test('a renamed directory takes its looked-up children along; a forgotten node is unknown', async (t) => {
  const c = new Client([{ 'd/f': 'content' }]);
  const d = (await c.lookup(ROOT, 'd')).nodeid;
  const f = (await c.lookup(d, 'f')).nodeid;
  t.is((await c.send(Op.RENAME, ROOT, u64s(BigInt(ROOT)), 'd', 'e')).error, 0);
  t.is(c.session.nodes.path(c.session.nodes.get(f)!) as string | null, '/e/f');
  const fh = await c.open(f, fs.constants.O_RDONLY);
  const read = await c.send(Op.READ, f, u64s(fh, 0n), u32s(100, 0), u64s(0n), u32s(0, 0));
  t.is(read.body.toString(), 'content');
  t.is((await c.lookup(ROOT, 'd')).error, ENOENT);
  // The kernel forgets f: its node goes, and a request naming it is refused.
  await c.send(Op.RELEASE, f, u64s(fh), u32s(0, 0), u64s(0n));
  const forget = Buffer.alloc(IN_HEADER + 8);
  forget.writeUInt32LE(forget.length, 0);
  forget.writeUInt32LE(Op.FORGET, 4);
  forget.writeBigUInt64LE(BigInt(f), 16);
  forget.writeBigUInt64LE(1n, IN_HEADER);
  c.session.request(forget, forget.length);
  t.is(c.session.nodes.get(f), undefined);
  t.is((await c.send(Op.GETATTR, f, u32s(0, 0), u64s(0n))).error, ENOENT);
});

test('a file unlinked while open is still read and stat-ed through its handle, with no name left', async (t) => {
  const c = new Client([{ f: 'lower content' }]);
  const f = (await c.lookup(ROOT, 'f')).nodeid;
  const fh = await c.open(f, fs.constants.O_RDWR);
  t.is((await c.send(Op.UNLINK, ROOT, 'f')).error, 0);
  t.is((await c.lookup(ROOT, 'f')).error, ENOENT);
  const GETATTR_FH = 1;
  const st = await c.send(Op.GETATTR, f, u32s(GETATTR_FH, 0), u64s(fh));
  t.is(st.error, 0);
  t.is(st.body.readUInt32LE(16 + 64), 0, 'nlink 0');
  t.is(Number(st.body.readBigUInt64LE(16 + 8)), 'lower content'.length);
  const read = await c.send(Op.READ, f, u64s(fh, 0n), u32s(100, 0), u64s(0n), u32s(0, 0));
  t.is(read.body.toString(), 'lower content');
  // Nothing of it is left in the upper but the whiteout.
  t.deepEqual(fs.readdirSync(c.upper), ['f']);
  t.true(fs.lstatSync(path.join(c.upper, 'f')).isCharacterDevice());
  await c.send(Op.RELEASE, f, u64s(fh), u32s(0, 0), u64s(0n));
});

test('renameat2: RENAME_NOREPLACE refuses an existing name and moves onto a free one; RENAME_WHITEOUT EINVAL', async (t) => {
  const c = new Client([{ a: 'a', b: 'b' }]);
  const NOREPLACE = 1;
  const WHITEOUT = 4;
  const rename2 = (flags: number, from: string, to: string): Promise<Reply> => c.send(Op.RENAME2, ROOT, u64s(BigInt(ROOT)), u32s(flags, 0), from, to);
  const { EEXIST, EINVAL } = (await import('node:os')).constants.errno;
  t.is((await rename2(NOREPLACE, 'a', 'b')).error, EEXIST);
  t.is((await rename2(WHITEOUT, 'a', 'b')).error, EINVAL);
  t.is((await rename2(NOREPLACE | WHITEOUT, 'a', 'b')).error, EINVAL);
  t.is((await rename2(NOREPLACE, 'a', 'c')).error, 0);
  t.is((await c.lookup(ROOT, 'a')).error, ENOENT);
  t.is((await c.lookup(ROOT, 'c')).size, 1);
  t.is((await c.lookup(ROOT, 'b')).size, 1);
});

test('renameat2 RENAME_EXCHANGE: the two nodes swap names, their children and open handles go with them (D61)', async (t) => {
  const c = new Client([{ a: 'lower a', 'ld/x': 'lower x' }]);
  const EXCHANGE = 2;
  const rename2 = (from: number, fromName: string, to: number, toName: string): Promise<Reply> =>
    c.send(Op.RENAME2, from, u64s(BigInt(to)), u32s(EXCHANGE, 0), fromName, toName);
  const { EXDEV } = (await import('node:os')).constants.errno;
  // A directory of the upper alone, with a file.
  fs.mkdirSync(path.join(c.upper, 'd'));
  fs.writeFileSync(path.join(c.upper, 'd', 'f'), 'in d');
  const d = (await c.lookup(ROOT, 'd')).nodeid;
  const f = (await c.lookup(d, 'f')).nodeid;
  const a = (await c.lookup(ROOT, 'a')).nodeid;
  const fh = await c.open(a, fs.constants.O_RDONLY);
  t.is((await rename2(ROOT, 'a', ROOT, 'd')).error, 0);
  const nodes = c.session.nodes;
  t.is(nodes.path(nodes.get(a)!) as string | null, '/d');
  t.is(nodes.path(nodes.get(d)!) as string | null, '/a');
  t.is(nodes.path(nodes.get(f)!) as string | null, '/a/f', 'a looked-up child goes along');
  // The handle opened on the lower file by its old name reads it at its new one.
  const read = await c.send(Op.READ, a, u64s(fh, 0n), u32s(100, 0), u64s(0n), u32s(0, 0));
  t.is(read.body.toString(), 'lower a');
  t.is((await c.lookup(ROOT, 'd')).size, 'lower a'.length);
  t.is((await c.lookup(nodes.get(d)!.id, 'f')).size, 'in d'.length);
  // In the upper, swapped: the copied-up file at d, the directory (opaque: the root has a lower) at a.
  t.is(fs.readFileSync(path.join(c.upper, 'd'), 'utf8'), 'lower a');
  t.is(fs.readFileSync(path.join(c.upper, 'a', 'f'), 'utf8'), 'in d');
  t.true(await isOpaqueDir(path.join(c.upper, 'a') as RealPath));
  // A directory that a lower layer has cannot move this way.
  t.is((await rename2(ROOT, 'ld', ROOT, 'd')).error, EXDEV);
  t.is((await c.lookup(ROOT, 'ld')).error, 0);
  await c.send(Op.RELEASE, a, u64s(fh), u32s(0, 0), u64s(0n));
});

interface PlusEntry { name: string; nodeid: number; size: number; mode: number; off: bigint }

/** One READDIRPLUS page of directory handle `fh` from `offset`, entry by entry. */
async function plusPage(c: Client, dir: number, fh: bigint, offset: bigint, size: number): Promise<PlusEntry[]> {
  const r = await c.send(Op.READDIRPLUS, dir, u64s(fh, offset), u32s(size, 0), u64s(0n), u32s(0, 0));
  const got: PlusEntry[] = [];
  for (let at = 0; at < r.body.length;) {
    const len = r.body.readUInt32LE(at + 128 + 16);
    got.push({
      name: r.body.toString('utf8', at + 128 + 24, at + 128 + 24 + len),
      nodeid: Number(r.body.readBigUInt64LE(at)),
      size: Number(r.body.readBigUInt64LE(at + 48)),
      mode: r.body.readUInt32LE(at + 40 + 60),
      off: r.body.readBigUInt64LE(at + 128 + 8),
    });
    at += 128 + ((24 + len + 7) & ~7);
  }
  return got;
}

/** A READDIRPLUS of directory node `dir` from offset 0: each name with its entry's node, size and mode. */
async function readdirPlus(c: Client, dir: number): Promise<Map<string, { nodeid: number; size: number; mode: number }>> {
  const fh = (await c.send(Op.OPENDIR, dir, u32s(0, 0))).body.readBigUInt64LE(0);
  const page = await plusPage(c, dir, fh, 0n, 65536);
  await c.send(Op.RELEASEDIR, dir, u64s(fh), u32s(0, 0), u64s(0n));
  return new Map(page.map((e) => [e.name, { nodeid: e.nodeid, size: e.size, mode: e.mode }]));
}

test('readdirplus gives each entry with its attributes and node, as a lookup would, once walks stat what they list; "." and ".." none', async (t) => {
  const c = new Client([{ 'd/small': 'abc', 'd/sub/x': 'x' }, { 'd/below': 'below!' }]);
  const d = (await c.lookup(ROOT, 'd')).nodeid;
  // The first listing of a mount is a probe (D42): its files go without attributes, and the
  // walk shows what it wants by looking them up, or not.
  const probe = await readdirPlus(c, d);
  t.is(probe.get('small')?.nodeid, 0);
  t.not(probe.get('sub')?.nodeid, 0, 'a directory always has its entry');
  for (const name of ['small', 'below']) await c.lookup(d, name);
  const got = await readdirPlus(c, d);
  t.deepEqual([...got.keys()].sort(), ['.', '..', 'below', 'small', 'sub']);
  t.is(got.get('.')?.nodeid, 0);
  t.is(got.get('..')?.nodeid, 0);
  t.is(got.get('small')?.size, 3);
  t.is(got.get('below')?.size, 6);
  t.is((got.get('sub')?.mode ?? 0) & fs.constants.S_IFMT, fs.constants.S_IFDIR);
  // The same node a lookup gives, and counted: one lookup above, one in this listing.
  const small = await c.lookup(d, 'small');
  t.is(small.nodeid, got.get('small')?.nodeid ?? -1);
  t.is(c.session.nodes.get(small.nodeid)?.lookups, 3);
});

test('a walk that does not look up what it lists gets the entries of files without attributes, directories with (D42)', async (t) => {
  const layer: Record<string, string> = {};
  for (let d = 0; d < 40; d++) for (const f of ['a', 'b', 'c', 'd']) layer[`d${d}/${f}`] = f;
  for (let d = 0; d < 40; d++) layer[`d${d}/sub/x`] = 'x';
  const c = new Client([layer]);
  const dirs: number[] = [];
  for (let d = 0; d < 40; d++) dirs.push((await c.lookup(ROOT, `d${d}`)).nodeid);
  const fileAttrs = (l: Map<string, { nodeid: number }>): boolean => (l.get('a')?.nodeid ?? 0) !== 0;
  // find: lists, descends by type, looks up no file.
  for (let i = 0; i < 3; i++) {
    const l = await readdirPlus(c, dirs[i] as number);
    t.false(fileAttrs(l), `listing ${i}: no file attributes`);
    t.not(l.get('sub')?.nodeid, 0, `listing ${i}: the directory's entry`);
  }
  // ls -l: looks up a quarter of what a listing gave bare: the next listings carry attributes.
  await c.lookup(dirs[2] as number, 'a');
  t.true(fileAttrs(await readdirPlus(c, dirs[3] as number)));
  // ...and one in PROBE_EVERY (16) goes bare again, to notice a change of walk.
  const modes: boolean[] = [];
  for (let i = 4; i < 4 + 16; i++) {
    const l = await readdirPlus(c, dirs[i] as number);
    modes.push(fileAttrs(l));
    for (const f of ['a', 'b', 'c', 'd']) await c.lookup(dirs[i] as number, f);
  }
  t.is(modes.filter((m) => !m).length, 1, 'one probe in 16 listings');
  t.true(fileAttrs(await readdirPlus(c, dirs[20] as number)), 'the probe was looked up: attributes stay');
  // Three probes while the walk looked nothing up, and one in the 16 listings after.
  t.is(c.session.listingAttrs.probes, 4);
});

test('a listing\'s later pages go as the walk goes: with file attributes past a probe\'s first page where walks stat what they list, bare where they do not (D77)', async (t) => {
  // The kernel asks every page as READDIRPLUS (no FUSE_READDIRPLUS_AUTO): a walk that reads a
  // whole directory before it stats (du, fts) would otherwise look up every entry past page one.
  const layer: Record<string, string> = {};
  for (const d of ['d', 'e']) for (let i = 0; i < 30; i++) layer[`${d}/f${String(i).padStart(2, '0')}`] = 'x';
  const c = new Client([layer]);
  const d = (await c.lookup(ROOT, 'd')).nodeid;
  const e = (await c.lookup(ROOT, 'e')).nodeid;
  const pages = async (dir: number): Promise<{ nodeid: number }[][]> => {
    const fh = (await c.send(Op.OPENDIR, dir, u32s(0, 0))).body.readBigUInt64LE(0);
    const out: { nodeid: number }[][] = [];
    for (let offset = 0n; ;) {
      const page = await plusPage(c, dir, fh, offset, 1024);
      if (page.length === 0) break;
      offset = (page[page.length - 1] as PlusEntry).off;
      out.push(page.filter((e) => e.name !== '.' && e.name !== '..'));
    }
    await c.send(Op.RELEASEDIR, dir, u64s(fh), u32s(0, 0), u64s(0n));
    return out;
  };
  const bare = (page: { nodeid: number }[] | undefined): boolean => page !== undefined && page.every((x) => x.nodeid === 0);
  const withAttrs = (page: { nodeid: number }[] | undefined): boolean => page !== undefined && page.every((x) => x.nodeid !== 0);
  // The first listing of a mount is a probe: its first page bare, the rest as the mode (attributes).
  const first = await pages(d);
  t.true(first.length >= 3, `${first.length} pages`);
  t.true(bare(first[0]), 'the probe\'s first page');
  t.true(first.slice(1).every(withAttrs), 'its later pages');
  // Nothing was looked up: the walk wants names only, and every page of the next listing is bare.
  const next = await pages(e);
  t.true(next.length >= 3);
  t.true(next.every(bare));
});

test('read-only union: once the xattr names of an entry are known, absent names and lists are answered without the union', async (t) => {
  const c = new Client([{ f: file('x', { 'user.here': 'v' }) }], { ...WRITABLE, entrySec: 3600 }, false);
  const f = (await c.lookup(ROOT, 'f')).nodeid;
  t.is(c.session.known, 0);
  t.is((await c.send(Op.GETXATTR, f, u32s(64, 0), 'user.here')).body.toString(), 'v'); // the union tells the names
  t.is((await c.send(Op.GETXATTR, f, u32s(64, 0), 'security.selinux')).error, ENODATA);
  t.is((await c.send(Op.LISTXATTR, f, u32s(64, 0))).body.toString(), 'user.here\0');
  t.is((await c.send(Op.LISTXATTR, f, u32s(4, 0))).error, ERANGE);
  t.is(c.session.known, 3);
  // A present name still goes to the union for its value.
  t.is((await c.send(Op.GETXATTR, f, u32s(64, 0), 'user.here')).body.toString(), 'v');
  t.is(c.session.known, 3);
});

test('an absence is answered as one the kernel may keep, for the policy negative timeout, and only then', async (t) => {
  const keep = new Client([{ f: 'x' }], { ...WRITABLE, negativeSec: 1.5 });
  const r = await keep.send(Op.LOOKUP, ROOT, 'missing');
  t.is(r.error, 0);
  t.is(r.body.readBigUInt64LE(0), 0n, 'node id 0: absent');
  t.is(r.body.readBigUInt64LE(16), 1n, 'entry_valid seconds');
  t.is(r.body.readUInt32LE(32), 500_000_000, 'entry_valid nanoseconds');
  // Asked in the same directory again, the union has the answer at hand (answered in the same
  // turn, with no promise): the same kind of answer.
  const again = await keep.send(Op.LOOKUP, ROOT, 'missing-too');
  t.is(again.error, 0);
  t.is(again.body.readBigUInt64LE(0), 0n, 'node id 0: absent, answered at once');
  t.is(again.body.readBigUInt64LE(16), 1n);
  const plain = new Client([{ f: 'x' }], { ...WRITABLE, negativeSec: 0 });
  t.is((await plain.send(Op.LOOKUP, ROOT, 'missing')).error, ENOENT);
});

test('-d traces name the entry a request is about, also when later requests have reused the buffer', async (t) => {
  const c = new Client([{ d: { type: 'dir' } }]);
  const d = (await c.lookup(ROOT, 'd')).nodeid;
  // Two requests in flight at once: the second is read into the buffer the first came in (Client.send).
  await Promise.all([c.lookup(d, 'first-missing'), c.send(Op.MKDIR, d, u32s(0o755, 0), 'made')]);
  t.true(c.traces.some((l) => /lookup\(\/d, first-missing\) = ENOENT/.test(l)), c.traces.join('\n'));
  t.true(c.traces.some((l) => /mkdir\(\/d, made\) = ok/.test(l)), c.traces.join('\n'));
});

test('writable union: a file keeps its attributes for the policy time, one with two names none; a link makes the kernel forget the source\'s', async (t) => {
  const c = new Client([{ f: 'x' }], { ...WRITABLE, attrSecFile: 1, attrSecLinked: 0 });
  const attrValid = (r: Reply, at: number): number => Number(r.body.readBigUInt64LE(at));
  const f = await c.send(Op.LOOKUP, ROOT, 'f');
  const fid = Number(f.body.readBigUInt64LE(0));
  t.is(attrValid(f, 24), 1, 'entry_out.attr_valid of a file with one name');
  t.is((await c.send(Op.LINK, ROOT, u64s(BigInt(fid)), 'g')).error, 0);
  // The kernel takes the new name for another inode: told to drop what it keeps of f's (nlink 1).
  t.is(c.notes.length, 1);
  t.is(c.notes[0]?.error, 2, 'FUSE_NOTIFY_INVAL_INODE');
  t.is(Number(c.notes[0]?.body.readBigUInt64LE(0)), fid);
  t.is(c.notes[0]?.body.readBigInt64LE(8), -1n, 'attributes only, no pages');
  const again = await c.send(Op.GETATTR, fid, u32s(0, 0), u64s(0n));
  t.is(again.body.readUInt32LE(16 + 64), 2, 'nlink 2');
  t.is(attrValid(again, 0), 0, 'attr_out.attr_valid of a file with two names');
  t.is(attrValid(await c.send(Op.LOOKUP, ROOT, 'g'), 24), 0);
});

test('writable union: a lower file with two names keeps its attributes (D58); a change through one name leaves the other as it was', async (t) => {
  const c = new Client([{ f: 'x', g: hardlink('f') }], { ...WRITABLE, attrSecFile: 1, attrSecLinked: 0 });
  const attrValid = (r: Reply, at: number): number => Number(r.body.readBigUInt64LE(at));
  const nlink = (r: Reply, at: number): number => r.body.readUInt32LE(at + 64);
  const mode = (r: Reply, at: number): number => r.body.readUInt32LE(at + 60) & 0o7777;
  const f = await c.send(Op.LOOKUP, ROOT, 'f');
  const g = await c.send(Op.LOOKUP, ROOT, 'g');
  t.is(nlink(f, 40), 2, 'the lower file has two names');
  t.is(attrValid(f, 24), 1, 'entry_out.attr_valid of a lower file with two names: the policy time');
  t.is(attrValid(g, 24), 1);
  const fid = Number(f.body.readBigUInt64LE(0));
  const gid = Number(g.body.readBigUInt64LE(0));
  // chmod through f: f is copied up apart, g still shows the lower file, as on the kernel's overlayfs.
  const chmod = Buffer.alloc(88); // fuse_setattr_in: valid FATTR_MODE, mode at 68
  chmod.writeUInt32LE(1, 0);
  chmod.writeUInt32LE(0o100600, 68);
  const set = await c.send(Op.SETATTR, fid, chmod);
  t.is(set.error, 0);
  t.is(mode(set, 16), 0o600);
  t.is(nlink(set, 16), 1, 'the copy of f has one name');
  t.is(attrValid(set, 0), 1, 'and keeps its attributes, one name');
  const g2 = await c.send(Op.GETATTR, gid, u32s(0, 0), u64s(0n));
  t.is(mode(g2, 16), 0o644, 'g kept the lower file\'s mode: what the kernel kept of it is still true');
  t.is(nlink(g2, 16), 2);
  t.is(attrValid(g2, 0), 1);
  // Two names in the upper (a link made through the mount) keep none, as before.
  t.is((await c.send(Op.LINK, ROOT, u64s(BigInt(fid)), 'h')).error, 0);
  t.is(attrValid(await c.send(Op.GETATTR, fid, u32s(0, 0), u64s(0n)), 0), 0, 'an upper file with two names keeps none');
});

test('FLUSH answers ENOSYS (every write reached the branch already): the kernel then stops sending it', async (t) => {
  const c = new Client([{ f: 'x' }]);
  const f = (await c.lookup(ROOT, 'f')).nodeid;
  const fh = await c.open(f, fs.constants.O_WRONLY);
  const w = await c.send(Op.WRITE, f, u64s(fh, 0n), u32s(2, 0), u64s(0n), u32s(0, 0), Buffer.from('yz'));
  t.is(w.error, 0);
  const { ENOSYS } = (await import('node:os')).constants.errno;
  t.is((await c.send(Op.FLUSH, f, u64s(fh), u32s(0, 0), u64s(0n))).error, ENOSYS);
  t.is(fs.readFileSync(path.join(c.upper, 'f'), 'utf8'), 'yz');
});

test('INTERRUPT gets no answer of its own; a caller that is not being killed has its request run to the end', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const interrupted: string[] = [];
  const c = new Client([{ f: 'x' }], WRITABLE, true, (ops) => ({
    ...ops,
    open: async (p, flags) => {
      await held;
      return ops.open(p, flags);
    },
    interrupted: (p) => void interrupted.push(p),
  }));
  c.pid = process.pid; // a live caller, with no fatal signal pending
  const f = await c.lookup(ROOT, 'f');
  const target = c.nextUnique;
  const opened = c.send(Op.OPEN, f.nodeid, u32s(1 /* O_WRONLY */, 0));
  let interruptAnswered = false;
  // fuse_interrupt_in: the unique of the request to interrupt.
  void c.send(Op.INTERRUPT, 0, u64s(target)).then(() => (interruptAnswered = true));
  void c.send(Op.INTERRUPT, 0, u64s(target + 1000n)).then(() => (interruptAnswered = true)); // none such
  t.true((await c.lookup(ROOT, 'f')).nodeid > 0, 'serving goes on');
  await new Promise((r) => setTimeout(r, 250)); // the caller is looked at again meanwhile
  release();
  t.is((await opened).error, 0, 'the open ran to its end');
  t.false(interruptAnswered);
  t.deepEqual(interrupted, [], 'no copy-up was told its callers are gone');
});

test('a request not yet answered is listed with its path and age, and named once as overdue; answered, it is gone', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let hold = false; // (only the GETATTR below is held)
  const c = new Client([{ 'd/f': 'x' }], WRITABLE, true, (ops) => ({
    ...ops,
    getattrNow: (p) => (hold && p === '/d/f' ? held.then(() => ops.getattrNow(p)) : ops.getattrNow(p)),
  }));
  const d = await c.lookup(ROOT, 'd');
  const f = await c.lookup(d.nodeid, 'f');
  hold = true;
  const answer = c.send(Op.GETATTR, f.nodeid, u32s(0, 0), u64s(0n));
  await new Promise((r) => setTimeout(r, 20));
  const waiting = c.session.inFlight();
  t.is(c.session.pendingCount, 1);
  t.deepEqual(waiting.map((w) => [w.op, w.path]), [['getattr', '/d/f']]);
  t.true(waiting[0]!.seconds >= 0.015);
  t.deepEqual(c.session.overdue(3600), [], 'not overdue yet');
  t.deepEqual(c.session.overdue(0.01).map((w) => w.path), ['/d/f']);
  t.deepEqual(c.session.overdue(0.01), [], 'told once');
  release();
  t.is((await answer).error, 0);
  t.deepEqual(c.session.inFlight(), []);
  t.is(c.session.pendingCount, 0);
});

test('CREATE of a new file answers what a lookup shows; its security.capability is answered absent without the union until an xattr is set', async (t) => {
  const c = new Client([{ f: 'x' }]);
  // fuse_create_in: flags, mode, umask, open_flags; then the name.
  const made = await c.send(Op.CREATE, ROOT, u32s(fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o100640, 0o022, 0), 'new');
  t.is(made.error, 0);
  const id = Number(made.body.readBigUInt64LE(0));
  const attr = (r: Buffer, at: number) => r.subarray(at, at + 88).toString('hex');
  const looked = await c.send(Op.GETATTR, id, u32s(0, 0), u64s(0n));
  t.is(attr(made.body, 40), attr(looked.body, 16), 'entry_out.attr of CREATE = attr_out.attr of GETATTR');
  t.is(made.body.readUInt32LE(40 + 60), 0o100640);
  const caps = () => c.send(Op.GETXATTR, id, u32s(64, 0), 'security.capability');
  t.is((await caps()).error, ENODATA);
  t.is((await caps()).error, ENODATA);
  t.is(c.session.known, 2);
  t.like(c.stats.snapshot()['getxattr'], { count: 2, errorCodes: { ENODATA: 2 } }, 'counted in the stats all the same');
  t.is((await c.send(Op.GETXATTR, id, u32s(64, 0), 'user.other')).error, ENODATA); // other names: the union
  t.is(c.session.known, 2);
  t.is((await c.send(Op.SETXATTR, id, u32s(1, 0), 'user.x', Buffer.from('v'))).error, 0);
  t.is((await caps()).error, ENODATA);
  t.is(c.session.known, 2, 'asked of the union once an xattr was set');
  // CREATE of a name that exists opens the file there: nothing is known of it.
  const found = await c.send(Op.CREATE, ROOT, u32s(fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o100644, 0o022, 0), 'f');
  t.is(found.error, 0);
  t.is((await c.send(Op.GETXATTR, Number(found.body.readBigUInt64LE(0)), u32s(64, 0), 'security.capability')).error, ENODATA);
  t.is(c.session.known, 2);
});

test('an OPEN that copies a file up answers its security.capability in the session, unless an xattr was set while the copy was made', async (t) => {
  const c = new Client([{ f: 'x', g: 'y' }]);
  const f = await c.lookup(ROOT, 'f');
  const caps = (id: number) => c.send(Op.GETXATTR, id, u32s(64, 0), 'security.capability');
  await c.open(f.nodeid, fs.constants.O_WRONLY); // copies f up: its lower file has no capability
  t.is((await caps(f.nodeid)).error, ENODATA);
  t.is(c.session.known, 1, 'answered in the session');

  // A capability set on g while its OPEN is still copying it up: the open must not mark it.
  const g = await c.lookup(ROOT, 'g');
  const cap = Buffer.from('0100000200040000000000000000000000000000', 'hex'); // cap_net_bind_service=ep
  const opening = c.open(g.nodeid, fs.constants.O_WRONLY);
  const setting = c.send(Op.SETXATTR, g.nodeid, u32s(cap.length, 0), 'security.capability', cap);
  await opening;
  t.is((await setting).error, 0);
  const got = await caps(g.nodeid);
  t.is(got.error, 0, 'the capability set meanwhile is there');
  t.is(got.body.subarray(0, cap.length).toString('hex'), cap.toString('hex'));
  t.is(c.session.known, 1, 'asked of the union');
});

/** Backing files as the kernel registers them: ids from 1, a record of what is registered now. */
class FakeBacking implements BackingFiles {
  readonly files = new Map<number, number>();
  next = 1;
  refuse: number | undefined;
  open(fd: number): number {
    if (this.refuse !== undefined) return -this.refuse;
    this.files.set(this.next, fd);
    return this.next++;
  }
  close(id: number): void {
    this.files.delete(id);
  }
}

const FUSE_INIT_EXT = 1 << 30;
const FUSE_PASSTHROUGH2 = 1 << 5; // flags2 bit 5: FUSE_PASSTHROUGH (1 << 37)
const FOPEN_PASSTHROUGH = 1 << 7;

/** INIT as a 7.40 kernel sends it, offering `flags2`; the reply's flags, flags2 and max_stack_depth. */
async function init(c: Client, flags2: number): Promise<{ flags: number; flags2: number; depth: number }> {
  const r = await c.send(Op.INIT, 0, u32s(7, 40, 128 * 1024, 0xffff_ffff, flags2, ...new Array<number>(11).fill(0)));
  return { flags: r.body.readUInt32LE(12), flags2: r.body.readUInt32LE(32), depth: r.body.readUInt32LE(36) };
}

/** An OPEN (or the open part of a CREATE): its fh, open_flags and backing_id. */
const openOut = (b: Buffer, at = 0) => ({ fh: b.readBigUInt64LE(at), flags: b.readUInt32LE(at + 8), backing: b.readInt32LE(at + 12) });
const release = (c: Client, node: number, fh: bigint) => c.send(Op.RELEASE, node, u64s(fh), u32s(0, 0), u64s(0n));

test('passthrough (D51): a writable union takes it where offered; a file of the upper opened by root gets a backing file, which every open of its node shares until the last release', async (t) => {
  const backing = new FakeBacking();
  const c = new Client([{ f: 'lower' }], { ...WRITABLE, passthrough: true }, true, undefined, backing);
  const i = await init(c, FUSE_PASSTHROUGH2);
  t.true((i.flags & FUSE_INIT_EXT) !== 0);
  t.is(i.flags2 & FUSE_PASSTHROUGH2, FUSE_PASSTHROUGH2);
  t.is(i.depth, 1);

  const made = await c.send(Op.CREATE, ROOT, u32s(fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o100644, 0o022, 0), 'new');
  const node = Number(made.body.readBigUInt64LE(0));
  const first = openOut(made.body, 128);
  t.is(first.flags & FOPEN_PASSTHROUGH, FOPEN_PASSTHROUGH);
  t.is(first.backing, 1);
  t.is(backing.files.get(1), Number(first.fh), 'the handle\'s own fd, on the upper');
  // Another caller's open of the node, for writing: it must name the same backing file (the kernel
  // fails it with EIO otherwise), whoever opens.
  c.uid = 1000;
  const second = openOut((await c.send(Op.OPEN, node, u32s(fs.constants.O_RDWR, 0))).body);
  t.is(second.flags & FOPEN_PASSTHROUGH, FOPEN_PASSTHROUGH);
  t.is(second.backing, 1);
  t.is(backing.files.size, 1);
  await release(c, node, first.fh);
  t.true(backing.files.has(1), 'kept while a handle of the node is open');
  await release(c, node, second.fh);
  t.is(backing.files.size, 0, 'dropped with the last');

  // A non-root writer's own open goes through layerfs: its writes drop set-ids there.
  const written = openOut((await c.send(Op.OPEN, node, u32s(fs.constants.O_WRONLY, 0))).body);
  t.is(written.flags & FOPEN_PASSTHROUGH, 0);
  t.is(written.backing, 0);
  // ...and so then does every open of the node, root's too, until it is released.
  c.uid = 0;
  const meanwhile = openOut((await c.send(Op.OPEN, node, u32s(fs.constants.O_RDONLY, 0))).body);
  t.is(meanwhile.flags & FOPEN_PASSTHROUGH, 0);
  await release(c, node, written.fh);
  await release(c, node, meanwhile.fh);
  c.uid = 1000;
  const reading = openOut((await c.send(Op.OPEN, node, u32s(fs.constants.O_RDONLY, 0))).body);
  t.is(reading.backing, 2, 'anyone\'s read-only open may have one');
  await release(c, node, reading.fh);

  // A lower file: its first open for writing copies it up, and the copy is the backing file.
  c.uid = 0;
  const f = await c.lookup(ROOT, 'f');
  const up = openOut((await c.send(Op.OPEN, f.nodeid, u32s(fs.constants.O_WRONLY, 0))).body);
  t.is(up.backing, 3);
  t.is(fs.readFileSync(path.join(c.upper, 'f'), 'utf8'), 'lower');
  await release(c, f.nodeid, up.fh);

  // A file with a set-id: a write must drop it, and only layerfs can (ops/write.ts).
  const chmod = Buffer.alloc(88); // fuse_setattr_in: valid FATTR_MODE, mode at 68
  chmod.writeUInt32LE(1, 0);
  chmod.writeUInt32LE(0o104755, 68);
  t.is((await c.send(Op.SETATTR, node, chmod)).error, 0);
  const setuid = openOut((await c.send(Op.OPEN, node, u32s(fs.constants.O_WRONLY, 0))).body);
  t.is(setuid.flags & FOPEN_PASSTHROUGH, 0);
  await release(c, node, setuid.fh);
  t.is(backing.files.size, 0);
});

test('passthrough stays off where the kernel does not offer it, in read-only unions and with passthrough=off; a kernel that refuses backing files for good (EPERM, ELOOP) turns it off', async (t) => {
  const opened = async (c: Client): Promise<number> => {
    const made = await c.send(Op.CREATE, ROOT, u32s(fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o100644, 0o022, 0), `n${c.nextUnique}`);
    t.is(made.error, 0);
    return openOut(made.body, 128).flags & FOPEN_PASSTHROUGH;
  };
  const notOffered = new Client([{}], { ...WRITABLE, passthrough: true }, true, undefined, new FakeBacking());
  t.is((await init(notOffered, 0)).flags2, 0);
  t.is(await opened(notOffered), 0);
  const off = new Client([{}], { ...WRITABLE, passthrough: false }, true, undefined, new FakeBacking());
  t.is((await init(off, FUSE_PASSTHROUGH2)).flags2, 0);
  t.is(await opened(off), 0);
  const ro = new Client([{ f: 'x' }], { ...WRITABLE, writable: false, passthrough: true }, false, undefined, new FakeBacking());
  t.is((await init(ro, FUSE_PASSTHROUGH2)).flags2, 0);

  const refusing = new FakeBacking();
  const c = new Client([{}], { ...WRITABLE, passthrough: true }, true, undefined, refusing);
  t.is((await init(c, FUSE_PASSTHROUGH2)).flags2, FUSE_PASSTHROUGH2);
  refusing.refuse = 12; // ENOMEM: this file's; the next is tried
  t.is(await opened(c), 0);
  refusing.refuse = undefined;
  t.is(await opened(c), FOPEN_PASSTHROUGH);
  refusing.refuse = 1; // EPERM: no CAP_SYS_ADMIN; said once, never tried again
  t.is(await opened(c), 0);
  refusing.refuse = undefined;
  t.is(await opened(c), 0);
  t.is(c.traces.filter((l) => l.includes('passthrough is off')).length, 1);
  // ELOOP: the upper is on a stacked filesystem, as every file of it is: the same.
  const stacked = new FakeBacking();
  const d = new Client([{}], { ...WRITABLE, passthrough: true }, true, undefined, stacked);
  await init(d, FUSE_PASSTHROUGH2);
  stacked.refuse = 40;
  t.is(await opened(d), 0);
  stacked.refuse = undefined;
  t.is(await opened(d), 0);
  t.is(stacked.next, 1, 'not tried again');
  t.is(d.traces.filter((l) => l.includes('passthrough is off: the upper is on a stacked filesystem')).length, 1);
});

/**
 * D56: a large READ of a file that cannot change is handed to the connection's splice (a pipe
 * from the file to the kernel, device.ts) with the exact length the file holds there, and the
 * session sends nothing of its own; where the splice could not, the session answers as always.
 */
test('D56: large READs of a read-only union are spliced with the length the file holds; small ones and failures answered as ever', async (t) => {
  const content = Array.from({ length: 300 * 1024 / 16 }, (_, i) => (i % 4096).toString(16).padStart(16, '.')).join('');
  const calls: Array<{ unique: bigint; pos: number; len: number; bytes: string }> = [];
  let answer = (len: number): number => len;
  const splice: SpliceRead = (unique, fd, pos, len) => {
    // What the fd holds there is what the reply would carry.
    const buf = Buffer.alloc(len);
    const got = fs.readSync(fd, buf, 0, len, pos);
    calls.push({ unique, pos, len, bytes: buf.subarray(0, got).toString() });
    return Promise.resolve(answer(len));
  };
  const c = new Client([{ big: content, small: 'tiny' }], READ_ONLY, false, (ops) => ops, undefined, splice);
  t.is((await initOffering(c, 0xffff_ffff)).error, 0);
  const big = (await c.lookup(ROOT, 'big')).nodeid;
  t.is((await c.send(Op.OPEN, big, u32s(fs.constants.O_RDONLY, 0))).error, ENOSYS, 'the kernel opens files itself (D26)');
  /** A READ (with no handle, as the kernel sends them here): its reply, or 'no reply' once the session is done with it. */
  const read = async (node: number, pos: number, size: number): Promise<Reply | 'no reply'> => {
    const unique = c.nextUnique;
    let reply: Reply | undefined;
    void c.send(Op.READ, node, u64s(0n, BigInt(pos)), u32s(size, 0), u64s(0n), u32s(0, 0)).then((r) => (reply = r));
    for (let i = 0; i < 1000 && (c.session.pendingCount > 0 || reply === undefined); i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (c.session.pendingCount === 0 && reply === undefined && i > 10) break;
    }
    if (reply !== undefined) return reply;
    t.true(calls.some((k) => k.unique === unique), 'a READ left unanswered is one handed to the splice');
    return 'no reply';
  };

  // 1 MiB asked at 64 KiB: the file holds 236 KiB from there, and that is what the splice sends.
  t.is(await read(big, 64 * 1024, 1 << 20), 'no reply', 'the session sends nothing itself');
  t.is(calls.length, 1);
  t.is(calls[0]?.pos, 64 * 1024);
  t.is(calls[0]?.len, 236 * 1024);
  t.is(calls[0]?.bytes, content.slice(64 * 1024));

  // A small READ (a small file, or the last 20 KiB of this one): read and answered by the session.
  const tail = await read(big, 280 * 1024, 128 * 1024);
  t.not(tail, 'no reply');
  t.is((tail as Reply).body.toString(), content.slice(280 * 1024));
  const small = (await c.lookup(ROOT, 'small')).nodeid;
  t.is(((await read(small, 0, 128 * 1024)) as Reply).body.toString(), 'tiny');
  t.is(calls.length, 1, 'neither was spliced');

  // The splice could not (the file gave less): the session answers.
  answer = () => -EAGAIN;
  const fallback = await read(big, 0, 256 * 1024);
  t.not(fallback, 'no reply');
  t.is((fallback as Reply).body.toString(), content.slice(0, 256 * 1024));
  const before = calls.length;
  // The kernel no longer waits (an interrupted READ): nothing is sent, and no error logged.
  answer = () => -ENOENT;
  t.is(await read(big, 0, 256 * 1024), 'no reply');
  t.is(calls.length, before + 1);
  // Any other failure is the READ's error.
  answer = () => -EIO;
  t.is(((await read(big, 0, 256 * 1024)) as Reply).error, EIO);
  t.false(c.traces.some((l) => l.includes('BUG')), c.traces.filter((l) => l.includes('BUG')).join('\n'));
  // A pipe that cannot hold a READ (refused by the kernel): this READ and every later one copied, and said once.
  answer = () => -EMSGSIZE;
  t.is(((await read(big, 0, 256 * 1024)) as Reply).body.toString(), content.slice(0, 256 * 1024));
  const refused = calls.length;
  t.is(((await read(big, 8192, 256 * 1024)) as Reply).body.toString(), content.slice(8192, 8192 + 256 * 1024));
  t.is(calls.length, refused, 'not handed to the splice again');
  t.is(c.traces.filter((l) => l.includes('large reads are copied')).length, 1);
});

test('D56: a writable union splices READs of a lower file through its handle, not of a copy made since', async (t) => {
  const calls: Array<{ pos: number; len: number; bytes: string }> = [];
  // Each splice records what the fd holds, then declines (EAGAIN): the session answers itself.
  const splice: SpliceRead = (_unique, fd, pos, len) => {
    const buf = Buffer.alloc(len);
    calls.push({ pos, len, bytes: buf.subarray(0, fs.readSync(fd, buf, 0, len, pos)).toString() });
    return Promise.resolve(-EAGAIN);
  };
  const content = Array.from({ length: 200 * 1024 / 8 }, (_, i) => String(i % 1e7).padStart(8, '-')).join('');
  const c = new Client([{ big: content }], WRITABLE, true, (ops) => ops, undefined, splice);
  const big = (await c.lookup(ROOT, 'big')).nodeid;
  const reader = await c.open(big, fs.constants.O_RDONLY);
  const readAt = (pos: number): Promise<Reply> => c.send(Op.READ, big, u64s(reader, BigInt(pos)), u32s(128 * 1024, 0), u64s(0n), u32s(0, 0));

  const first = await readAt(0);
  t.true(first.body.toString() === content.slice(0, 128 * 1024), 'the first 128 KiB');
  t.deepEqual(calls.map((k) => [k.pos, k.len]), [[0, 128 * 1024]], 'the lower file, spliced with what it holds there');
  t.true(calls[0]?.bytes === content.slice(0, 128 * 1024), 'the fd handed to the splice is the lower file');

  // Another handle appends: the file is copied up, and the reader's next READ reads the copy,
  // whose size is not the lower's: read into a buffer.
  const writer = await c.open(big, fs.constants.O_WRONLY | fs.constants.O_APPEND);
  t.is((await c.send(Op.WRITE, big, u64s(writer, BigInt(content.length)), u32s(3, 0), u64s(0n), u32s(0, 0), Buffer.from('xyz'))).error, 0);
  await c.send(Op.RELEASE, big, u64s(writer), u32s(0, 0), u64s(0n));
  const second = await readAt(128 * 1024);
  t.true(second.body.toString() === content.slice(128 * 1024) + 'xyz', 'the copy, appended bytes and all');
  t.is(calls.length, 1, 'not spliced');

  // A file of the upper: never.
  const made = await c.send(Op.CREATE, ROOT, u32s(fs.constants.O_RDWR | fs.constants.O_CREAT, 0o100644, 0o022, 0), 'new');
  const nid = Number(made.body.readBigUInt64LE(0));
  const fh = made.body.readBigUInt64LE(128);
  const upperContent = content.slice(0, 100 * 1024); // (a request fits the client's 128 KiB buffer)
  t.is((await c.send(Op.WRITE, nid, u64s(fh, 0n), u32s(upperContent.length, 0), u64s(0n), u32s(0, 0), Buffer.from(upperContent))).error, 0);
  const r = await c.send(Op.READ, nid, u64s(fh, 0n), u32s(96 * 1024, 0), u64s(0n), u32s(0, 0));
  t.true(r.body.toString() === upperContent.slice(0, 96 * 1024), `${r.body.length} bytes read`);
  t.is(calls.length, 1);
});
