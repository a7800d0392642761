// src/copyup.ts and src/whiteout-writer.ts on real temp dirs: what a copy-up leaves in the upper
// (data, mode, owner, ns times, xattrs, parents with their metadata), that it goes through the
// work dir atomically, and the whiteout / opaque formats written for both settings.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BranchSet } from '../../src/branch.js';
import { CopyUp, WORK_PREFIX, clearWorkDir } from '../../src/copyup.js';
import { getXattr, listXattr, setTimesNs, setXattr } from '../../src/host/libc.js';
import { vpath, type Name, type RealPath } from '../../src/path.js';
import { Resolver } from '../../src/resolve.js';
import { WhiteoutWriter } from '../../src/whiteout-writer.js';

const roots: string[] = [];
test.after.always(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function setup() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-copyup-'));
  roots.push(root);
  const [upper, work, lower] = ['upper', 'work', 'lower'].map((n) => path.join(root, n)) as [string, string, string];
  for (const d of [upper, work, lower]) fs.mkdirSync(d);
  const branches = new BranchSet([lower as RealPath], upper as RealPath);
  const resolver = new Resolver(branches);
  return { upper, work, lower, branches, resolver, copyUp: new CopyUp(branches, work as RealPath, resolver, (_dev, ino) => ino) };
}

test('a lower file is copied up with data, mode, owner, ns times and xattrs; parents too', async (t) => {
  const s = setup();
  fs.mkdirSync(path.join(s.lower, 'd/e'), { recursive: true, mode: 0o750 });
  fs.chmodSync(path.join(s.lower, 'd'), 0o710);
  fs.chownSync(path.join(s.lower, 'd'), 7, 8);
  setXattr(path.join(s.lower, 'd') as RealPath, 'user.dir', Buffer.from('D'));
  const f = path.join(s.lower, 'd/e/f');
  fs.writeFileSync(f, 'lower data');
  fs.chownSync(f, 1234, 5678);
  fs.chmodSync(f, 0o4751);
  setXattr(f as RealPath, 'user.x', Buffer.from('X'));
  setXattr(f as RealPath, 'trusted.overlay.origin', Buffer.from('bookkeeping'));
  setTimesNs(f as RealPath, 1_111_111_111_987_654_321n, 1_234_567_890_123_456_789n);

  const real = await s.copyUp.ensure(vpath('/d/e/f'));
  t.is(real as string, path.join(s.upper, 'd/e/f'));
  const st = fs.lstatSync(real, { bigint: true });
  t.is(fs.readFileSync(real, 'utf8'), 'lower data');
  t.is(Number(st.mode) & 0o7777, 0o4751, 'set-uid bit survives (mode set after chown)');
  t.deepEqual([st.uid, st.gid], [1234n, 5678n]);
  t.is(st.mtimeNs, 1_234_567_890_123_456_789n);
  t.is(st.atimeNs, 1_111_111_111_987_654_321n);
  t.is(getXattr(real as RealPath, 'user.x')?.toString(), 'X');
  t.false(listXattr(real as RealPath).includes('trusted.overlay.origin'), 'overlay bookkeeping is not copied');
  const d = fs.lstatSync(path.join(s.upper, 'd'));
  t.is(d.mode & 0o7777, 0o710);
  t.deepEqual([d.uid, d.gid], [7, 8]);
  t.is(getXattr(path.join(s.upper, 'd') as RealPath, 'user.dir')?.toString(), 'D');
  t.deepEqual(fs.readdirSync(path.join(s.upper, 'd')), ['e'], 'only the path is copied, not siblings');
  t.deepEqual(fs.readdirSync(s.work), [], 'nothing left in the work dir');
  t.is(fs.readFileSync(f, 'utf8'), 'lower data', 'the lower is untouched');
  const r = await s.resolver.resolve(vpath('/d/e/f'));
  t.true(r.kind === 'file' && r.branch.writable, 'the path now resolves to the upper');
});

