// Hostile layers: each case is refused with a LayerError that names the entry, and a canary
// directory next to DIR (its file, its listing, its attributes) is exactly as it was: nothing
// outside DIR is written, followed into, linked or deleted. Tars built by plain tar-stream.
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LayerError, type LayerErrorKind } from '../../src/layer/errors.js';
import type { WhiteoutMode } from '../../src/layer/apply.js';
import { scratch } from '../helpers/env.js';
import { applyBuffer, listTree, makeOutside, makeTar, type TarEntry } from './layer-helpers.js';

const space = scratch(test);

interface Case {
  readonly entries: (outside: string) => TarEntry[];
  readonly kind: LayerErrorKind;
  /** The entry the error must name. */
  readonly names: string;
  readonly message: RegExp;
  readonly mode?: WhiteoutMode;
}

/** Apply the hostile tar into <case>/dir with <case>/outside next to it; check refusal and the canary. */
async function refused(t: ExecutionContext, label: string, c: Case): Promise<void> {
  const base = await space.dir(label);
  const outside = makeOutside(path.join(base, 'outside'));
  const dir = path.join(base, 'dir');
  const siblingsBefore = fs.readdirSync(base).sort();
  const err = await t.throwsAsync(applyBuffer(await makeTar(c.entries(outside.dir)), dir, { whiteout: c.mode ?? 'overlay' }));
  t.true(err instanceof LayerError, `a LayerError, got ${String(err)}`);
  t.is((err as LayerError).kind, c.kind);
  t.is((err as LayerError).entry, c.names);
  t.regex(err!.message, c.message);
  t.true(err!.message.includes(JSON.stringify(c.names)), 'the message names the entry');
  t.deepEqual(outside.untouched(), []);
  t.is(fs.readFileSync(outside.canary, 'utf8'), 'canary');
  t.deepEqual(fs.readdirSync(base).sort(), siblingsBefore.includes('dir') ? siblingsBefore : [...siblingsBefore, 'dir'].sort(), 'nothing made next to DIR');
  t.false(fs.existsSync('/layerfs-evil'), 'nothing at the host root');
}

test('an absolute name is refused (one naming the outside canary, one a new file there)', async (t) => {
  const base = await space.dir('absolute');
  const outside = makeOutside(path.join(base, 'outside'));
  for (const name of [outside.canary, `${outside.dir}/created`]) {
    await refused(t, 'absolute', { entries: () => [{ name, data: 'owned' }], kind: 'unsafe', names: name, message: /absolute/ });
  }
  t.deepEqual(outside.untouched(), []);
});

test('a ".." that leaves DIR is refused', (t) => refused(t, 'dotdot', {
  entries: () => [{ name: 'a/../../outside/canary', data: 'owned' }],
  kind: 'unsafe', names: 'a/../../outside/canary', message: /"\.\."/,
}));

test('a symlink, then a file through it, is refused', (t) => refused(t, 'symlink-file', {
  entries: () => [
    { name: 'link', type: 'symlink', linkname: '../outside' },
    { name: 'link/canary', data: 'owned' },
  ],
  kind: 'unsafe', names: 'link/canary', message: /symbolic link/,
}));

test('a symlink to an absolute outside path, then a directory through it, is refused', (t) => refused(t, 'symlink-abs', {
  entries: (o) => [
    { name: 'link', type: 'symlink', linkname: o },
    { name: 'link/newdir/', type: 'directory' },
  ],
  kind: 'unsafe', names: 'link/newdir/', message: /symbolic link/,
}));

test('a symlink to outside, then a hard link through it, is refused', (t) => refused(t, 'symlink-hardlink', {
  entries: (o) => [
    { name: 'link', type: 'symlink', linkname: o },
    { name: 'stolen', type: 'link', linkname: 'link/canary' },
  ],
  kind: 'unsafe', names: 'stolen', message: /symbolic link/,
}));

