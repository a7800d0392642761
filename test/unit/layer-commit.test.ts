// src/layer/commit.ts: an upper directory as a layer tar. Determinism (same tree, same bytes;
// --reproducible ignores mtimes), entry order and names as Docker writes them, whiteouts of every
// format as ".wh." files, opaque markers first in their directory, xattrs as binary-exact PAX
// records without the overlay's own, hard links as link entries, ns mtimes, and a failed commit
// to a file leaving nothing behind.
import test from 'ava';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { getXattr, setTimesNs, setXattr } from '../../src/host/libc.js';
import { commitLayer, commitLayerToFile } from '../../src/layer/commit.js';
import type { RealPath } from '../../src/path.js';
import { scratch } from '../helpers/env.js';
import { dir, file, symlink, whiteout, writeBranch, xattrOpaque, xwhiteout, type Spec } from './fixture.js';
import { applyBuffer, commitToBuffer, readTar } from './layer-helpers.js';

const space = scratch(test);

const BIN = Buffer.from([0x80, 0xff, 0x00, 0x0a, 0x3d, 0x20, 0xc3, 0x28]); // not UTF-8, with NUL, '\n', '=' and ' '
// vfs_cap_data v2 with cap_setuid (bit 7: a 0x80 byte) permitted and effective.
const CAP = Buffer.from('0100000280000000000000000000000000000000', 'hex');

const SAMPLE: Spec = {
  'etc/passwd': file('root:x:0:0\n'),
  'etc/b-c': 'dash',
  'etc/b/x': 'slash',
  'bin/tool': file('#!/bin/sh\n', { 'user.bin': BIN, 'security.capability': CAP, 'trusted.overlay.layerfs.ino': '42', 'trusted.overlay.origin': 'o' }),
  'bin/link': symlink('tool'),
  'var/opq': xattrOpaque('y'),
  'var/opq/new': 'n',
  'var/gone': whiteout,
  'var/zzz': 'z',
};

async function upperOf(name: string, spec: Spec): Promise<string> {
  const d = path.join(await space.dir(name), 'upper');
  writeBranch(d, spec);
  if (fs.existsSync(path.join(d, 'var'))) setXattr(path.join(d, 'var') as RealPath, 'trusted.overlay.impure', Buffer.from('y'));
  return d;
}

/** Set every entry's mtime (not following links) to t ns. */
function touchAll(root: string, t: bigint): void {
  const walk = (p: string): void => {
    for (const n of fs.readdirSync(p)) {
      const q = path.join(p, n);
      if (fs.lstatSync(q).isDirectory()) walk(q);
      setTimesNs(q as RealPath, t, t);
    }
  };
  walk(root);
}

test('the same tree gives the same bytes and diff_id; --reproducible ignores mtimes', async (t) => {
  const up = await upperOf('determinism', SAMPLE);
  touchAll(up, 1_700_000_000_123_456_789n);
  const a = await commitToBuffer(up);
  const b = await commitToBuffer(up);
  t.true(a.bytes.equals(b.bytes));
  t.is(a.result.diffId, b.result.diffId);
  t.regex(a.result.diffId, /^sha256:[0-9a-f]{64}$/);
  t.is(a.result.size, a.bytes.length);

  const r1 = await commitToBuffer(up, { reproducible: true });
  touchAll(up, 1_600_000_000_000_000_000n);
  const c = await commitToBuffer(up);
  t.not(c.result.diffId, a.result.diffId, 'without --reproducible the mtimes are part of the layer');
  const r2 = await commitToBuffer(up, { reproducible: true });
  t.is(r1.result.diffId, r2.result.diffId);
  t.true(r1.bytes.equals(r2.bytes));
  for (const e of await readTar(r1.bytes)) {
    t.is(e.header.mtime.getTime(), 0, e.header.name);
    t.is(e.pax['mtime'], undefined);
    t.is(e.header.uname, '');
  }
  const r3 = await commitToBuffer(up, { reproducible: true, epoch: 1_234_567_890 });
  t.true((await readTar(r3.bytes)).every((e) => e.header.mtime.getTime() === 1_234_567_890_000));
});

