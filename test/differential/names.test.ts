// File names are bytes. Layers hold names that are not UTF-8 (Latin-1 names in old tarballs and
// test data, bytes GNU tar and Go's archive/tar keep as they are); the kernel's overlayfs shows,
// opens, copies up and whites them out like any other. Before name-bytes.ts, layerfs listed such a
// name with U+FFFD in place of the bytes, and the name could not be opened.
//
// The same layers, and the same changes made through the mount, against the kernel's overlayfs:
// the merged trees and the upper dirs must match byte for byte. Names are Buffers throughout
// (Node's fs takes and gives them), since a JavaScript string cannot hold them.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import koffi from 'koffi';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

const libc = koffi.load('libc.so.6');
const mknod = libc.func('int mknod(const char *path, uint32_t mode, uint64_t dev)');
const lsetxattr = libc.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)');
const llistxattr = libc.func('long llistxattr(const char *path, _Out_ uint8_t *list, size_t size)');
const lgetxattr = libc.func('long lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)');

/** A path of bytes: each string part as Latin-1, so "\xe9" is the byte 0xE9. */
const B = (...parts: string[]): Buffer => Buffer.from(parts.join('/'), 'latin1');
const cstr = (b: Buffer): Buffer => Buffer.concat([b, Buffer.of(0)]);

/** Names that are not UTF-8: a Latin-1 é, a lone 0xFF, a cut 4-byte sequence, UTF-8's encoding of a surrogate. */
const DIR = 'd\xe9';
const FILE = 'f\xff';
const TEXT = 'caf\xe9.txt';
const LINK = 'ln\xfe';
const GONE = 'gone\xe9';
const TOP = 't\xf0\x9fp';
const SURROGATE = 's\xed\xa0\x80';
/** A valid UTF-8 name next to them ("ok-é"), which must stay what it is. */
const UTF8 = 'ok-\xc3\xa9';
const XATTR = 'user.n\xe9';

function buildLayers(root: string): { top: string; bottom: string } {
  const bottom = path.join(root, 'bottom');
  const top = path.join(root, 'top');
  fs.mkdirSync(B(bottom, DIR), { recursive: true });
  fs.writeFileSync(B(bottom, DIR, FILE), 'in a latin-1 dir\n');
  fs.writeFileSync(B(bottom, TEXT), 'caf\xe9\n', 'latin1');
  if (lsetxattr(cstr(B(bottom, TEXT)), cstr(Buffer.from(XATTR, 'latin1')), Buffer.from('v\xff', 'latin1'), 2, 0) !== 0) {
    throw new Error(`lsetxattr ${XATTR} failed (errno ${koffi.errno()})`);
  }
  fs.symlinkSync(B(TEXT), B(bottom, LINK));
  fs.writeFileSync(B(bottom, GONE), 'whited out above\n');
  fs.writeFileSync(B(bottom, SURROGATE), 'surrogate bytes\n');
  fs.writeFileSync(B(bottom, UTF8), 'utf-8\n');
  fs.mkdirSync(top);
  fs.writeFileSync(B(top, TOP), 'top\n');
  if (mknod(cstr(B(top, GONE)), 0o20000 | 0o644, 0) !== 0) throw new Error(`mknod failed (errno ${koffi.errno()})`);
  return { top, bottom };
}

function xattrsOf(p: Buffer): string[] {
  const n = Number(llistxattr(cstr(p), null, 0));
  if (n <= 0) return [];
  const buf = Buffer.alloc(n);
  llistxattr(cstr(p), buf, n);
  const out: string[] = [];
  for (const name of buf.subarray(0, n).toString('latin1').split('\0')) {
    if (!name.startsWith('user.')) continue; // trusted.overlay.* is each overlay's own bookkeeping
    const v = Buffer.alloc(256);
    const len = Number(lgetxattr(cstr(p), cstr(Buffer.from(name, 'latin1')), v, 256));
    out.push(`${Buffer.from(name, 'latin1').toString('hex')}=${v.subarray(0, len).toString('hex')}`);
  }
  return out.sort();
}

