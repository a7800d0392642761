// src/ops/unlink.ts and src/ops/mkdir.ts through createUnion on real temp dirs: what the merged
// view shows afterwards and what the upper holds on disk (whiteouts, opaque markers), in both
// whiteout formats. Lowers are never touched.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getXattr } from '../../src/host/libc.js';
import { mkdir } from '../../src/ops/mkdir.js';
import { rmdir, unlink } from '../../src/ops/unlink.js';
import { vpath, type RealPath } from '../../src/path.js';
import { createUnion } from '../../src/union.js';
import type { WhiteoutFormat } from '../../src/whiteout-writer.js';

const roots: string[] = [];
test.after.always(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function setup(format: WhiteoutFormat = 'overlay') {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-unlink-'));
  roots.push(root);
  const [upper, work, lower] = ['upper', 'work', 'lower'].map((n) => path.join(root, n)) as [string, string, string];
  for (const d of [upper, work, lower, path.join(lower, 'd'), path.join(lower, 'full')]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lower, 'f'), 'lower f');
  fs.writeFileSync(path.join(lower, 'd/x'), 'lower x');
  fs.writeFileSync(path.join(lower, 'full/y'), 'lower y');
  const u = createUnion({ lowers: [lower], upper, work, whiteout: format });
  const names = async (p: string) => (await u.ops.readdir(vpath(p))).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();
  const kind = async (p: string) => (await u.ctx.resolver.resolve(vpath(p))).kind;
  const lowerTree = () => fs.readdirSync(lower, { recursive: true }).sort();
  return { upper, lower, u, ctx: u.ctx, names, kind, lowerTree, before: fs.readdirSync(lower, { recursive: true }).sort() };
}

const isWhiteout = (p: string) => {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  return st !== undefined && st.isCharacterDevice() && st.rdev === 0;
};

test('unlink of a lower file leaves a char 0:0 whiteout; the lower is untouched', async (t) => {
  const s = setup();
  await unlink(s.ctx, vpath('/f'));
  t.is(await s.kind('/f'), 'absent');
  t.false((await s.names('/')).includes('f'));
  t.true(isWhiteout(path.join(s.upper, 'f')));
  t.deepEqual(s.lowerTree(), s.before);
});

test('unlink of an upper-only file leaves no whiteout', async (t) => {
  const s = setup();
  fs.writeFileSync(path.join(s.upper, 'new'), 'u');
  await unlink(s.ctx, vpath('/new'));
  t.is(await s.kind('/new'), 'absent');
  t.false(fs.existsSync(path.join(s.upper, 'new')));
});

test('unlink of an upper file over a lower one replaces it by a whiteout', async (t) => {
  const s = setup();
  fs.writeFileSync(path.join(s.upper, 'f'), 'upper f');
  await unlink(s.ctx, vpath('/f'));
  t.is(await s.kind('/f'), 'absent');
  t.true(isWhiteout(path.join(s.upper, 'f')));
  t.deepEqual(fs.readdirSync(path.join(s.upper, '..', 'work')), [], 'nothing left in the work dir');
});

test('errors as Linux gives them', async (t) => {
  const s = setup();
  await t.throwsAsync(unlink(s.ctx, vpath('/d')), { code: 'EISDIR' });
  await t.throwsAsync(unlink(s.ctx, vpath('/nope')), { code: 'ENOENT' });
  await t.throwsAsync(rmdir(s.ctx, vpath('/f')), { code: 'ENOTDIR' });
  await t.throwsAsync(rmdir(s.ctx, vpath('/full')), { code: 'ENOTEMPTY' });
  await t.throwsAsync(mkdir(s.ctx, vpath('/d'), 0o755, { uid: 0, gid: 0 }), { code: 'EEXIST' });
  const ro = createUnion({ lowers: [s.lower] });
  await t.throwsAsync(unlink(ro.ctx, vpath('/f')), { code: 'EROFS' });
});

test('rmdir of a lower dir emptied in the merged view: a whiteout for the dir, none left inside', async (t) => {
  const s = setup();
  await unlink(s.ctx, vpath('/d/x'));
  t.true(isWhiteout(path.join(s.upper, 'd/x')), 'the parent was copied up to hold the whiteout');
  await rmdir(s.ctx, vpath('/d'));
  t.is(await s.kind('/d'), 'absent');
  t.true(isWhiteout(path.join(s.upper, 'd')), 'the upper dir was swapped for a whiteout');
  t.deepEqual(s.lowerTree(), s.before);
});

test('mkdir over a whiteout makes an opaque dir: the old lower content stays hidden', async (t) => {
  const s = setup();
  await unlink(s.ctx, vpath('/full/y'));
  await rmdir(s.ctx, vpath('/full'));
  await mkdir(s.ctx, vpath('/full'), 0o750, { uid: 1234, gid: 5678 });
  t.is(await s.kind('/full'), 'dir');
  t.deepEqual(await s.names('/full'), []);
  const real = path.join(s.upper, 'full');
  const st = fs.lstatSync(real);
  t.true(st.isDirectory());
  t.is(st.mode & 0o7777, 0o750);
  t.deepEqual([st.uid, st.gid], [1234, 5678]);
  t.is(getXattr(real as RealPath, 'trusted.overlay.opaque')?.toString(), 'y');
  await mkdir(s.ctx, vpath('/fresh'), 0o755, { uid: 0, gid: 0 });
  t.is(getXattr(path.join(s.upper, 'fresh') as RealPath, 'trusted.overlay.opaque'), undefined, 'not over a whiteout: not opaque');
});

test('the OCI format writes .wh. markers and .wh..wh..opq', async (t) => {
  const s = setup('oci');
  await unlink(s.ctx, vpath('/f'));
  t.true(fs.existsSync(path.join(s.upper, '.wh.f')));
  t.false(fs.existsSync(path.join(s.upper, 'f')));
  t.is(await s.kind('/f'), 'absent');
  await unlink(s.ctx, vpath('/full/y'));
  await rmdir(s.ctx, vpath('/full'));
  t.true(fs.existsSync(path.join(s.upper, '.wh.full')));
  await mkdir(s.ctx, vpath('/full'), 0o755, { uid: 0, gid: 0 });
  t.true(fs.existsSync(path.join(s.upper, 'full/.wh..wh..opq')));
  t.false(fs.existsSync(path.join(s.upper, '.wh.full')), 'the whiteout gave way to the new dir');
  t.deepEqual(await s.names('/full'), []);
  t.deepEqual(s.lowerTree(), s.before);
});
