// Where a file's space is, through a writable mount, against the kernel's overlayfs (D67):
// a. fallocate(2): reserving space in a new file and in a lower one (copied up first), keeping
//    the size or not, punching a hole; a mode the upper's filesystem lacks, and a file open
//    read-only, fail as there. Before D67 every call failed with EOPNOTSUPP.
// b. lseek(2) SEEK_DATA / SEEK_HOLE find the holes of a sparse lower file and of a sparse file
//    made through the mount. Before, the mount showed every file as data from end to end.
// c. a copy-up keeps a sparse lower file's holes (D68): the upper copy takes no more space than the
//    kernel's overlayfs gives its copy. Before, every hole was copied as zeros.
// fallocate and lseek come through koffi: Node has neither. This process only uses the mount; the
// server is another process.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import koffi from 'koffi';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs, type LayerDirs } from '../helpers/mounts.js';

const space = scratch(test);

const libc = koffi.load('libc.so.6');
const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
const lseek = libc.func('int64_t lseek(int fd, int64_t offset, int whence)');

const KiB = 1024;
const MiB = 1 << 20;
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
const FALLOC_FL_ZERO_RANGE = 0x10;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

/** An errno's name (EBADF for 9). */
const errnoName = (n: number): string => Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;

/** fallocate on path (opened read-write, or read-only), and what the file then is: size, bytes allocated, or the error. */
function reserve(p: string, mode: number, offset: number, length: number, flags = 'r+'): string {
  const fd = fs.openSync(p, flags);
  try {
    if (fallocate(fd, mode, offset, length) !== 0) return errnoName(koffi.errno());
    const st = fs.fstatSync(fd);
    return `size ${st.size} allocated ${st.blocks * 512}`;
  } finally {
    fs.closeSync(fd);
  }
}

/** The stretches of data of a file, by SEEK_DATA / SEEK_HOLE from 0, through an fd opened read-only. */
function extents(p: string): string {
  const fd = fs.openSync(p, 'r');
  try {
    return extentsOf(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function extentsOf(fd: number): string {
  const out: string[] = [];
  let pos = 0;
  for (;;) {
    const data = Number(lseek(fd, pos, SEEK_DATA));
    if (data < 0) {
      out.push(`end: ${errnoName(koffi.errno())}`);
      return out.join(' ');
    }
    const hole = Number(lseek(fd, data, SEEK_HOLE));
    out.push(`${data}-${hole}`);
    pos = hole;
  }
}

/**
 * Lower layer: two dense files (text, 1,100 bytes; binary, 64 KiB) and a sparse one (8 MiB: 4 KiB
 * of data at 1 MiB, at 3 MiB and at its end).
 */
function lowerLayer(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'f.txt'), 'lower text\n'.repeat(100));
  fs.writeFileSync(path.join(dir, 'g.bin'), Buffer.alloc(64 * KiB, 5));
  const fd = fs.openSync(path.join(dir, 'holes.img'), 'w');
  try {
    fs.ftruncateSync(fd, 8 * MiB);
    for (const at of [1 * MiB, 3 * MiB, 8 * MiB - 4 * KiB]) fs.writeSync(fd, Buffer.alloc(4 * KiB, at / MiB + 1), 0, 4 * KiB, at);
  } finally {
    fs.closeSync(fd);
  }
}

type Mount = <T>(dirs: LayerDirs, fn: (mnt: string) => Promise<T>) => Promise<T>;

async function onBoth<T>(name: string, body: (mnt: string, upper: string) => T): Promise<{ kernel: T; layerfs: T }> {
  const root = await space.dir(name);
  const lower = path.join(root, 'lower');
  lowerLayer(lower);
  const run = async (who: string, mount: Mount): Promise<T> => {
    const upper = path.join(root, `${who}-upper`);
    const work = path.join(root, `${who}-work`);
    fs.mkdirSync(upper);
    fs.mkdirSync(work);
    return mount({ lowers: [lower], upper, work }, async (mnt) => body(mnt, upper));
  };
  return { kernel: await run('kernel', withKernelOverlay), layerfs: await run('layerfs', withLayerfs) };
}

test('fallocate through the mount reserves and punches space as on the kernel\'s overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const { kernel, layerfs } = await onBoth('fallocate', (mnt, upper) => {
    const r: Record<string, string> = {};
    const fa = path.join(mnt, 'fa');
    fs.writeFileSync(fa, '');
    r['new file, 1 MiB'] = reserve(fa, 0, 0, 1 * MiB);
    fs.writeFileSync(fa, Buffer.alloc(64 * KiB, 7), { flag: 'r+' });
    r['punch 8 KiB at 4 KiB'] = reserve(fa, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * KiB, 8 * KiB);
    const data = fs.readFileSync(fa);
    r['after the punch'] = `${data.subarray(0, 4 * KiB).every((b) => b === 7)} ${data.subarray(4 * KiB, 12 * KiB).every((b) => b === 0)} ${data.subarray(12 * KiB, 64 * KiB).every((b) => b === 7)} ${extents(fa)}`;
    r['lower file, keep size'] = reserve(path.join(mnt, 'f.txt'), FALLOC_FL_KEEP_SIZE, 0, 256 * KiB);
    r['lower file reads'] = fs.readFileSync(path.join(mnt, 'f.txt'), 'utf8') === 'lower text\n'.repeat(100) ? 'as before' : 'changed';
    r['lower file, grow'] = reserve(path.join(mnt, 'g.bin'), 0, 6 * MiB, 4 * MiB);
    r['zero range (not on tmpfs)'] = reserve(fa, FALLOC_FL_ZERO_RANGE, 0, 4 * KiB);
    r['read-only fd'] = reserve(path.join(mnt, 'f.txt'), 0, 0, 4 * KiB, 'r');
    r['upper'] = ['fa', 'f.txt', 'g.bin'].map((n) => {
      const st = fs.statSync(path.join(upper, n));
      return `${n} ${st.size} ${st.blocks * 512}`;
    }).join(', ');
    return r;
  });
  t.deepEqual(layerfs, kernel);
  // What the kernel's overlayfs shows, which layerfs now matches (before: EOPNOTSUPP throughout).
  t.is(layerfs['new file, 1 MiB'], `size ${MiB} allocated ${MiB}`);
  t.regex(layerfs['after the punch']!, /^true true true 0-4096 12288-65536 /);
  t.regex(layerfs['lower file, keep size']!, new RegExp(`^size 1100 allocated ${256 * KiB}$`));
  t.is(layerfs['lower file, grow'], `size ${10 * MiB} allocated ${4 * MiB + 64 * KiB}`);
  t.is(layerfs['read-only fd'], 'EBADF');
});

