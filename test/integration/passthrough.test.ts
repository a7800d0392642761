// FUSE passthrough (D51) through real mounts: where the kernel has it (Linux 6.9+) and layerfs
// runs as root, files of the upper opened by root are read and written by the kernel itself.
// What a user sees must not change: every byte lands in the upper and reads back right, through
// the mount and on the host; a lower file is still copied up first; and with passthrough=off
// every write goes through layerfs again.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Mount, MountOptions } from '../../src/index.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withApiMount, withKernelOverlay } from '../helpers/mounts.js';

const space = scratch(test);

interface Setup { lower: string; upper: string; work: string; mnt: string; data: Buffer; whiteout?: 'oci' }

async function setup(name: string): Promise<Setup> {
  const root = await space.dir(name);
  const [lower, upper, work, mnt] = ['lower', 'upper', 'work', 'mnt'].map((d) => path.join(root, d)) as [string, string, string, string];
  for (const d of [lower, upper, work, mnt]) fs.mkdirSync(d, { recursive: true });
  const data = randomBytes(3 * 1024 * 1024 + 77);
  fs.writeFileSync(path.join(lower, 'log'), 'lower line\n');
  return { lower, upper, work, mnt, data };
}

async function withMount<T>(s: Setup, extra: Partial<MountOptions>, fn: (m: Mount) => Promise<T>): Promise<T> {
  return withApiMount(s.mnt, { lowers: [s.lower], upper: s.upper, work: s.work, whiteout: s.whiteout ?? 'overlay', ...extra }, fn);
}

/**
 * Whether this kernel has FUSE passthrough, from its build config where it shows one (then a
 * mount that does not use it is a failure); undefined where it does not.
 */
function kernelHasPassthrough(): boolean | undefined {
  try {
    return /^CONFIG_FUSE_PASSTHROUGH=y$/m.test(gunzipSync(fs.readFileSync('/proc/config.gz')).toString());
  } catch {
    return undefined;
  }
}

const count = async (m: Mount, op: string): Promise<number> => (await m.stats()).ops[op]?.count ?? 0;

/** Writes a new file in pieces and appends to a lower one, from a child process (dd, sh). */
function work(s: Setup): void {
  const src = path.join(path.dirname(s.mnt), 'data');
  fs.writeFileSync(src, s.data);
  const dd = spawnSync('dd', [`if=${src}`, `of=${path.join(s.mnt, 'new')}`, 'bs=64k', 'status=none']);
  if (dd.status !== 0) throw new Error(`dd: ${dd.stderr}`);
  const sh = spawnSync('sh', ['-c', `echo appended >> "${path.join(s.mnt, 'log')}"`]);
  if (sh.status !== 0) throw new Error(`sh: ${sh.stderr}`);
}

function check(t: import('ava').ExecutionContext, s: Setup): void {
  t.true(fs.readFileSync(path.join(s.mnt, 'new')).equals(s.data), 'the new file reads back through the mount');
  t.true(fs.readFileSync(path.join(s.upper, 'new')).equals(s.data), 'and is in the upper');
  t.is(fs.statSync(path.join(s.mnt, 'new')).size, s.data.length);
  t.is(fs.readFileSync(path.join(s.mnt, 'log'), 'utf8'), 'lower line\nappended\n');
  t.is(fs.readFileSync(path.join(s.upper, 'log'), 'utf8'), 'lower line\nappended\n', 'the lower file was copied up first');
  t.is(fs.readFileSync(path.join(s.lower, 'log'), 'utf8'), 'lower line\n', 'and the lower left as it was');
}

test('passthrough: root\'s writes and reads of upper files reach the upper without a WRITE or READ to layerfs; the result is the same', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('on');
  await withMount(s, {}, async (m) => {
    work(s);
    check(t, s);
    const stats = await m.stats();
    const has = kernelHasPassthrough();
    if (has === false || (has === undefined && (stats.passthrough?.registered ?? 0) === 0)) {
      // Linux before 6.9, or one built without CONFIG_FUSE_PASSTHROUGH: writes go as before.
      t.true(await count(m, 'write') > 0);
      t.log(`passthrough not offered by this kernel (${spawnSync('uname', ['-r']).stdout.toString().trim()})`);
      return;
    }
    t.true((stats.passthrough?.registered ?? 0) >= 2, 'the new file and the copy-up had backing files');
    t.is(await count(m, 'write'), 0, 'every write went to the backing file');
    t.is(await count(m, 'read'), 0, 'and every read');
    t.is(stats.passthrough?.open, 0, 'no backing file is kept once every file is closed');
  });
});

test('passthrough=off: the same work, with every write through layerfs', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('off');
  await withMount(s, { passthrough: false }, async (m) => {
    work(s);
    check(t, s);
    t.true(await count(m, 'write') >= Math.ceil(s.data.length / (1 << 20)), `${await count(m, 'write')} writes`);
    t.is((await m.stats()).passthrough?.registered ?? 0, 0);
  });
});

test('an upper on a stacked filesystem (the kernel\'s overlayfs): passthrough is off for the mount, every write goes through layerfs, the result is the same', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('stacked');
  // As for layerfs in a container whose upper is not on a volume. (Whiteouts in OCI's format:
  // an overlayfs takes no char 0:0 device.)
  const root = path.dirname(s.mnt);
  const [ol, ou, ow] = ['ol', 'ou', 'ow'].map((d) => path.join(root, d)) as [string, string, string];
  for (const d of [ol, ou, ow]) fs.mkdirSync(d);
  await withKernelOverlay({ lowers: [ol], upper: ou, work: ow }, async (o) => {
    const stacked: Setup = { ...s, upper: path.join(o, 'u'), work: path.join(o, 'w'), whiteout: 'oci' };
    fs.mkdirSync(stacked.upper);
    fs.mkdirSync(stacked.work);
    await withMount(stacked, {}, async (m) => {
      work(stacked);
      check(t, stacked);
      t.true(await count(m, 'write') >= Math.ceil(s.data.length / (1 << 20)), `${await count(m, 'write')} writes`);
      t.is((await m.stats()).passthrough?.registered ?? 0, 0, 'the kernel took no backing file from the overlayfs');
    });
  });
});
