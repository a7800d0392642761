// Renaming directories that lower branches have (src/ops/move-dir.ts, D16), through createUnion on
// real temp dirs: the merged subtree arrives whole at the new name, the old name is whited out,
// the lowers are untouched, entries the upper held keep their inodes, and the upper is in the
// plain format (opaque where a lower could show through, no redirect xattrs).
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { open, release } from '../../src/ops/open.js';
import { rename } from '../../src/ops/rename.js';
import { readdir } from '../../src/ops/readdir.js';
import { unlink } from '../../src/ops/unlink.js';
import { write } from '../../src/ops/write.js';
import { vpath } from '../../src/path.js';
import { createUnion } from '../../src/union.js';
import { getXattr, listXattr } from '../../src/host/libc.js';
import type { RealPath } from '../../src/path.js';

const roots: string[] = [];
test.after.always(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function setup(whiteout: 'overlay' | 'oci' = 'overlay') {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-movedir-'));
  roots.push(root);
  const d = (n: string) => path.join(root, n);
  for (const n of ['upper', 'work', 'top', 'base']) fs.mkdirSync(d(n));
  const put = (rel: string, data: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
  };
  put('top/a/one', 'one-top');
  put('top/a/sub/deep/x', 'x');
  put('base/a/one', 'one-base');
  put('base/a/two', 'two');
  put('base/a/sub/m', 'm');
  fs.linkSync(d('base/a/two'), d('base/a/sub/two-link'));
  fs.symlinkSync('../one', d('base/a/sub/ln'));
  fs.chmodSync(d('top/a/sub'), 0o750);
  fs.utimesSync(d('top/a/sub'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  put('base/b/gone', 'hidden by a whiteout later');
  const u = createUnion({ lowers: [d('top'), d('base')], upper: d('upper'), work: d('work'), whiteout });
  return { d, ctx: u.ctx, ops: u.ops };
}

async function tree(ctx: ReturnType<typeof setup>['ctx'], p: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(ctx, vpath(p))) {
    if (e.name === '.' || e.name === '..') continue;
    const c = p === '/' ? `/${e.name}` : `${p}/${e.name}`;
    const r = await ctx.resolver.get(vpath(c), 'test');
    if (r.kind === 'dir') out.push(`${c}/`, ...(await tree(ctx, c)));
    else out.push(r.stat.isSymbolicLink() ? `${c} -> ${fs.readlinkSync(r.real)}` : `${c} = ${fs.readFileSync(r.real, 'utf8')}`);
  }
  return out.sort();
}

const lowerSnapshot = (d: (n: string) => string) =>
  ['top', 'base'].map((b) => fs.readdirSync(d(b), { recursive: true }).map(String).sort().join(','));

test('a merged directory moves whole; its old name is whited out; the lowers stay as they were', async (t) => {
  const { d, ctx } = setup();
  const lowersBefore = lowerSnapshot(d);
  const before = (await tree(ctx, '/a')).map((l) => l.replace(/^\/a/, '/moved'));
  await rename(ctx, vpath('/a'), vpath('/moved'));
  t.deepEqual(await tree(ctx, '/moved'), before);
  t.is((await ctx.resolver.resolve(vpath('/a'))).kind, 'absent');
  const wh = fs.lstatSync(d('upper/a'));
  t.true(wh.isCharacterDevice() && wh.rdev === 0, 'a char 0:0 whiteout at the old name');
  t.deepEqual(lowerSnapshot(d), lowersBefore);
  t.deepEqual(fs.readdirSync(d('work')), [], 'nothing left in the work dir');
  // Hard links among the lower files stay hard links in the copy; metadata comes along.
  const two = fs.lstatSync(d('upper/moved/two'));
  t.is(two.ino, fs.lstatSync(d('upper/moved/sub/two-link')).ino);
  const sub = fs.lstatSync(d('upper/moved/sub'));
  t.is(sub.mode & 0o7777, 0o750);
  t.is(sub.mtime.toISOString(), '2001-02-03T04:05:06.000Z');
  // No lower has /moved: nothing to hide, so no opaque marker (as a mkdir there would make none).
  t.false(listXattr(d('upper/moved') as RealPath).includes('trusted.overlay.opaque'));
});

test('a move over a deleted or emptied lower directory makes the copy opaque', async (t) => {
  const { d, ctx } = setup();
  await unlink(ctx, vpath('/b/gone')); // /b is now empty in the merged view, with a whiteout inside
  await rename(ctx, vpath('/a/sub'), vpath('/b'));
  t.deepEqual(await tree(ctx, '/b'), ['/b/deep/', '/b/deep/x = x', '/b/ln -> ../one', '/b/m = m', '/b/two-link = two']);
  t.is(String(getXattr(d('upper/b') as RealPath, 'trusted.overlay.opaque')), 'y');
  t.deepEqual(await tree(ctx, '/a'), ['/a/one = one-top', '/a/two = two']);
});

test('entries the upper already holds move with their inode: an open file keeps writing into the moved one', async (t) => {
  const { d, ctx } = setup();
  const fh = (await open(ctx, vpath('/a/one'), fs.constants.O_WRONLY)).fh; // copies it up
  const ino = fs.lstatSync(d('upper/a/one')).ino;
  await rename(ctx, vpath('/a'), vpath('/c'));
  await write(ctx, fh, Buffer.from('ONE'), 3, 0);
  await release(ctx, fh);
  t.is(fs.lstatSync(d('upper/c/one')).ino, ino);
  t.is(fs.readFileSync(d('upper/c/one'), 'utf8'), 'ONE-top');
  t.is(fs.lstatSync(d('upper/c/one')).nlink, 1, 'the old upper directory is gone');
});

test('OCI format: the old name gets a .wh. marker and the copy an opaque marker file where needed', async (t) => {
  const { d, ctx } = setup('oci');
  await unlink(ctx, vpath('/b/gone'));
  await rename(ctx, vpath('/a'), vpath('/b'));
  t.true(fs.existsSync(d('upper/.wh.a')));
  t.true(fs.existsSync(d('upper/b/.wh..wh..opq')));
  t.deepEqual((await tree(ctx, '/b')).length, 8);
  t.is((await ctx.resolver.resolve(vpath('/a'))).kind, 'absent');
});

test('errors: into itself, over a non-empty or non-directory target', async (t) => {
  const { ctx } = setup();
  await t.throwsAsync(rename(ctx, vpath('/a'), vpath('/a/sub/in')), { code: 'EINVAL' });
  await t.throwsAsync(rename(ctx, vpath('/a/sub'), vpath('/b')), { code: 'ENOTEMPTY' });
  await t.throwsAsync(rename(ctx, vpath('/a'), vpath('/a/one')), { code: 'ENOTDIR' });
  t.deepEqual((await tree(ctx, '/a')).length, 8, 'nothing moved');
});

test('a change racing with a directory move is either moved along or fails: never lost', async (t) => {
  for (let i = 0; i < 20; i++) {
    // Through the union's ops, as the FUSE adapter calls them (they take the change gate).
    const { ctx, ops } = setup();
    const moving = ops.rename(vpath('/a'), vpath('/z'));
    for (let k = 0; k < i; k++) await Promise.resolve(); // start the racer at a different moment each time
    const late = await ops.mkdir(vpath('/a/sub/new'), 0o755, { uid: 0, gid: 0 }).then(() => 'ok', (e: NodeJS.ErrnoException) => e.code);
    await moving;
    const moved = (await ctx.resolver.resolve(vpath('/z/sub/new'))).kind;
    if (late === 'ok') t.is(moved, 'dir', `round ${i}: a mkdir that succeeded before the move is in the moved tree`);
    else t.is(late, 'ENOENT', `round ${i}`);
    t.is((await ctx.resolver.resolve(vpath('/a'))).kind, 'absent');
  }
});
