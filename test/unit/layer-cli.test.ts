// `layerfs diff | commit | apply` as a user runs them: output, exit codes, errors on stderr, no
// progress bar when stderr is not a terminal, apply from stdin.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratch } from '../helpers/env.js';
import { whiteout, writeBranch } from './fixture.js';
import { makeTar } from './layer-helpers.js';

const space = scratch(test);
const BIN = fileURLToPath(new URL('../../../bin/layerfs.js', import.meta.url));

function layerfs(args: string[], input?: Buffer): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, encoding: 'buffer', timeout: 60_000 });
  return { code: r.status, out: r.stdout.toString(), err: r.stderr.toString() };
}

test('diff, commit and apply from the command line', async (t) => {
  const base = await space.dir('cli');
  const upper = path.join(base, 'upper');
  writeBranch(upper, { 'a/f': 'f', 'gone': whiteout });
  t.deepEqual(layerfs(['diff', upper]), { code: 0, out: 'A /a\nA /a/f\nD /gone\n', err: '' });

  const gz = path.join(base, 'layer.tar.gz');
  const c = layerfs(['commit', upper, '-o', gz, '--reproducible']);
  t.is(c.code, 0, c.err);
  t.regex(c.out, /^diff_id sha256:[0-9a-f]{64}\ndigest sha256:[0-9a-f]{64}\n$/);
  t.is(c.err, '', 'no progress bar when stderr is not a terminal');
  t.deepEqual(fs.readdirSync(base).sort(), ['layer.tar.gz', 'upper']);
  const again = layerfs(['commit', upper, '-o', path.join(base, 'again.tar'), '--reproducible']);
  t.is(again.out, c.out.split('\n')[0] + '\n', 'same diff_id uncompressed, and no digest');

  const dir = path.join(base, 'flat');
  const a = layerfs(['apply', '-', dir, '--flatten'], fs.readFileSync(gz));
  t.is(a.code, 0, a.err);
  t.deepEqual(fs.readdirSync(dir), ['a']);
  const o = layerfs(['apply', gz, path.join(base, 'ov')]);
  t.is(o.code, 0, o.err);
  t.true(fs.lstatSync(path.join(base, 'ov/gone')).isCharacterDevice(), 'overlay whiteouts by default');
});

test('usage errors exit 2, refused layers exit 1 with the reason', async (t) => {
  const base = await space.dir('cli-errors');
  t.is(layerfs(['commit', base]).code, 2);
  t.is(layerfs(['apply', 'x.tar', base, '--whiteout', 'aufs']).code, 2);
  t.is(layerfs(['apply', 'x.tar', base, '--whiteout', 'oci', '--flatten']).code, 2);
  t.is(layerfs(['diff']).code, 2);
  const evil = path.join(base, 'evil.tar');
  fs.writeFileSync(evil, await makeTar([{ name: '../escape', data: 'x' }]));
  const r = layerfs(['apply', evil, path.join(base, 'dir')]);
  t.is(r.code, 1);
  t.regex(r.err, /^layerfs: layer entry "\.\.\/escape": the name has a "\.\." component/);
  t.false(fs.existsSync(path.join(base, 'escape')));
});
