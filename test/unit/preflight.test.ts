// src/preflight.ts: path checks made before mounting, on real directories.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../../src/config.js';
import { checkPaths, mountPoints } from '../../src/preflight.js';
import { makeScratch } from './fixture.js';

const s = await makeScratch('preflight');
test.after.always(s.cleanup);

type Input = Parameters<typeof checkPaths>[0];

/** A fresh set of directories: lower a and b, upper, work, mountpoint mnt, and a file. */
function setup(): { base: string; a: string; b: string; upper: string; work: string; mnt: string; file: string } {
  const base = s.dir('pf');
  const d = (n: string): string => {
    const p = path.join(base, n);
    fs.mkdirSync(p);
    return p;
  };
  const file = path.join(base, 'file');
  fs.writeFileSync(file, 'x');
  return { base, a: d('a'), b: d('b'), upper: d('upper'), work: d('work'), mnt: d('mnt'), file };
}

function fails(t: ExecutionContext, input: Input, message: string): void {
  const e = t.throws(() => checkPaths(input), { instanceOf: ConfigError });
  t.is(e?.message, message);
}

test('valid directories come back as real paths', (t) => {
  const d = setup();
  const link = path.join(d.base, 'link-to-a');
  fs.symlinkSync(d.a, link);
  const r = checkPaths({ lowers: [link, d.b], upper: d.upper, work: d.work, mountpoint: d.mnt });
  t.deepEqual(r, { lowers: [fs.realpathSync(d.a), fs.realpathSync(d.b)], upper: fs.realpathSync(d.upper), work: fs.realpathSync(d.work), mountpoint: fs.realpathSync(d.mnt) });
  const ro = checkPaths({ lowers: [`${d.a}/`], mountpoint: d.mnt });
  t.deepEqual(ro, { lowers: [fs.realpathSync(d.a)], mountpoint: fs.realpathSync(d.mnt) });
});

test('a missing branch or mountpoint is named', (t) => {
  const d = setup();
  const gone = path.join(d.base, 'gone');
  fails(t, { lowers: [d.a, gone], mountpoint: d.mnt }, `lowerdir ${gone}: no such directory`);
  fails(t, { lowers: [d.a], upper: gone, work: d.work, mountpoint: d.mnt }, `upperdir ${gone}: no such directory`);
  fails(t, { lowers: [d.a], upper: d.upper, work: gone, mountpoint: d.mnt }, `workdir ${gone}: no such directory`);
  fails(t, { lowers: [d.a], mountpoint: gone }, `mountpoint ${gone}: no such directory`);
  const dangling = path.join(d.base, 'dangling');
  fs.symlinkSync(gone, dangling);
  fails(t, { lowers: [dangling], mountpoint: d.mnt }, `lowerdir ${dangling}: no such directory`);
});

test('a file where a directory is needed is named', (t) => {
  const d = setup();
  fails(t, { lowers: [d.file], mountpoint: d.mnt }, `lowerdir ${d.file}: not a directory`);
  fails(t, { lowers: [d.a], upper: d.file, work: d.work, mountpoint: d.mnt }, `upperdir ${d.file}: not a directory`);
  fails(t, { lowers: [d.a], mountpoint: d.file }, `mountpoint ${d.file}: not a directory`);
  // A path through a file is refused as well (realpath reports ENOTDIR).
  const e = t.throws(() => checkPaths({ lowers: [`${d.file}/sub`], mountpoint: d.mnt }), { instanceOf: ConfigError });
  t.true(e?.message.startsWith(`lowerdir ${d.file}/sub: `) ?? false, e?.message);
});

test('the same directory twice is refused, also through a symlink', (t) => {
  const d = setup();
  fails(t, { lowers: [d.a, d.b, d.a], mountpoint: d.mnt }, `lowerdir ${d.a}: the same directory as lowerdir ${d.a}`);
  const link = path.join(d.base, 'alias');
  fs.symlinkSync(d.b, link);
  fails(t, { lowers: [d.b, link], mountpoint: d.mnt }, `lowerdir ${link}: the same directory as lowerdir ${d.b}`);
  fails(t, { lowers: [d.a], upper: d.a, work: d.work, mountpoint: d.mnt }, `upperdir ${d.a}: the same directory as lowerdir ${d.a}`);
  fails(t, { lowers: [d.a], upper: d.upper, work: d.upper, mountpoint: d.mnt }, `workdir ${d.upper}: the same directory as upperdir ${d.upper}`);
});

test('a mountpoint inside (or equal to) a branch is refused', (t) => {
  const d = setup();
  const inner = path.join(d.a, 'mnt');
  fs.mkdirSync(inner);
  fails(t, { lowers: [d.b, d.a], mountpoint: inner }, `mountpoint ${inner}: inside lowerdir ${d.a}`);
  fails(t, { lowers: [d.b], mountpoint: d.b }, `mountpoint ${d.b}: inside lowerdir ${d.b}`);
  const inUpper = path.join(d.upper, 'm');
  fs.mkdirSync(inUpper);
  fails(t, { lowers: [d.a], upper: d.upper, work: d.work, mountpoint: inUpper }, `mountpoint ${inUpper}: inside upperdir ${d.upper}`);
});

test('a branch inside the mountpoint is refused', (t) => {
  const d = setup();
  const inner = path.join(d.mnt, 'layer');
  fs.mkdirSync(inner);
  fails(t, { lowers: [d.a, inner], mountpoint: d.mnt }, `lowerdir ${inner}: inside the mountpoint ${d.mnt}`);
  const w = path.join(d.mnt, 'work');
  fs.mkdirSync(w);
  fails(t, { lowers: [d.a], upper: d.upper, work: w, mountpoint: d.mnt }, `workdir ${w}: inside the mountpoint ${d.mnt}`);
});

test('a name that merely starts like a branch is not inside it', (t) => {
  const d = setup();
  const sibling = `${d.a}b`; // ".../ab" is beside ".../a", not inside it
  fs.mkdirSync(sibling);
  t.notThrows(() => checkPaths({ lowers: [d.a], mountpoint: sibling }));
  t.notThrows(() => checkPaths({ lowers: [sibling], mountpoint: d.a }));
});

test('upperdir and workdir must not nest', (t) => {
  const d = setup();
  const nested = path.join(d.upper, 'work');
  fs.mkdirSync(nested);
  fails(t, { lowers: [d.a], upper: d.upper, work: nested, mountpoint: d.mnt }, 'upperdir and workdir must not be inside one another');
  fails(t, { lowers: [d.a], upper: nested, work: d.upper, mountpoint: d.mnt }, 'upperdir and workdir must not be inside one another');
});

test('a mountpoint that is already mounted is refused', (t) => {
  const d = setup();
  t.true(mountPoints().has('/proc'));
  t.true(mountPoints().has('/'));
  t.false(mountPoints().has(d.mnt));
  fails(t, { lowers: [d.a], mountpoint: '/proc' }, 'mountpoint /proc: already mounted');
});
