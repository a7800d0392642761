// src/ops/open.ts (for writing), create.ts and write.ts through createUnion on real temp dirs:
// the first write to a lower file copies it up and lands in the upper only; create over a
// whiteout replaces it; truncate copies up. Lowers are never touched.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { create } from '../../src/ops/create.js';
import { getattr } from '../../src/ops/getattr.js';
import { open, read, release } from '../../src/ops/open.js';
import { unlink } from '../../src/ops/unlink.js';
import { ftruncate, truncate, write } from '../../src/ops/write.js';
import { mknod, setXattr } from '../../src/host/libc.js';
import { vpath, type RealPath } from '../../src/path.js';
import { createUnion } from '../../src/union.js';

const roots: string[] = [];
test.after.always(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function setup() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-write-'));
  roots.push(root);
  const [upper, work, lower] = ['upper', 'work', 'lower'].map((n) => path.join(root, n)) as [string, string, string];
  for (const d of [upper, work, lower, path.join(lower, 'd')]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(lower, 'd/f'), 'lower data');
  const u = createUnion({ lowers: [lower], upper, work });
  return { upper, work, lower, ctx: u.ctx };
}

async function readAll(ctx: ReturnType<typeof setup>['ctx'], p: string): Promise<string> {
  const fh = (await open(ctx, vpath(p), fs.constants.O_RDONLY)).fh;
  const buf = Buffer.alloc(1024);
  const n = await read(ctx, fh, buf, buf.length, 0);
  await release(ctx, fh);
  return buf.toString('utf8', 0, n);
}

test('opening a lower file for writing copies it up; the write lands in the upper only', async (t) => {
  const s = setup();
  const fh = (await open(s.ctx, vpath('/d/f'), fs.constants.O_WRONLY)).fh;
  t.is(await write(s.ctx, fh, Buffer.from('UPPER'), 5, 0), 5);
  await release(s.ctx, fh);
  t.is(fs.readFileSync(path.join(s.upper, 'd/f'), 'utf8'), 'UPPER data');
  t.is(fs.readFileSync(path.join(s.lower, 'd/f'), 'utf8'), 'lower data');
  t.is(await readAll(s.ctx, '/d/f'), 'UPPER data');
});

test('an open that copies a file up tells the xattr names the copy got; a later open tells none', async (t) => {
  const s = setup();
  setXattr(path.join(s.lower, 'd/f') as RealPath, 'user.kept', Buffer.from('v'));
  setXattr(path.join(s.lower, 'd/f') as RealPath, 'trusted.overlay.origin', Buffer.from('bookkeeping'));
  const first = await open(s.ctx, vpath('/d/f'), fs.constants.O_WRONLY);
  t.deepEqual(first.copied, ['user.kept'], 'the overlay\'s own names are not copied');
  const again = await open(s.ctx, vpath('/d/f'), fs.constants.O_WRONLY);
  t.is(again.copied, undefined, 'already in the upper: nothing copied');
  await release(s.ctx, first.fh);
  await release(s.ctx, again.fh);
});

// As the kernel's overlayfs (6.x) does: a read-only fd opened before a copy-up reads the upper
// copy afterwards (test/integration/copyup.test.ts checks the kernel does so).
test('a read-only handle opened before the copy-up reads the copy afterwards', async (t) => {
  const s = setup();
  const ro = (await open(s.ctx, vpath('/d/f'), fs.constants.O_RDONLY)).fh;
  const rw = (await open(s.ctx, vpath('/d/f'), fs.constants.O_RDWR | fs.constants.O_TRUNC)).fh;
  await write(s.ctx, rw, Buffer.from('new'), 3, 0);
  const buf = Buffer.alloc(64);
  const n = await read(s.ctx, ro, buf, 64, 0);
  t.is(buf.toString('utf8', 0, n), 'new');
  await release(s.ctx, ro);
  await release(s.ctx, rw);
  t.is(await readAll(s.ctx, '/d/f'), 'new');
});