test('symlinks and empty files copy up as themselves', async (t) => {
  const s = setup();
  fs.symlinkSync('../target/x', path.join(s.lower, 'l'));
  fs.writeFileSync(path.join(s.lower, 'empty'), '');
  await t.notThrowsAsync(s.copyUp.ensure(vpath('/l')));
  await t.notThrowsAsync(s.copyUp.ensure(vpath('/empty')));
  t.is(fs.readlinkSync(path.join(s.upper, 'l')), '../target/x');
  t.is(fs.statSync(path.join(s.upper, 'empty')).size, 0);
});

test('a copy keeps its lower mode whatever mode the host gives a new file there, with and without a change of owner', async (t) => {
  const s = setup();
  const mine = path.join(s.lower, 'mine');
  const theirs = path.join(s.lower, 'theirs');
  fs.writeFileSync(mine, 'm');
  fs.chmodSync(mine, 0o666);
  fs.writeFileSync(theirs, 't');
  fs.chownSync(theirs, 4321, 4321);
  fs.chmodSync(theirs, 0o2775);
  // A default ACL u::r--,g::---,o::--- on the work dir: every file made there starts 0400,
  // whatever mode was asked and whatever the umask (POSIX ACL xattr: version 2, then tag, perm, id).
  const acl = Buffer.alloc(4 + 3 * 8);
  acl.writeUInt32LE(2, 0);
  [[0x01, 4], [0x04, 0], [0x20, 0]].forEach(([tag, perm], i) => {
    acl.writeUInt16LE(tag!, 4 + i * 8);
    acl.writeUInt16LE(perm!, 6 + i * 8);
    acl.writeUInt32LE(0xffffffff, 8 + i * 8);
  });
  setXattr(s.work as RealPath, 'system.posix_acl_default', acl);
  fs.writeFileSync(path.join(s.work, 'probe'), '', { mode: 0o666 });
  t.is(fs.statSync(path.join(s.work, 'probe')).mode & 0o777, 0o400, 'the host gives new files 0400 here');
  fs.unlinkSync(path.join(s.work, 'probe'));

  await s.copyUp.ensure(vpath('/mine'));
  await s.copyUp.ensure(vpath('/theirs'));
  const a = fs.lstatSync(path.join(s.upper, 'mine'));
  t.is(a.mode & 0o7777, 0o666, 'the mode is put back where the host gave another');
  t.deepEqual([a.uid, a.gid], [process.getuid!(), process.getgid!()]);
  const b = fs.lstatSync(path.join(s.upper, 'theirs'));
  t.is(b.mode & 0o7777, 0o2775, 'set-group-ID survives the chown');
  t.deepEqual([b.uid, b.gid], [4321, 4321]);
});

test('a lower file on another kind of filesystem is copied exactly (sendfile where copy_file_range cannot)', async (t) => {
  // /dev/shm is a tmpfs; the temp dir (the upper) is another filesystem: copy_file_range answers
  // EXDEV between them.
  const s = setup();
  const other = fs.mkdtempSync('/dev/shm/layerfs-copyup-');
  roots.push(other);
  t.not(fs.statSync(other).dev, fs.statSync(s.upper).dev, 'the test needs two filesystems');
  const branches = new BranchSet([other as RealPath], s.upper as RealPath);
  const resolver = new Resolver(branches);
  const copyUp = new CopyUp(branches, s.work as RealPath, resolver, (_dev, ino) => ino);
  const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) & 0xff));
  fs.writeFileSync(path.join(other, 'f'), data);
  setTimesNs(path.join(other, 'f') as RealPath, 1_000_000_000_123n, 2_000_000_000_456n);
  fs.writeFileSync(path.join(other, 'empty'), '');
  await copyUp.ensure(vpath('/f'));
  await copyUp.ensure(vpath('/empty'));
  t.true(fs.readFileSync(path.join(s.upper, 'f')).equals(data));
  t.is(fs.lstatSync(path.join(s.upper, 'f'), { bigint: true }).mtimeNs, 2_000_000_000_456n);
  t.is(fs.statSync(path.join(s.upper, 'empty')).size, 0);
});

