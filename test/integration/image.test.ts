// `layerfs image mount` and the container commands through real mounts: images built here in
// both layouts (docker save, OCI layout as a directory and as a tar, gzip and zstd layers) are
// mounted and checked file by file against their layers flattened one after another with
// `apply --flatten`; a corrupted layer is refused before anything is mounted or stored; two
// concurrent mounts of an image unpack each layer once; an unpack killed midway is never used;
// `container rm` unmounts and deletes; `container commit` gives a layer that, flattened onto the
// image, is the merged view.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer } from '../../src/layer/apply.js';
import { acquireLock } from '../../src/image/lock.js';
import { Store } from '../../src/image/store.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import {
  DEFAULT_MTIME, layerTar, sampleLayers, writeDockerSave, writeDockerSaveOf, writeOciDir, writeOciTar, type BuiltImage, type ImageOptions, type LayerSpec,
} from '../helpers/images.js';
import { LAYERFS_BIN, layerfsCli, mountedFsType, type CliResult } from '../helpers/mounts.js';
import { diffSnapshots, snapshot, type Snapshot } from '../helpers/tree.js';

const space = scratch(test);

/** Every mountpoint a test used: whatever happened, nothing stays mounted. */
const mountpoints = new Set<string>();
test.after.always('unmount everything', async () => {
  for (const m of mountpoints) {
    if (mountedFsType(m) === undefined) continue;
    await layerfsCli(['umount', m]).catch(() => undefined);
    if (mountedFsType(m) !== undefined) spawnSync('umount', ['-l', m]);
  }
});

interface Env {
  home: string;
  dir: string;
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  mnt(name: string): string;
}

async function env(name: string): Promise<Env> {
  const dir = await space.dir(name);
  const home = path.join(dir, 'home');
  const vars = { ...process.env, LAYERFS_HOME: home };
  return {
    home,
    dir,
    cli: (args, timeoutMs = 120_000) => layerfsCli(args, { env: vars, timeoutMs }),
    mnt(n) {
      const m = path.join(dir, n);
      fs.mkdirSync(m, { recursive: true });
      mountpoints.add(m);
      return m;
    },
  };
}

/** The image's layers applied with --flatten, bottom first, into a fresh directory. */
async function flatten(dir: string, tars: readonly Buffer[]): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  for (const t of tars) await applyLayer(Readable.from([t]), dir, { whiteout: 'flatten' });
  return dir;
}

async function snap(root: string): Promise<Snapshot> {
  const s = await snapshot(root, { xattrs: true, content: true });
  // The root's attributes are the container layer's own (a mount shows its upper's root).
  s.nodes.delete('/');
  return s;
}

async function sameTree(t: ExecutionContext, mounted: string, reference: string): Promise<void> {
  const [a, b] = [await snap(mounted), await snap(reference)];
  t.true(a.nodes.size > 5, 'the mount shows the image');
  t.deepEqual(diffSnapshots(a, b, ['mount', 'flattened']), []);
}

function layersIn(home: string): string[] {
  try {
    return fs.readdirSync(path.join(home, 'layers', 'sha256')).sort();
  } catch {
    return [];
  }
}

const entriesIn = (d: string): string[] => (fs.existsSync(d) ? fs.readdirSync(d) : []);

async function mountImage(t: ExecutionContext, e: Env, image: string, mnt: string, extra: string[] = []): Promise<string> {
  const r = await e.cli(['image', 'mount', ...extra, image, mnt]);
  t.is(r.code, 0, `image mount failed: ${r.stderr}`);
  t.is(mountedFsType(mnt), 'fuse.layerfs');
  const name = r.stdout.trim();
  t.regex(name, /^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'image mount prints the container name');
  return name;
}

/** A fresh environment with the sample image saved as img.tar, and a mountpoint for it. */
async function sampleImage(label: string): Promise<{ e: Env; image: string; mnt: string }> {
  const e = await env(label);
  const image = path.join(e.dir, 'img.tar');
  await writeDockerSave(image, base);
  return { e, image, mnt: e.mnt('mnt') };
}

