// src/union.ts: what a user of the mount sees, through the union's operations (no FUSE), on real
// branch directories. Every file's content is the name of its branch, so reading a file tells
// which branch won.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FsError } from '../../src/errno.js';
import { vpath } from '../../src/path.js';
import { createUnion, type Union, type UnionOps } from '../../src/union.js';
import { shownXattrName, storedXattrName } from '../../src/whiteout.js';
import {
  chardev, dir, fifo, file, makeScratch, symlink, whiteout, xattrOpaque, xwhiteout, type Spec,
} from './fixture.js';

const { S_IFMT, S_IFREG: S_IFMT_REG, S_IFDIR: S_IFMT_DIR, S_IFLNK: S_IFMT_LNK } = fs.constants;
/** getxattr's outcome as the caller sees it: absence (undefined) is ENODATA at the boundary. */
async function xcode(p: Promise<Buffer | undefined>): Promise<string> {
  try {
    return (await p) === undefined ? 'ENODATA' : 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
const isType = (a: { mode: number }, type: number): boolean => (a.mode & S_IFMT) === type;
/** Listing order is the union's choice (any stable order is valid); compare as sets. */
const sortedByName = <T extends { name: string }>(l: T[]): T[] => [...l].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));

const { O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC, O_APPEND, F_OK, R_OK, W_OK, X_OK } = fs.constants;
const { S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFIFO } = fs.constants;

const s = await makeScratch('union');
const unions: Union[] = [];
test.after.always(async () => {
  await Promise.all(unions.map((u) => u.close()));
  await s.cleanup();
});

/** A read-only union of fresh branches (top-most first). */
function union(...specs: Spec[]): UnionOps {
  return unionOf(s.branches(...specs));
}
function unionOf(lowers: string[], upper?: string): UnionOps {
  const u = createUnion({ lowers, upper });
  unions.push(u);
  return u.ops;
}

/** The whole content of p, read through open/read/release. */
async function cat(ops: UnionOps, p: string): Promise<string> {
  const fh = (await ops.open(vpath(p), O_RDONLY)).fh;
  try {
    const chunks: Buffer[] = [];
    for (let pos = 0; ; ) {
      const buf = Buffer.alloc(7); // small on purpose: several reads at growing offsets
      const n = await ops.read(fh, buf, buf.length, pos);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      pos += n;
    }
    return Buffer.concat(chunks).toString();
  } finally {
    await ops.release(fh);
  }
}

/**
 * The error code an operation fails with ('ok' when it succeeds). Takes the call itself, so that
 * an operation that throws instead of rejecting is reported the same way (see the read BUG below).
 */
async function code(p: Promise<unknown> | (() => Promise<unknown>)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'ok';
  } catch (e) {
    return e instanceof FsError ? e.code : `not an FsError: ${String(e)}`;
  }
}

async function ls(ops: UnionOps, p: string): Promise<string[]> {
  return (await ops.readdir(vpath(p))).map((e) => e.name);
}

/** readdir without "." and "..", sorted. */
async function names(ops: UnionOps, p: string): Promise<string[]> {
  return (await ls(ops, p)).filter((n) => n !== '.' && n !== '..').sort();
}

test('a higher file overrides a lower one, at any depth', async (t) => {
  const ops = union({ a: 'L0', 'd/x': 'L0', 'd/e/f': 'L0' }, { a: 'L1', b: 'L1', 'd/x': 'L1', 'd/y': 'L1', 'd/e/f': 'L1', 'd/e/g': 'L1' }, { a: 'L2', b: 'L2', c: 'L2', 'd/e/g': 'L2' });
  t.is(await cat(ops, '/a'), 'L0');
  t.is(await cat(ops, '/b'), 'L1');
  t.is(await cat(ops, '/c'), 'L2');
  t.is(await cat(ops, '/d/x'), 'L0');
  t.is(await cat(ops, '/d/y'), 'L1');
  t.is(await cat(ops, '/d/e/f'), 'L0');
  t.is(await cat(ops, '/d/e/g'), 'L1');
  t.deepEqual(await names(ops, '/'), ['a', 'b', 'c', 'd']);
  t.deepEqual(await names(ops, '/d/e'), ['f', 'g']);
  t.is((await ops.getattr(vpath('/a'))).size, 2);
});