test('a hard link to a target outside DIR ("..") is refused', (t) => refused(t, 'hardlink-dotdot', {
  entries: () => [{ name: 'stolen', type: 'link', linkname: '../outside/canary' }],
  kind: 'unsafe', names: 'stolen', message: /hard link target has a "\.\."/,
}));

test('a hard link to an absolute target is refused', (t) => refused(t, 'hardlink-abs', {
  entries: (o) => [{ name: 'stolen', type: 'link', linkname: `${o}/canary` }],
  kind: 'unsafe', names: 'stolen', message: /hard link target is absolute/,
}));

test('a device node is refused when devices are not allowed', async (t) => {
  await refused(t, 'device', {
    entries: () => [{ name: 'disk', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o666 }],
    kind: 'device', names: 'disk', message: /block device \(8:0\).*--allow-devices/,
  });
  await refused(t, 'device-chr', {
    entries: () => [{ name: 'dev/mem', type: 'character-device', devmajor: 1, devminor: 1, mode: 0o666 }],
    kind: 'device', names: 'dev/mem', message: /character device \(1:1\)/,
  });
});

test('a bare ".wh." is refused', (t) => refused(t, 'bare-wh', {
  entries: () => [{ name: 'd/.wh.' }],
  kind: 'invalid', names: 'd/.wh.', message: /bare/,
}));

test('a whiteout of ".." (".wh...") is refused in every mode', async (t) => {
  for (const mode of ['overlay', 'oci', 'flatten'] as const) {
    await refused(t, `wh-dotdot-${mode}`, { entries: () => [{ name: 'a/b/.wh...' }], kind: 'unsafe', names: 'a/b/.wh...', message: /"\.\."/, mode });
  }
});

test('a whiteout of "." (".wh..") is refused', (t) => refused(t, 'wh-dot', {
  entries: () => [{ name: '.wh..' }],
  kind: 'unsafe', names: '.wh..', message: /"\."/, mode: 'flatten',
}));

test('flatten: a whiteout through a symlink is refused (it would delete outside)', (t) => refused(t, 'wh-through-link', {
  entries: () => [
    { name: 'link', type: 'symlink', linkname: '../outside' },
    { name: 'link/.wh.canary' },
  ],
  kind: 'unsafe', names: 'link/.wh.canary', message: /symbolic link/, mode: 'flatten',
}));

test('flatten: an opaque marker through a symlink is refused (it would empty outside)', (t) => refused(t, 'opq-through-link', {
  entries: () => [
    { name: 'link', type: 'symlink', linkname: '../outside' },
    { name: 'link/.wh..wh..opq' },
  ],
  kind: 'unsafe', names: 'link/.wh..wh..opq', message: /symbolic link/, mode: 'flatten',
}));

test('a name with a NUL byte (PAX path) is refused', (t) => refused(t, 'nul', {
  entries: () => [{ name: 'x', pax: { path: 'a\0/../../outside/canary' }, data: 'owned' }],
  kind: 'unsafe', names: 'a\0/../../outside/canary', message: /NUL/,
}));

test('a symlink replaced by a later entry is never followed', async (t) => {
  const base = await space.dir('replaced-link');
  const outside = makeOutside(path.join(base, 'outside'));
  const dir = path.join(base, 'dir');
  await applyBuffer(await makeTar([
    { name: 'd', type: 'symlink', linkname: '../outside' },
    { name: 'd/', type: 'directory' }, // replaces the link with a real directory
    { name: 'd/canary', data: 'mine' },
    { name: 'c', type: 'symlink', linkname: '../outside/canary' },
    { name: 'c', data: 'file over link' }, // replaces the link, does not write through it
  ]), dir, { whiteout: 'overlay' });
  t.deepEqual(listTree(dir), ['c = file over link', 'd/', 'd/canary = mine']);
  t.deepEqual(outside.untouched(), []);
});