/** The sample image mounted as container `cname`, with one file written through the mount. */
async function containerWithChange(t: ExecutionContext, label: string, cname: string): Promise<{ e: Env; image: string; mnt: string; name: string }> {
  const { e, image, mnt } = await sampleImage(label);
  const name = await mountImage(t, e, image, mnt, ['--name', cname]);
  fs.writeFileSync(path.join(mnt, 'written'), 'by the container');
  return { e, image, mnt, name };
}

async function rm(t: ExecutionContext, e: Env, name: string, mnt: string): Promise<void> {
  const r = await e.cli(['container', 'rm', name]);
  t.is(r.code, 0, r.stderr);
  t.is(mountedFsType(mnt), undefined);
}

const base: ImageOptions = { layers: sampleLayers(), tags: ['example/app:1.0'] };

const layouts: [string, (e: Env) => Promise<{ image: string; built: BuiltImage }>][] = [
  ['docker save (Docker 25+)', async (e) => {
    const image = path.join(e.dir, 'img.tar');
    return { image, built: await writeDockerSave(image, base) };
  }],
  ['docker save (older, <id>/layer.tar)', async (e) => {
    const image = path.join(e.dir, 'img.tar');
    return { image, built: await writeDockerSave(image, base, 'legacy') };
  }],
  ['OCI layout directory, gzip layers', async (e) => {
    const image = path.join(e.dir, 'oci');
    return { image, built: (await writeOciDir(image, [{ ...base, gzip: true }]))[0]! };
  }],
  ['OCI layout tar, mixed gzip and plain layers', async (e) => {
    const image = path.join(e.dir, 'oci.tar');
    return { image, built: (await writeOciTar(image, [{ ...base, gzip: [1] }]))[0]! };
  }],
  ['OCI layout tar, mixed zstd and gzip layers', async (e) => {
    const image = path.join(e.dir, 'oci-zstd.tar');
    return { image, built: (await writeOciTar(image, [{ ...base, zstd: [0, 2], gzip: [1] }]))[0]! };
  }],
];

for (const [label, make] of layouts) {
  test.serial(`${label}: the mounted tree is the layers flattened one after another`, async (t) => {
    if (!requireMountCapable(t)) return;
    const e = await env(label);
    const { image, built } = await make(e);
    const mnt = e.mnt('mnt');
    const name = await mountImage(t, e, image, mnt, ['--name', 'web']);
    t.is(name, 'web');
    try {
      const ref = await flatten(path.join(e.dir, 'flat'), built.layers.map((l) => l.tar));
      await sameTree(t, mnt, ref);
      // Spot checks a reader of the listing above would look for.
      t.is(fs.readFileSync(path.join(mnt, 'usr/bin/tool'), 'utf8'), 'version two of the tool');
      t.false(fs.existsSync(path.join(mnt, 'usr/bin/old')));
      t.deepEqual(fs.readdirSync(path.join(mnt, 'var/cache')), ['fresh']);
      t.deepEqual(fs.readdirSync(path.join(mnt, 'gone')), ['back']);
      t.is(fs.readlinkSync(path.join(mnt, 'usr/bin/t')), '/usr/bin/tool');

      t.deepEqual(layersIn(e.home), built.layers.map((l) => l.diffId.slice(7)).sort());
      const ls = await e.cli(['image', 'ls']);
      t.is(ls.code, 0);
      t.deepEqual(ls.stdout.trim().split('\n').map((l) => l.split('\t').slice(0, 3)), [
        ['IMAGE ID', 'TAGS', 'LAYERS'],
        [built.configDigest.slice(7, 19), 'example/app:1.0', '3'],
      ]);
      const cls = await e.cli(['container', 'ls']);
      t.deepEqual(cls.stdout.trim().split('\n'), ['NAME\tIMAGE\tMOUNTPOINT\tMOUNTED', `web\texample/app:1.0\t${mnt}\tyes`]);
    } finally {
      await rm(t, e, name, mnt);
    }
  });
}

