// Inode numbers survive copy-up (src/origin.ts): stat and readdir show the number the entry had
// before its copy-up, after renames and directory moves too, on every hard link, and after a
// "remount" (a fresh union over the same branches), as tar, rsync -H and git expect.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getattr } from '../../src/ops/getattr.js';
import { readdir } from '../../src/ops/readdir.js';
import { vpath } from '../../src/path.js';
import { createUnion } from '../../src/union.js';

const roots: string[] = [];
test.after.always(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function setup() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-origin-'));
  roots.push(root);
  const d = (n: string) => path.join(root, n);
  for (const n of ['upper', 'work', 'lower/d/sub']) fs.mkdirSync(d(n), { recursive: true });
  fs.writeFileSync(d('lower/d/f'), 'f');
  fs.writeFileSync(d('lower/d/sub/g'), 'g');
  const mount = () => createUnion({ lowers: [d('lower')], upper: d('upper'), work: d('work') });
  return { d, mount };
}

const ino = async (u: ReturnType<typeof createUnion>, p: string) => (await getattr(u.ctx, vpath(p))).ino;
async function dino(u: ReturnType<typeof createUnion>, dir: string, name: string): Promise<number | undefined> {
  return (await readdir(u.ctx, vpath(dir))).find((e) => e.name === name)?.ino;
}

test('a copied-up file and its directory keep their numbers, in stat and readdir, across remounts', async (t) => {
  const { d, mount } = setup();
  const u = mount();
  const before = { d: await ino(u, '/d'), f: await ino(u, '/d/f') };
  t.is(before.f, fs.lstatSync(d('lower/d/f')).ino, 'a lower file shows its own number');
  await u.ops.truncate(vpath('/d/f'), 0); // copies /d and /d/f up
  t.true(fs.existsSync(d('upper/d/f')));
  t.not(fs.lstatSync(d('upper/d/f')).ino, before.f, 'the copy is another inode on disk');
  t.is(await ino(u, '/d/f'), before.f);
  t.is(await ino(u, '/d'), before.d);
  t.is(await dino(u, '/d', 'f'), before.f, 'readdir agrees with stat');
  t.is(await dino(u, '/', 'd'), before.d);
  await u.ops.link(vpath('/d/f'), vpath('/d/f2'));
  t.is(await ino(u, '/d/f2'), before.f, 'a hard link shows the same number');
  await u.ops.rename(vpath('/d/f'), vpath('/f-moved'));
  t.is(await ino(u, '/f-moved'), before.f, 'a rename keeps it');
  const again = mount();
  t.is(await ino(again, '/f-moved'), before.f, 'and so does a remount');
  t.is(await ino(again, '/d'), before.d);
});

test('a directory move keeps the numbers of what it moves', async (t) => {
  const { mount } = setup();
  const u = mount();
  const before = { sub: await ino(u, '/d/sub'), g: await ino(u, '/d/sub/g') };
  await u.ops.rename(vpath('/d/sub'), vpath('/sub2'));
  t.is(await ino(u, '/sub2'), before.sub);
  t.is(await ino(u, '/sub2/g'), before.g);
  t.is(await dino(u, '/sub2', 'g'), before.g);
  t.is(await dino(u, '/', 'sub2'), before.sub);
});

test('new upper entries show their own numbers, distinct from every lower one', async (t) => {
  const { d, mount } = setup();
  const u = mount();
  await u.ops.mkdir(vpath('/d/new'), 0o755, { uid: 0, gid: 0 });
  t.is(await ino(u, '/d/new'), fs.lstatSync(d('upper/d/new')).ino);
  t.not(await ino(u, '/d/new'), await ino(u, '/d/f'));
});
