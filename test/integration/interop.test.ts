// Writing through a real layerfs mount, and interop with the kernel's overlayfs both ways:
// an upper written by layerfs mounts under the kernel with the same tree, and an upper written
// by the kernel mounts under layerfs with the same tree. Lowers are never touched.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { diffSnapshots, snapshot } from '../helpers/tree.js';

const space = scratch(test);

async function layers(name: string) {
  const root = await space.dir(name);
  const d = (n: string) => path.join(root, n);
  for (const n of ['top', 'base', 'upper', 'work', 'top/etc', 'base/etc', 'base/app/lib', 'base/full']) fs.mkdirSync(d(n), { recursive: true });
  fs.writeFileSync(d('base/etc/hostname'), 'base\n');
  fs.writeFileSync(d('base/etc/passwd'), 'root:x:0:0\n');
  fs.writeFileSync(d('top/etc/motd'), 'hello\n');
  fs.writeFileSync(d('base/app/lib/a.js'), 'a\n');
  fs.writeFileSync(d('base/app/run.sh'), '#!/bin/sh\n');
  fs.chmodSync(d('base/app/run.sh'), 0o755);
  fs.writeFileSync(d('base/full/one'), '1');
  fs.writeFileSync(d('base/full/two'), '2');
  const lowerSnapshot = async () => [await snapshot(d('top'), { xattrs: true, content: true }), await snapshot(d('base'), { xattrs: true, content: true })];
  return { d, lowers: [d('top'), d('base')], upper: d('upper'), work: d('work'), lowerSnapshot };
}

/** The same changes, as a user would make them in a container's root. */
function change(mnt: string): void {
  const p = (s: string) => path.join(mnt, s);
  fs.appendFileSync(p('etc/hostname'), 'changed\n'); // copy-up of a lower file
  fs.writeFileSync(p('etc/new.conf'), 'new\n');
  fs.unlinkSync(p('etc/passwd')); // whiteout
  fs.rmSync(p('full'), { recursive: true }); // whiteouts inside, then for the dir
  fs.mkdirSync(p('full')); // over a whiteout: opaque
  fs.writeFileSync(p('full/three'), '3');
  fs.chmodSync(p('app/run.sh'), 0o700);
  fs.symlinkSync('lib/a.js', p('app/link'));
  fs.renameSync(p('app/lib/a.js'), p('app/lib/b.js'));
  fs.mkdirSync(p('app/lib/sub/deeper'), { recursive: true });
  fs.linkSync(p('etc/motd'), p('etc/motd.hard'));
  const r = spawnSync('setfattr', ['-n', 'user.note', '-v', 'x', p('etc/new.conf')]);
  if (r.status !== 0) throw new Error(`setfattr: ${r.stderr}`);
}

const OPTS = { xattrs: true, content: true, dirMtime: false } as const;

test('an upper written through layerfs mounts under the kernel with the same tree', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('to-kernel');
  const lowersBefore = await l.lowerSnapshot();
  const ours = await withLayerfs({ lowers: l.lowers, upper: l.upper, work: l.work }, async (mnt) => {
    change(mnt);
    return snapshot(mnt, OPTS);
  });
  t.is(ours.nodes.get('/etc/passwd'), undefined);
  t.is(ours.nodes.get('/full/one'), undefined);
  t.truthy(ours.nodes.get('/full/three'));
  const kernel = await withKernelOverlay({ lowers: l.lowers, upper: l.upper, work: l.work }, (mnt) => snapshot(mnt, OPTS));
  t.deepEqual(diffSnapshots(kernel, ours, ['kernel', 'layerfs']), []);
  // Remounted by layerfs, the same again.
  const again = await withLayerfs({ lowers: l.lowers, upper: l.upper, work: l.work }, (mnt) => snapshot(mnt, OPTS));
  t.deepEqual(diffSnapshots(again, ours, ['remount', 'first mount']), []);
  t.deepEqual(await l.lowerSnapshot(), lowersBefore, 'the lowers are untouched');
});

test('an upper written by the kernel mounts under layerfs with the same tree', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('from-kernel');
  const kernel = await withKernelOverlay({ lowers: l.lowers, upper: l.upper, work: l.work }, async (mnt) => {
    change(mnt);
    return snapshot(mnt, OPTS);
  });
  const ours = await withLayerfs({ lowers: l.lowers, upper: l.upper, work: l.work }, (mnt) => snapshot(mnt, OPTS));
  t.deepEqual(diffSnapshots(kernel, ours, ['kernel', 'layerfs']), []);
});

test('the same changes leave the same merged tree on the kernel and on layerfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const a = await layers('same-kernel');
  const b = await layers('same-layerfs');
  const kernel = await withKernelOverlay({ lowers: a.lowers, upper: a.upper, work: a.work }, async (mnt) => {
    change(mnt);
    return snapshot(mnt, OPTS);
  });
  const ours = await withLayerfs({ lowers: b.lowers, upper: b.upper, work: b.work }, async (mnt) => {
    change(mnt);
    return snapshot(mnt, OPTS);
  });
  // Two runs made at different moments: what they wrote differs only by when.
  t.deepEqual(diffSnapshots(kernel, ours, ['kernel', 'layerfs'], 1000).filter((d) => !d.includes('mtimeMs:')), []);
});