test('a read-only handle on a lower file reads its copy whole, though the copy grew past the lower size', async (t) => {
  const s = setup();
  const ro = (await open(s.ctx, vpath('/d/f'), fs.constants.O_RDONLY)).fh;
  const buf = Buffer.alloc(64);
  t.is(buf.toString('utf8', 0, await read(s.ctx, ro, buf, 64, 0)), 'lower data', 'read of the lower file, to its size');
  const rw = (await open(s.ctx, vpath('/d/f'), fs.constants.O_WRONLY)).fh;
  await write(s.ctx, rw, Buffer.from(' and more'), 9, 10);
  t.is(buf.toString('utf8', 0, await read(s.ctx, ro, buf, 64, 0)), 'lower data and more');
  t.is(buf.toString('utf8', 0, await read(s.ctx, ro, buf, 64, 10)), ' and more', 'past the size the lower had');
  await release(s.ctx, ro);
  await release(s.ctx, rw);
});

test('create makes a file owned by the caller; over a whiteout it takes its place', async (t) => {
  const s = setup();
  await unlink(s.ctx, vpath('/d/f'));
  const { fh, made } = await create(s.ctx, vpath('/d/f'), 0o640, fs.constants.O_WRONLY | fs.constants.O_CREAT, { uid: 1234, gid: 5678 });
  t.deepEqual(made, await getattr(s.ctx, vpath('/d/f')));
  await write(s.ctx, fh, Buffer.from('again'), 5, 0);
  await release(s.ctx, fh);
  const st = fs.lstatSync(path.join(s.upper, 'd/f'));
  t.true(st.isFile());
  t.is(st.mode & 0o7777, 0o640);
  t.deepEqual([st.uid, st.gid], [1234, 5678]);
  t.is(await readAll(s.ctx, '/d/f'), 'again');
  await t.throwsAsync(create(s.ctx, vpath('/d/f'), 0o644, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, { uid: 0, gid: 0 }), { code: 'EEXIST' });
  // An existing name is opened, not made: no attributes come with it.
  const found = await create(s.ctx, vpath('/d/f'), 0o644, fs.constants.O_CREAT | fs.constants.O_WRONLY, { uid: 0, gid: 0 });
  t.is(found.made, undefined);
  await release(s.ctx, found.fh);
  t.deepEqual(fs.readdirSync(s.work), []);
});

// The file is made with the mode asked, then changed only where the host made it otherwise: under
// this process's umask (022 as a rule), 0777 comes out 0755 and must be set again.
test('create gives a file made for the server\'s own user the mode asked, whatever the server\'s umask', async (t) => {
  const s = setup();
  const self = { uid: process.geteuid!(), gid: process.getegid!() };
  for (const [name, mode, umask, want] of [['a', 0o666, 0o022, 0o644], ['b', 0o600, 0o022, 0o600], ['c', 0o4755, 0, 0o4755], ['d', 0o777, undefined, 0o777]] as const) {
    const p = vpath(`/d/${name}`);
    const { fh, made } = await create(s.ctx, p, mode, fs.constants.O_WRONLY | fs.constants.O_CREAT, umask === undefined ? self : { ...self, umask });
    await release(s.ctx, fh);
    const st = fs.lstatSync(path.join(s.upper, 'd', name));
    t.is(st.mode & 0o7777, want, name);
    t.deepEqual([st.uid, st.gid], [self.uid, self.gid]);
    t.is(made?.mode, st.mode, name);
  }
});

// D37: a file for the server's own user where no lower has the name is made at its name; a
// whiteout left there (a lower that had the name is gone, say) makes that fail, and the general
// way puts the file in its place.
test('create where no lower has the name: made at its name, also over a whiteout left there', async (t) => {
  const s = setup();
  const self = { uid: process.geteuid!(), gid: process.getegid!() };
  fs.mkdirSync(path.join(s.upper, 'd'));
  mknod(path.join(s.upper, 'd/ghost') as RealPath, fs.constants.S_IFCHR | 0o000, 0);
  for (const name of ['fresh', 'ghost']) {
    const { fh, made } = await create(s.ctx, vpath(`/d/${name}`), 0o640, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, self);
    t.deepEqual(made, await getattr(s.ctx, vpath(`/d/${name}`)), name);
    await write(s.ctx, fh, Buffer.from(name), name.length, 0);
    await release(s.ctx, fh);
    const st = fs.lstatSync(path.join(s.upper, 'd', name));
    t.true(st.isFile(), name);
    t.is(st.mode & 0o7777, 0o640, name);
    t.is(await readAll(s.ctx, `/d/${name}`), name);
  }
  t.deepEqual(fs.readdirSync(s.work), [], 'nothing left in the work dir');
});

