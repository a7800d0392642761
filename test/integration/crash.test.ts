// SIGKILL of the server in the middle of copy-ups: after a remount every file reads as the
// lower original or as the finished change, never partial or empty, and the work dir holds no
// leftovers (they are cleared at mount).
import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { LAYERFS_BIN, layerfsCli, mountedFsType, withLayerfs } from '../helpers/mounts.js';

const space = scratch(test);

const SIZE = 64 << 20;
const FILES = 6;

function serverPid(mnt: string): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join('/run/layerfs', `${encodeURIComponent(mnt)}.json`), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

test('SIGKILL during copy-ups never leaves a partial file visible', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('crash');
  const d = (n: string) => path.join(root, n);
  for (const n of ['top', 'base', 'upper', 'work', 'mnt']) fs.mkdirSync(d(n));
  const original = Buffer.alloc(SIZE, 'o');
  for (let i = 0; i < FILES; i++) fs.writeFileSync(d(`base/f${i}`), original);
  const opts = `lowerdir=${d('top')}:${d('base')},upperdir=${d('upper')},workdir=${d('work')}`;
  const mnt = d('mnt');
  for (let round = 0; round < 4; round++) {
    t.is((await layerfsCli(['mount', '-o', opts, mnt])).code, 0);
    const pid = serverPid(mnt);
    t.truthy(pid);
    // Appending to each lower file copies it up (64 MiB each); kill the server at a moment
    // that moves each round, while some copies are under way.
    const writer = spawn('sh', ['-c', Array.from({ length: FILES }, (_, i) => `printf X >> '${path.join(mnt, `f${i}`)}' &`).join(' ') + ' wait'], { stdio: 'ignore' });
    const writerDone = new Promise((r) => writer.on('exit', r)); // listen before it can exit
    await new Promise((r) => setTimeout(r, 20 + round * 60));
    process.kill(pid!, 'SIGKILL');
    await writerDone;
    t.is((await layerfsCli(['umount', mnt])).code, 0);
    t.is(mountedFsType(mnt), undefined);
    const partial = fs.existsSync(d('work/work')) ? fs.readdirSync(d('work/work')).length : 0;
    const done = fs.readdirSync(d('upper')).length;
    t.log(`round ${round}: ${done} file(s) copied up, ${partial} copy-up(s) cut short by the kill`);
  }
  // Remounted (which clears the work dir), every file is whole: the original or original + "X"s.
  await withLayerfs({ lowers: [d('top'), d('base')], upper: d('upper'), work: d('work') }, async (m) => {
    for (let i = 0; i < FILES; i++) {
      const b = fs.readFileSync(path.join(m, `f${i}`));
      t.true(b.length >= SIZE, `f${i} is not cut short (${b.length})`);
      t.true(b.subarray(0, SIZE).equals(original), `f${i} keeps the original data`);
      t.true(b.subarray(SIZE).every((c) => c === 0x58), `f${i} has only whole appends after it`);
    }
  });
  const left = fs.existsSync(d('work/work')) ? fs.readdirSync(d('work/work')) : [];
  t.deepEqual(left, [], 'no copy-up leftovers in the work dir after a mount');
  for (let i = 0; i < FILES; i++) t.is(fs.statSync(d(`base/f${i}`)).size, SIZE, 'the lower is untouched');
});
