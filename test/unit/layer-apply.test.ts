// src/layer/apply.ts: a layer tar extracted in the three whiteout modes (overlay, oci, flatten),
// with OCI's rule that a whiteout never hides an entry of its own layer (wherever it comes in the
// tar), replacement and merge over existing entries, times, gzip detection, and the round trip
// commit -> apply(overlay) that gives the upper back exactly.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { getXattr, mknod, setTimesNs, setXattr } from '../../src/host/libc.js';
import { LayerError } from '../../src/layer/errors.js';
import type { RealPath } from '../../src/path.js';
import { scratch } from '../helpers/env.js';
import { zstdSync } from '../helpers/images.js';
import { diffSnapshots, inodeGroupDiffs, snapshot } from '../helpers/tree.js';
import { S_IFCHR, chardev, dir, fifo, file, symlink, writeBranch, xattrOpaque } from './fixture.js';
import { applyBuffer, commitToBuffer, listTree, makeTar, type TarEntry } from './layer-helpers.js';

const space = scratch(test);
const X = (p: string, name: string): string | undefined => getXattr(p as RealPath, name)?.toString();

/** A lower already in DIR (for flatten): d/{old,sub/deep}, gone/{a}, keep. */
async function withLower(name: string): Promise<string> {
  const d = await space.dir(name);
  writeBranch(d, { 'd/old': 'old', 'd/sub/deep': 'deep', 'gone/a': 'a', 'keep': 'keep', 'f': 'lower f' });
  return d;
}

const LAYER: TarEntry[] = [
  { name: 'd/', type: 'directory', mode: 0o755 },
  { name: 'd/.wh..wh..opq' },
  { name: 'd/new', data: 'new' },
  { name: '.wh.gone', uid: 7, gid: 8 },
  { name: 'f', data: 'upper f' },
];

test('overlay: ".wh.X" becomes a char 0:0 owned as the header says, ".wh..wh..opq" the opaque xattr', async (t) => {
  const out = await space.dir('overlay');
  const stats = await applyBuffer(await makeTar(LAYER), out, { whiteout: 'overlay' });
  const st = fs.lstatSync(path.join(out, 'gone'));
  t.true(st.isCharacterDevice());
  t.is(st.rdev, 0);
  t.deepEqual([st.uid, st.gid], [7, 8]);
  t.is(X(path.join(out, 'd'), 'trusted.overlay.opaque'), 'y');
  t.deepEqual(listTree(out), ['d/', 'd/new = new', 'f = upper f', 'gone (chr 0)']);
  t.like(stats, { entries: 5, whiteouts: 1, opaques: 1, files: 2, dirs: 1 });
});

test('oci: ".wh." files are kept as they are', async (t) => {
  const out = await space.dir('oci');
  await applyBuffer(await makeTar(LAYER), out, { whiteout: 'oci' });
  t.deepEqual(listTree(out), ['.wh.gone = ', 'd/', 'd/.wh..wh..opq = ', 'd/new = new', 'f = upper f']);
  t.is(X(path.join(out, 'd'), 'trusted.overlay.opaque'), undefined);
});

test('flatten: whiteouts delete (recursively), an opaque dir loses what it held before the layer', async (t) => {
  const out = await withLower('flatten');
  await applyBuffer(await makeTar(LAYER), out, { whiteout: 'flatten' });
  t.deepEqual(listTree(out), ['d/', 'd/new = new', 'f = upper f', 'keep = keep']);
});

test('flatten: an opaque marker after its siblings keeps this layer\'s entries, wherever they are in the tar', async (t) => {
  const order = (marker: 'first' | 'last'): TarEntry[] => {
    const own: TarEntry[] = [
      { name: 'd/', type: 'directory' },
      { name: 'd/new', data: 'new' },
      { name: 'd/sub/', type: 'directory' },
      { name: 'd/sub/mine', data: 'mine' },
    ];
    const m: TarEntry = { name: 'd/.wh..wh..opq' };
    return marker === 'first' ? [own[0]!, m, ...own.slice(1)] : [...own, m];
  };
  const want = ['d/', 'd/new = new', 'd/sub/', 'd/sub/mine = mine', 'f = lower f', 'gone/', 'gone/a = a', 'keep = keep'];
  for (const m of ['first', 'last'] as const) {
    const out = await withLower(`opq-${m}`);
    await applyBuffer(await makeTar(order(m)), out, { whiteout: 'flatten' });
    t.deepEqual(listTree(out), want, `marker ${m}: d/sub/deep (lower) is gone, d/sub/mine (this layer) stays`);
  }
});