test("getattr of a file is the serving branch's entry", async (t) => {
  const roots = s.branches({ a: 'top' }, { a: 'longer lower', b: 'L1' });
  const ops = unionOf(roots);
  const st = await ops.getattr(vpath('/a'));
  const real = fs.lstatSync(path.join(roots[0]!, 'a'));
  t.is(st.ino, real.ino);
  t.is(st.size, 3);
  t.true(isType(st, S_IFMT_REG));
  t.is((await ops.getattr(vpath('/b'))).ino, fs.lstatSync(path.join(roots[1]!, 'b')).ino);
  // A directory shows its top-most branch's attributes.
  t.is((await ops.getattr(vpath('/'))).ino, fs.lstatSync(roots[0]!).ino);
});

for (const [format, wh, opq] of [
  ['kernel', (n: string): Spec => ({ [n]: whiteout }), (d: string): Spec => ({ [d]: xattrOpaque('y') })],
  ['OCI', (n: string): Spec => ({ [path.posix.join(path.posix.dirname(n), `.wh.${path.posix.basename(n)}`)]: '' }), (d: string): Spec => ({ [`${d}/.wh..wh..opq`]: '' })],
] as const) {
  test(`${format} whiteouts hide lower files and directories`, async (t) => {
    const ops = union({ ...wh('f'), ...wh('d'), ...wh('m/g'), 'm/h': 'L0', top: 'L0' }, { f: 'L1', 'd/x': 'L1', 'm/g': 'L1', 'm/i': 'L1' }, { f: 'L2', 'd/y': 'L2' });
    for (const p of ['/f', '/d', '/d/x', '/d/y', '/m/g']) {
      t.is(await code(ops.getattr(vpath(p))), 'ENOENT', p);
      t.is(await code(ops.open(vpath(p), O_RDONLY)), 'ENOENT', p);
    }
    t.deepEqual(await names(ops, '/'), ['m', 'top']);
    t.deepEqual(await names(ops, '/m'), ['h', 'i']);
    t.is(await code(ops.readdir(vpath('/d'))), 'ENOENT');
  });

  test(`${format} opaque dirs hide lower children but not the dir itself`, async (t) => {
    const roots = s.branches({ ...opq('d'), 'd/x': 'L0' }, { 'd/x': 'L1', 'd/y': 'L1', 'd/s/z': 'L1', 'e/u': 'L1', ...opq('e') }, { 'e/v': 'L2', 'd/w': 'L2' });
    const ops = unionOf(roots);
    const st = await ops.getattr(vpath('/d'));
    t.true(isType(st, S_IFMT_DIR));
    t.is(st.ino, fs.lstatSync(path.join(roots[0]!, 'd')).ino);
    t.deepEqual(await names(ops, '/d'), ['x']);
    t.is(await cat(ops, '/d/x'), 'L0');
    for (const p of ['/d/y', '/d/s', '/d/s/z', '/d/w', '/e/v']) t.is(await code(ops.getattr(vpath(p))), 'ENOENT', p);
    // An opaque dir in a lower branch: merged with what is above it, cuts what is below.
    t.deepEqual(await names(ops, '/e'), ['u']);
    t.deepEqual(await names(ops, '/'), ['d', 'e']);
  });
}