// D37 for every new entry: mkdir, mknod, symlink and link make the server's own entries at their
// names where no lower has them. The host's umask (022 as a rule) cuts 0777 to 0755 there, and a
// set-group-ID parent gives its group and, to a directory, its bit: what the entry ends up with
// must be what was asked all the same. A whiteout left at a name makes the make fail, and the
// work-dir way replaces it.
test('mkdir, mknod, symlink and link where no lower has the name: the mode and owner asked, also over a whiteout left there', async (t) => {
  const s = setup();
  const { mkdir } = await import('../../src/ops/mkdir.js');
  const { symlink, mknod: mknodOp, link } = await import('../../src/ops/symlink.js');
  const self = { uid: process.geteuid!(), gid: process.getegid!() };
  const sg = path.join(s.lower, 'sg');
  fs.mkdirSync(sg);
  fs.chownSync(sg, self.uid, 4321);
  fs.chmodSync(sg, 0o2775);
  // The umask the host applies to what the server makes: this process's (022 as a rule).
  t.not(process.umask() & 0o022, 0, 'this test needs a umask that cuts group and other write');
  {
    for (const dir of ['/d', '/sg']) {
      const wantGid = dir === '/sg' ? 4321 : self.gid;
      // The upper's directory, as a copy-up makes it, to hold the whiteouts left there.
      fs.mkdirSync(path.join(s.upper, dir), { recursive: true });
      const lowerDir = fs.lstatSync(path.join(s.lower, dir));
      fs.chownSync(path.join(s.upper, dir), lowerDir.uid, lowerDir.gid);
      fs.chmodSync(path.join(s.upper, dir), lowerDir.mode & 0o7777);
      mknod(path.join(s.upper, dir, 'ghost-dir') as RealPath, fs.constants.S_IFCHR, 0);
      mknod(path.join(s.upper, dir, 'ghost-fifo') as RealPath, fs.constants.S_IFCHR, 0);
      mknod(path.join(s.upper, dir, 'ghost-link') as RealPath, fs.constants.S_IFCHR, 0);
      mknod(path.join(s.upper, dir, 'ghost-hard') as RealPath, fs.constants.S_IFCHR, 0);
      for (const pre of ['new', 'ghost']) {
        const at = (n: string) => vpath(`${dir}/${pre}-${n}`);
        const real = (n: string) => path.join(s.upper, dir, `${pre}-${n}`);
        await mkdir(s.ctx, at('dir'), 0o777, self);
        await mknodOp(s.ctx, at('fifo'), fs.constants.S_IFIFO | 0o666, 0, self);
        await symlink(s.ctx, 'somewhere', at('link'), self);
        await link(s.ctx, vpath('/d/f'), at('hard'));
        const d = fs.lstatSync(real('dir'));
        t.true(d.isDirectory(), `${dir} ${pre}`);
        t.is(d.mode & 0o7777, dir === '/sg' ? 0o2777 : 0o777, `${dir} ${pre}: the directory's mode, not cut by the umask`);
        t.deepEqual([d.uid, d.gid], [self.uid, wantGid], `${dir} ${pre}`);
        const f = fs.lstatSync(real('fifo'));
        t.true(f.isFIFO(), `${dir} ${pre}`);
        t.is(f.mode & 0o7777, 0o666, `${dir} ${pre}: the fifo's mode, not cut by the umask`);
        t.deepEqual([f.uid, f.gid], [self.uid, wantGid], `${dir} ${pre}`);
        t.is(fs.readlinkSync(real('link')), 'somewhere');
        t.is(fs.lstatSync(real('hard')).ino, fs.lstatSync(path.join(s.upper, 'd/f')).ino, `${dir} ${pre}: one inode`);
        // What a lookup shows is what is on disk.
        t.is((await getattr(s.ctx, at('dir'))).mode, d.mode);
        t.is((await getattr(s.ctx, at('fifo'))).mode, f.mode);
        t.true(((await getattr(s.ctx, at('link'))).mode & fs.constants.S_IFMT) === fs.constants.S_IFLNK);
      }
    }
    t.is((await getattr(s.ctx, vpath('/d/f'))).nlink, 5, 'four new names of one file');
  }
  t.deepEqual(fs.readdirSync(s.work), [], 'nothing left in the work dir');
});