test('flatten: a whiteout never deletes an entry of its own layer', async (t) => {
  const out = await withLower('own-whiteout');
  await applyBuffer(await makeTar([
    { name: 'n', data: 'this layer' },
    { name: '.wh.n' },
    { name: '.wh.gone' },
    { name: 'gone/', type: 'directory' },
    { name: 'gone/b', data: 'b' },
  ]), out, { whiteout: 'flatten' });
  t.deepEqual(listTree(out), ['d/', 'd/old = old', 'd/sub/', 'd/sub/deep = deep', 'f = lower f', 'gone/', 'gone/b = b', 'keep = keep', 'n = this layer']);
});

test('overlay: a directory over a whiteout, or named by one of its own layer, becomes opaque', async (t) => {
  const out = await space.dir('overlay-opaque');
  await applyBuffer(await makeTar([
    { name: '.wh.a' },
    { name: 'a/', type: 'directory' },
    { name: 'b/', type: 'directory' },
    { name: '.wh.b' },
    { name: '.wh.c' },
    { name: 'c/.wh.x' }, // a deletion inside a deleted directory (rm -rf): nothing to record
    { name: 'e/.wh.y' }, // parent not in the tar: made
  ]), out, { whiteout: 'overlay' });
  t.is(X(path.join(out, 'a'), 'trusted.overlay.opaque'), 'y');
  t.is(X(path.join(out, 'b'), 'trusted.overlay.opaque'), 'y');
  t.true(fs.lstatSync(path.join(out, 'c')).isCharacterDevice());
  t.true(fs.lstatSync(path.join(out, 'e/y')).isCharacterDevice());
});

test('replacing: a file over a directory, a symlink over a file; a directory over a directory merges', async (t) => {
  const out = await space.dir('replace');
  writeBranch(out, { 'x/inner': 'i', 'y': 'file', 'm/old': 'old', 'm': dir({ 'user.stale': 's', 'user.kept': 'k0' }) });
  await applyBuffer(await makeTar([
    { name: 'x', data: 'now a file' },
    { name: 'y', type: 'symlink', linkname: 'target' },
    { name: 'm/', type: 'directory', mode: 0o711, uid: 3, gid: 4, pax: { 'SCHILY.xattr.user.kept': 'k1' } },
    { name: 'm/new', data: 'new' },
  ]), out, { whiteout: 'flatten' });
  t.deepEqual(listTree(out), ['m/', 'm/new = new', 'm/old = old', 'x = now a file', 'y -> target']);
  const m = fs.lstatSync(path.join(out, 'm'));
  t.is(m.mode & 0o7777, 0o711);
  t.deepEqual([m.uid, m.gid], [3, 4]);
  t.is(X(path.join(out, 'm'), 'user.kept'), 'k1');
  t.is(X(path.join(out, 'm'), 'user.stale'), undefined, 'a directory\'s attributes are replaced, xattrs included');
});

test('times: files and directories get the header times, directories after their contents', async (t) => {
  const out = await space.dir('times');
  await applyBuffer(await makeTar([
    { name: 'd/', type: 'directory', mtime: new Date(1_000_000_000_000) },
    { name: 'd/f', data: 'x', mtime: new Date(1_100_000_000_000) },
    { name: 'd/g', data: 'y', pax: { mtime: '1200000000.123456789', atime: '1300000000.5' } },
  ]), out, { whiteout: 'overlay' });
  t.is(fs.lstatSync(path.join(out, 'd')).mtimeMs, 1_000_000_000_000);
  t.is(fs.lstatSync(path.join(out, 'd/f')).mtimeMs, 1_100_000_000_000);
  const g = fs.lstatSync(path.join(out, 'd/g'), { bigint: true });
  t.is(g.mtimeNs, 1_200_000_000_123_456_789n);
  t.is(g.atimeNs, 1_300_000_000_500_000_000n);
});