test.serial('an image in the store mounts by its tag, without its file; an unknown name is refused', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('by-tag');
  const image = path.join(e.dir, 'img.tar');
  const built = await writeDockerSave(image, base);
  const m1 = e.mnt('m1');
  const first = await mountImage(t, e, image, m1);
  await rm(t, e, first, m1);
  fs.rmSync(image);
  const m2 = e.mnt('m2');
  const second = await mountImage(t, e, 'example/app:1.0', m2);
  try {
    await sameTree(t, m2, await flatten(path.join(e.dir, 'flat'), built.layers.map((l) => l.tar)));
  } finally {
    await rm(t, e, second, m2);
  }
  const r = await e.cli(['image', 'mount', 'example/other:2', e.mnt('m3')]);
  t.is(r.code, 1);
  t.regex(r.stderr, /example\/other:2: no such file, and no image of that name/);
});

for (const [label, make] of [
  ['docker save', (p: string) => writeDockerSave(p, { ...base, corruptBlob: 1 }, 'legacy')],
  ['OCI layout', (p: string) => writeOciTar(p, [{ ...base, gzip: true, corruptBlob: 1 }])],
  ['OCI layout with a wrong diff_id', (p: string) => writeOciTar(p, [{ ...base, wrongDiffId: 2 }])],
] as const) {
  test.serial(`${label}: a layer that does not match its digest is refused before anything is mounted or stored`, async (t) => {
    if (!requireMountCapable(t)) return;
    const e = await env(`corrupt ${label}`);
    const image = path.join(e.dir, 'bad.tar');
    await make(image);
    const mnt = e.mnt('mnt');
    const r = await e.cli(['image', 'mount', image, mnt]);
    t.is(r.code, 1);
    t.regex(r.stderr, /^layerfs: .*bad\.tar: layer [23] of 3 \(.*\): .*does not match/);
    t.is(r.stdout, '');
    t.is(mountedFsType(mnt), undefined);
    t.deepEqual(layersIn(e.home), [], 'no layer in the store, not even the good ones');
    t.deepEqual(entriesIn(path.join(e.home, 'containers')), []);
    t.deepEqual(entriesIn(path.join(e.home, 'images')), []);
    t.deepEqual(entriesIn(path.join(e.home, 'tmp')), []);
  });
}

