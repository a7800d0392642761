// Open files through a writable mount, compared with the kernel's overlayfs on the same layers:
// - a file unlinked (or renamed over) while open keeps working through its fds, and fstat shows
//   its true link count (0, or the names left for a hard link), its size and its data;
// - no ".fuse_hidden…" name ever shows in the mount or lands in the upper dir, and the upper dir
//   afterwards is what the kernel leaves;
// - a handle opened read-only on a lower file reads the upper copy after a copy-up, as on the
//   kernel (whose read goes to the inode's current real file);
// - stat shows the backing files' times to the nanosecond.
// The test process is not the server (layerfs runs in its own process), so it uses the mount
// directly, with asynchronous calls only (the mount helpers' deadlines need a live event loop).
import test from 'ava';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { withKernelOverlay, withLayerfs } from '../helpers/mounts.js';
import { diffSnapshots, run, snapshot, type Snapshot } from '../helpers/tree.js';

const space = scratch(test);

const T_START = Date.now() - 1000;
const MTIME = '@1234567890.123456789';
const MTIME_NS = 1234567890123456789n;
const ATIME = '@1111111111.987654321';
const ATIME_NS = 1111111111987654321n;
const FILES_WITH_ATIME = ['ns', 'sub/ns2', 'uns'];

interface Dirs {
  lower: string;
  upper: string;
  work: string;
}

async function makeLayers(base: string): Promise<Dirs> {
  const d = (n: string) => path.join(base, n);
  for (const n of ['lower', 'upper', 'work', 'lower/sub', 'upper/usub']) fs.mkdirSync(d(n), { recursive: true });
  for (const n of ['l2', 'l3', 'l5', 'l7', 'l8', 'l9', 'l12']) fs.writeFileSync(d(`lower/${n}`), `${n}-lower-data`);
  fs.writeFileSync(d('lower/r1'), Buffer.concat([Buffer.alloc(4096, 'A'), Buffer.alloc(4096, 'B')]));
  fs.writeFileSync(d('lower/ns'), 'ns');
  fs.writeFileSync(d('lower/sub/ns2'), 'ns2');
  fs.writeFileSync(d('upper/uns'), 'uns');
  // Times with nanoseconds that a ms (or µs) value cannot carry.
  for (const p of ['lower/ns', 'lower/sub/ns2', 'lower/sub', 'upper/uns', 'upper/usub']) {
    const r = await run('touch', ['-h', '-m', '-d', MTIME, d(p)]);
    if (r.code !== 0) throw new Error(`touch: ${r.stderr}`);
    const a = await run('touch', ['-h', '-a', '-d', ATIME, d(p)]);
    if (a.code !== 0) throw new Error(`touch: ${a.stderr}`);
  }
  return { lower: d('lower'), upper: d('upper'), work: d('work') };
}

type Outcome = unknown;

