// The command line's lifecycle through real mounts: mount returns once serving, umount leaves
// no mount and no process (also after the server was SIGKILLed), -f serves until SIGTERM, the
// mount(8) helper form works, and every bad input gets one line naming it with nothing mounted.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { logFor } from '../../src/host/runtime.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { LAYERFS_BIN, layerfsCli, mountedFsType } from '../helpers/mounts.js';
import { alive, until } from '../helpers/wait.js';

const space = scratch(test);

interface Layers { top: string; base: string; mnt: string; root: string }

async function layers(name: string): Promise<Layers> {
  const root = await space.dir(name);
  const top = path.join(root, 'top');
  const base = path.join(root, 'base');
  const mnt = path.join(root, 'mnt');
  for (const d of [top, base, mnt, path.join(base, 'etc')]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(base, 'etc', 'hostname'), 'base\n');
  fs.writeFileSync(path.join(top, 'hello'), 'top\n');
  return { top, base, mnt, root };
}

/** The server pid layerfs recorded for a mount, read from its runtime record. */
function serverPid(mnt: string): number | undefined {
  const f = path.join('/run/layerfs', `${encodeURIComponent(mnt)}.json`);
  try {
    return (JSON.parse(fs.readFileSync(f, 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

/** Never leave a mount behind, whatever a test did. */
async function cleanup(mnt: string): Promise<void> {
  if (mountedFsType(mnt) !== undefined) {
    const pid = serverPid(mnt);
    await layerfsCli(['umount', mnt]).catch(() => undefined);
    if (mountedFsType(mnt) !== undefined) spawn('umount', ['-l', mnt]);
    if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

test('mount returns once serving; umount leaves no mount and no process', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('basic');
  try {
    const m = await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base}`, l.mnt]);
    t.is(m.code, 0, m.stderr);
    // Serving right away: no sleep between the command's return and the first access.
    t.is(fs.readFileSync(path.join(l.mnt, 'hello'), 'utf8'), 'top\n');
    t.is(fs.readFileSync(path.join(l.mnt, 'etc/hostname'), 'utf8'), 'base\n');
    // "." and ".." are listed (glibc drops entries whose d_ino is 0, as layerfs once sent "..").
    const ls = spawnSync('ls', ['-a', path.join(l.mnt, 'etc')], { encoding: 'utf8' });
    t.deepEqual(ls.stdout.split('\n').filter((x) => x !== ''), ['.', '..', 'hostname']);
    t.is(mountedFsType(l.mnt), 'fuse.layerfs');
    const pid = serverPid(l.mnt);
    t.truthy(pid && alive(pid), 'a server process is recorded and alive');
    // D65: V8's threads at nice 19; the main thread and libuv's pool (the last made: 8 unless
    // UV_THREADPOOL_SIZE says otherwise) at 0.
    const pool = Number(process.env.UV_THREADPOOL_SIZE ?? 8);
    const nice = (tid: number): number => Number(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
    const others = fs.readdirSync(`/proc/${pid}/task`).map(Number).filter((x) => x !== pid).sort((a, b) => a - b).map(nice);
    t.is(nice(pid!), 0);
    t.deepEqual(others.slice(-pool), Array<number>(pool).fill(0));
    t.true(others.length > pool && others.slice(0, -pool).every((n) => n === 19), `threads' nice: ${others.join(' ')}`);
    const u = await layerfsCli(['umount', l.mnt]);
    t.is(u.code, 0, u.stderr);
    t.is(mountedFsType(l.mnt), undefined);
    t.false(alive(pid!), 'umount waits until the server has exited');
  } finally {
    await cleanup(l.mnt);
  }
});

// libfuse 2 refused a mountpoint holding files ("mountpoint is not empty", said only in the
// server's log); the kernel's overlayfs mounts over them, hiding them until the unmount.
test('a mountpoint that holds files is mounted over, as the kernel overlayfs does, with either engine', async (t) => {
  if (!requireMountCapable(t)) return;
  for (const engine of ['kernel', 'libfuse']) {
    const l = await layers(`nonempty-${engine}`);
    fs.writeFileSync(path.join(l.mnt, 'under'), 'hidden while mounted\n');
    try {
      const m = await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base},engine=${engine}`, l.mnt]);
      t.is(m.code, 0, m.stderr);
      t.deepEqual(fs.readdirSync(l.mnt).sort(), ['etc', 'hello'], `${engine}: the union, not what lies under it`);
      t.is((await layerfsCli(['umount', l.mnt])).code, 0);
      t.deepEqual(fs.readdirSync(l.mnt), ['under'], `${engine}: back after the unmount`);
    } finally {
      await cleanup(l.mnt);
    }
  }
});

test('the server a mount leaves running writes what it has to say to its log file', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('log');
  const upper = path.join(l.root, 'upper');
  const work = path.join(l.root, 'work');
  // What a copy-up cut short by a crash leaves in the work dir: the next server clears it, and
  // says so. With no terminal, only its log file can tell.
  fs.mkdirSync(path.join(work, 'work', '#layerfs-1-1'), { recursive: true });
  fs.mkdirSync(upper);
  const log = logFor(l.mnt);
  try {
    const m = await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base},upperdir=${upper},workdir=${work}`, l.mnt]);
    t.is(m.code, 0, m.stderr);
    t.is(m.stderr, '', 'the mount command itself says nothing');
    t.regex(fs.readFileSync(log, 'utf8'), /cleared 1 leftover\(s\) of interrupted copy-ups/);
    t.deepEqual(fs.readdirSync(path.join(work, 'work')), []);
    t.is((fs.statSync(log).mode & 0o777), 0o600);
    t.is((await layerfsCli(['umount', l.mnt])).code, 0);
    t.true(fs.existsSync(log), 'a log with something in it is kept after the unmount');
    // A second mount has nothing to say: its log is made anew, and gone with the mount.
    const again = await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base},upperdir=${upper},workdir=${work}`, l.mnt]);
    t.is(again.code, 0, again.stderr);
    t.is(fs.readFileSync(log, 'utf8'), '');
    t.is((await layerfsCli(['umount', l.mnt])).code, 0);
    t.false(fs.existsSync(log), 'an empty log goes with its mount');
  } finally {
    await cleanup(l.mnt);
  }
});

// D38: the kernel reads ahead 1020 KiB (D56: one READ of 255 pages) in a layerfs mount by default
// (its own default for FUSE is 128 KiB), or what readahead= says; what is read is the file all the same.
test('a mount reads ahead 1020 KiB, or what readahead= says', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('readahead');
  const data = Buffer.alloc(3 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
  fs.writeFileSync(path.join(l.base, 'big'), data);
  const readaheadKiB = (): number => {
    const dev = spawnSync('mountpoint', ['-d', l.mnt], { encoding: 'utf8' }).stdout.trim();
    return Number(fs.readFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8'));
  };
  try {
    for (const [opt, want] of [['', 1020], [',readahead=256', 256]] as const) {
      const m = await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base}${opt}`, l.mnt]);
      t.is(m.code, 0, m.stderr);
      t.is(readaheadKiB(), want, opt);
      t.true(fs.readFileSync(path.join(l.mnt, 'big')).equals(data), opt);
      t.is((await layerfsCli(['umount', l.mnt])).code, 0);
    }
  } finally {
    await cleanup(l.mnt);
  }
});

