// Reading through a union leaves its lower layers as they are. The kernel's overlayfs opens what
// it reads in a layer (a file, a directory it lists, the source of a copy-up) with O_NOATIME, so
// no read, listing, lookup or copy-up moves a lower entry's atime. layerfs did, in every one of
// those (D40): layers shared by many containers were written to by reads.
//
// Symlinks are left out: Linux updates a link's atime at every readlink(2) and has no way to
// read one without, while the kernel's overlayfs reads it inside the kernel (README, "Where
// layerfs differs").
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { buildLayers, type Entry, type LayerSpec } from '../helpers/layers.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

const OLD = new Date('2020-01-01T00:00:00Z');
/** Larger than what layerfs copies on its own thread (SMALL_WRITE, 128 KiB): the pool's copy. */
const BIG = 300 * 1024;

const f = (p: string, content = `${p}\n`, size?: number): Entry => ({ type: 'file', path: p, mode: 0o644, content, ...(size === undefined ? {} : { size }) });
const d = (p: string): Entry => ({ type: 'dir', path: p, mode: 0o755 });

const LAYERS: LayerSpec[] = [
  { entries: [d('a'), f('a/top'), d('list'), f('list/top-0'), f('list/top-1')] },
  {
    entries: [
      d('a'), f('a/small'), f('a/big', 'big\n', BIG), d('a/deep'), d('a/deep/x'), f('a/deep/x/file'),
      d('list'), ...Array.from({ length: 20 }, (_, i) => f(`list/low-${i}`)),
      f('cp-small'), f('cp-big', 'big\n', BIG), f('chmod-me'), d('walk'), d('walk/in'), f('walk/in/file'),
    ],
  },
];

/** What a container does that only reads its image, and (writable) what copies files up. */
function work(mnt: string, writable: boolean): void {
  const sh = (cmd: string): void => {
    const r = spawnSync('sh', ['-ec', cmd], { cwd: mnt, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  };
  sh('cat a/small a/big a/top > /dev/null');
  sh('ls -la list > /dev/null');
  sh('stat a/deep/x/file > /dev/null');
  sh('find walk > /dev/null');
  if (writable) {
    sh('echo more >> cp-small');
    sh('echo more >> cp-big');
    sh('chmod 600 chmod-me');
  }
}

/**
 * Every entry of the layers, with its atime (ns): stat'ed by the names the spec gives, since
 * listing a directory would move the very atime looked at.
 */
function atimes(dirs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  dirs.forEach((root, i) => {
    for (const rel of ['', ...(LAYERS[i]?.entries ?? []).map((e) => e.path)]) {
      out[`${path.basename(root)}/${rel}`] = fs.lstatSync(path.join(root, rel), { bigint: true }).atimeNs.toString();
    }
  });
  return out;
}

/** Layers whose every entry has an atime a read would move (relatime: older than a day). */
async function built(name: string): Promise<string[]> {
  const b = await buildLayers(await space.dir(name), LAYERS, { format: 'kernel' });
  b.dirs.forEach((root, i) => {
    for (const rel of ['', ...(LAYERS[i]?.entries ?? []).map((e) => e.path)]) {
      const p = path.join(root, rel);
      fs.utimesSync(p, OLD, fs.statSync(p).mtime);
    }
  });
  return b.dirs;
}

test('the scratch filesystem updates atimes on reads (else the tests below prove nothing)', async (t) => {
  const root = await space.dir('control');
  const file = path.join(root, 'file');
  fs.writeFileSync(file, 'x');
  fs.utimesSync(file, OLD, fs.statSync(file).mtime);
  fs.readFileSync(file);
  t.true(fs.statSync(file).atimeMs > OLD.getTime());
});

for (const engine of ['kernel', 'libfuse'] as const) {
  test(`writable union (${engine} engine): reads, listings, lookups and copy-ups leave lower atimes as the kernel overlayfs does`, async (t) => {
    if (!requireMountCapable(t)) return;
    const k = await built(`k-${engine}`);
    const kBefore = atimes(k);
    const ku = await space.dir(`ku-${engine}`);
    const kw = await space.dir(`kw-${engine}`);
    await withKernelOverlay({ lowers: k, upper: ku, work: kw }, async (mnt) => work(mnt, true));
    t.deepEqual(atimes(k), kBefore, 'the kernel overlayfs');

    const l = await built(`l-${engine}`);
    const lBefore = atimes(l);
    const lu = await space.dir(`lu-${engine}`);
    const lw = await space.dir(`lw-${engine}`);
    await withLayerfs({ lowers: l, upper: lu, work: lw, options: [`engine=${engine}`] }, async (mnt) => work(mnt, true));
    t.deepEqual(atimes(l), lBefore);
    // The copies were made (the copy-up ran through the paths under test).
    t.is(fs.statSync(path.join(lu, 'cp-big')).size, BIG + 5);
    t.is(fs.readFileSync(path.join(lu, 'cp-small'), 'utf8'), 'cp-small\nmore\n');
  });

  test(`read-only union (${engine} engine): reads by path leave lower atimes as they are`, async (t) => {
    if (!requireMountCapable(t)) return;
    const l = await built(`ro-${engine}`);
    const before = atimes(l);
    await withLayerfs({ lowers: l, options: [`engine=${engine}`] }, async (mnt) => work(mnt, false));
    t.deepEqual(atimes(l), before);
  });
}
