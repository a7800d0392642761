// src/layer/changes.ts: what `layerfs diff` lists for an upper, with and without its lowers, in
// both whiteout formats, sorted as a pre-order walk.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimesNs, setXattr } from '../../src/host/libc.js';
import { formatChanges, upperChanges } from '../../src/layer/changes.js';
import type { RealPath } from '../../src/path.js';
import { scratch } from '../helpers/env.js';
import { dir, file, whiteout, writeBranch, xattrOpaque, type Spec } from './fixture.js';

const space = scratch(test);

const T0 = 1_600_000_000_000_000_000n;

/** Write a branch and give every entry the same mtime (a copy-up keeps its lower's times). */
async function branch(name: string, spec: Spec): Promise<string> {
  const d = path.join(await space.dir(name), 'b');
  writeBranch(d, spec);
  const walk = (p: string): void => {
    for (const n of fs.readdirSync(p)) {
      const q = path.join(p, n);
      if (fs.lstatSync(q).isDirectory()) walk(q);
      setTimesNs(q as RealPath, T0, T0);
    }
  };
  walk(d);
  return d;
}

const LOWER: Spec = {
  'etc/passwd': 'root\n',
  'etc/hosts': 'localhost\n',
  'var/log/x': 'log',
  'opt/d/a': 'a',
  'opt/d/b': 'b',
  'usr/bin/ls': 'ls',
};

/** The same changes in either whiteout format. */
function upperSpec(format: 'kernel' | 'oci'): Spec {
  return {
    'etc/passwd': 'root\nuser\n', // changed (size)
    'etc/new': 'n', // added
    ...(format === 'kernel' ? { 'etc/hosts': whiteout, 'etc/never': whiteout } : { 'etc/.wh.hosts': '', 'etc/.wh.never': '' }),
    'var/log/x': 'log', // copied up unchanged
    ...(format === 'kernel' ? { 'opt/d': xattrOpaque('y') } : { 'opt/d/.wh..wh..opq': '' }),
    'opt/d/c': 'c',
    'opt/d/a': 'a',
    'a-b': 'dash', // sorts before "a/..." by name, but a pre-order walk puts "a/" first
    'a/x': 'x',
  };
}

test('with lowers: A, C and D as docker diff lists them, same for both whiteout formats', async (t) => {
  const lower = await branch('lower', LOWER);
  for (const format of ['kernel', 'oci'] as const) {
    const upper = await branch(`upper-${format}`, upperSpec(format));
    fs.utimesSync(path.join(upper, 'etc/new'), 1000, 1000); // any time: it is new
    const out = formatChanges(await upperChanges(upper, [lower]));
    t.is(out, [
      'A /a',
      'A /a/x',
      'A /a-b',
      'C /etc',
      'D /etc/hosts',
      'A /etc/new',
      'C /etc/passwd',
      'C /opt',
      'C /opt/d',
      'D /opt/d/b',
      'A /opt/d/c',
      '',
    ].join('\n'), format);
  }
});

test('with lowers: a copied-up directory whose mode changed is C; nothing else in it', async (t) => {
  const lower = await branch('lower-mode', LOWER);
  const upper = await branch('upper-mode', { 'usr/bin': dir() });
  fs.chmodSync(path.join(upper, 'usr/bin'), 0o700);
  t.deepEqual(await upperChanges(upper, [lower]), [{ kind: 'C', path: '/usr' }, { kind: 'C', path: '/usr/bin' }]);
  setXattr(path.join(upper, 'usr/bin') as RealPath, 'trusted.overlay.impure', Buffer.from('y'));
  fs.chmodSync(path.join(upper, 'usr/bin'), 0o755);
  setTimesNs(path.join(upper, 'usr/bin') as RealPath, T0, T0);
  t.deepEqual(await upperChanges(upper, [lower]), [], 'the overlay\'s own xattrs are no change');
});

test('with several lowers: what an upper lower hides does not count as there', async (t) => {
  const bottom = await branch('bottom', { 'x/old': 'o', 'y': 'y' });
  const middle = await branch('middle', { 'x': xattrOpaque('y'), 'y': whiteout });
  const upper = await branch('upper-stack', { 'x/old': 'o', 'y': 'new' });
  t.deepEqual(await upperChanges(upper, [middle, bottom]), [
    { kind: 'C', path: '/x' },
    { kind: 'A', path: '/x/old' },
    { kind: 'A', path: '/y' },
  ]);
});

test('without lowers: whiteouts D, opaque dirs and copied-up entries C, the rest A', async (t) => {
  const upper = await branch('alone', {
    'etc/passwd': file('changed', { 'trusted.overlay.layerfs.ino': '17' }),
    'etc': dir({ 'trusted.overlay.layerfs.ino': '2' }),
    'etc/hosts': whiteout,
    'new/f': 'f',
    'opq': xattrOpaque('y'),
    'opq/g': 'g',
    'k': file('copied by the kernel', { 'trusted.overlay.origin': 'fh' }),
  });
  t.is(formatChanges(await upperChanges(upper)), [
    'C /etc',
    'D /etc/hosts',
    'C /etc/passwd',
    'C /k',
    'A /new',
    'A /new/f',
    'C /opq',
    'A /opq/g',
    '',
  ].join('\n'));
});
