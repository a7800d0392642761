// Host paths of PATH_MAX bytes or more (src/host/fs.ts, src/host/libc.ts): every host call works on
// them as on a short path, with the same errors, the caller's path in its messages, and no fd left
// open. The trees are built, and the results checked, with this file's own helpers, which walk one
// component at a time through /proc/self/fd (not with the code under test; worker threads cannot
// chdir). Serial: the fd-leak checks count this process's O_PATH fds.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FsError } from '../../src/errno.js';
import * as host from '../../src/host/fs.js';
import {
  getXattr, listXattr, mknod, readDirents, removeXattr, renameExchange, renameWhiteout, setTimes, setTimesNs, setXattr,
} from '../../src/host/libc.js';
import { vpath, type RealPath, type VPath } from '../../src/path.js';
import { createUnion } from '../../src/union.js';

const O_PATH = 0o10000000;
const DIR = O_PATH | fs.constants.O_DIRECTORY;
const COMP = 'c'.repeat(200);
const isRoot = process.getuid?.() === 0;

const roots: string[] = [];
test.after.always(() => {
  // Not fs.rmSync: its paths get too long for these trees; GNU rm walks them with fds.
  for (const r of roots) spawnSync('rm', ['-rf', r]);
});

function tmpRoot(): string {
  const r = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-longpath-'));
  roots.push(r);
  return r;
}

const bytes = (s: string): number => Buffer.byteLength(s);
const R = (s: string): RealPath => s as RealPath;

