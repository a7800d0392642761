// The image store without mounts: a layer appears whole or not at all, concurrent adders of one
// layer serialize on its lock, a killed adder's work is never used and is cleaned up, image and
// container records.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreError } from '../../src/image/errors.js';
import { acquireLock } from '../../src/image/lock.js';
import { Store, defaultHome } from '../../src/image/store.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-image-store-'));
test.after.always(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshStore = (): Promise<Store> => Store.open(path.join(root, `store-${++n}`));

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Add each layer, with one file. */
async function addLayers(s: Store, ...ds: string[]): Promise<void> {
  for (const d of ds) await s.addLayer(d, async (dir) => fs.writeFileSync(path.join(dir, 'f'), d));
}

/** A pid that no process has (one that just exited). */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

test('the default root: LAYERFS_HOME, else /var/lib/layerfs for root, else ~/.local/share/layerfs', (t) => {
  t.is(defaultHome({ LAYERFS_HOME: '/x/y' }), '/x/y');
  if (process.getuid?.() === 0) t.is(defaultHome({}), '/var/lib/layerfs');
  else t.is(defaultHome({ HOME: os.homedir() }), path.join(os.homedir(), '.local/share/layerfs'));
});

test('a layer is added whole: diff/ with its files and layer.json, nothing left in tmp/', async (t) => {
  const s = await freshStore();
  const lock = await s.lockMissingLayers([D1, D1]);
  t.deepEqual(lock.missing, [D1]);
  await s.addLayer(D1, async (dir) => fs.writeFileSync(path.join(dir, 'f'), 'data'), { source: 'test' });
  lock.release();
  t.true(await s.hasLayer(D1));
  t.is(fs.readFileSync(path.join(s.layerDiff(D1), 'f'), 'utf8'), 'data');
  t.is((JSON.parse(fs.readFileSync(path.join(s.layerPath(D1), 'layer.json'), 'utf8')) as { diffId: string }).diffId, D1);
  t.deepEqual(await s.listLayers(), [D1]);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
  // Once there, it is not missing any more.
  const again = await s.lockMissingLayers([D1]);
  t.deepEqual(again.missing, []);
  again.release();
});

test('a failed fill adds nothing and leaves nothing in tmp/', async (t) => {
  const s = await freshStore();
  const lock = await s.lockMissingLayers([D1]);
  await t.throwsAsync(s.addLayer(D1, async (dir) => {
    fs.writeFileSync(path.join(dir, 'half'), 'x');
    throw new Error('refused entry');
  }), { message: 'refused entry' });
  lock.release();
  t.false(await s.hasLayer(D1));
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
});

test('a second locker waits for the first and then finds the layer there', async (t) => {
  const s = await freshStore();
  const first = await s.lockMissingLayers([D2, D1]);
  t.deepEqual(first.missing, [D1, D2]);
  let waited = 0;
  let secondMissing: string[] | undefined;
  const second = s.lockMissingLayers([D1, D2], () => waited++).then((l) => {
    secondMissing = l.missing;
    l.release();
  });
  await sleep(150);
  t.is(secondMissing, undefined, 'the second locker must wait while the first holds the locks');
  t.true(waited >= 1);
  await s.addLayer(D1, async (dir) => fs.writeFileSync(path.join(dir, 'a'), '1'));
  await s.addLayer(D2, async (dir) => fs.writeFileSync(path.join(dir, 'b'), '2'));
  first.release();
  await second;
  t.deepEqual(secondMissing, []);
});

test('a lock held by a process is released when that process is killed', async (t) => {
  const s = await freshStore();
  const lockFile = s.lockPath('layer-test');
  const lockMod = fileURLToPath(new URL('../../src/image/lock.js', import.meta.url));
  const child = spawn(process.execPath, ['--input-type=module', '-e',
    `const { acquireLock } = await import(${JSON.stringify(lockMod)}); await acquireLock(${JSON.stringify(lockFile)}); console.log('locked'); setInterval(() => {}, 1000);`,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  let got = false;
  const mine = acquireLock(lockFile).then((l) => {
    got = true;
    return l;
  });
  await sleep(150);
  t.false(got, 'the lock is held by the child');
  child.kill('SIGKILL');
  (await mine).release();
  t.true(got);
});

test('an unpack killed midway leaves no layer; its tmp dir is never used and is removed later', async (t) => {
  const home = path.join(root, `store-${++n}`);
  const storeMod = fileURLToPath(new URL('../../src/image/store.js', import.meta.url));
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const { Store } = await import(${JSON.stringify(storeMod)});
    const fs = await import('node:fs');
    const s = await Store.open(${JSON.stringify(home)});
    const l = await s.lockMissingLayers([${JSON.stringify(D1)}]);
    await s.addLayer(${JSON.stringify(D1)}, async (dir) => {
      fs.writeFileSync(dir + '/partial', 'x');
      console.log('filling');
      await new Promise(() => {});
    });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));

  const tmp = path.join(home, 'tmp');
  t.is(fs.readdirSync(tmp).length, 1, 'the killed unpack left its tmp dir');
  // A stale tmp dir of some other crash, too.
  fs.mkdirSync(path.join(tmp, `${deadPid()}-12345-abcdef`));
  fs.mkdirSync(path.join(tmp, 'not-ours'));
  const s = await Store.open(home);
  t.false(await s.hasLayer(D1));
  t.deepEqual(fs.readdirSync(tmp), ['not-ours']);
  const l = await s.lockMissingLayers([D1]); // the child's lock died with it
  t.deepEqual(l.missing, [D1]);
  l.release();
});

test('cleanTmp leaves the tmp dirs of live processes alone', async (t) => {
  const s = await freshStore();
  const mine = await s.newTmpDir();
  t.is(await s.cleanTmp(), 0);
  t.true(fs.existsSync(mine));
});

test('images: recorded by config digest, found by tag, "name" for name:latest, or id prefix; a tag moves', async (t) => {
  const s = await freshStore();
  const a = `sha256:${'a'.repeat(60)}0001`;
  const b = `sha256:${'a'.repeat(60)}0002`;
  await addLayers(s, D1, D2);
  await s.putImage({ id: a, repoTags: ['app:1', 'app:latest'], diffIds: [D1], format: 'oci', source: '/x' });
  t.is((await s.findImage('app:1'))?.id, a);
  t.is((await s.findImage('app'))?.id, a);
  t.is((await s.findImage(a))?.id, a);
  t.is((await s.findImage('aaaaaaa'))?.id, a);
  await s.putImage({ id: b, repoTags: ['app:latest'], diffIds: [D1, D2], format: 'oci', source: '/y' });
  t.deepEqual((await s.getImage(a))?.repoTags, ['app:1']);
  t.is((await s.findImage('app'))?.id, b);
  await t.throwsAsync(s.findImage('aaaaaaaa'), { instanceOf: StoreError, message: /more than one image/ });
  t.is((await s.findImage('nothing')), undefined);
  t.is((await s.listImages()).length, 2);
});

test('containers: a name is taken once; records listed; rm of an unknown name is refused', async (t) => {
  const s = await freshStore();
  const rootLike = path.join(root, `rootlike-${++n}`);
  fs.mkdirSync(rootLike, { mode: 0o751 });
  fs.chmodSync(rootLike, 0o751);
  fs.utimesSync(rootLike, new Date(1_600_000_000_000), new Date(1_600_000_000_000));
  const rec = { name: 'web', image: D1, imageName: 'app:1', layers: [D1], mountpoint: '/mnt/x', created: new Date().toISOString() };
  await t.throwsAsync(s.createContainer(rec, rootLike), { instanceOf: StoreError, message: /layer .* is not in the store/ });
  t.false(fs.existsSync(s.containerDir('web')), 'nothing made for a container whose layer is gone');
  await addLayers(s, D1);
  await s.createContainer(rec, rootLike);
  await t.throwsAsync(s.createContainer(rec), { instanceOf: StoreError, message: /exists already/ });
  const st = fs.statSync(s.upperDir('web'));
  t.is(st.mode & 0o7777, 0o751, "the upper's root takes the top layer's root mode");
  t.is(st.mtimeMs, 1_600_000_000_000);
  t.true(fs.statSync(s.workDir('web')).isDirectory());
  t.deepEqual((await s.listContainers()).map((c) => c.name), ['web']);
  await s.removeContainer('web');
  t.deepEqual(await s.listContainers(), []);
  t.false(fs.existsSync(s.containerDir('web')));
  await t.throwsAsync(s.removeContainer('web'), { instanceOf: StoreError, message: /no such container: web/ });
  await t.throwsAsync(s.createContainer({ ...rec, name: '../evil' }), { instanceOf: StoreError, message: /invalid container name/ });
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
});

test('image rm: the record, and the layers no other image or container uses; by a tag of several, only the tag; refused while a container uses it', async (t) => {
  const s = await freshStore();
  const D3 = `sha256:${'3'.repeat(64)}`;
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;
  await addLayers(s, D1, D2, D3);
  await s.putImage({ id: a, repoTags: ['app:1', 'app:latest'], diffIds: [D1, D2], format: 'oci', source: '/x' });
  await s.putImage({ id: b, repoTags: ['other:1'], diffIds: [D1, D3], format: 'oci', source: '/y' });
  await s.createContainer({ name: 'web', image: b, imageName: 'other:1', layers: [D1, D3], mountpoint: '/mnt/x', created: new Date().toISOString() });

  t.deepEqual(await s.removeImage('app:1'), { untagged: 'app:1', layers: [] });
  t.deepEqual((await s.getImage(a))?.repoTags, ['app:latest']);
  t.deepEqual(await s.removeImage('app'), { removed: a, layers: [D2] }, 'D1 stays: image b and its container use it');
  t.is(await s.getImage(a), undefined);
  t.deepEqual((await s.listLayers()).sort(), [D1, D3]);
  await t.throwsAsync(s.removeImage('app'), { instanceOf: StoreError, message: /no such image: app/ });

  await t.throwsAsync(s.removeImage('other:1'), { instanceOf: StoreError, message: /used by container web: remove it first/ });
  t.truthy(await s.getImage(b));
  await s.removeContainer('web');
  t.deepEqual(await s.removeImage(b.slice(7, 19)), { removed: b, layers: [D1, D3] });
  t.deepEqual(await s.listLayers(), []);
  t.deepEqual(await s.listImages(), []);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
  // An image cannot be recorded over a layer that is gone.
  await t.throwsAsync(s.putImage({ id: a, repoTags: [], diffIds: [D1], format: 'oci', source: '/x' }), { instanceOf: StoreError, message: /is not in the store/ });
});