test('a mountpoint too long to name a runtime record after it mounts and unmounts', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('long-mountpoint');
  // 300 bytes below the scratch dir: the encoded name would pass NAME_MAX (the kernel takes it).
  const mnt = path.join(l.root, 'm'.repeat(150), 'n'.repeat(150));
  fs.mkdirSync(mnt, { recursive: true });
  try {
    const m = await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base}`, mnt]);
    t.is(m.code, 0, m.stderr);
    t.is(fs.readFileSync(path.join(mnt, 'hello'), 'utf8'), 'top\n');
    const u = await layerfsCli(['umount', mnt]);
    t.is(u.code, 0, u.stderr);
    t.is(mountedFsType(mnt), undefined);
  } finally {
    if (mountedFsType(mnt) !== undefined) spawn('umount', ['-l', mnt]);
  }
});

test('a mount without upperdir is read-only: every change gets EROFS', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('ro');
  try {
    t.is((await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base}`, l.mnt])).code, 0);
    const p = (s: string) => path.join(l.mnt, s);
    t.throws(() => fs.writeFileSync(p('hello'), 'x'), { code: 'EROFS' });
    t.throws(() => fs.writeFileSync(p('new'), 'x'), { code: 'EROFS' });
    t.throws(() => fs.mkdirSync(p('dir')), { code: 'EROFS' });
    t.throws(() => fs.unlinkSync(p('hello')), { code: 'EROFS' });
    t.throws(() => fs.renameSync(p('hello'), p('hello2')), { code: 'EROFS' });
    t.throws(() => fs.chmodSync(p('hello'), 0o600), { code: 'EROFS' });
    t.throws(() => fs.accessSync(p('hello'), fs.constants.W_OK), { code: 'EROFS' });
    t.is(fs.readFileSync(path.join(l.top, 'hello'), 'utf8'), 'top\n', 'the branch is untouched');
  } finally {
    await cleanup(l.mnt);
  }
});

