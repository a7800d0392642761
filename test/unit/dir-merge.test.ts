// src/dir-merge.ts: merged listings, from hand-made branch listings and from real branch
// directories read by src/branch-dir.ts (which decides what is an entry and what a marker).
import test from 'ava';
import { constants } from 'node:fs';
import * as path from 'node:path';
import { dirEntry, entryIno, entryType, readBranchDir, type BranchDir } from '../../src/branch-dir.js';
import { mergeListings } from '../../src/dir-merge.js';
import type { RealPath } from '../../src/path.js';
import { isMarkerName, ociWhiteoutTarget } from '../../src/whiteout.js';
import {
  chardev, dir, fifo, file, makeScratch, symlink, whiteout, xattrOpaque, xwhiteout, type Spec,
} from './fixture.js';

const { S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFIFO, S_IFBLK, S_IFSOCK } = constants;

const s = await makeScratch('dirmerge');
test.after.always(s.cleanup);

function bd(entries: Array<[string, number]>, whiteouts: string[] = [], opaque = false, dev = 1): BranchDir {
  return { dev, entries: new Map(entries.map(([n, type], i) => [n, dirEntry(type, 100 + i)])), whiteouts: new Set(whiteouts), opaque };
}

/** Merged names and types (inode numbers are checked on their own below). */
const merge = (dirs: readonly BranchDir[]) => mergeListings(dirs, (_dev, ino) => ino).map(({ name, type }) => ({ name, type }));

const names = (l: { name: string }[]): string[] => l.map((e) => e.name);

test('a listing entry keeps its file type and inode number exactly, however large the number', (t) => {
  // Entries are packed into one number where that is exact (branch-dir.ts): 64-bit inode numbers
  // (XFS, btrfs) must come back whole all the same.
  for (const ino of [0, 1, 2 ** 31 - 1, 2 ** 32 + 7, 2 ** 48 + 5, 2 ** 49 - 1, 2 ** 49, 2 ** 53 - 1]) {
    for (const type of [S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK]) {
      const e = dirEntry(type, ino);
      t.is(entryType(e), type, `type of ${ino}`);
      t.is(entryIno(e), ino, `inode number ${ino}`);
    }
  }
});

test('the union of the branches, top-most order first, each name once with the top-most type', (t) => {
  const merged = merge([
    bd([['b', S_IFREG], ['a', S_IFDIR]]),
    bd([['c', S_IFREG], ['a', S_IFREG], ['b', S_IFDIR]]),
    bd([['d', S_IFLNK], ['c', S_IFDIR], ['a', S_IFLNK]]),
  ]);
  t.deepEqual(merged, [
    { name: 'b', type: S_IFREG },
    { name: 'a', type: S_IFDIR },
    { name: 'c', type: S_IFREG },
    { name: 'd', type: S_IFLNK },
  ]);
  t.deepEqual(merge([]), []);
  t.deepEqual(merge([bd([])]), []);
});

test('a whiteout hides the name in every branch below, never in its own or a higher one', (t) => {
  const merged = merge([
    bd([['x', S_IFREG]]),
    bd([['own', S_IFDIR]], ['x', 'y', 'own', 'z']),
    bd([['y', S_IFREG], ['z', S_IFDIR], ['own', S_IFREG], ['keep', S_IFREG]]),
    bd([['y', S_IFREG], ['z', S_IFREG]]),
  ]);
  t.deepEqual(merged, [
    { name: 'x', type: S_IFREG },
    { name: 'own', type: S_IFDIR },
    { name: 'keep', type: S_IFREG },
  ]);
});

test('a whiteout alone contributes no entry', (t) => {
  t.deepEqual(merge([bd([], ['a']), bd([['a', S_IFREG], ['b', S_IFREG]])]), [{ name: 'b', type: S_IFREG }]);
  t.deepEqual(merge([bd([], ['a'])]), []);
});

test('OCI marker names: .wh.NAME names NAME; the opaque marker and a bare .wh. name nothing', (t) => {
  t.is(ociWhiteoutTarget('.wh.a'), 'a');
  t.is(ociWhiteoutTarget('.wh..hidden'), '.hidden');
  t.is(ociWhiteoutTarget('.wh..wh.x'), '.wh.x');
  t.is(ociWhiteoutTarget('.wh..wh..opq'), undefined);
  t.is(ociWhiteoutTarget('.wh.'), undefined);
  t.is(ociWhiteoutTarget('a.wh.b'), undefined);
  t.is(ociWhiteoutTarget('.wh'), undefined);
  t.is(ociWhiteoutTarget('.WH.a'), undefined);
  for (const n of ['.wh.a', '.wh..wh..opq', '.wh.']) t.true(isMarkerName(n), n);
  for (const n of ['a', '.wh', 'x.wh.', '.whx']) t.false(isMarkerName(n), n);
});