test('OCI .wh.X beside X in one branch: X is shown, the lower X and its children are not', async (t) => {
  const ops = union({ 'X/p': 'L0', '.wh.X': '', F: 'L0', '.wh.F': '' }, { 'X/p': 'L1', 'X/q': 'L1', 'X/r/s': 'L1', F: 'L1' });
  t.deepEqual(await names(ops, '/'), ['F', 'X']);
  t.deepEqual(await names(ops, '/X'), ['p']);
  t.is(await cat(ops, '/X/p'), 'L0');
  t.is(await cat(ops, '/F'), 'L0');
  t.is(await code(ops.getattr(vpath('/X/q'))), 'ENOENT');
  t.is(await code(ops.getattr(vpath('/X/r'))), 'ENOENT');
});

test('a non-directory above a directory hides the directory', async (t) => {
  const ops = union({ a: 'L0' }, { 'a/x': 'L1', 'a/y/z': 'L1' });
  t.true(isType((await ops.getattr(vpath('/a'))), S_IFMT_REG));
  t.is(await cat(ops, '/a'), 'L0');
  t.is(await code(ops.readdir(vpath('/a'))), 'ENOTDIR');
  t.is(await code(ops.getattr(vpath('/a/x'))), 'ENOTDIR');
  t.is(await code(ops.open(vpath('/a/y/z'), O_RDONLY)), 'ENOTDIR');
  t.deepEqual(sortedByName((await ops.readdir(vpath('/'))).map(({ name, type }) => ({ name, type }))), sortedByName([
    { name: '.', type: S_IFDIR }, { name: '..', type: S_IFDIR }, { name: 'a', type: S_IFREG },
  ]));
});

test('a dir above a non-dir above a dir: the merge is cut at the non-dir', async (t) => {
  const ops = union({ 'a/x': 'L0' }, { a: 'L1' }, { 'a/y': 'L2', 'a/x': 'L2' });
  t.deepEqual(await names(ops, '/a'), ['x']);
  t.is(await cat(ops, '/a/x'), 'L0');
  t.is(await code(ops.getattr(vpath('/a/y'))), 'ENOENT');
});

test('xattr whiteouts: whiteouts on lookup; hidden from readdir only in a dir marked "x"', async (t) => {
  const ops = union(
    { w: xwhiteout, d: xattrOpaque('x'), 'd/w': xwhiteout, 'd/own': 'L0', n: file('L0', { 'trusted.overlay.whiteout': 'y' }) },
    { w: 'L1', 'd/w': 'L1', 'd/low': 'L1', n: 'L1' },
  );
  t.is(await code(ops.getattr(vpath('/w'))), 'ENOENT');
  t.is(await code(ops.getattr(vpath('/d/w'))), 'ENOENT');
  t.is(await code(ops.open(vpath('/d/w'), O_RDONLY)), 'ENOENT');
  // "x" is no opaque marker: the lower's other children show.
  t.deepEqual(await names(ops, '/d'), ['low', 'own']);
  // In an unmarked dir the kernel lists it (and stat fails); layerfs does the same.
  t.deepEqual(await names(ops, '/'), ['d', 'n', 'w']);
  // A non-empty file is never a whiteout, whatever its xattrs.
  t.is(await cat(ops, '/n'), 'L0');
});

test('a symlink to a host directory is served as a link: /a/passwd is ENOTDIR, never /etc content', async (t) => {
  const ops = union({ a: symlink('/etc'), f: symlink('/etc/hostname') }, { 'a/passwd': 'L1', 'a/own': 'L1' });
  t.true(isType((await ops.getattr(vpath('/a'))), S_IFMT_LNK));
  t.is(await ops.readlink(vpath('/a')), '/etc');
  t.is(await ops.readlink(vpath('/f')), '/etc/hostname');
  for (const p of ['/a/passwd', '/a/own', '/a/hostname']) {
    t.is(await code(ops.getattr(vpath(p))), 'ENOTDIR', p);
    t.is(await code(ops.open(vpath(p), O_RDONLY)), 'ENOTDIR', p);
  }
  t.is(await code(ops.readdir(vpath('/a'))), 'ENOTDIR');
  // Opening the link itself never opens its target (the kernel follows links, not layerfs).
  t.is(await code(ops.open(vpath('/f'), O_RDONLY)), 'ELOOP');
  t.is(await code(ops.open(vpath('/a'), O_RDONLY)), 'ELOOP');
  t.deepEqual(sortedByName((await ops.readdir(vpath('/'))).map(({ name, type }) => ({ name, type }))), sortedByName([
    { name: '.', type: S_IFDIR }, { name: '..', type: S_IFDIR }, { name: 'a', type: S_IFLNK }, { name: 'f', type: S_IFLNK },
  ]));
});

