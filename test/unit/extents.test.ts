// src/ops/extents.ts through createUnion on real temp dirs: fallocate lands in the upper copy of
// a lower file opened for writing (never in the lower), and is refused on a handle of a lower
// file; SEEK_DATA / SEEK_HOLE read the file the handle reads, the copy once there is one.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fallocate, seekExtent } from '../../src/ops/extents.js';
import { open, release } from '../../src/ops/open.js';
import { write } from '../../src/ops/write.js';
import { vpath } from '../../src/path.js';
import { createUnion } from '../../src/union.js';

const roots: string[] = [];
test.after.always(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

const MiB = 1 << 20;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/** A lower file of 4 MiB whose only data is 4 KiB at 2 MiB. */
function setup() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-extents-'));
  roots.push(root);
  const [upper, work, lower] = ['upper', 'work', 'lower'].map((n) => path.join(root, n)) as [string, string, string];
  for (const d of [upper, work, lower]) fs.mkdirSync(d);
  const fd = fs.openSync(path.join(lower, 'sparse'), 'w');
  fs.ftruncateSync(fd, 4 * MiB);
  fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 2 * MiB);
  fs.closeSync(fd);
  return { upper, lower, ctx: createUnion({ lowers: [lower], upper, work }).ctx };
}

test('fallocate grows the upper copy of a lower file opened for writing; the lower stays as it was', async (t) => {
  const s = setup();
  const fh = (await open(s.ctx, vpath('/sparse'), fs.constants.O_RDWR)).fh;
  await fallocate(s.ctx, fh, 0, 5 * MiB, MiB);
  await release(s.ctx, fh);
  t.is(fs.statSync(path.join(s.upper, 'sparse')).size, 6 * MiB);
  t.is(fs.statSync(path.join(s.lower, 'sparse')).size, 4 * MiB);
});

test('fallocate on a handle of a lower file opened read-only is refused with EBADF', async (t) => {
  const s = setup();
  const fh = (await open(s.ctx, vpath('/sparse'), fs.constants.O_RDONLY)).fh;
  await t.throwsAsync(fallocate(s.ctx, fh, 0, 0, MiB), { code: 'EBADF' });
  await release(s.ctx, fh);
  t.false(fs.existsSync(path.join(s.upper, 'sparse')), 'nothing copied up');
});

test('SEEK_DATA and SEEK_HOLE of a read-only handle see the lower file, then the copy made since', async (t) => {
  const s = setup();
  const ro = (await open(s.ctx, vpath('/sparse'), fs.constants.O_RDONLY)).fh;
  t.is(await seekExtent(s.ctx, ro, 0, SEEK_DATA), 2 * MiB);
  t.is(await seekExtent(s.ctx, ro, 2 * MiB, SEEK_HOLE), 2 * MiB + 4096);
  await t.throwsAsync(seekExtent(s.ctx, ro, 2 * MiB + 4096, SEEK_DATA), { code: 'ENXIO' });
  await t.throwsAsync(seekExtent(s.ctx, ro, 0, 0 /* SEEK_SET: the kernel's own */), { code: 'EINVAL' });
  // Another handle copies the file up and writes at its start: the read-only handle reads the
  // copy now (as on the kernel's overlayfs), and finds data at 0.
  const rw = (await open(s.ctx, vpath('/sparse'), fs.constants.O_WRONLY)).fh;
  await write(s.ctx, rw, Buffer.from('head'), 4, 0);
  await release(s.ctx, rw);
  t.is(await seekExtent(s.ctx, ro, 0, SEEK_DATA), 0);
  t.is(await seekExtent(s.ctx, ro, 2 * MiB, SEEK_DATA), 2 * MiB, 'the copy kept the data where it was');
  await release(s.ctx, ro);
});