/** Run fn on a short name of p, reached one component at a time through /proc/self/fd. */
function onHost<T>(p: string, fn: (short: string) => T): T {
  const parts = p.split('/').filter((c) => c !== '');
  const last = parts.pop()!;
  let fd = fs.openSync('/', DIR);
  try {
    for (const c of parts) {
      const next = fs.openSync(`/proc/self/fd/${fd}/${c}`, DIR);
      fs.closeSync(fd);
      fd = next;
    }
    return fn(`/proc/self/fd/${fd}/${last}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** A chain of directories below base, until the path has at least minBytes bytes. */
function deepDir(base: string, minBytes: number, comp = COMP): string {
  let p = base;
  while (bytes(p) < minBytes) {
    onHost(`${p}/${comp}`, (q) => fs.mkdirSync(q, { recursive: true })); // may exist already
    p = `${p}/${comp}`;
  }
  return p;
}

/** How many O_PATH fds this process holds (fs.ts opens only O_PATH fds to walk long paths). */
function openPathFds(): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const flags = /^flags:\s+([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_PATH) !== 0) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

function setup() {
  const root = tmpRoot();
  const deep = deepDir(root, 2 * host.PATH_MAX + 500); // three pieces to walk
  const beforeFds = openPathFds();
  return { root, deep, beforeFds };
}

test.serial('isLongPath is exactly the kernel limit, counted in UTF-8 bytes', (t) => {
  t.false(host.isLongPath(`/${'a'.repeat(4094)}`)); // 4095 bytes: the longest path one syscall takes
  t.true(host.isLongPath(`/${'a'.repeat(4095)}`));
  t.false(host.isLongPath(`/${'é'.repeat(1364)}`)); // 2729 bytes
  t.true(host.isLongPath(`/${'é'.repeat(2048)}`)); // 4097 bytes, 2049 UTF-16 units
  t.true(host.isLongPath(`/${'€'.repeat(1366)}`)); // 3 bytes per unit: 4099 bytes in 1367 units
  t.false(host.isLongPath('/short'));
});

test.serial('splitLongPath: pieces that one syscall takes, whole components, the last one in the rest', (t) => {
  for (const comp of [COMP, 'é'.repeat(120), 'x', '€'.repeat(80)]) {
    const p = `/base/${Array.from({ length: Math.ceil(20000 / bytes(comp)) }, () => comp).join('/')}/file`;
    const { dirs, rest } = host.splitLongPath(p);
    t.true(dirs.length >= 5);
    for (const d of dirs) t.true(bytes(d) + 32 < host.PATH_MAX, `a piece of ${bytes(d)} bytes`);
    t.true(bytes(rest) + 32 < host.PATH_MAX);
    t.true(rest.endsWith('/file'));
    t.true(dirs[0]!.startsWith('/base/'));
    t.is([...dirs, rest].join('/'), p, 'nothing lost or added');
  }
  t.deepEqual(host.splitLongPath(`/${'n'.repeat(5000)}`), { dirs: ['/'], rest: 'n'.repeat(5000) });
  t.deepEqual(host.splitLongPath('n'.repeat(5000)), { dirs: [], rest: 'n'.repeat(5000) });
});

test.serial('reading: lstat, readdir, readlink, open/read, statfs, getdents, xattrs, sync start-up calls', async (t) => {
  const { deep, beforeFds } = setup();
  const f = `${deep}/file`;
  onHost(f, (q) => fs.writeFileSync(q, 'deep data'));
  onHost(`${deep}/link`, (q) => fs.symlinkSync('file', q));
  onHost(`${deep}/sub`, (q) => fs.mkdirSync(q));
  onHost(f, (q) => fs.chmodSync(q, 0o640));
  const ino = onHost(f, (q) => fs.lstatSync(q).ino);
  t.true(bytes(f) > 2 * host.PATH_MAX);

  const st = await host.lstat(R(f));
  t.is(st.ino, ino);
  t.is(st.size, 9);
  t.is(st.mode & 0o7777, 0o640);
  t.is((await host.lstatNs(R(f))).ino, BigInt(ino));
  t.is((await host.lstatOrUndefined(R(f)))?.ino, ino);
  t.is(await host.lstatOrUndefined(R(`${deep}/missing`)), undefined);
  t.is(await host.lstatOrUndefined(R(`${deep}/missing/${COMP}/${COMP}/x`)), undefined, 'a missing directory on the way');
  t.true((await host.lstat(R(`${deep}/link`))).isSymbolicLink(), 'lstat does not follow the last component');
  t.is(await host.readlink(R(`${deep}/link`)), 'file');

  const ents = await host.readdirTyped(R(deep));
  t.deepEqual(ents.map((d) => [d.name, d.isFile(), d.isDirectory(), d.isSymbolicLink()]).sort(), [
    ['file', true, false, false], ['link', false, false, true], ['sub', false, true, false],
  ]);
  const raw = readDirents(R(deep), { lower: true });
  t.deepEqual(raw.map((d) => d.name).sort(), ['file', 'link', 'sub']);
  t.is(raw.find((d) => d.name === 'file')?.ino, ino);

  const fd = await host.open(R(f), fs.constants.O_RDONLY);
  const buf = Buffer.alloc(16);
  t.is(await host.read(fd, buf, 16, 0), 9);
  t.is(buf.toString('utf8', 0, 9), 'deep data');
  await host.close(fd);
  await t.throwsAsync(host.open(R(`${deep}/link`), fs.constants.O_RDONLY), { code: 'ELOOP' }, 'O_NOFOLLOW still applies to the last component');
  t.is((await host.statfs(R(f))).bsize, fs.statfsSync(os.tmpdir()).bsize);

  setXattr(R(f), 'user.k', Buffer.from('v'));
  t.is(getXattr(R(f), 'user.k')?.toString(), 'v');
  t.true(listXattr(R(f)).includes('user.k'));
  removeXattr(R(f), 'user.k');
  t.is(getXattr(R(f), 'user.k'), undefined);
  t.is(onHost(f, (q) => fs.readdirSync(path.dirname(q)).length), 3);

  t.is(host.lstatSync(R(f)).ino, ino);
  t.is(host.statSyncOrUndefined(`${deep}/link`)?.ino, ino, 'stat follows the last component');
  t.is(host.statSyncOrUndefined(`${deep}/nope/x`), undefined);
  t.is(host.readFileSyncOrUndefined(f), 'deep data');
  t.is(host.readFileSyncOrUndefined(`${deep}/nope`), undefined);
  t.is(host.canOpenReadWrite(f), undefined);
  t.is(host.canOpenReadWrite(`${deep}/nope`)?.path, `${deep}/nope`);
  t.is(host.realpathSync(`${deep}/link`), f);
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('writing: mkdir, create/write, truncate, chmod, lchown, times, mknod, symlink, link, rename, unlink, rmdir', async (t) => {
  const { root, deep, beforeFds } = setup();
  const d = `${deep}/made`;
  await host.mkdir(R(d), 0o751);
  t.is(onHost(d, (q) => fs.lstatSync(q).mode & 0o777), 0o751);
  const f = `${d}/f`;
  const fd = await host.open(R(f), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600);
  await host.write(fd, Buffer.from('written'), 7, 0);
  await host.fsync(fd, false);
  await host.close(fd);
  t.is(onHost(f, (q) => fs.readFileSync(q, 'utf8')), 'written');
  await host.truncate(R(f), 4);
  t.is(onHost(f, (q) => fs.readFileSync(q, 'utf8')), 'writ');
  await host.chmod(R(f), 0o4755);
  t.is(onHost(f, (q) => fs.lstatSync(q).mode & 0o7777), 0o4755);
  if (isRoot) {
    await host.lchown(R(f), 1234, 5678);
    const o = onHost(f, (q) => fs.lstatSync(q));
    t.deepEqual([o.uid, o.gid], [1234, 5678]);
  }
  setTimesNs(R(f), 1_111_111_111_222_333_444n, 1_234_567_890_123_456_789n);
  const ts = onHost(f, (q) => fs.lstatSync(q, { bigint: true }));
  t.deepEqual([ts.atimeNs, ts.mtimeNs], [1_111_111_111_222_333_444n, 1_234_567_890_123_456_789n]);
  setTimes(R(f), 'omit', 'now');
  t.is(onHost(f, (q) => fs.lstatSync(q, { bigint: true }).atimeNs), 1_111_111_111_222_333_444n);

  mknod(R(`${d}/fifo`), fs.constants.S_IFIFO | 0o644, 0);
  t.true(onHost(`${d}/fifo`, (q) => fs.lstatSync(q).isFIFO()));
  await host.symlink('f', R(`${d}/sl`));
  t.is(onHost(`${d}/sl`, (q) => fs.readlinkSync(q)), 'f');

  // Two long paths in one call (in different pieces), and long <-> short.
  const other = deepDir(root, host.PATH_MAX + 100, 'o'.repeat(150));
  await host.link(R(f), R(`${other}/hard`));
  t.is(onHost(f, (q) => fs.lstatSync(q).nlink), 2);
  await host.rename(R(`${other}/hard`), R(`${d}/renamed`));
  t.is(onHost(`${d}/renamed`, (q) => fs.readFileSync(q, 'utf8')), 'writ');
  await host.rename(R(`${d}/renamed`), R(`${root}/short`));
  t.true(fs.existsSync(`${root}/short`));
  await host.link(R(`${root}/short`), R(`${d}/back`));
  await host.rename(R(`${root}/short`), R(`${d}/back2`));
  t.is(onHost(f, (q) => fs.lstatSync(q).nlink), 3);

  await host.unlink(R(`${d}/back`));
  await host.unlink(R(`${d}/back2`));
  t.is(onHost(f, (q) => fs.lstatSync(q).nlink), 1);
  await host.mkdir(R(`${d}/empty`), 0o755);
  await host.rmdir(R(`${d}/empty`));
  t.false(onHost(d, (q) => fs.readdirSync(q)).includes('empty'));
  await host.copyFileData(R(f), R(`${other}/copy`));
  t.is(onHost(`${other}/copy`, (q) => fs.readFileSync(q, 'utf8')), 'writ');
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('renameat2: exchange and whiteout with long paths', async (t) => {
  const { root, deep, beforeFds } = setup();
  onHost(`${deep}/a`, (q) => fs.writeFileSync(q, 'A'));
  fs.mkdirSync(`${root}/b`);
  renameExchange(R(`${deep}/a`), R(`${root}/b`));
  t.true(onHost(`${deep}/a`, (q) => fs.lstatSync(q).isDirectory()));
  t.is(fs.readFileSync(`${root}/b`, 'utf8'), 'A');
  if (isRoot) {
    renameWhiteout(R(`${root}/b`), R(`${deep}/moved`));
    const wh = fs.lstatSync(`${root}/b`);
    t.true(wh.isCharacterDevice() && wh.rdev === 0);
    renameWhiteout(R(`${deep}/moved`), R(`${deep}/moved2`));
    const wh2 = onHost(`${deep}/moved`, (q) => fs.lstatSync(q));
    t.true(wh2.isCharacterDevice() && wh2.rdev === 0);
    t.is(onHost(`${deep}/moved2`, (q) => fs.readFileSync(q, 'utf8')), 'A');
  }
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('trees: ensureDir across PATH_MAX from a short parent, rmTree of a deep tree under a short or long root', async (t) => {
  const { root, beforeFds } = setup();
  const target = `${root}/e/${Array.from({ length: 60 }, () => 'z'.repeat(100)).join('/')}`;
  await host.ensureDir(R(target));
  t.true(onHost(target, (q) => fs.lstatSync(q).isDirectory()));
  await host.ensureDir(R(target)); // exists: fine
  onHost(`${target}/f`, (q) => fs.writeFileSync(q, 'x'));
  onHost(`${target}/f2`, (q) => fs.writeFileSync(q, 'x'));
  // A long root, and Node's rm running into the limit below it.
  const mid = `${root}/e/${Array.from({ length: 45 }, () => 'z'.repeat(100)).join('/')}`;
  t.true(host.isLongPath(mid));
  await host.rmTree(R(mid));
  t.is(await host.lstatOrUndefined(R(target)), undefined);
  t.true(fs.existsSync(`${root}/e`));
  // A short root whose tree goes far below the limit.
  await host.ensureDir(R(target));
  onHost(`${target}/f`, (q) => fs.writeFileSync(q, 'x'));
  await host.rmTree(R(`${root}/e`));
  t.false(fs.existsSync(`${root}/e`));
  await host.rmTree(R(`${root}/e/${COMP}/${target.slice(root.length + 3)}`)); // missing: nothing to do
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('errors are the whole path\'s errors, named by the caller\'s path, and leave no fd open', async (t) => {
  const { deep, beforeFds } = setup();
  onHost(`${deep}/file`, (q) => fs.writeFileSync(q, 'x'));
  const through = `${deep}/file/${COMP}/${COMP}/${COMP}/x`;
  const e = await t.throwsAsync(host.lstat(R(through)), { code: 'ENOTDIR' });
  t.true(e instanceof FsError);
  t.is((e as FsError).path, through);
  const missing = `${deep}/gone/x`;
  t.is(((await t.throwsAsync(host.lstat(R(missing)), { code: 'ENOENT' })) as FsError).path, missing);
  t.is(((await t.throwsAsync(host.unlink(R(`${deep}/gone`)), { code: 'ENOENT' })) as FsError).path, `${deep}/gone`);
  await t.throwsAsync(host.mkdir(R(`${deep}/file`), 0o755), { code: 'EEXIST' });
  await t.throwsAsync(host.rmdir(R(deep)), { code: 'ENOTEMPTY' });
  await t.throwsAsync(host.lstat(R(`${deep}/${'n'.repeat(256)}`)), { code: 'ENAMETOOLONG' }, 'a name over NAME_MAX');
  await t.throwsAsync(host.rename(R(`${deep}/gone`), R(`${deep}/x`)), { code: 'ENOENT' });
  t.throws(() => getXattr(R(through), 'user.x'), { code: 'ENOTDIR' });
  const sync = t.throws(() => setXattr(R(`${deep}/gone`), 'user.x', Buffer.from('1')), { code: 'ENOENT' }) as FsError;
  t.is(sync.path, `${deep}/gone`);
  t.throws(() => readDirents(R(`${deep}/file`), { lower: true }), { code: 'ENOTDIR' });
  t.throws(() => host.lstatSync(R(missing)), { code: 'ENOENT' });
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('many concurrent calls on different long paths each get their own answer', async (t) => {
  const { root, beforeFds } = setup();
  const dirs = Array.from({ length: 8 }, (_, i) => deepDir(root, host.PATH_MAX + 300 * i, `${i}`.repeat(180)));
  dirs.forEach((d, i) => onHost(`${d}/f`, (q) => fs.writeFileSync(q, 'x'.repeat(i + 1))));
  const sizes = await Promise.all(Array.from({ length: 400 }, (_, k) => host.lstat(R(`${dirs[k % 8]}/f`)).then((s) => s.size)));
  t.deepEqual(sizes, Array.from({ length: 400 }, (_, k) => (k % 8) + 1));
  const mixed = await Promise.allSettled(Array.from({ length: 100 }, (_, k) => host.readdirTyped(R(k % 2 ? `${dirs[k % 8]}/nope` : dirs[k % 8]!))));
  t.is(mixed.filter((r) => r.status === 'rejected').length, 50);
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('a union whose branches themselves lie beyond PATH_MAX: lookups, copy-up, whiteouts, a directory move', async (t) => {
  const { root, beforeFds } = setup();
  const base = deepDir(root, host.PATH_MAX + 50);
  for (const n of ['lower', 'upper', 'work']) onHost(`${base}/${n}`, (q) => fs.mkdirSync(q));
  onHost(`${base}/lower/dir`, (q) => fs.mkdirSync(q));
  onHost(`${base}/lower/dir/f`, (q) => fs.writeFileSync(q, 'lower'));
  onHost(`${base}/lower/gone`, (q) => fs.writeFileSync(q, 'bye'));
  const u = createUnion({ lowers: [`${base}/lower`], upper: `${base}/upper`, work: `${base}/work` });
  const names = async (p: string) => (await u.ops.readdir(vpath(p))).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();
  const owner = { uid: 0, gid: 0 };
  t.deepEqual(await names('/'), ['dir', 'gone']);
  t.is((await u.ops.getattr(vpath('/dir/f'))).size, 5);
  await u.ops.chmod(vpath('/dir/f'), 0o600); // copy-up through the work dir
  t.is(onHost(`${base}/upper/dir/f`, (q) => fs.readFileSync(q, 'utf8')), 'lower');
  await u.ops.unlink(vpath('/gone'));
  t.true(onHost(`${base}/upper/gone`, (q) => fs.lstatSync(q).isCharacterDevice()));
  await u.ops.mkdir(vpath('/new'), 0o755, owner);
  const { fh } = await u.ops.create(vpath('/new/file'), 0o644, fs.constants.O_WRONLY, owner);
  await u.ops.write(fh, Buffer.from('hello'), 5, 0);
  await u.ops.release(fh);
  await u.ops.rename(vpath('/dir'), vpath('/moved'));
  t.deepEqual(await names('/'), ['moved', 'new']);
  t.deepEqual(await names('/moved'), ['f']);
  t.is((await u.ops.getattr(vpath('/new/file'))).size, 5);
  await u.close();
  t.is(openPathFds(), beforeFds, 'no fd left open');
});

test.serial('a union with a tree deeper than PATH_MAX inside a lower: read, copied up, listed, removed', async (t) => {
  const root = tmpRoot();
  for (const n of ['lower', 'upper', 'work']) fs.mkdirSync(`${root}/${n}`);
  const rel = Array.from({ length: 30 }, () => COMP).join('/');
  const lowerDeep = deepDir(`${root}/lower`, bytes(`${root}/lower/${rel}`));
  onHost(`${lowerDeep}/f`, (q) => fs.writeFileSync(q, 'deep lower'));
  const beforeFds = openPathFds();
  const u = createUnion({ lowers: [`${root}/lower`], upper: `${root}/upper`, work: `${root}/work` });
  const p: VPath = vpath(`/${rel}/f`);
  t.is((await u.ops.getattr(p)).size, 10);
  const fh = (await u.ops.open(p, fs.constants.O_RDWR)).fh; // copy-up of every directory on the way
  await u.ops.write(fh, Buffer.from('DEEP'), 4, 0);
  await u.ops.release(fh);
  t.is(onHost(`${root}/upper/${rel}/f`, (q) => fs.readFileSync(q, 'utf8')), 'DEEP lower');
  t.is(onHost(`${lowerDeep}/f`, (q) => fs.readFileSync(q, 'utf8')), 'deep lower', 'the lower is untouched');
  const dir = vpath(`/${rel}`);
  t.deepEqual((await u.ops.readdir(dir)).map((e) => e.name).sort(), ['.', '..', 'f']);
  await u.ops.unlink(p);
  t.true(onHost(`${root}/upper/${rel}/f`, (q) => fs.lstatSync(q).isCharacterDevice()), 'a whiteout hides the lower file');
  t.deepEqual((await u.ops.readdir(dir)).map((e) => e.name).sort(), ['.', '..']);
  await u.ops.rmdir(dir);
  t.is((await u.ops.getattr(vpath(`/${rel.slice(0, rel.lastIndexOf('/'))}`))).mode & fs.constants.S_IFMT, fs.constants.S_IFDIR);
  await t.throwsAsync(u.ops.getattr(dir), { code: 'ENOENT' });
  t.is(fs.readdirSync(`${root}/work`).filter((n) => n.startsWith('#')).length, 0);
  await u.close();
  t.is(openPathFds(), beforeFds, 'no fd left open');
});