async function attempt<T>(fn: () => Promise<T>): Promise<T | string> {
  try {
    return await fn();
  } catch (e) {
    return `ERR ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
}

async function fst(fh: fsp.FileHandle): Promise<Outcome> {
  return attempt(async () => {
    const s = await fh.stat();
    return { nlink: s.nlink, size: s.size, mode: (s.mode & 0o7777).toString(8) };
  });
}

async function rd(fh: fsp.FileHandle, n = 24, pos = 0): Promise<Outcome> {
  return attempt(async () => {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, pos);
    return b.subarray(0, bytesRead).toString('latin1');
  });
}

/** Does fstat still show the inode number it showed before? (Numbers differ between mounts; their stability does not.) */
const sameIno = (fh: fsp.FileHandle, before: number): Promise<Outcome> => attempt(async () => (await fh.stat()).ino === before);

const wr = (fh: fsp.FileHandle, s: string, pos = 0): Promise<Outcome> => attempt(async () => (await fh.write(s, pos)).bytesWritten);
const hidden = (names: string[]): string[] => names.filter((n) => n.startsWith('.fuse_hidden'));

/** The same steps on either mount; the outcomes must be equal. */
async function openFileScenario(mnt: string): Promise<Record<string, Outcome>> {
  const p = (n: string) => path.join(mnt, n);
  const out: Record<string, Outcome> = {};
  const listings: string[] = [];
  const look = async (): Promise<void> => {
    for (const dir of ['', 'sub', 'd10b']) {
      const names = await fsp.readdir(p(dir)).catch(() => [] as string[]);
      listings.push(...hidden(names).map((n) => `${dir}/${n}`));
    }
  };

  // An upper-only file: no name left, fstat nlink 0, data still there and writable.
  await fsp.writeFile(p('s1'), 's1-data');
  let fh = await fsp.open(p('s1'), 'r+');
  await fsp.unlink(p('s1'));
  await look();
  out['s1 upper file'] = [await fst(fh), await wr(fh, 'S1'), await rd(fh), await fst(fh), await attempt(() => fsp.stat(p('s1')))];
  await fh.close();

  // A lower file opened read-only: the name gets a whiteout, the fd keeps reading the lower.
  fh = await fsp.open(p('l2'), 'r');
  let ino = (await fh.stat()).ino;
  await fsp.unlink(p('l2'));
  await look();
  out['s2 lower read-only'] = [await fst(fh), await rd(fh), await sameIno(fh, ino)];
  await fh.close();

  // A lower file opened read-write (copied up), unlinked.
  fh = await fsp.open(p('l3'), 'r+');
  ino = (await fh.stat()).ino;
  await fsp.unlink(p('l3'));
  out['s3 lower read-write'] = [await fst(fh), await wr(fh, 'L3'), await rd(fh), await fst(fh), await sameIno(fh, ino)];
  await fh.close();

  // Hard links: link a b; open a; unlink a -> the file has one name left.
  await fsp.writeFile(p('a4'), 'a4-data');
  await fsp.link(p('a4'), p('b4'));
  fh = await fsp.open(p('a4'), 'r+');
  ino = (await fh.stat()).ino;
  await fsp.unlink(p('a4'));
  await look();
  out['s4 hard link left'] = [await fst(fh), await rd(fh), (await fsp.stat(p('b4'))).nlink, await wr(fh, 'A4'), await fsp.readFile(p('b4'), 'latin1'), await sameIno(fh, ino), (await fsp.stat(p('b4'))).ino === ino];
  await fh.close();
  out['s4 after close'] = [(await fsp.stat(p('b4'))).nlink];

  // The same with a lower file (linked through the mount: copied up first).
  await fsp.link(p('l5'), p('l5b'));
  fh = await fsp.open(p('l5'), 'r');
  await fsp.unlink(p('l5'));
  out['s5 lower hard link'] = [await fst(fh), await rd(fh), (await fsp.stat(p('l5b'))).nlink];
  await fh.close();

  // Renamed over while open.
  await fsp.writeFile(p('t6'), 't6-data');
  await fsp.writeFile(p('s6'), 's6-data');
  fh = await fsp.open(p('t6'), 'r+');
  await fsp.rename(p('s6'), p('t6'));
  await look();
  out['s6 renamed over'] = [await fst(fh), await wr(fh, 'T6'), await rd(fh), await fsp.readFile(p('t6'), 'latin1')];
  await fh.close();

  // A lower file opened read-only, copied up by a writer, then unlinked.
  fh = await fsp.open(p('l7'), 'r');
  ino = (await fh.stat()).ino;
  const w7 = await fsp.open(p('l7'), 'r+');
  await w7.write('W7', 0);
  await w7.close();
  await fsp.unlink(p('l7'));
  out['s7 read-only, copied up, unlinked'] = [await fst(fh), await rd(fh), await sameIno(fh, ino)];
  await fh.close();

  // ftruncate, fsync and fdatasync on unlinked files (upper, and lower opened read-write).
  await fsp.writeFile(p('t9'), 't9-data-long');
  fh = await fsp.open(p('t9'), 'r+');
  await fsp.unlink(p('t9'));
  out['s9 ftruncate upper'] = [await attempt(() => fh.truncate(4)), await fst(fh), await rd(fh), await attempt(() => fh.sync()), await attempt(() => fh.datasync())];
  await fh.close();
  fh = await fsp.open(p('l9'), 'r+');
  await fsp.unlink(p('l9'));
  out['s9 ftruncate lower'] = [await attempt(() => fh.truncate(3)), await fst(fh), await rd(fh)];
  await fh.close();

  // The directory of the unlinked file is renamed meanwhile.
  await fsp.mkdir(p('d10'));
  await fsp.writeFile(p('d10/f'), 'd10-data');
  fh = await fsp.open(p('d10/f'), 'r+');
  await fsp.unlink(p('d10/f'));
  await fsp.rename(p('d10'), p('d10b'));
  await look();
  out['s10 dir renamed'] = [await fst(fh), await wr(fh, 'D1'), await rd(fh), await fsp.readdir(p('d10b'))];
  await fh.close();

  // Two handles on one file, a new file made under its name meanwhile, closed one by one.
  await fsp.writeFile(p('t11'), 'old');
  const a = await fsp.open(p('t11'), 'r');
  const b = await fsp.open(p('t11'), 'r+');
  await fsp.unlink(p('t11'));
  await fsp.writeFile(p('t11'), 'new!');
  const firstA = await fst(a);
  await a.close();
  out['s11 two handles'] = [firstA, await fst(b), await rd(b), await fsp.readFile(p('t11'), 'latin1'), (await fsp.stat(p('t11'))).nlink];
  await b.close();

  // Open by a renamed name, then unlinked by the new name; and a lower file in a subdirectory.
  await fsp.writeFile(p('t12'), 't12');
  fh = await fsp.open(p('t12'), 'r+');
  await fsp.rename(p('t12'), p('t12b'));
  await fsp.unlink(p('t12b'));
  out['s12 renamed then unlinked'] = [await fst(fh), await rd(fh)];
  await fh.close();
  fh = await fsp.open(p('l12'), 'r');
  await fsp.rename(p('l12'), p('sub/l12'));
  await fsp.unlink(p('sub/l12'));
  await look();
  out['s12 lower moved then unlinked'] = [await fst(fh), await rd(fh)];
  await fh.close();

  // A read-only handle opened before a copy-up reads the upper copy afterwards (the kernel's
  // read goes to the current real file), including a truncate made through another name.
  const ro = await fsp.open(p('r1'), 'r');
  const before = await rd(ro, 8, 0);
  const w = await fsp.open(p('r1'), 'r+');
  await w.write('WXYZ', 4096);
  const afterCopyUp = await rd(ro, 8, 4096);
  await w.write('QQ', 0);
  await w.close();
  const afterSecondWrite = await rd(ro, 8, 0);
  await fsp.truncate(p('r1'), 3);
  out['s13 read-only fd across a copy-up'] = [before, afterCopyUp, afterSecondWrite, await rd(ro, 8, 0), await fst(ro)];
  await ro.close();

  out['hidden names seen'] = listings;
  out['root listing'] = (await fsp.readdir(mnt)).sort();
  return out;
}

/** Known divergences, recorded but not compared (libfuse 2's high-level API cannot do better). */
async function knownLimits(mnt: string): Promise<Record<string, Outcome>> {
  const p = (n: string) => path.join(mnt, n);
  const out: Record<string, Outcome> = {};
  // Its directory removed too: libfuse has no path for the file any more, and fstat comes
  // without a file handle from the kernel; reads and writes (with a handle) still work.
  await fsp.mkdir(p('k1'));
  await fsp.writeFile(p('k1/f'), 'k1-data');
  let fh = await fsp.open(p('k1/f'), 'r+');
  await fsp.unlink(p('k1/f'));
  await fsp.rmdir(p('k1'));
  out['parent removed'] = [await fst(fh), await wr(fh, 'K1'), await rd(fh), await attempt(() => fh.truncate(2)), await rd(fh)];
  await fh.close();
  return out;
}

/**
 * fchmod, fchown, futimens and ftruncate of a file unlinked while open. The kernel sends the
 * first three without a file handle, for a node that has no name any more.
 */
async function changeUnlinked(mnt: string): Promise<Record<string, Outcome>> {
  const p = (n: string) => path.join(mnt, n);
  const out: Record<string, Outcome> = {};
  const cases: Array<[string, string, () => Promise<void>]> = [
    ['upper file', 'a1', () => fsp.writeFile(p('a1'), 'a1-data')],
    ['lower file, opened r+', 'l12', async () => undefined],
    ['hard link left', 'a2', async () => {
      await fsp.writeFile(p('a2'), 'a2-data');
      await fsp.link(p('a2'), p('a2-link'));
    }],
  ];
  for (const [label, name, make] of cases) {
    await make();
    const fh = await fsp.open(p(name), 'r+');
    await fsp.unlink(p(name));
    const steps = [
      await attempt(() => fh.chmod(0o600)),
      await attempt(() => fh.chown(1, 2)),
      await attempt(() => fh.utimes(new Date(1_000_000_000_000), new Date(1_234_567_890_000))),
      await attempt(() => fh.truncate(3)),
    ];
    const st = await attempt(async () => {
      const s = await fh.stat();
      return { mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid, size: s.size, mtimeIsNow: s.mtimeMs >= T_START, atimeMs: s.atimeMs };
    });
    out[label] = [...steps, st];
    await fh.close();
  }
  // Through the name left, the hard link shows what the fd changed.
  const l = await fsp.stat(p('a2-link'));
  out['hard link, seen by its name'] = { mode: (l.mode & 0o7777).toString(8), uid: l.uid, gid: l.gid, size: l.size };
  return out;
}

/**
 * getxattr, setxattr, listxattr and removexattr of a file unlinked while open, through its fd
 * (the /proc/self/fd link leads to the open file; getfattr and setfattr follow it). The kernel
 * sends them for a node that has no name any more.
 */
async function xattrsUnlinked(mnt: string): Promise<Record<string, Outcome>> {
  const p = (n: string) => path.join(mnt, n);
  const out: Record<string, Outcome> = {};
  const tool = async (cmd: string, args: string[]): Promise<string> => {
    const r = await run(cmd, args);
    return r.code === 0 ? r.stdout.toString().trim() : `ERR ${r.stderr.toString().replace(/^.*: /s, '').trim()}`;
  };
  const cases: Array<[string, string, 'r' | 'r+', () => Promise<void>]> = [
    ['upper file', 'x1', 'r+', () => fsp.writeFile(p('x1'), 'x1-data')],
    ['lower file, opened r+', 'l9', 'r+', async () => undefined],
    ['lower file, opened read-only', 'l8', 'r', async () => undefined],
    ['lower file never copied up, opened read-only', 'l7', 'r', async () => undefined],
    ['hard link left', 'x2', 'r+', async () => {
      await fsp.writeFile(p('x2'), 'x2-data');
      await fsp.link(p('x2'), p('x2-link'));
    }],
  ];
  for (const [label, name, flags, make] of cases) {
    await make();
    // (A setfattr by name copies a lower file up first, as a write would.)
    const before = name === 'l7' ? 'not set' : await tool('setfattr', ['-n', 'user.a', '-v', 'A', p(name)]);
    const fh = await fsp.open(p(name), flags);
    await fsp.unlink(p(name));
    const fd = `/proc/${process.pid}/fd/${fh.fd}`;
    out[label] = [
      before,
      await tool('getfattr', ['--only-values', '-n', 'user.a', fd]),
      await tool('setfattr', ['-n', 'user.b', '-v', 'B', fd]),
      await tool('getfattr', ['--absolute-names', '-d', '-m', '^user\\.', fd]),
      await tool('setfattr', ['-x', 'user.a', fd]),
      await tool('getfattr', ['--absolute-names', '-d', '-m', '^user\\.', fd]),
    ];
    await fh.close();
  }
  // Through the name left, the hard link shows what the fd changed.
  out['hard link, seen by its name'] = await tool('getfattr', ['--absolute-names', '-d', '-m', '^user\\.', p('x2-link')]);
  // The fd's path differs between the two mounts' runs only by the fd number: the first line of
  // each `getfattr -d` names the file.
  return JSON.parse(JSON.stringify(out).replace(/# file: [^\\]*\\n/g, '# file: F\\n').replaceAll(mnt, 'MNT')) as Record<string, Outcome>;
}

/** Upper dirs comparable: whiteouts as a type (the kernel shares one inode among them), new times and inode numbers out. */
function normalizeUpper(s: Snapshot): Snapshot {
  for (const n of s.nodes.values()) {
    delete n.ino;
    if (n.mtimeMs !== undefined && n.mtimeMs >= T_START) delete n.mtimeMs;
    if (n.type === 'dir') delete n.mtimeMs;
    if (n.type === 'chardev' && n.rdev === '0:0') {
      for (const k of Object.keys(n) as (keyof typeof n)[]) delete n[k];
      (n as { type: string }).type = 'whiteout';
      continue;
    }
    if (n.xattrs !== undefined) for (const k of Object.keys(n.xattrs)) if (k.startsWith('trusted.overlay.')) delete n.xattrs[k];
  }
  return s;
}

async function onBoth<T>(tag: string, fn: (mnt: string) => Promise<T>): Promise<{ kernel: T; layerfs: T; upperKernel: Snapshot; upperLayerfs: Snapshot; layerfsUpper: string }> {
  const kd = await makeLayers(await space.dir(`${tag}-kernel`));
  const ld = await makeLayers(await space.dir(`${tag}-layerfs`));
  const kernel = await withKernelOverlay({ lowers: [kd.lower], upper: kd.upper, work: kd.work, timeoutMs: 120_000 }, fn);
  const layerfs = await withLayerfs({ lowers: [ld.lower], upper: ld.upper, work: ld.work, timeoutMs: 120_000 }, fn);
  const upperKernel = normalizeUpper(await snapshot(kd.upper, { xattrs: true, content: true }));
  const upperLayerfs = normalizeUpper(await snapshot(ld.upper, { xattrs: true, content: true }));
  return { kernel, layerfs, upperKernel, upperLayerfs, layerfsUpper: ld.upper };
}

test('a file unlinked or renamed over while open: fstat, reads and writes as on the kernel overlay, no hidden names', async (t) => {
  if (!requireMountCapable(t)) return;
  const r = await onBoth('open-unlinked', openFileScenario);
  t.deepEqual(r.layerfs, r.kernel);
  // What the kernel shows, spelled out (so that a kernel change cannot make both sides wrong).
  const first = (k: string) => (r.layerfs[k] as Outcome[])[0];
  t.like(first('s1 upper file'), { nlink: 0, size: 7 });
  t.like(first('s2 lower read-only'), { nlink: 1 });
  t.like(first('s3 lower read-write'), { nlink: 0 });
  t.like(first('s4 hard link left'), { nlink: 1 });
  t.like(first('s5 lower hard link'), { nlink: 1 });
  t.like(first('s6 renamed over'), { nlink: 0 });
  t.like(first('s11 two handles'), { nlink: 0, size: 3 });
  t.deepEqual((r.layerfs['s13 read-only fd across a copy-up'] as Outcome[]).slice(0, 4), ['AAAAAAAA', 'WXYZBBBB', 'QQAAAAAA', 'QQA']);
  t.deepEqual(r.layerfs['hidden names seen'], []);
  // The upper dirs are the same, and layerfs left no hidden name in any of its directories.
  t.deepEqual(diffSnapshots(r.upperKernel, r.upperLayerfs, ['kernel', 'layerfs']), []);
  const found = (await run('find', [r.layerfsUpper, '-name', '.fuse_hidden*'])).stdout.toString().trim();
  t.is(found, '', 'no .fuse_hidden* in the upper');
});

test('known limits of an unlinked open file (recorded, not compared)', async (t) => {
  if (!requireMountCapable(t)) return;
  const r = await onBoth('open-unlinked-limits', knownLimits);
  t.log('kernel: ', JSON.stringify(r.kernel));
  t.log('layerfs:', JSON.stringify(r.layerfs));
  // Reads and writes through the fd work even where fstat cannot.
  const parent = r.layerfs['parent removed'] as Outcome[];
  t.deepEqual(parent.slice(1), (r.kernel['parent removed'] as Outcome[]).slice(1));
  t.deepEqual(diffSnapshots(r.upperKernel, r.upperLayerfs, ['kernel', 'layerfs']), []);
});

test('a file unlinked while open: fchmod, fchown, futimens and ftruncate as on the kernel overlay', async (t) => {
  if (!requireMountCapable(t)) return;
  const r = await onBoth('open-unlinked-change', changeUnlinked);
  t.deepEqual(r.layerfs, r.kernel);
  // What the kernel shows, spelled out: every call works and fstat shows its effect (the
  // truncate, after futimens, sets mtime to now).
  t.like((r.kernel['upper file'] as Outcome[])[4], { mode: '600', uid: 1, gid: 2, size: 3, mtimeIsNow: true, atimeMs: 1_000_000_000_000 });
  t.deepEqual((r.kernel['lower file, opened r+'] as Outcome[]).slice(0, 4), [undefined, undefined, undefined, undefined]);
  t.like(r.kernel['hard link, seen by its name'], { mode: '600', uid: 1, gid: 2, size: 3 });
  t.deepEqual(diffSnapshots(r.upperKernel, r.upperLayerfs, ['kernel', 'layerfs']), []);
});

test('stat shows the backing files\' times to the nanosecond, as the kernel overlay does', async (t) => {
  if (!requireMountCapable(t)) return;
  const names = ['ns', 'sub', 'sub/ns2', 'uns', 'usub', 'copied'];
  const look = async (mnt: string) => {
    // A new file whose mtime is set through the mount (utimensat with ns), and a lower file
    // copied up by a change of its mode (the copy keeps the times).
    await fsp.writeFile(path.join(mnt, 'copied'), 'c');
    const touched = await run('touch', ['-h', '-m', '-d', MTIME, path.join(mnt, 'copied')]);
    if (touched.code !== 0) throw new Error(`touch through the mount: ${touched.stderr}`);
    await fsp.chmod(path.join(mnt, 'sub/ns2'), 0o600);
    const out: Record<string, unknown> = {};
    for (const n of names) {
      const s = await fsp.lstat(path.join(mnt, n), { bigint: true });
      // (Directory atimes are left out: layerfs reads lower directories to index them.)
      out[n] = { mtimeNs: s.mtimeNs, ...(FILES_WITH_ATIME.includes(n) ? { atimeNs: s.atimeNs } : {}) };
    }
    out['stat(1)'] = (await run('stat', ['-c', '%n %y', ...names.map((n) => path.join(mnt, n))])).stdout.toString().split(mnt).join('MNT');
    return out;
  };
  const r = await onBoth('ns-times', look);
  t.deepEqual(r.layerfs, r.kernel);
  for (const n of names) t.is((r.layerfs[n] as { mtimeNs: bigint }).mtimeNs, MTIME_NS, `${n}: mtime to the ns`);
  for (const n of FILES_WITH_ATIME) t.is((r.layerfs[n] as { atimeNs: bigint }).atimeNs, ATIME_NS, `${n}: atime to the ns`);
  t.regex(r.layerfs['stat(1)'] as string, /MNT\/ns 2009-02-13 23:31:30\.123456789/);
});

test('a file unlinked while open: its xattrs read, set and removed through the fd as on the kernel overlay', async (t) => {
  if (!requireMountCapable(t)) return;
  const r = await onBoth('open-unlinked-xattr', xattrsUnlinked);
  t.log('kernel: ', JSON.stringify(r.kernel));
  // One known difference: setting an xattr through a read-only fd on a lower file that was never
  // copied up. There is no upper file and no name left to copy it up to: layerfs says ENOENT, the
  // kernel EEXIST (its copy-up meets the whiteout the unlink left at the name).
  const never = 'lower file never copied up, opened read-only';
  t.is((r.layerfs[never] as string[])[2], 'ERR No such file or directory');
  t.is((r.kernel[never] as string[])[2], 'ERR File exists');
  for (const side of [r.layerfs, r.kernel]) (side[never] as string[])[2] = 'refused';
  t.deepEqual(r.layerfs, r.kernel);
  // What the kernel shows, spelled out: on an upper file every call works.
  t.deepEqual(r.kernel['upper file'], ['', 'A', '', '# file: F\nuser.a="A"\nuser.b="B"', '', '# file: F\nuser.b="B"']);
  t.is(r.kernel['hard link, seen by its name'], '# file: F\nuser.b="B"');
  t.deepEqual(diffSnapshots(r.upperKernel, r.upperLayerfs, ['kernel', 'layerfs']), []);
});

/**
 * A rename over an open file that fails (here: the upper is full, so the lower source cannot be
 * copied up) changes nothing: the target keeps its name and data, and its open handle reads and
 * writes it as before. Until 2026-12-05 layerfs let go of the target's name before the rename,
 * and a failed rename lost the target.
 */
test('a rename over an open file that fails leaves the target and its handle as they were', async (t) => {
  if (!requireMountCapable(t)) return;
  const scenario = async (base: string, mountOn: (d: Dirs, fn: (mnt: string) => Promise<Record<string, unknown>>) => Promise<Record<string, unknown>>) => {
    fs.mkdirSync(path.join(base, 'lower'));
    fs.mkdirSync(path.join(base, 'small'));
    // An upper too small for the source: 1 MiB of tmpfs, the source 4 MiB.
    const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'layerfs-small', path.join(base, 'small')]);
    if (m.code !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
    try {
      for (const n of ['upper', 'work']) fs.mkdirSync(path.join(base, 'small', n));
      fs.writeFileSync(path.join(base, 'lower/big'), Buffer.alloc(4 << 20, 'b'));
      fs.writeFileSync(path.join(base, 'lower/target-lower'), 'lower target');
      fs.writeFileSync(path.join(base, 'small/upper/target-upper'), 'upper target');
      return await mountOn({ lower: path.join(base, 'lower'), upper: path.join(base, 'small/upper'), work: path.join(base, 'small/work') }, async (mnt) => {
        const out: Record<string, unknown> = {};
        for (const name of ['target-lower', 'target-upper']) {
          const target = path.join(mnt, name);
          const fh = await fsp.open(target, 'r+');
          try {
            out[`${name}: rename`] = await attempt(() => fsp.rename(path.join(mnt, 'big'), target));
            out[`${name}: by name`] = await attempt(() => fsp.readFile(target, 'utf8'));
            out[`${name}: fstat nlink`] = (await fh.stat()).nlink;
            const b = Buffer.alloc(64);
            const { bytesRead } = await fh.read(b, 0, 64, 0);
            out[`${name}: by fd`] = b.toString('utf8', 0, bytesRead);
            await fh.write('W', 0);
            out[`${name}: written by fd, read by name`] = await attempt(() => fsp.readFile(target, 'utf8'));
          } finally {
            await fh.close();
          }
          out[`${name}: after close`] = await attempt(() => fsp.readFile(target, 'utf8'));
        }
        out['names'] = (await fsp.readdir(mnt)).sort();
        return out;
      });
    } finally {
      await run('umount', ['-l', path.join(base, 'small')]);
    }
  };
  const kernel = await scenario(await space.dir('rename-fail-k'), (d, fn) => withKernelOverlay({ lowers: [d.lower], upper: d.upper, work: d.work }, fn));
  const layerfs = await scenario(await space.dir('rename-fail-l'), (d, fn) => withLayerfs({ lowers: [d.lower], upper: d.upper, work: d.work }, fn));
  // The oracle: the rename failed for want of space, and nothing was lost.
  t.is(kernel['target-lower: rename'], 'ERR ENOSPC');
  t.is(kernel['target-upper: after close'], 'Wpper target');
  t.deepEqual(layerfs, kernel);
});