/** Spawn the CLI, collecting its output as it comes. */
function start(e: Env, args: string[]): { child: ChildProcess; out: () => string; err: () => string; done: Promise<number | null> } {
  const child = spawn(process.execPath, [LAYERFS_BIN, ...args], { env: { ...process.env, LAYERFS_HOME: e.home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, done };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test.serial('two concurrent mounts of one image unpack each layer once', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('concurrent');
  const image = path.join(e.dir, 'img.tar');
  const built = await writeDockerSave(image, base);
  // Hold the lock of the layer both will lock first, so that both are waiting on it at once.
  const store = await Store.open(e.home);
  const first = built.layers.map((l) => l.diffId.slice(7)).sort()[0]!;
  const held = await acquireLock(store.lockPath(`layer-${first}`));
  const [m1, m2] = [e.mnt('m1'), e.mnt('m2')];
  const a = start(e, ['image', 'mount', '--name', 'a', image, m1]);
  const b = start(e, ['image', 'mount', '--name', 'b', image, m2]);
  try {
    await until(() => a.err().includes('waiting:') && b.err().includes('waiting:'), 60_000, 'both mounts to wait for the layer lock');
    t.deepEqual(layersIn(e.home), []);
  } finally {
    held.release();
  }
  const codes = await Promise.all([a.done, b.done]);
  t.deepEqual(codes, [0, 0], `a: ${a.err()} b: ${b.err()}`);
  t.deepEqual([a.out().trim(), b.out().trim()], ['a', 'b']);
  const unpacked = (a.err() + b.err()).split('\n').filter((l) => l.startsWith('unpacked layer'));
  t.is(unpacked.length, 3, `each layer unpacked once: ${unpacked.join('; ')}`);
  t.deepEqual(layersIn(e.home), built.layers.map((l) => l.diffId.slice(7)).sort());
  try {
    const ref = await flatten(path.join(e.dir, 'flat'), built.layers.map((l) => l.tar));
    await sameTree(t, m1, ref);
    await sameTree(t, m2, ref);
  } finally {
    await rm(t, e, 'a', m1);
    await rm(t, e, 'b', m2);
  }
});

test.serial('an unpack killed midway leaves no layer; the next mount unpacks it whole and removes the leftover', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('killed');
  const many: LayerSpec = [{ type: 'dir', path: 'many' }];
  for (let i = 0; i < 20_000; i++) many.push({ type: 'file', path: `many/f${i}`, content: `file ${i}\n` });
  const image = path.join(e.dir, 'big.tar');
  const built = await writeDockerSave(image, { layers: [sampleLayers()[0]!, many], tags: ['big:1'] });
  const bigHex = built.layers[1]!.diffId.slice(7);
  const mnt = e.mnt('mnt');
  const p = start(e, ['image', 'mount', image, mnt]);
  const tmp = path.join(e.home, 'tmp');
  // Kill it once the big layer is partly written in its tmp dir.
  await until(() => entriesIn(tmp).some((d) => entriesIn(path.join(tmp, d, 'diff', 'many')).length > 100), 120_000, 'the unpack to start');
  p.child.kill('SIGKILL');
  await p.done;
  t.false(layersIn(e.home).includes(bigHex), 'the killed unpack must not have produced the layer');
  t.is(entriesIn(tmp).length, 1, 'its partial work stays in tmp/');
  t.is(mountedFsType(mnt), undefined);

  const name = await mountImage(t, e, image, mnt);
  try {
    t.true(layersIn(e.home).includes(bigHex));
    t.deepEqual(entriesIn(tmp), [], 'the leftover was removed');
    t.is(fs.readdirSync(path.join(mnt, 'many')).length, 20_000);
    t.is(fs.readFileSync(path.join(mnt, 'many', 'f19999'), 'utf8'), 'file 19999\n');
  } finally {
    await rm(t, e, name, mnt);
  }
});

test.serial('container rm unmounts and deletes the writable layer; an unknown name is refused', async (t) => {
  if (!requireMountCapable(t)) return;
  const { e, image, mnt, name } = await containerWithChange(t, 'rm', 'scratchpad');
  const upper = path.join(e.home, 'containers', 'scratchpad', 'upper');
  t.is(fs.readFileSync(path.join(upper, 'written'), 'utf8'), 'by the container');
  const dup = await e.cli(['image', 'mount', '--name', 'scratchpad', image, e.mnt('other')]);
  t.is(dup.code, 1);
  t.regex(dup.stderr, /a container named scratchpad exists already/);

  await rm(t, e, name, mnt);
  t.false(fs.existsSync(path.join(e.home, 'containers', 'scratchpad')));
  t.is((await e.cli(['container', 'ls'])).stdout, 'NAME\tIMAGE\tMOUNTPOINT\tMOUNTED\n');
  t.is(layersIn(e.home).length, 3, 'the image layers stay');
  const again = await e.cli(['container', 'rm', 'scratchpad']);
  t.is(again.code, 1);
  t.is(again.stderr, 'layerfs: no such container: scratchpad\n');
  // A container unmounted by hand is removed too.
  const name2 = await mountImage(t, e, image, mnt);
  t.is((await e.cli(['umount', mnt])).code, 0);
  t.regex((await e.cli(['container', 'ls'])).stdout, new RegExp(`${name2}\\t.*\\tno\\n`));
  await rm(t, e, name2, mnt);
});

test.serial('container mount: an unmounted container comes back with its changes and options, where it was or elsewhere, and not while it is mounted', async (t) => {
  if (!requireMountCapable(t)) return;
  const { e, image, mnt, name } = await containerWithChange(t, 'remount', 'keeper');
  const before = await snap(mnt);
  t.true(before.nodes.size > 5, 'the mount shows the image');
  const busy = await e.cli(['container', 'mount', name]);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /container keeper is mounted already, at /);
  t.is((await e.cli(['umount', mnt])).code, 0);
  t.is(mountedFsType(mnt), undefined);

  // Where it was last mounted, by default: the same tree, the change included.
  t.is((await e.cli(['container', 'mount', name])).code, 0);
  t.is(mountedFsType(mnt), 'fuse.layerfs');
  t.deepEqual(diffSnapshots(await snap(mnt), before, ['remounted', 'before']), []);
  t.regex((await e.cli(['container', 'ls'])).stdout, new RegExp(`keeper\\t.*\\t${mnt}\\tyes\\n`));
  t.is((await e.cli(['umount', mnt])).code, 0);

  // Elsewhere, with an option of its own; the record follows, so rm unmounts it there.
  const other = e.mnt('other');
  t.is((await e.cli(['container', 'mount', '-o', 'ro', name, other])).code, 0);
  t.is(fs.readFileSync(path.join(other, 'written'), 'utf8'), 'by the container');
  t.throws(() => fs.writeFileSync(path.join(other, 'more'), 'x'), { code: 'EROFS' });
  t.deepEqual(diffSnapshots(await snap(other), before, ['moved', 'before']), []);
  // The options are kept with the container, as the mountpoint is, until -o gives others.
  t.is((await e.cli(['umount', other])).code, 0);
  t.is((await e.cli(['container', 'mount', name])).code, 0);
  t.throws(() => fs.writeFileSync(path.join(other, 'more'), 'x'), { code: 'EROFS' }, 'still read-only');
  t.is((await e.cli(['umount', other])).code, 0);
  t.is((await e.cli(['container', 'mount', '-o', 'rw', name])).code, 0);
  fs.writeFileSync(path.join(other, 'more'), 'x');
  // The store's own options are refused: they would put other layers under the container.
  for (const o of ['upperdir=/tmp', 'lowerdir=/tmp', 'noexec,workdir=/tmp']) {
    const r = await e.cli(['image', 'mount', '-o', o, image, e.mnt('refused')]);
    t.is(r.code, 2, o);
    t.regex(r.stderr, /^layerfs: -o (upper|lower|work)dir= is the store's/, o);
  }
  t.is(mountedFsType(path.join(e.dir, 'refused')), undefined);
  t.regex((await e.cli(['container', 'ls'])).stdout, /^NAME\tIMAGE\tMOUNTPOINT\tMOUNTED\nkeeper\t[^\n]*\n$/, 'no container made');
  await rm(t, e, name, other);
  t.is(mountedFsType(other), undefined);
  const gone = await e.cli(['container', 'mount', name]);
  t.is(gone.code, 1);
  t.is(gone.stderr, 'layerfs: no such container: keeper\n');
});

test.serial('image mount --image: of two images in one docker save, the one named is mounted', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('two');
  const both = path.join(e.dir, 'both.tar');
  const layers = sampleLayers();
  await writeDockerSaveOf(both, [{ layers: [layers[0]!], tags: ['example/web:2'] }, { layers: layers.slice(0, 2), tags: ['example/db:1'] }]);
  const mnt = e.mnt('db');
  const ambiguous = await e.cli(['image', 'mount', both, mnt]);
  t.is(ambiguous.code, 1);
  t.regex(ambiguous.stderr, /holds 2 images: example\/web:2 .*example\/db:1 .*choose one with --image NAME/);
  t.is(mountedFsType(mnt), undefined);
  const name = await mountImage(t, e, both, mnt, ['--image', 'example/db:1']);
  t.regex(name, /^db-[0-9a-f]{6}$/, 'named after the image chosen');
  await sameTree(t, mnt, await flatten(path.join(e.dir, 'db-flat'), [await layerTar(layers[0]!), await layerTar(layers[1]!)]));
  t.regex((await e.cli(['image', 'ls'])).stdout, /\texample\/db:1\t2\t/);
  const stored = await e.cli(['image', 'mount', '--image', 'example/web:2', 'example/db:1', e.mnt('x')]);
  t.is(stored.code, 2);
  t.regex(stored.stderr, /--image chooses among the images of an archive/);
  await rm(t, e, name, mnt);
});