test('merged dirs have nlink 1; single-branch dirs their real nlink', async (t) => {
  const roots = s.branches(
    { 'm/s1': dir(), 'm/s2': dir(), 'one/s1': dir(), 'one/s2': dir(), o: xattrOpaque('y'), 'o/s1': dir(), 'o/s2': dir() },
    { 'm/s3': dir(), o: dir() },
  );
  const ops = unionOf(roots);
  const real = (p: string): number => fs.lstatSync(path.join(roots[0]!, p)).nlink;
  t.is(real('m'), 4);
  t.is((await ops.getattr(vpath('/m'))).nlink, 1);
  t.is((await ops.getattr(vpath('/'))).nlink, 1);
  t.is((await ops.getattr(vpath('/one'))).nlink, 4);
  t.is((await ops.getattr(vpath('/o'))).nlink, real('o'), 'an opaque dir is not merged');
  t.is(real('o'), 4);
  // The merged directory's other attributes are the top-most branch's.
  const m = await ops.getattr(vpath('/m'));
  t.true(isType(m, S_IFMT_DIR));
  t.is(m.ino, fs.lstatSync(path.join(roots[0]!, 'm')).ino);
  const top = fs.lstatSync(path.join(roots[0]!, 'm'), { bigint: true });
  t.is(BigInt(m.exact.mtimeSec) * 1_000_000_000n + BigInt(m.exact.mtimeNsec), top.mtimeNs);
  t.is(m.mode, fs.lstatSync(path.join(roots[0]!, 'm')).mode);
  // With the top-most branch as upper (its stat read fresh), the same.
  const withUpper = unionOf(roots.slice(1), roots[0]);
  t.is((await withUpper.getattr(vpath('/m'))).nlink, 1);
  t.is((await withUpper.getattr(vpath('/one'))).nlink, 4);
  // A single branch: the root is not merged.
  t.is((await unionOf([roots[0]!]).getattr(vpath('/'))).nlink, real(''));
});

test("readdir: '.' and '..' first, then each name once, no markers, with d_type", async (t) => {
  const ops = union(
    { f: 'L0', d: dir(), w: whiteout, '.wh.o': '', '.wh..wh..opq': '', '.wh.': '', l: symlink('x'), p: fifo, c: chardev(1, 3), 'sub/.wh..wh..opq': '', 'sub/k': 'L0', '.hidden': 'L0' },
    { f: 'L1', d: 'L1', w: 'L1', o: 'L1', only1: dir(), 'sub/j': 'L1', '.wh.q': '' },
    { f: 'L2', only2: 'L2', q: 'L2', l: dir() },
  );
  const root = await ops.readdir(vpath('/'));
  t.deepEqual(root.slice(0, 2).map(({ name, type }) => ({ name, type })), [{ name: '.', type: S_IFDIR }, { name: '..', type: S_IFDIR }]);
  const rest = root.slice(2);
  t.is(new Set(rest.map((e) => e.name)).size, rest.length, 'no duplicates');
  t.deepEqual(Object.fromEntries(rest.map((e) => [e.name, e.type])), {
    f: S_IFREG, d: S_IFDIR, l: S_IFLNK, p: S_IFIFO, c: S_IFCHR, sub: S_IFDIR, '.hidden': S_IFREG, only1: S_IFDIR, only2: S_IFREG,
  });
  t.false(rest.some((e) => e.name.startsWith('.wh.')));
  t.deepEqual(await ls(ops, '/sub'), ['.', '..', 'k']);
  t.deepEqual(await ls(ops, '/d'), ['.', '..']);
  // Every listed name can be looked up, and its d_ino is the inode number getattr shows.
  for (const e of rest) t.is(await code(ops.getattr(vpath(`/${e.name}`))), 'ok', e.name);
  for (const e of rest) t.is(e.ino, (await ops.getattr(vpath(`/${e.name}`))).ino, `d_ino of ${e.name}`);
  t.is(root[0]!.ino, (await ops.getattr(vpath('/'))).ino, "d_ino of '.'");
  // A file is no directory to list.
  t.is(await code(ops.readdir(vpath('/f'))), 'ENOTDIR');
  t.is(await code(ops.readdir(vpath('/nope'))), 'ENOENT');
});