test('SEEK_DATA and SEEK_HOLE find the holes of sparse files, lower and upper, as on the kernel\'s overlayfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const { kernel, layerfs } = await onBoth('seek', (mnt) => {
    const made = path.join(mnt, 'made.img');
    const fd = fs.openSync(made, 'w');
    try {
      fs.ftruncateSync(fd, 4 * MiB);
      fs.writeSync(fd, Buffer.alloc(8 * KiB, 9), 0, 8 * KiB, 2 * MiB);
    } finally {
      fs.closeSync(fd);
    }
    return { lower: extents(path.join(mnt, 'holes.img')), made: extents(made), dense: extents(path.join(mnt, 'f.txt')) };
  });
  t.deepEqual(layerfs, kernel);
  t.is(layerfs.lower, `${MiB}-${MiB + 4 * KiB} ${3 * MiB}-${3 * MiB + 4 * KiB} ${8 * MiB - 4 * KiB}-${8 * MiB} end: ENXIO`);
  t.is(layerfs.made, `${2 * MiB}-${2 * MiB + 8 * KiB} end: ENXIO`);
  t.is(layerfs.dense, '0-1100 end: ENXIO');
});

test('a copy-up keeps the holes of a sparse lower file', async (t) => {
  if (!requireMountCapable(t)) return;
  const { kernel, layerfs } = await onBoth('copyup', (mnt, upper) => {
    const held = fs.openSync(path.join(mnt, 'holes.img'), 'r'); // opened on the lower, before the copy-up
    try {
      fs.appendFileSync(path.join(mnt, 'holes.img'), 'tail');
      const st = fs.statSync(path.join(upper, 'holes.img'));
      return {
        content: fs.readFileSync(path.join(mnt, 'holes.img')).toString('base64'),
        size: st.size,
        allocated: st.blocks * 512,
        extents: extents(path.join(upper, 'holes.img')),
        heldReads: fs.readFileSync(held).length,
      };
    } finally {
      fs.closeSync(held);
    }
  });
  t.is(layerfs.content, kernel.content, 'the same bytes');
  t.is(layerfs.size, 8 * MiB + 4);
  t.is(layerfs.heldReads, kernel.heldReads);
  // The kernel's overlayfs skips holes 1 MiB at a time; layerfs to the block. Either way the copy
  // is not 8 MiB of zeros (before D68 layerfs's was: allocated 8 MiB + 4 KiB).
  t.true(layerfs.allocated <= kernel.allocated, `layerfs's copy takes ${layerfs.allocated} bytes, the kernel's ${kernel.allocated}`);
  t.true(kernel.allocated < 8 * MiB, `the kernel's copy is sparse too (${kernel.allocated} bytes)`);
  t.is(layerfs.extents, `${MiB}-${MiB + 4 * KiB} ${3 * MiB}-${3 * MiB + 4 * KiB} ${8 * MiB - 4 * KiB}-${8 * MiB + 4} end: ENXIO`);
});