test('truncate and ftruncate copy up and cut', async (t) => {
  const s = setup();
  await truncate(s.ctx, vpath('/d/f'), 5);
  t.is(fs.readFileSync(path.join(s.upper, 'd/f'), 'utf8'), 'lower');
  const fh = (await open(s.ctx, vpath('/d/f'), fs.constants.O_RDWR)).fh;
  await ftruncate(s.ctx, fh, 2);
  await release(s.ctx, fh);
  t.is(await readAll(s.ctx, '/d/f'), 'lo');
  t.is(fs.readFileSync(path.join(s.lower, 'd/f'), 'utf8'), 'lower data');
  await t.throwsAsync(truncate(s.ctx, vpath('/d'), 0), { code: 'EISDIR' });
});

test('chmod, chown and utimens copy up and change only the upper copy', async (t) => {
  const s = setup();
  const { chmod, chown } = await import('../../src/ops/chmod.js');
  const { utimens } = await import('../../src/ops/utimens.js');
  const before = fs.lstatSync(path.join(s.lower, 'd/f'), { bigint: true });
  await chmod(s.ctx, vpath('/d/f'), 0o600);
  await chown(s.ctx, vpath('/d/f'), 1234, -1);
  await utimens(s.ctx, vpath('/d/f'), 'omit', 1_234_567_890_123_456_789n);
  const st = fs.lstatSync(path.join(s.upper, 'd/f'), { bigint: true });
  t.is(Number(st.mode) & 0o7777, 0o600);
  t.deepEqual([st.uid, st.gid], [1234n, before.gid], 'gid -1 leaves the gid');
  t.is(st.mtimeNs, 1_234_567_890_123_456_789n);
  t.is(st.atimeNs, before.atimeNs, 'omit keeps the copied-up atime');
  const lower = fs.lstatSync(path.join(s.lower, 'd/f'), { bigint: true });
  t.deepEqual([lower.mode, lower.uid, lower.mtimeNs], [before.mode, before.uid, before.mtimeNs], 'the lower is untouched');
  await utimens(s.ctx, vpath('/d/f'), 'now', 'omit');
  const now = BigInt(Date.now()) * 1_000_000n;
  const after = fs.lstatSync(path.join(s.upper, 'd/f'), { bigint: true });
  t.true(after.atimeNs > now - 10_000_000_000n && after.atimeNs <= now + 1_000_000_000n, 'now is now');
  t.is(after.mtimeNs, 1_234_567_890_123_456_789n);
});

test('symlink, mknod (fifo) and link make new upper entries; link copies the source up first', async (t) => {
  const s = setup();
  const { symlink, mknod, link } = await import('../../src/ops/symlink.js');
  const { getattr } = await import('../../src/ops/getattr.js');
  const owner = { uid: 1234, gid: 5678 };
  await symlink(s.ctx, '../elsewhere', vpath('/d/l'), owner);
  t.is(fs.readlinkSync(path.join(s.upper, 'd/l')), '../elsewhere');
  t.is(fs.lstatSync(path.join(s.upper, 'd/l')).uid, 1234);
  await mknod(s.ctx, vpath('/d/p'), fs.constants.S_IFIFO | 0o640, 0, owner);
  const fifo = fs.lstatSync(path.join(s.upper, 'd/p'));
  t.true(fifo.isFIFO());
  t.is(fifo.mode & 0o7777, 0o640);
  await link(s.ctx, vpath('/d/f'), vpath('/d/h'));
  const a = fs.lstatSync(path.join(s.upper, 'd/f'));
  const b = fs.lstatSync(path.join(s.upper, 'd/h'));
  t.is(a.ino, b.ino, 'both names are one upper inode');
  t.is((await getattr(s.ctx, vpath('/d/f'))).nlink, 2);
  t.is((await getattr(s.ctx, vpath('/d/h'))).ino, (await getattr(s.ctx, vpath('/d/f'))).ino);
  await t.throwsAsync(symlink(s.ctx, 'x', vpath('/d/f'), owner), { code: 'EEXIST' });
  await t.throwsAsync(link(s.ctx, vpath('/d'), vpath('/d2')), { code: 'EPERM' });
  t.deepEqual(fs.readdirSync(s.work), []);
  t.deepEqual(fs.readdirSync(path.join(s.lower, 'd')), ['f'], 'the lower is untouched');
});