test('readdir of a directory in the upper shows changes made there', async (t) => {
  const roots = s.branches({ d: dir() }, { 'd/low': 'L1' });
  const ops = unionOf(roots.slice(1), roots[0]);
  t.deepEqual(await names(ops, '/d'), ['low']);
  fs.writeFileSync(path.join(roots[0]!, 'd', 'new'), 'U');
  t.deepEqual(await names(ops, '/d'), ['low', 'new']);
  fs.writeFileSync(path.join(roots[0]!, 'd', 'new'), 'Upper!');
  // getattr of an upper file is read fresh too.
  t.is((await ops.getattr(vpath('/d/new'))).size, 6);
});

// A copy-up knows the directories it copied as they now are (upper on top of the same lowers)
// instead of looking them up again: what it knows must be what a lookup would find.
test('directories copied up with a file go on merging the lowers below them, and an opaque one hiding them', async (t) => {
  const roots = s.branches({}, { 'a/b/y': 'L1', o: xattrOpaque(), 'o/y': 'L1' }, { 'a/b/x': 'L2', 'a/b/z': 'L2', 'o/x': 'L2' });
  const u = createUnion({ lowers: roots.slice(1), upper: roots[0], work: s.dir('work') });
  unions.push(u);
  const ops = u.ops;
  const inos = await Promise.all(['/a', '/a/b', '/o'].map(async (p) => (await ops.getattr(vpath(p))).ino));
  for (const p of ['/a/b/y', '/o/y']) {
    const fh = (await ops.open(vpath(p), O_WRONLY | O_APPEND)).fh;
    await ops.release(fh);
  }
  t.true(fs.statSync(path.join(roots[0]!, 'a/b')).isDirectory(), 'the parents were copied up');
  t.deepEqual(await names(ops, '/a/b'), ['x', 'y', 'z']);
  t.is(await cat(ops, '/a/b/z'), 'L2');
  t.is((await ops.getattr(vpath('/a/b/x'))).size, 2);
  t.deepEqual(await names(ops, '/o'), ['y']);
  t.is(await code(ops.getattr(vpath('/o/x'))), 'ENOENT', 'the lower opaque directory still hides what lies below it');
  t.deepEqual(await Promise.all(['/a', '/a/b', '/o'].map(async (p) => (await ops.getattr(vpath(p))).ino)), inos, 'inode numbers kept');
});