/** Merged listing of real branch dirs (each spec's root), as "name:type" strings, top first. */
async function mergedOf(...specs: Spec[]): Promise<string[]> {
  const roots = s.branches(...specs);
  const dirs = await Promise.all(roots.map((r) => readBranchDir(r as RealPath, { lower: true })));
  const letter = (type: number): string =>
    ({ [S_IFDIR]: 'd', [S_IFREG]: 'f', [S_IFLNK]: 'l', [S_IFCHR]: 'c', [S_IFIFO]: 'p' })[type] ?? `?${type}`;
  return merge(dirs).map((e) => `${e.name}:${letter(e.type)}`);
}

test('real branches: every file type is reported with its own type', async (t) => {
  const got = await mergedOf({ f: 'L0', d: dir(), l: symlink('/etc'), c: chardev(1, 3), p: fifo, e: file('') });
  t.deepEqual([...got].sort(), ['c:c', 'd:d', 'e:f', 'f:f', 'l:l', 'p:p']);
});

test('real branches: no duplicates, lower-only names added, the top-most entry decides the type', async (t) => {
  const got = await mergedOf({ a: 'L0', b: dir() }, { a: dir(), b: 'L1', c: 'L1' }, { c: dir(), d: 'L2', a: 'L2' });
  t.deepEqual([...got].sort(), ['a:f', 'b:d', 'c:f', 'd:f']);
  t.is(new Set(got.map((e) => e.split(':')[0])).size, got.length);
});

test('real branches: kernel whiteouts hide lower names and are never listed', async (t) => {
  const got = await mergedOf({ a: whiteout, b: whiteout, own: 'L0' }, { a: 'L1', b: dir(), c: whiteout, keep: 'L1' }, { c: 'L2', a: 'L2' });
  t.deepEqual([...got].sort(), ['keep:f', 'own:f']);
  // Also in a directory that only one branch has (the kernel would list them; layerfs does not).
  t.deepEqual(await mergedOf({ w: whiteout, f: 'L0' }), ['f:f']);
});

test('real branches: OCI whiteouts hide lower names; marker files are never listed', async (t) => {
  const got = await mergedOf(
    { '.wh.a': '', '.wh.b': '', '.wh..wh..opq': '', '.wh.': '', own: 'L0' },
    { a: 'L1', b: dir(), '.wh.c': '', keep: 'L1' },
    { c: 'L2', a: 'L2', '.wh.keep': '' },
  );
  t.deepEqual([...got].sort(), ['keep:f', 'own:f']);
});

test('real branches: OCI .wh.X beside X lists X once, from its own branch', async (t) => {
  const got = await mergedOf({ X: dir(), '.wh.X': '', F: 'L0', '.wh.F': '' }, { X: 'L1', F: dir(), G: 'L1' });
  t.deepEqual([...got].sort(), ['F:f', 'G:f', 'X:d']);
});

test('real branches: xattr whiteouts are hidden from the listing only in an "x" directory', async (t) => {
  // Root of the top branch marked "x": its xattr whiteouts hide lower names and are not listed.
  const marked = await mergedOf({ '': xattrOpaque('x'), w: xwhiteout, n: file('data', { 'trusted.overlay.whiteout': 'y' }), own: 'L0' }, { w: 'L1', keep: 'L1' });
  t.deepEqual([...marked].sort(), ['keep:f', 'n:f', 'own:f']);
  // Without the mark, the same file is listed once (as a file), like any other.
  const plain = await mergedOf({ w: xwhiteout, own: 'L0' }, { w: dir(), keep: 'L1' });
  t.deepEqual([...plain].sort(), ['keep:f', 'own:f', 'w:f']);
});

test('readBranchDir: opaque in either format, "x" is not opaque, other values neither', async (t) => {
  const [y, oci, x, other, none] = s.branches({ '': xattrOpaque('y') }, { '.wh..wh..opq': '' }, { '': xattrOpaque('x') }, { '': dir({ 'trusted.overlay.opaque': 'n' }) }, {});
  const opaque = async (root: string | undefined): Promise<boolean> => (await readBranchDir(root as RealPath, { lower: true })).opaque;
  t.true(await opaque(y));
  t.true(await opaque(oci));
  t.false(await opaque(x));
  t.false(await opaque(other));
  t.false(await opaque(none));
  // The opaque marker is no entry and no whiteout.
  const d = await readBranchDir(oci as RealPath, { lower: true });
  t.deepEqual([...d.entries.keys()], []);
  t.deepEqual([...d.whiteouts], []);
});

test('readBranchDir: a missing directory is an error, not an empty listing', async (t) => {
  await t.throwsAsync(readBranchDir(path.join(s.root, 'no-such-dir') as RealPath, { lower: true }), { message: /ENOENT/ });
});

test('each entry carries the inode number of the branch that serves it, mapped through the union', (t) => {
  const merged = mergeListings(
    [bd([['a', S_IFREG]], [], false, 10), bd([['a', S_IFREG], ['b', S_IFDIR]], [], false, 20)],
    (dev, ino) => dev * 1000 + ino,
  );
  t.deepEqual(merged.map((e) => [e.name, e.ino]), [['a', 10_100], ['b', 20_101]]);
});