test.serial('image load: every image of the archive goes into the store, and each mounts by its tag', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('load');
  const both = path.join(e.dir, 'both.tar');
  const layers = sampleLayers();
  const [web, db] = (await writeDockerSaveOf(both, [{ layers: [layers[0]!], tags: ['example/web:2'] }, { layers: layers.slice(0, 2), tags: ['example/db:1'] }])) as [string, string];
  const r = await e.cli(['image', 'load', both]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n').sort(), [`loaded ${db.slice(7, 19)} example/db:1`, `loaded ${web.slice(7, 19)} example/web:2`]);
  t.deepEqual(layersIn(e.home).length, 2, 'the layer both images have is stored once');
  t.is(entriesIn(path.join(e.home, 'containers')).length, 0, 'nothing mounted, no container');
  const mnt = e.mnt('web');
  const name = await mountImage(t, e, 'example/web:2', mnt);
  await sameTree(t, mnt, await flatten(path.join(e.dir, 'web-flat'), [await layerTar(layers[0]!)]));
  await rm(t, e, name, mnt);
  const again = await e.cli(['image', 'load', both]);
  t.is(again.code, 0, 'loading again is no error');
  const missing = await e.cli(['image', 'load', path.join(e.dir, 'nothing.tar')]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /nothing\.tar: no such file/);
});