test('trusted.overlay.* xattrs are hidden; trusted.overlay.overlay.X shows as trusted.overlay.X', async (t) => {
  const big = Buffer.alloc(3000, 'v');
  const ops = union(
    {
      f: file('L0', { 'user.a': '1', 'trusted.overlay.origin': 'o', 'trusted.overlay.overlay.X': 'esc', 'trusted.other': 't', 'user.big': big }),
      d: xattrOpaque('y'), m: dir({ 'user.top': 'L0' }),
    },
    { f: file('L1', { 'user.low': 'L1' }), d: dir({ 'user.low': 'L1' }), m: dir({ 'user.low': 'L1' }) },
  );
  const f = vpath('/f');
  t.deepEqual((await ops.listxattr(f)).sort(), ['trusted.other', 'trusted.overlay.X', 'user.a', 'user.big']);
  t.is(String(await ops.getxattr(f, 'user.a')), '1');
  t.is(String(await ops.getxattr(f, 'trusted.other')), 't');
  t.is(String(await ops.getxattr(f, 'trusted.overlay.X')), 'esc');
  t.true((await ops.getxattr(f, 'user.big'))?.equals(big), 'a value larger than the first buffer comes back whole');
  t.is(await xcode(ops.getxattr(f, 'trusted.overlay.origin')), 'ENODATA');
  t.is(await xcode(ops.getxattr(f, 'trusted.overlay.overlay.X')), 'ENODATA');
  t.is(await xcode(ops.getxattr(f, 'user.low')), 'ENODATA', "the lower file's xattrs are not the served file's");
  t.is(await xcode(ops.getxattr(f, 'user.none')), 'ENODATA');
  // The opaque marker of a directory is bookkeeping too.
  t.deepEqual(await ops.listxattr(vpath('/d')), []);
  t.is(await xcode(ops.getxattr(vpath('/d'), 'trusted.overlay.opaque')), 'ENODATA');
  // A merged directory shows its top-most branch's xattrs.
  t.deepEqual(await ops.listxattr(vpath('/m')), ['user.top']);
  t.is(await xcode(ops.getxattr(vpath('/m'), 'user.low')), 'ENODATA');
  t.is(await code(ops.listxattr(vpath('/nope'))), 'ENOENT');
  t.is(await xcode(ops.getxattr(vpath('/nope'), 'user.a')), 'ENOENT');
});

test('xattr names: shown and stored names are inverse for the escaped namespace', (t) => {
  t.is(shownXattrName('user.a'), 'user.a');
  t.is(shownXattrName('trusted.x'), 'trusted.x');
  t.is(shownXattrName('trusted.overlay.opaque'), undefined);
  t.is(shownXattrName('trusted.overlay.whiteout'), undefined);
  t.is(shownXattrName('trusted.overlay.overlay.opaque'), 'trusted.overlay.opaque');
  t.is(shownXattrName('trusted.overlay.overlay.overlay.y'), 'trusted.overlay.overlay.y');
  for (const shown of ['user.a', 'trusted.x', 'trusted.overlay.opaque', 'trusted.overlay.overlay.y']) {
    t.is(shownXattrName(storedXattrName(shown)), shown, shown);
  }
});

test('reads at offsets past 4 GiB of a sparse file are exact', async (t) => {
  const root = s.dir('sparse');
  const p = path.join(root, 'big');
  const GiB = 1024 ** 3;
  const at = 4.5 * GiB;
  const marker = Buffer.from('MARKER@4.5GiB');
  fs.writeFileSync(p, 'head');
  fs.truncateSync(p, 5 * GiB);
  const fd = fs.openSync(p, 'r+');
  fs.writeSync(fd, marker, 0, marker.length, at);
  fs.closeSync(fd);
  const ops = unionOf([root]);
  t.is((await ops.getattr(vpath('/big'))).size, 5 * GiB);
  const fh = (await ops.open(vpath('/big'), O_RDONLY)).fh;
  const readAt = async (pos: number, len: number): Promise<Buffer> => {
    const buf = Buffer.alloc(len);
    const n = await ops.read(fh, buf, len, pos);
    return buf.subarray(0, n);
  };
  t.is((await readAt(0, 4)).toString(), 'head');
  t.deepEqual(await readAt(at, marker.length), marker);
  const around = await readAt(at - 3, marker.length + 6);
  t.deepEqual(around, Buffer.concat([Buffer.alloc(3), marker, Buffer.alloc(3)]));
  // The same offset modulo 2^32 holds zeros: no 32-bit truncation of the position.
  t.deepEqual(await readAt(at - 2 ** 32, marker.length), Buffer.alloc(marker.length));
  t.is((await readAt(5 * GiB - 2, 10)).length, 2, 'a read at the end is short');
  t.is((await readAt(5 * GiB, 10)).length, 0);
  t.is((await readAt(6 * GiB, 10)).length, 0);
  await ops.release(fh);
});