test('gzip is recognised by its magic bytes', async (t) => {
  const tarBytes = await makeTar(LAYER);
  const a = await space.dir('plain');
  const b = await space.dir('gz');
  await applyBuffer(tarBytes, a, { whiteout: 'oci' });
  await applyBuffer(gzipSync(tarBytes), b, { whiteout: 'oci' });
  t.deepEqual(listTree(b), listTree(a));
  const bad = await space.dir('garbage');
  const err = await t.throwsAsync(applyBuffer(Buffer.from('this is not a tar, not even close'.repeat(40)), bad, { whiteout: 'oci' }));
  t.regex(err!.message, /not a valid tar/);
});

test('zstd is recognised by its magic bytes, in one frame or several; cut or corrupt compressed data is named as such', async (t) => {
  const tarBytes = await makeTar(LAYER);
  const a = await space.dir('plain-z');
  await applyBuffer(tarBytes, a, { whiteout: 'oci' });
  const one = await space.dir('zstd');
  await applyBuffer(zstdSync(tarBytes), one, { whiteout: 'oci' });
  t.deepEqual(listTree(one), listTree(a));
  // Two frames, as `cat a.zst b.zst` makes them: one stream of the bytes of both.
  const cut = Math.floor(tarBytes.length / 3);
  const two = await space.dir('zstd-frames');
  await applyBuffer(Buffer.concat([zstdSync(tarBytes.subarray(0, cut)), zstdSync(tarBytes.subarray(cut))]), two, { whiteout: 'oci' });
  t.deepEqual(listTree(two), listTree(a));
  const z = zstdSync(tarBytes);
  const short = await t.throwsAsync(applyBuffer(z.subarray(0, z.length - 8), await space.dir('zstd-cut'), { whiteout: 'oci' }));
  t.regex(short!.message, /the layer's zstd data is corrupt/);
  const flipped = Buffer.from(z);
  flipped.fill(0x55, 12, 40);
  const corrupt = await t.throwsAsync(applyBuffer(flipped, await space.dir('zstd-corrupt'), { whiteout: 'oci' }));
  t.regex(corrupt!.message, /the layer's zstd data is corrupt/);
  const gz = gzipSync(tarBytes);
  const gzShort = await t.throwsAsync(applyBuffer(gz.subarray(0, gz.length - 100), await space.dir('gzip-cut'), { whiteout: 'oci' }));
  t.regex(gzShort!.message, /the layer's gzip data is corrupt/);
});

test('devices are made when allowed', async (t) => {
  const out = await space.dir('devices');
  await applyBuffer(await makeTar([
    { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'loop', type: 'block-device', devmajor: 7, devminor: 0, mode: 0o660 },
  ]), out, { whiteout: 'overlay', allowDevices: true });
  const n = fs.lstatSync(path.join(out, 'null'));
  t.true(n.isCharacterDevice());
  t.is(n.rdev, (1 << 8) | 3);
  t.is(n.mode & 0o7777, 0o666);
  t.true(fs.lstatSync(path.join(out, 'loop')).isBlockDevice());
});

test('round trip: commit then apply(overlay) gives the upper back (types, modes, owners, mtimes, xattrs, links)', async (t) => {
  const up = path.join(await space.dir('rt'), 'upper');
  writeBranch(up, {
    'etc/conf': file('c', { 'user.a': Buffer.from([0x80, 0, 1]) }),
    'etc/setuid': 'su',
    'bin/tool': file('t', { 'security.capability': Buffer.from('0100000280000000000000000000000000000000', 'hex') }),
    'bin/sl': symlink('../etc/conf'),
    'dev/null': chardev(1, 3),
    'run/fifo': fifo,
    'opq': xattrOpaque('y'),
    'opq/in': 'in',
    'empty': dir({ 'user.d': 'dir xattr' }),
    'ünïcode/ĉ': 'u',
  });
  mknod(path.join(up, 'etc/gone') as RealPath, S_IFCHR, 0); // a whiteout as the kernel makes it (mode 0)
  fs.linkSync(path.join(up, 'etc/conf'), path.join(up, 'bin/conf-link'));
  fs.chmodSync(path.join(up, 'etc/setuid'), 0o4755);
  fs.lchownSync(path.join(up, 'etc/setuid'), 1000, 1001);
  fs.lchownSync(path.join(up, 'bin/sl'), 5, 6);
  fs.chownSync(path.join(up, 'etc/gone'), 9, 9);
  fs.chmodSync(path.join(up, 'opq'), 0o750);
  // Times last (entries made in a directory change its mtime), to the nanosecond.
  let n = 0n;
  const stamp = (p: string): void => {
    for (const name of fs.readdirSync(p)) {
      const q = path.join(p, name);
      if (fs.lstatSync(q).isDirectory()) stamp(q);
      setTimesNs(q as RealPath, 1_500_000_000_000_000_000n + n, 1_600_000_000_000_000_000n + n * 1_000_001n);
      n++;
    }
  };
  stamp(up);
  setXattr(path.join(up, 'etc') as RealPath, 'user.e', Buffer.from('e'));

  const { bytes } = await commitToBuffer(up, { gzip: true });
  const out = path.join(await space.dir('rt-out'), 'upper');
  await applyBuffer(bytes, out, { whiteout: 'overlay', allowDevices: true });
  const a = await snapshot(up, { xattrs: true, content: true });
  const b = await snapshot(out, { xattrs: true, content: true });
  t.is(a.nodes.size, 18, 'the snapshot sees the whole upper');
  t.is(a.nodes.get('/opq')?.xattrs?.['trusted.overlay.opaque'], '0x79');
  t.is(a.nodes.get('/etc/gone')?.type, 'chardev');
  a.nodes.delete('/'); // the root is not in a layer (as Docker writes them)
  b.nodes.delete('/');
  t.deepEqual(diffSnapshots(a, b, ['upper', 'applied']), []);
  t.deepEqual(inodeGroupDiffs(a, b, ['upper', 'applied']), []);
  t.is(fs.lstatSync(path.join(out, 'etc/conf')).nlink, 2);
  for (const p of ['etc/conf', 'etc', 'opq', 'etc/gone', 'bin/sl']) {
    t.is(fs.lstatSync(path.join(out, p), { bigint: true }).mtimeNs, fs.lstatSync(path.join(up, p), { bigint: true }).mtimeNs, p);
  }
});

test('sparse files from GNU tar --sparse are refused clearly, in both its formats, before they are written', async (t) => {
  const base = await space.dir('sparse');
  const src = path.join(base, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'before'), 'a file before the sparse one');
  const fd = fs.openSync(path.join(src, 'holes'), 'w');
  fs.writeSync(fd, 'end', 4 * 1024 * 1024);
  fs.closeSync(fd);
  for (const [format, message] of [['posix', /sparse file \(GNU tar --sparse\)/], ['gnu', /unknown type \(GNU tar --sparse makes one/]] as const) {
    const tarFile = path.join(base, `${format}.tar`);
    const r = spawnSync('tar', ['--sparse', `--format=${format}`, '-cf', tarFile, '-C', src, 'before', 'holes']);
    t.is(r.status, 0, r.stderr.toString());
    const dir = path.join(base, `out-${format}`);
    const err = await t.throwsAsync(applyBuffer(fs.readFileSync(tarFile), dir, { whiteout: 'overlay' }));
    t.true(err instanceof LayerError, String(err));
    t.is((err as LayerError).kind, 'unsupported');
    t.regex(err!.message, message);
    t.regex(err!.message, /holes/, 'the message names the entry');
    t.false(listTree(dir).some((p) => /holes|GNUSparse/.test(p)), `nothing of the sparse entry is written (${format})`);
  }
});