test('gzip: deterministic with a fixed header, digest of the compressed bytes, diff_id of the tar', async (t) => {
  const up = await upperOf('gzip', SAMPLE);
  const plain = await commitToBuffer(up);
  const gz1 = await commitToBuffer(up, { gzip: true });
  const gz2 = await commitToBuffer(up, { gzip: true });
  t.true(gz1.bytes.equals(gz2.bytes));
  t.deepEqual([...gz1.bytes.subarray(0, 2)], [0x1f, 0x8b]);
  t.is(gz1.bytes[3], 0, 'no FNAME/FCOMMENT/FEXTRA flags');
  t.deepEqual([...gz1.bytes.subarray(4, 8)], [0, 0, 0, 0], 'MTIME is 0');
  t.is(gz1.result.diffId, plain.result.diffId);
  t.true(gunzipSync(gz1.bytes).equals(plain.bytes));
  t.is(gz1.result.digest, `sha256:${createHash('sha256').update(gz1.bytes).digest('hex')}`);
  t.is(plain.result.digest, undefined);
  t.is(plain.result.diffId, `sha256:${createHash('sha256').update(plain.bytes).digest('hex')}`);
  t.is(gz1.result.size, gz1.bytes.length);
});

test('a file named for zstd is refused before anything is written: layers are written plain or gzip\'d', async (t) => {
  const root = await space.dir('zst-name');
  const up = path.join(root, 'up');
  writeBranch(up, { f: file('x') });
  for (const name of ['layer.tar.zst', 'layer.zstd']) {
    const e = await t.throwsAsync(commitLayerToFile(up, path.join(root, name)));
    t.regex(e!.message, /not zstd/);
  }
  t.deepEqual(fs.readdirSync(root), ['up']);
});

test('entries: pre-order, byte order, "dir/" names without "./" or a root entry, opaque marker and whiteouts first', async (t) => {
  const up = await upperOf('order', SAMPLE);
  const names = (await readTar((await commitToBuffer(up)).bytes)).map((e) => e.header.name);
  t.deepEqual(names, [
    'bin/', 'bin/link', 'bin/tool',
    'etc/', 'etc/b/', 'etc/b/x', 'etc/b-c', 'etc/passwd',
    'var/', 'var/.wh.gone', 'var/opq/', 'var/opq/.wh..wh..opq', 'var/opq/new', 'var/zzz',
  ]);
});

test('whiteouts in every format become empty ".wh." files, opaque dirs get ".wh..wh..opq"', async (t) => {
  const kernel = await upperOf('wh-kernel', { 'd/x': whiteout, 'o': xattrOpaque('y'), 'o/keep': 'k', 'x-dir': xattrOpaque('x'), 'x-dir/gone': xwhiteout, 'x-dir/a': 'a' });
  const oci = await upperOf('wh-oci', { 'd/.wh.x': '', 'o/.wh..wh..opq': '', 'o/keep': 'k', 'x-dir': dir(), 'x-dir/.wh.gone': '', 'x-dir/a': 'a' });
  const want = ['d/', 'd/.wh.x', 'o/', 'o/.wh..wh..opq', 'o/keep', 'var/', 'x-dir/', 'x-dir/.wh.gone', 'x-dir/a'];
  for (const up of [kernel, oci]) {
    fs.mkdirSync(path.join(up, 'var'), { recursive: true });
    const entries = await readTar((await commitToBuffer(up)).bytes);
    t.deepEqual(entries.map((e) => e.header.name), want);
    for (const e of entries.filter((x) => path.basename(x.header.name).startsWith('.wh.'))) {
      t.is(e.header.type, 'file', e.header.name);
      t.is(e.header.size, 0);
    }
    const wh = entries.find((e) => e.header.name === 'd/.wh.x')!;
    t.is(wh.header.mode & 0o7777, 0o600, 'Docker writes whiteouts with mode 0600');
    for (const e of entries) t.false(Object.keys(e.pax).some((k) => k.includes('trusted.overlay')), e.header.name);
  }
});

test('xattrs are PAX records with their exact bytes; the overlay\'s own are dropped', async (t) => {
  const up = await upperOf('xattrs', SAMPLE);
  const entries = await readTar((await commitToBuffer(up)).bytes);
  const tool = entries.find((e) => e.header.name === 'bin/tool')!;
  t.true((tool.pax['SCHILY.xattr.user.bin'] as Buffer).equals(BIN));
  t.true((tool.pax['SCHILY.xattr.security.capability'] as Buffer).equals(CAP));
  t.deepEqual(Object.keys(tool.pax).filter((k) => k.startsWith('SCHILY')).sort(), ['SCHILY.xattr.security.capability', 'SCHILY.xattr.user.bin']);
  for (const e of entries) t.false(Object.keys(e.pax).some((k) => k.startsWith('SCHILY.xattr.trusted.overlay.')), e.header.name);
  t.is(tool.data.toString(), '#!/bin/sh\n');

  // And back: apply writes the same bytes (chown first, so the capability survives).
  const out = await space.dir('xattrs-out');
  await applyBuffer((await commitToBuffer(up)).bytes, out, { whiteout: 'overlay' });
  t.true(getXattr(path.join(out, 'bin/tool') as RealPath, 'user.bin')!.equals(BIN));
  t.true(getXattr(path.join(out, 'bin/tool') as RealPath, 'security.capability')!.equals(CAP));
  t.is(getXattr(path.join(out, 'bin/tool') as RealPath, 'trusted.overlay.layerfs.ino'), undefined);
  t.is(getXattr(path.join(out, 'var') as RealPath, 'trusted.overlay.impure'), undefined);
  t.is(getXattr(path.join(out, 'var/opq') as RealPath, 'trusted.overlay.opaque')?.toString(), 'y', 'the opaque marker comes back as the xattr');
});