test('open refuses writes and directories; read after release is EBADF', async (t) => {
  const ops = union({ f: 'L0', d: dir() });
  for (const flags of [O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_WRONLY | O_APPEND, O_RDONLY | O_APPEND]) {
    t.is(await code(ops.open(vpath('/f'), flags)), 'EROFS', `flags 0x${flags.toString(16)}`);
  }
  t.is(await code(ops.open(vpath('/d'), O_RDONLY)), 'EISDIR');
  t.is(await code(ops.open(vpath('/'), O_RDONLY)), 'EISDIR');
  t.is(await code(ops.open(vpath('/none'), O_RDONLY)), 'ENOENT');
  const fh = (await ops.open(vpath('/f'), O_RDONLY)).fh;
  const buf = Buffer.alloc(8);
  t.is(await ops.read(fh, buf, 8, 0), 2);
  t.is(await ops.read(fh, buf, 8, 1), 1, 'reads are positional');
  await ops.release(fh);
  t.is(await code(() => ops.read(fh, buf, 8, 0)), 'EBADF');
  t.is(await code(() => ops.read(987654, buf, 8, 0)), 'EBADF');
  await t.notThrowsAsync(ops.release(fh), 'a second release is harmless');
});

test('two handles on one file read independently; close() releases every handle', async (t) => {
  const roots = s.branches({ f: '0123456789' });
  const u = createUnion({ lowers: roots });
  const a = (await u.ops.open(vpath('/f'), O_RDONLY)).fh;
  const b = (await u.ops.open(vpath('/f'), O_RDONLY)).fh;
  t.not(a, b);
  const ba = Buffer.alloc(3);
  const bb = Buffer.alloc(3);
  await Promise.all([u.ops.read(a, ba, 3, 7), u.ops.read(b, bb, 3, 2)]);
  t.is(ba.toString(), '789');
  t.is(bb.toString(), '234');
  t.is(u.ctx.handles.size, 2);
  await u.close();
  t.is(u.ctx.handles.size, 0);
  t.is(await code(() => u.ops.read(a, ba, 3, 0)), 'EBADF');
});

test('access: existence, and EROFS for writing to a read-only union except to devices', async (t) => {
  const ops = union({ f: 'L0', d: dir(), p: fifo, c: chardev(1, 3), l: symlink('/etc') });
  for (const p of ['/', '/f', '/d', '/p', '/c', '/l']) {
    t.is(await code(ops.access(vpath(p), F_OK)), 'ok', p);
    t.is(await code(ops.access(vpath(p), R_OK | X_OK)), 'ok', p);
  }
  t.is(await code(ops.access(vpath('/none'), F_OK)), 'ENOENT');
  t.is(await code(ops.access(vpath('/f/x'), F_OK)), 'ENOTDIR');
  for (const p of ['/', '/f', '/d', '/l']) t.is(await code(ops.access(vpath(p), W_OK)), 'EROFS', p);
  for (const p of ['/p', '/c']) t.is(await code(ops.access(vpath(p), W_OK)), 'ok', p);
  // With an upper, writing is not refused here.
  const roots = s.branches({ f: 'U' }, { g: 'L1' });
  const rw = unionOf(roots.slice(1), roots[0]);
  t.is(await code(rw.access(vpath('/f'), W_OK)), 'ok');
});

test('readlink: the stored target; EINVAL for anything but a link', async (t) => {
  const ops = union({ rel: symlink('../x/y'), abs: symlink('/nowhere'), f: 'L0', d: dir() });
  t.is(await ops.readlink(vpath('/rel')), '../x/y');
  t.is(await ops.readlink(vpath('/abs')), '/nowhere');
  t.is(await code(ops.readlink(vpath('/f'))), 'EINVAL');
  t.is(await code(ops.readlink(vpath('/d'))), 'EINVAL');
  t.is(await code(ops.readlink(vpath('/none'))), 'ENOENT');
});