test('concurrent copy-ups of one path make one copy', async (t) => {
  const s = setup();
  fs.writeFileSync(path.join(s.lower, 'big'), Buffer.alloc(8 << 20, 1));
  const all = await Promise.all(Array.from({ length: 8 }, () => s.copyUp.ensure(vpath('/big'))));
  t.true(all.every((p) => p === path.join(s.upper, 'big')));
  t.is(fs.statSync(path.join(s.upper, 'big')).size, 8 << 20);
  t.deepEqual(fs.readdirSync(s.work), []);
});

test('an entry already in the upper is not copied again; without an upper it is EROFS', async (t) => {
  const s = setup();
  fs.writeFileSync(path.join(s.lower, 'a'), 'lower');
  fs.writeFileSync(path.join(s.upper, 'a'), 'upper');
  t.is((await s.copyUp.ensure(vpath('/a'))) as string, path.join(s.upper, 'a'));
  t.is(fs.readFileSync(path.join(s.upper, 'a'), 'utf8'), 'upper');
  const ro = new BranchSet([s.lower as RealPath]);
  const c = new CopyUp(ro, s.work as RealPath, new Resolver(ro), (_dev, ino) => ino);
  await t.throwsAsync(c.ensure(vpath('/a')), { code: 'EROFS' });
});

test('clearWorkDir removes only layerfs leftovers', async (t) => {
  const s = setup();
  fs.mkdirSync(path.join(s.work, `${WORK_PREFIX}1-0`));
  fs.writeFileSync(path.join(s.work, `${WORK_PREFIX}1-0/partial`), 'x');
  fs.writeFileSync(path.join(s.work, `${WORK_PREFIX}1-1`), 'half a copy');
  fs.mkdirSync(path.join(s.work, 'work'));
  t.is(await clearWorkDir(s.work as RealPath), 2);
  t.deepEqual(fs.readdirSync(s.work), ['work']);
});

test('whiteouts and opaque markers in the kernel format', async (t) => {
  const s = setup();
  const w = new WhiteoutWriter('overlay');
  const upper = s.branches.upper!;
  await w.add(upper, vpath('/'), 'gone' as Name);
  await w.add(upper, vpath('/'), 'gone' as Name); // again: an existing whiteout is fine
  const st = fs.lstatSync(path.join(s.upper, 'gone'));
  t.true(st.isCharacterDevice());
  t.is(st.rdev, 0);
  t.is(st.mode & 0o7777, 0, "mode 0, as the kernel's whiteouts");
  fs.mkdirSync(path.join(s.upper, 'd'));
  await w.makeOpaque(path.join(s.upper, 'd') as RealPath);
  t.is(getXattr(path.join(s.upper, 'd') as RealPath, 'trusted.overlay.opaque')?.toString(), 'y');
  await w.clearOpaque(path.join(s.upper, 'd') as RealPath);
  t.is(getXattr(path.join(s.upper, 'd') as RealPath, 'trusted.overlay.opaque'), undefined);
  await w.remove(upper, vpath('/'), 'gone' as Name);
  t.false(fs.existsSync(path.join(s.upper, 'gone')));
});

test('whiteouts and opaque markers in the OCI format; remove clears either format', async (t) => {
  const s = setup();
  const w = new WhiteoutWriter('oci');
  const upper = s.branches.upper!;
  await w.add(upper, vpath('/'), 'gone' as Name);
  t.is(fs.statSync(path.join(s.upper, '.wh.gone')).size, 0);
  fs.mkdirSync(path.join(s.upper, 'd'));
  await w.makeOpaque(path.join(s.upper, 'd') as RealPath);
  t.true(fs.existsSync(path.join(s.upper, 'd/.wh..wh..opq')));
  await new WhiteoutWriter('overlay').add(upper, vpath('/'), 'other' as Name);
  await w.remove(upper, vpath('/'), 'other' as Name);
  await w.remove(upper, vpath('/'), 'gone' as Name);
  t.deepEqual(fs.readdirSync(s.upper), ['d']);
  await t.throwsAsync(w.add(upper, vpath('/'), 'n'.repeat(252) as Name), { code: 'ENAMETOOLONG' });
});