test.serial('image rm: refused while a container uses the image; then the image and its layers go', async (t) => {
  if (!requireMountCapable(t)) return;
  const { e, image, mnt } = await sampleImage('image-rm');
  const name = await mountImage(t, e, image, mnt);
  t.is(layersIn(e.home).length, 3);
  const busy = await e.cli(['image', 'rm', 'example/app:1.0']);
  t.is(busy.code, 1);
  t.regex(busy.stderr, new RegExp(`used by container ${name}: remove it first`));
  t.is(mountedFsType(mnt), 'fuse.layerfs', 'the mount is left alone');
  await rm(t, e, name, mnt);
  const r = await e.cli(['image', 'rm', 'example/app:1.0']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.regex(lines[0]!, /^deleted image sha256:[0-9a-f]{64}$/);
  t.is(lines.filter((l) => /^deleted layer sha256:[0-9a-f]{64}$/.test(l)).length, 3);
  t.deepEqual(layersIn(e.home), []);
  t.is((await e.cli(['image', 'ls'])).stdout, 'IMAGE ID\tTAGS\tLAYERS\tPLATFORM\tADDED\n');
  // The image file mounts again: its layers are unpacked anew.
  const again = await mountImage(t, e, image, mnt);
  t.is(layersIn(e.home).length, 3);
  await rm(t, e, again, mnt);
});

test.serial('container commit: the layer, flattened onto the flattened image, is the merged view', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('commit');
  const image = path.join(e.dir, 'img.tar');
  const built = await writeDockerSave(image, base);
  const mnt = e.mnt('mnt');
  const name = await mountImage(t, e, image, mnt);
  try {
    const at = (p: string): string => path.join(mnt, p);
    await fsp.appendFile(at('etc/passwd'), 'user:x:1000:1000::/home/user:/bin/sh\n');
    await fsp.rm(at('etc/hostname'));
    await fsp.rm(at('var'), { recursive: true });
    await fsp.mkdir(at('var/log'), { recursive: true });
    await fsp.writeFile(at('var/log/new.log'), 'started\n');
    await fsp.rename(at('usr/bin/tool'), at('usr/bin/tool2'));
    await fsp.chmod(at('usr/bin/tool2'), 0o711);
    await fsp.symlink('tool2', at('usr/bin/tool'));
    await fsp.mkdir(at('home/user/.config'), { recursive: true, mode: 0o700 });
    await fsp.writeFile(at('home/user/.config/settings'), Buffer.alloc(70_000, 7));
    await fsp.truncate(at('gone/back'), 4);
    await fsp.rm(at('opt/file-then-dir'), { recursive: true });
    await fsp.writeFile(at('opt/file-then-dir'), 'a file again');
    await fsp.rmdir(at('new')).catch(async () => {
      await fsp.rm(at('new/setuid'));
      await fsp.rmdir(at('new'));
    });
    spawnSync('mkfifo', [at('fifo')]);
    await fsp.utimes(at('etc/passwd'), new Date(DEFAULT_MTIME + 123_000), new Date(DEFAULT_MTIME + 456_000));

    const out = path.join(e.dir, 'change.tar.gz');
    const c = await e.cli(['container', 'commit', name, '-o', out]);
    t.is(c.code, 0, c.stderr);
    t.regex(c.stdout, /^diff_id sha256:[0-9a-f]{64}\ndigest sha256:[0-9a-f]{64}\n$/);
    const ref = await flatten(path.join(e.dir, 'flat'), [...built.layers.map((l) => l.tar), fs.readFileSync(out)]);
    await sameTree(t, mnt, ref);
    t.is(fs.readlinkSync(path.join(ref, 'usr/bin/tool')), 'tool2');
    t.false(fs.existsSync(path.join(ref, 'var/cache')));

    // --reproducible takes its time from SOURCE_DATE_EPOCH, as `layerfs commit` does.
    const repro = async (epoch: string): Promise<string> => {
      const f = path.join(e.dir, `repro-${epoch}.tar`);
      const r = await layerfsCli(['container', 'commit', name, '-o', f, '--reproducible'], { env: { ...process.env, LAYERFS_HOME: e.home, SOURCE_DATE_EPOCH: epoch } });
      t.is(r.code, 0, r.stderr);
      const listing = spawnSync('tar', ['-tvf', f, '--full-time'], { env: { ...process.env, TZ: 'UTC' } }).stdout.toString();
      const stamps = new Set(listing.split('\n').filter((l) => l !== '').map((l) => l.split(/\s+/).slice(3, 5).join(' ')));
      t.deepEqual([...stamps], [new Date(Number(epoch) * 1000).toISOString().replace('T', ' ').replace('.000Z', '')]);
      return r.stdout;
    };
    const first = await repro('1700000000');
    t.is(await repro('1700000000'), first, 'the same changes give the same diff_id');
    t.not(await repro('1600000000'), first);

    const unknown = await e.cli(['container', 'commit', 'nope', '-o', out]);
    t.is(unknown.code, 1);
    t.regex(unknown.stderr, /no such container: nope/);
  } finally {
    await rm(t, e, name, mnt);
  }
});