test("statfs reports the top-most branch's filesystem, or the upper's", async (t) => {
  const [low] = s.branches({ f: 'L0' });
  const proc = fs.statfsSync('/proc');
  const tmp = fs.statfsSync(low!);
  t.not(proc.type, tmp.type);
  t.is((await unionOf(['/proc', low!]).statfs(vpath('/'))).type, proc.type);
  t.is((await unionOf([low!, '/proc']).statfs(vpath('/'))).type, tmp.type);
  t.is((await unionOf([low!], '/proc').statfs(vpath('/'))).type, proc.type);
  const st = await unionOf([low!]).statfs(vpath('/'));
  t.is(st.bsize, tmp.bsize);
  t.is(st.blocks, tmp.blocks);
});

test('a union without an upper and work dir refuses every change with EROFS, naming it', async (t) => {
  const ops = union({ f: 'L0' });
  const e = await t.throwsAsync(ops.unlink(vpath('/f')), { instanceOf: FsError });
  t.is(e?.code, 'EROFS');
  t.is(e?.syscall, 'unlink');
  t.is(e?.path, '/f');
  await t.throwsAsync(ops.mkdir(vpath('/d'), 0o755, { uid: 0, gid: 0 }), { code: 'EROFS' });
  await t.throwsAsync(ops.open(vpath('/f'), fs.constants.O_WRONLY), { code: 'EROFS' });
});

test('a union needs at least one branch', (t) => {
  t.throws(() => createUnion({ lowers: [] }));
});

// Lookup of a name of the marker formats in the upper finds the marker file itself, although
// readdir never lists it and the same name in a lower branch is ENOENT.
// Regression: probeOnDisk did not treat marker names as absent.
test('upper marker files are not visible to getattr/open', async (t) => {
  const roots = s.branches({ '.wh.a': '', 'd/.wh..wh..opq': '', 'd/k': 'U' }, { a: 'L1', 'd/j': 'L1' });
  const ops = unionOf(roots.slice(1), roots[0]);
  t.deepEqual(await names(ops, '/'), ['d']);
  t.deepEqual(await names(ops, '/d'), ['k']);
  t.is(await code(ops.getattr(vpath('/.wh.a'))), 'ENOENT');
  t.is(await code(ops.getattr(vpath('/d/.wh..wh..opq'))), 'ENOENT');
});

// Regression: probeOnDisk lstat()ed ".wh." + name, which is longer than NAME_MAX for a
// name of 252..255 bytes: ENAMETOOLONG escapes, so such a file in the upper cannot be reached
// although readdir lists it.
test('an upper file with a 255-byte name can be read', async (t) => {
  const long = 'n'.repeat(255);
  const roots = s.branches({ [long]: 'U' }, { low: 'L1' });
  const ops = unionOf(roots.slice(1), roots[0]);
  t.deepEqual(await names(ops, '/'), ['low', long]);
  t.is(await cat(ops, `/${long}`), 'U');
});

// UnionOps.read is declared to return a Promise, but with an unknown handle it throws
// synchronously (src/ops/open.ts read() is not async and Handles.get throws), so a caller's
// .catch() or a rejection handler never sees the EBADF. The FUSE adapter catches it (it wraps
// every call in try/catch), so over FUSE the reply is still -EBADF.
// Regression: read() with an unknown handle threw instead of rejecting.
test('read with an unknown handle rejects instead of throwing', async (t) => {
  const ops = union({ f: 'L0' });
  let p: Promise<number> | undefined;
  t.notThrows(() => {
    p = ops.read(987654, Buffer.alloc(1), 1, 0);
  });
  if (p !== undefined) await t.throwsAsync(p, { instanceOf: FsError, message: /EBADF/ });
});