/** Every entry under root, by the hex of its bytes: type, mode, content or target, user xattrs. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: Buffer, rel: Buffer): void => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' })) {
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const r = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      const st = fs.lstatSync(p);
      let what: string;
      if (st.isDirectory()) what = 'dir';
      else if (st.isSymbolicLink()) what = `link ${fs.readlinkSync(p, { encoding: 'buffer' }).toString('hex')}`;
      else if (st.isCharacterDevice()) what = `chr ${st.rdev}`;
      else what = `file ${fs.readFileSync(p).toString('hex')}`;
      out[r.toString('hex')] = `${what} ${(st.mode & 0o7777).toString(8)} ${xattrsOf(p).join(',')}`;
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(Buffer.from(root), Buffer.alloc(0));
  return out;
}

const hexOf = (...parts: string[]): string => B(...parts).toString('hex');

test('names that are not UTF-8 are listed, read and followed as on the kernel\'s overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const { top, bottom } = buildLayers(await space.dir('ro'));
  const lowers = [top, bottom];
  const kernel = await withKernelOverlay({ lowers }, async (mnt) => tree(mnt));
  const ours = await withLayerfs({ lowers }, async (mnt) => {
    // Opened by name, through the symlink, and inside the directory.
    t.is(fs.readFileSync(B(mnt, LINK), 'latin1'), 'caf\xe9\n');
    t.is(fs.readFileSync(B(mnt, DIR, FILE), 'utf8'), 'in a latin-1 dir\n');
    t.throws(() => fs.lstatSync(B(mnt, GONE)), { code: 'ENOENT' });
    return tree(mnt);
  });
  t.deepEqual(ours, kernel);
  // The names are there as bytes, not as U+FFFD (a tree of lost names would match too).
  for (const n of [[DIR], [DIR, FILE], [TEXT], [LINK], [TOP], [SURROGATE], [UTF8]]) t.truthy(ours[hexOf(...n)], B(...n).toString('hex'));
  t.is(ours[hexOf(GONE)], undefined);
  t.regex(ours[hexOf(TEXT)]!, new RegExp(`${Buffer.from(XATTR, 'latin1').toString('hex')}=76ff`), 'the xattr with a Latin-1 name');
});

test('changes to names that are not UTF-8 land in the upper as the kernel\'s overlayfs puts them', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('rw');
  const { top, bottom } = buildLayers(root);
  const change = (mnt: string): void => {
    fs.appendFileSync(B(mnt, TEXT), 'more\n'); // a copy-up, the xattr with it
    fs.writeFileSync(B(mnt, 'n\xe9w'), 'new\n');
    fs.mkdirSync(B(mnt, 'nd\xff'));
    fs.writeFileSync(B(mnt, 'nd\xff', 'x\xfe'), 'x\n');
    fs.renameSync(B(mnt, DIR, FILE), B(mnt, DIR, 'g\xfe'));
    fs.unlinkSync(B(mnt, LINK));
    fs.symlinkSync(B('\xff\xfe'), B(mnt, 's\xe9'));
    fs.unlinkSync(B(mnt, SURROGATE));
  };
  const run = async (name: string, mount: typeof withLayerfs): Promise<{ merged: Record<string, string>; upper: Record<string, string> }> => {
    const upper = path.join(root, `${name}-upper`);
    const work = path.join(root, `${name}-work`);
    fs.mkdirSync(upper);
    fs.mkdirSync(work);
    const merged = await mount({ lowers: [top, bottom], upper, work }, async (mnt) => {
      change(mnt);
      return tree(mnt);
    });
    return { merged, upper: tree(upper) };
  };
  const kernel = await run('kernel', withKernelOverlay);
  const ours = await run('layerfs', withLayerfs);
  t.deepEqual(ours.merged, kernel.merged);
  t.deepEqual(ours.upper, kernel.upper);
  // What the upper must hold, by bytes: the copy, the new entries, and whiteouts of the old names.
  t.regex(ours.upper[hexOf(TEXT)]!, new RegExp(`^file ${Buffer.from('caf\xe9\nmore\n', 'latin1').toString('hex')} `));
  t.regex(ours.upper[hexOf(DIR, FILE)]!, /^chr 0 /);
  t.regex(ours.upper[hexOf(LINK)]!, /^chr 0 /);
  t.regex(ours.upper[hexOf(SURROGATE)]!, /^chr 0 /);
  t.is(ours.upper[hexOf('s\xe9')]?.split(' ').slice(0, 2).join(' '), 'link fffe');
  t.truthy(ours.upper[hexOf('nd\xff', 'x\xfe')]);
});
