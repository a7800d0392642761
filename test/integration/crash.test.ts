// SIGKILL of the server in the middle of copy-ups and of directory moves: after a remount every
// file reads as the lower original or as the finished change, never partial or empty, a moved
// directory is whole under its old name or its new one (or both, D16), never half, and the work
// dir holds no leftovers (they are cleared at mount).
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

test('SIGKILL during a directory move leaves the directory whole, under one name or both', async (t) => {
  if (!requireMountCapable(t)) return;
  const root = await space.dir('crash-move');
  const d = (n: string) => path.join(root, n);
  for (const n of ['top', 'base/tree', 'upper', 'work', 'mnt']) fs.mkdirSync(d(n), { recursive: true });
  // Many entries and some big ones, so that the copy of the move takes a while.
  const FILES = 400;
  const content = (i: number) => Buffer.alloc(i % 40 === 0 ? 8 << 20 : 64, String.fromCharCode(97 + (i % 26)));
  for (let i = 0; i < FILES; i++) {
    fs.mkdirSync(d(`base/tree/s${i % 10}`), { recursive: true });
    fs.writeFileSync(d(`base/tree/s${i % 10}/f${i}`), content(i));
  }
  const opts = `lowerdir=${d('top')}:${d('base')},upperdir=${d('upper')},workdir=${d('work')}`;
  const mnt = d('mnt');
  const seen = new Set<string>();
  for (let round = 0; round < 4; round++) {
    t.is((await layerfsCli(['mount', '-o', opts, mnt])).code, 0);
    const pid = serverPid(mnt);
    t.truthy(pid);
    const from = fs.existsSync(path.join(mnt, 'tree')) ? 'tree' : 'moved';
    const to = from === 'tree' ? 'moved' : 'tree';
    const mover = spawn('mv', ['-T', path.join(mnt, from), path.join(mnt, to)], { stdio: 'ignore' });
    const moverDone = new Promise((r) => mover.on('exit', r));
    await new Promise((r) => setTimeout(r, 30 + round * 120));
    process.kill(pid!, 'SIGKILL');
    await moverDone;
    t.is((await layerfsCli(['umount', mnt])).code, 0);
    t.is(mountedFsType(mnt), undefined);
    // Remounted: each name present holds the whole tree, and at least one name does.
    await withLayerfs({ lowers: [d('top'), d('base')], upper: d('upper'), work: d('work') }, async (m) => {
      const names = ['tree', 'moved'].filter((n) => fs.existsSync(path.join(m, n)));
      seen.add(names.join('+'));
      t.true(names.length > 0, `round ${round}: the directory is gone under both names`);
      for (const n of names) {
        for (let i = 0; i < FILES; i++) {
          const f = path.join(m, n, `s${i % 10}`, `f${i}`);
          t.true(fs.existsSync(f) && fs.readFileSync(f).equals(content(i)), `round ${round}: ${n}/s${i % 10}/f${i} is whole`);
        }
        t.is(fs.readdirSync(path.join(m, n)).length, 10);
      }
    });
    t.deepEqual(fs.existsSync(d('work/work')) ? fs.readdirSync(d('work/work')) : [], [], 'no leftovers after a mount');
  }
  t.log(`states seen after the kills: ${[...seen].join(', ')}`);
});