test.serial('image mount refuses a bad mountpoint before reading the image', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('bad-mountpoint');
  const image = path.join(e.dir, 'img.tar');
  await writeDockerSave(image, { layers: [[{ type: 'file', path: 'only', content: 'one' }]] });
  const r = await e.cli(['image', 'mount', image, path.join(e.dir, 'missing')]);
  t.is(r.code, 1);
  t.regex(r.stderr, /mountpoint .*missing: no such directory/);
  t.deepEqual(layersIn(e.home), []);
  const u = await e.cli(['image', 'mount', image]);
  t.is(u.code, 2);
  t.regex(u.stderr, /image mount takes IMAGE and MOUNTPOINT/);
});

test.serial('a layer that apply refuses (an entry leaving the layer) is not stored, and nothing is mounted', async (t) => {
  if (!requireMountCapable(t)) return;
  const e = await env('hostile');
  const image = path.join(e.dir, 'img.tar');
  const built = await writeDockerSave(image, { layers: [sampleLayers()[0]!, [{ type: 'file', path: '../escaped', content: 'x' }]] });
  const mnt = e.mnt('mnt');
  const r = await e.cli(['image', 'mount', image, mnt]);
  t.is(r.code, 1);
  t.regex(r.stderr, /img\.tar: layer 2 of 2 \(.*\): layer entry "\.\.\/?[a-z]*": .*"\.\."/);
  t.false(layersIn(e.home).includes(built.layers[1]!.diffId.slice(7)));
  t.false(fs.existsSync(path.join(e.home, 'layers', 'sha256', 'escaped')));
  t.false(fs.existsSync(path.join(e.home, 'tmp', 'escaped')));
  t.deepEqual(entriesIn(path.join(e.home, 'tmp')), []);
  t.deepEqual(entriesIn(path.join(e.home, 'containers')), []);
  t.is(mountedFsType(mnt), undefined);
});

test.serial('a mount that fails after the layers are in place leaves no container behind', async (t) => {
  if (!requireMountCapable(t)) return;
  const { e, image, mnt } = await sampleImage('mount-fails');
  const r = await e.cli(['image', 'mount', '-o', 'no_such_option', '--name', 'x', image, mnt]);
  t.is(r.code, 1);
  t.regex(r.stderr, /unknown option: no_such_option/);
  t.is(mountedFsType(mnt), undefined);
  t.deepEqual(entriesIn(path.join(e.home, 'containers')), []);
  t.is(layersIn(e.home).length, 3, 'the verified layers stay for the next mount');
});