test('hard links: the first name in order is the file, the others link entries to it', async (t) => {
  const up = await upperOf('hardlinks', { 'b/one': 'data', 'c': dir() });
  fs.linkSync(path.join(up, 'b/one'), path.join(up, 'a'));
  fs.linkSync(path.join(up, 'b/one'), path.join(up, 'c/three'));
  const entries = await readTar((await commitToBuffer(up)).bytes);
  const by = new Map(entries.map((e) => [e.header.name, e]));
  t.is(by.get('a')!.header.type, 'file');
  t.is(by.get('a')!.data.toString(), 'data');
  for (const n of ['b/one', 'c/three']) {
    t.is(by.get(n)!.header.type, 'link', n);
    t.is(by.get(n)!.header.linkname, 'a', n);
    t.is(by.get(n)!.data.length, 0);
  }
});

test('nanosecond mtimes go into PAX mtime records; whole seconds stay plain ustar', async (t) => {
  const up = await upperOf('mtime', { 'ns': 'x', 'whole': 'y' });
  setTimesNs(path.join(up, 'ns') as RealPath, 5n, 1_700_000_000_123_456_789n);
  setTimesNs(path.join(up, 'whole') as RealPath, 5n, 1_700_000_000_000_000_000n);
  const by = new Map((await readTar((await commitToBuffer(up)).bytes)).map((e) => [e.header.name, e]));
  t.is(by.get('ns')!.pax['mtime'], '1700000000.123456789');
  t.is(by.get('whole')!.pax['mtime'], undefined);
  t.is(by.get('whole')!.header.mtime.getTime(), 1_700_000_000_000);
});

test('long and non-ASCII names and link targets survive (PAX path/linkpath)', async (t) => {
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
  const up = await upperOf('names', { [long]: 'l', 'ünï/çødé': 'u', 'sl': symlink(`../${'t'.repeat(200)}`) });
  const names = (await readTar((await commitToBuffer(up)).bytes)).map((e) => [e.header.name, e.header.linkname]);
  t.true(names.some(([n]) => n === long));
  t.true(names.some(([n]) => n === 'ünï/çødé'));
  t.true(names.some(([n, l]) => n === 'sl' && l === `../${'t'.repeat(200)}`));
});

test('progress is reported up to the total; a failed commit to a file leaves no file behind', async (t) => {
  const up = await upperOf('progress', { 'big': file(Buffer.alloc(9 << 20, 7)), 'small': 'x' }); // bigger than the 8 MiB the walk may run ahead
  const out = await space.dir('progress-out');
  const seen: [number, number][] = [];
  const r = await commitLayerToFile(up, path.join(out, 'l.tar'), { onProgress: (d, tot) => seen.push([d, tot]) });
  t.deepEqual(seen.at(-1), [(9 << 20) + 1, (9 << 20) + 1]);
  t.deepEqual(fs.readdirSync(out), ['l.tar']);
  t.is(fs.statSync(path.join(out, 'l.tar')).size, r.size);

  const err = await t.throwsAsync(commitLayerToFile(up, path.join(out, 'bad.tar.gz'), {
    gzip: true,
    onProgress: () => {
      throw new Error('interrupted');
    },
  }));
  t.is(err?.message, 'interrupted');
  t.deepEqual(fs.readdirSync(out), ['l.tar'], 'no partial layer, no temporary file');
});

test('many entries through a slow output: headers wait for it, and all arrive', async (t) => {
  const up = path.join(await space.dir('many'), 'upper');
  fs.mkdirSync(path.join(up, 'd'), { recursive: true });
  for (let i = 0; i < 20_000; i++) fs.writeFileSync(path.join(up, 'd', `f${i}`), '');
  let bytes = 0;
  const slow = new Writable({
    highWaterMark: 1 << 16,
    write(chunk: Buffer, _e, cb) {
      bytes += chunk.length;
      setImmediate(cb);
    },
  });
  const r = await commitLayer(up, slow);
  t.is(r.entries, 20_001);
  t.is(bytes, r.size);
  t.true(r.size >= 20_001 * 512);
});