test('rename of a lower file: copied up, moved over the target, a whiteout at the old name', async (t) => {
  const s = setup();
  const { rename } = await import('../../src/ops/rename.js');
  fs.writeFileSync(path.join(s.lower, 'target'), 'lower target');
  await rename(s.ctx, vpath('/d/f'), vpath('/target'));
  t.is(await readAll(s.ctx, '/target'), 'lower data');
  t.is((await s.ctx.resolver.resolve(vpath('/d/f'))).kind, 'absent');
  const wh = fs.lstatSync(path.join(s.upper, 'd/f'));
  t.true(wh.isCharacterDevice() && wh.rdev === 0, 'RENAME_WHITEOUT left a char 0:0 whiteout');
  t.deepEqual(fs.readdirSync(path.join(s.lower)).sort(), ['d', 'target']);
  t.is(fs.readFileSync(path.join(s.lower, 'target'), 'utf8'), 'lower target', 'the lower is untouched');
  // An upper-only file moves without leaving a whiteout.
  fs.writeFileSync(path.join(s.upper, 'new'), 'n');
  await rename(s.ctx, vpath('/new'), vpath('/d/new2'));
  t.false(fs.existsSync(path.join(s.upper, 'new')));
  t.is(fs.readFileSync(path.join(s.upper, 'd/new2'), 'utf8'), 'n');
  // Errors as Linux gives them.
  await t.throwsAsync(rename(s.ctx, vpath('/target'), vpath('/d')), { code: 'EISDIR' });
  await t.throwsAsync(rename(s.ctx, vpath('/d'), vpath('/target')), { code: 'ENOTDIR' });
  await t.throwsAsync(rename(s.ctx, vpath('/nope'), vpath('/x')), { code: 'ENOENT' });
  await t.throwsAsync(rename(s.ctx, vpath('/d'), vpath('/d/in')), { code: 'EINVAL' }, 'a directory into itself');
  t.deepEqual(fs.readdirSync(s.work), []);
});

test('setxattr and removexattr copy up and change only the upper copy', async (t) => {
  const s = setup();
  const { setxattr, removexattr, getxattr, listxattr } = await import('../../src/ops/xattr.js');
  await setxattr(s.ctx, vpath('/d/f'), 'user.k', Buffer.from('v'), 0);
  t.is(String(await getxattr(s.ctx, vpath('/d/f'), 'user.k')), 'v');
  t.true(fs.existsSync(path.join(s.upper, 'd/f')));
  await setxattr(s.ctx, vpath('/d/f'), 'trusted.overlay.mine', Buffer.from('w'), 0);
  t.deepEqual((await listxattr(s.ctx, vpath('/d/f'))).sort(), ['trusted.overlay.mine', 'user.k']);
  await removexattr(s.ctx, vpath('/d/f'), 'user.k');
  t.is(await getxattr(s.ctx, vpath('/d/f'), 'user.k'), undefined);
  await t.throwsAsync(removexattr(s.ctx, vpath('/d/f'), 'user.none'), { code: 'ENODATA' });
});

test('a name that collides with a whiteout marker (.wh.*) is refused with EINVAL', async (t) => {
  const s = setup();
  const { symlink } = await import('../../src/ops/symlink.js');
  const { mkdir } = await import('../../src/ops/mkdir.js');
  const { rename } = await import('../../src/ops/rename.js');
  const owner = { uid: 0, gid: 0 };
  await t.throwsAsync(create(s.ctx, vpath('/d/.wh.f'), 0o644, fs.constants.O_CREAT | fs.constants.O_WRONLY, owner), { code: 'EINVAL' });
  await t.throwsAsync(mkdir(s.ctx, vpath('/.wh..wh..opq'), 0o755, owner), { code: 'EINVAL' });
  await t.throwsAsync(symlink(s.ctx, 'x', vpath('/.wh.d'), owner), { code: 'EINVAL' });
  await t.throwsAsync(rename(s.ctx, vpath('/d/f'), vpath('/d/.wh.g')), { code: 'EINVAL' });
  t.is(fs.readFileSync(path.join(s.lower, 'd/f'), 'utf8'), 'lower data');
  t.deepEqual(fs.readdirSync(s.upper), []);
});