test('after the server is SIGKILLed, layerfs umount clears the dead mount', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('killed');
  try {
    t.is((await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base}`, l.mnt])).code, 0);
    const pid = serverPid(l.mnt)!;
    process.kill(pid, 'SIGKILL');
    await until(() => !alive(pid));
    // ENOTCONN once the kernel has torn the connection down; ECONNABORTED for a request caught
    // while it does (right after the server's exit).
    const e = t.throws(() => fs.statSync(path.join(l.mnt, 'hello')));
    t.true(['ENOTCONN', 'ECONNABORTED'].includes((e as NodeJS.ErrnoException | undefined)?.code ?? ''), String(e));
    const u = await layerfsCli(['umount', l.mnt]);
    t.is(u.code, 0, u.stderr);
    t.is(mountedFsType(l.mnt), undefined);
    t.true(fs.statSync(l.mnt).isDirectory(), 'the mountpoint is usable again');
  } finally {
    await cleanup(l.mnt);
  }
});

test('umount(8) by hand also ends the server', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('plain-umount');
  try {
    t.is((await layerfsCli(['mount', '-o', `lowerdir=${l.top}:${l.base}`, l.mnt])).code, 0);
    const pid = serverPid(l.mnt)!;
    const r = spawn('umount', [l.mnt]);
    await new Promise((res) => r.on('exit', res));
    t.true(await until(() => !alive(pid)), 'the server notices and exits');
  } finally {
    await cleanup(l.mnt);
  }
});

test('-f serves in the foreground until SIGTERM, then unmounts cleanly', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('fg');
  const child = spawn(process.execPath, [LAYERFS_BIN, 'mount', '-f', '-o', `lowerdir=${l.top}:${l.base}`, l.mnt], { stdio: 'ignore' });
  try {
    t.true(await until(() => mountedFsType(l.mnt) === 'fuse.layerfs'), 'mounted');
    t.is(fs.readFileSync(path.join(l.mnt, 'hello'), 'utf8'), 'top\n');
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    child.kill('SIGTERM');
    t.is(await exited, 0);
    t.is(mountedFsType(l.mnt), undefined);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await cleanup(l.mnt);
  }
});

test('the mount.fuse helper form (what mount -t fuse.layerfs and fstab run) works', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('helper');
  // mount(8) resets PATH to the system's before it runs mount.fuse, so `mount -t fuse.layerfs`
  // needs an installed layerfs; mount.fuse itself is what turns the fstab form into
  // `layerfs layerfs MNT -o OPTS` run from PATH, and that is what is tested here.
  const bin = path.join(l.root, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(LAYERFS_BIN, path.join(bin, 'layerfs'));
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
  try {
    const r = spawn('mount.fuse3', ['layerfs', l.mnt, '-t', 'layerfs', '-o', `rw,nodev,lowerdir=${l.top}:${l.base}`], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    r.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((res) => r.on('exit', res));
    t.is(code, 0, err);
    t.is(fs.readFileSync(path.join(l.mnt, 'etc/hostname'), 'utf8'), 'base\n');
    t.is((await layerfsCli(['umount', l.mnt])).code, 0);
    t.is(mountedFsType(l.mnt), undefined);
  } finally {
    await cleanup(l.mnt);
  }
});

test('bad input: one line naming the problem, non-zero exit, nothing mounted', async (t) => {
  if (!requireMountCapable(t)) return;
  const l = await layers('bad');
  const file = path.join(l.root, 'a-file');
  fs.writeFileSync(file, '');
  const inBranch = path.join(l.base, 'etc');
  const upper = path.join(l.root, 'upper');
  fs.mkdirSync(upper);
  const cases: Array<[string, string[], RegExp]> = [
    ['missing branch', ['-o', `lowerdir=${l.top}:${l.root}/nope`, l.mnt], /lowerdir .*nope: no such directory/],
    ['branch is a file', ['-o', `lowerdir=${l.top}:${file}`, l.mnt], /lowerdir .*a-file: not a directory/],
    ['same dir twice', ['-o', `lowerdir=${l.top}:${l.top}`, l.mnt], /the same directory as/],
    ['missing mountpoint', ['-o', `lowerdir=${l.top}`, `${l.root}/nomnt`], /mountpoint .*nomnt: no such directory/],
    ['mountpoint is a file', ['-o', `lowerdir=${l.top}`, file], /mountpoint .*: not a directory/],
    ['mountpoint inside a branch', ['-o', `lowerdir=${l.top}:${l.base}`, inBranch], /mountpoint .*: inside lowerdir/],
    ['upperdir without workdir', ['-o', `lowerdir=${l.top},upperdir=${upper}`, l.mnt], /upperdir= needs workdir=/],
    ['workdir without upperdir', ['-o', `lowerdir=${l.top},workdir=${upper}`, l.mnt], /workdir= needs upperdir=/],
    ['unknown option', ['-o', `lowerdir=${l.top},frobnicate=1`, l.mnt], /unknown option: frobnicate=1/],
    ['no lowerdir', ['-o', 'ro', l.mnt], /missing lowerdir=/],
  ];
  for (const [what, args, re] of cases) {
    const r = await layerfsCli(['mount', ...args]);
    t.not(r.code, 0, what);
    const lines = r.stderr.trim().split('\n');
    t.is(lines.length, 1, `${what}: one line (${r.stderr})`);
    t.regex(lines[0] ?? '', re, what);
    t.is(mountedFsType(l.mnt), undefined, `${what}: nothing mounted`);
  }
  // Already mounted.
  try {
    t.is((await layerfsCli(['mount', '-o', `lowerdir=${l.top}`, l.mnt])).code, 0);
    const r = await layerfsCli(['mount', '-o', `lowerdir=${l.base}`, l.mnt]);
    t.not(r.code, 0);
    t.regex(r.stderr, /already mounted/);
    t.is(fs.readFileSync(path.join(l.mnt, 'hello'), 'utf8'), 'top\n', 'the first mount still serves');
  } finally {
    await cleanup(l.mnt);
  }
  t.regex((await layerfsCli(['umount', l.mnt])).stderr, /not mounted/);
});

test('--help and --version', async (t) => {
  const h = await layerfsCli(['--help']);
  t.is(h.code, 0);
  t.regex(h.stdout, /lowerdir=DIR\[:DIR\.\.\.\]/);
  const v = await layerfsCli(['--version']);
  t.is(v.code, 0);
  const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  t.is(v.stdout.trim(), `layerfs ${pkg.version}`);
});
