// Layer tars whose names are not UTF-8 (name-bytes.ts): `commit` writes every name, link target
// and xattr name as its bytes; `apply` makes them as the tar has them, whether GNU tar put them in
// ustar fields or PAX records; `diff` prints them as they are. Before, such names came out as
// U+FFFD (EF BF BD) or could not be read at all.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getXattr, mknod, setXattr } from '../../src/host/libc.js';
import { decodeName } from '../../src/name-bytes.js';
import type { RealPath } from '../../src/path.js';
import { scratch } from '../helpers/env.js';
import { applyBuffer, commitToBuffer, readTar } from './layer-helpers.js';

const space = scratch(test);
const BIN = fileURLToPath(new URL('../../../bin/layerfs.js', import.meta.url));

/** A path of bytes: each part as Latin-1, so "\xe9" is the byte 0xE9. */
const B = (...parts: string[]): Buffer => Buffer.from(parts.join('/'), 'latin1');
/** The name layerfs's code uses for those bytes. */
const N = (...parts: string[]): string => decodeName(B(...parts));

/** An upper with names that are not UTF-8: a file with an xattr, a dir, a symlink, a whiteout. */
function writeUpper(root: string): void {
  fs.mkdirSync(B(root, 'd\xff'), { recursive: true });
  fs.writeFileSync(B(root, 'd\xff', 'x\xfe'), 'x\n');
  fs.writeFileSync(B(root, 'caf\xe9'), 'caf\xe9\n', 'latin1');
  setXattr(N(root, 'caf\xe9') as RealPath, N('user.n\xe9'), Buffer.from('v\xff', 'latin1'));
  fs.symlinkSync(B('t\xff'), B(root, 'l\xe9'));
  mknod(N(root, 'w\xe9') as RealPath, 0o20000 | 0o644, 0);
  fs.writeFileSync(B(root, 'ok-\xc3\xa9'), 'utf-8\n'); // valid UTF-8 ("ok-é")
}

/** Every entry under root by the hex of its bytes: type and content or target. */
function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: Buffer, rel: string): void => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' })) {
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const r = `${rel}${name.toString('hex')}`;
      const st = fs.lstatSync(p);
      if (st.isDirectory()) {
        out[r] = 'dir';
        walk(p, `${r}/`);
      } else if (st.isSymbolicLink()) out[r] = `link ${fs.readlinkSync(p, { encoding: 'buffer' }).toString('hex')}`;
      else if (st.isCharacterDevice()) out[r] = `chr ${st.rdev}`;
      else out[r] = `file ${fs.readFileSync(p).toString('hex')}`;
    }
  };
  walk(Buffer.from(root), '');
  return out;
}

test('commit writes names, link targets and xattr names as their bytes; apply gives the upper back', async (t) => {
  const base = await space.dir('roundtrip');
  const upper = path.join(base, 'upper');
  writeUpper(upper);
  const { bytes } = await commitToBuffer(upper);
  for (const raw of [B('caf\xe9'), B('d\xff/x\xfe'), B('t\xff'), B('.wh.w\xe9'), B('SCHILY.xattr.user.n\xe9')]) {
    t.true(bytes.includes(raw), `the tar holds ${raw.toString('hex')}`);
  }
  t.false(bytes.includes(Buffer.from('efbfbd', 'hex')), 'no U+FFFD anywhere');
  const names = (await readTar(bytes)).map((e) => e.header.name).sort();
  t.deepEqual(names, [N('.wh.w\xe9'), N('caf\xe9'), N('d\xff/'), N('d\xff/x\xfe'), N('l\xe9'), 'ok-é'].sort());

  const back = path.join(base, 'back');
  await applyBuffer(bytes, back, { whiteout: 'overlay' });
  t.deepEqual(tree(back), tree(upper));
  t.is(getXattr(N(back, 'caf\xe9') as RealPath, N('user.n\xe9'))?.toString('latin1'), 'v\xff');
});

test('apply takes names that are not UTF-8 from GNU tar, in ustar fields and in PAX records', async (t) => {
  const base = await space.dir('gnutar');
  const src = path.join(base, 'src');
  fs.mkdirSync(src);
  fs.mkdirSync(B(src, 'd\xff'));
  fs.writeFileSync(B(src, 'd\xff', 'x\xfe'), 'x\n');
  fs.writeFileSync(B(src, 'caf\xe9'), 'caf\xe9\n', 'latin1');
  fs.symlinkSync(B('t\xff'), B(src, 'l\xe9'));
  fs.writeFileSync(B(src, `${'long\xe9'.repeat(30)}`), 'long\n'); // past ustar's 100 bytes
  for (const format of ['gnu', 'posix']) {
    const tarFile = path.join(base, `${format}.tar`);
    const r = spawnSync('tar', ['-C', src, `--format=${format}`, '-cf', tarFile, '.'], { encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    const out = path.join(base, `out-${format}`);
    await applyBuffer(fs.readFileSync(tarFile), out, { whiteout: 'overlay' });
    t.deepEqual(tree(out), tree(src), format);
  }
});

test('diff prints names as their bytes', async (t) => {
  const upper = path.join(await space.dir('diff'), 'upper');
  writeUpper(upper);
  const r = spawnSync(process.execPath, [BIN, 'diff', upper], { encoding: 'buffer', timeout: 60_000 });
  t.is(r.status, 0, r.stderr.toString());
  const want = ['A /caf\xe9', 'A /d\xff', 'A /d\xff/x\xfe', 'A /l\xe9', 'A /ok-\xc3\xa9', 'D /w\xe9'].map((l) => `${l}\n`).join('');
  t.is(r.stdout.toString('hex'), Buffer.from(want, 'latin1').toString('hex'));
});
