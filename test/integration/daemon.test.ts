// The host daemon (D36) through real mounts: `layerfs daemon` serves every mount made with
// -o daemon in one process; each mount unmounts alone (layerfs umount or umount(8)) while the
// daemon and its other mounts go on; a mount it would deadlock on is refused; SIGTERM ends it and
// unmounts what it serves. Each test has a runtime directory of its own (LAYERFS_RUNTIME_DIR), so
// that its daemon meets no other.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requestControl } from '../../src/host/control.js';
import { requireMountCapable, scratch } from '../helpers/env.js';
import { LAYERFS_BIN, layerfsCli, mountedFsType } from '../helpers/mounts.js';
import { alive, until } from '../helpers/wait.js';

const space = scratch(test);

interface Setup {
  runtime: string;
  env: NodeJS.ProcessEnv;
  base: string;
  top: string;
  upper: string;
  work: string;
  ro: string;
  rw: string;
}

async function setup(name: string): Promise<Setup> {
  const root = await space.dir(name);
  // Short: a unix socket's path must fit in 108 bytes.
  const runtime = fs.mkdtempSync('/tmp/lfd-');
  const d = (n: string) => path.join(root, n);
  for (const n of ['base/etc', 'top', 'upper', 'work', 'ro', 'rw']) fs.mkdirSync(d(n), { recursive: true });
  fs.writeFileSync(d('base/etc/hostname'), 'base\n');
  fs.writeFileSync(d('top/hello'), 'top\n');
  return { runtime, env: { ...process.env, LAYERFS_RUNTIME_DIR: runtime }, base: d('base'), top: d('top'), upper: d('upper'), work: d('work'), ro: d('ro'), rw: d('rw') };
}

const socket = (s: Setup): string => path.join(s.runtime, 'daemon.sock');
const record = (s: Setup, mnt: string): { pid: number; daemon?: boolean } | undefined => {
  try {
    return JSON.parse(fs.readFileSync(path.join(s.runtime, `${encodeURIComponent(mnt)}.json`), 'utf8')) as { pid: number; daemon?: boolean };
  } catch {
    return undefined;
  }
};

async function startDaemon(s: Setup): Promise<{ child: ChildProcess; log: () => string }> {
  let log = '';
  const child = spawn(process.execPath, [LAYERFS_BIN, 'daemon'], { env: s.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const ready = await until(() => log.includes('takes mounts on'), 20_000);
  if (!ready) throw new Error(`the daemon did not start: ${log}`);
  return { child, log: () => log };
}

/** Never leave a mount or a daemon behind, whatever a test did. */
async function cleanup(s: Setup, daemon: ChildProcess | undefined): Promise<void> {
  for (const mnt of [s.ro, s.rw]) {
    if (mountedFsType(mnt) !== undefined) spawn('umount', ['-l', mnt]);
  }
  if (daemon?.pid !== undefined && alive(daemon.pid)) {
    daemon.kill('SIGTERM');
    if (!(await until(() => !alive(daemon.pid!), 10_000))) daemon.kill('SIGKILL');
  }
  fs.rmSync(s.runtime, { recursive: true, force: true });
}

test('-o daemon without a running daemon says how to start one, and mounts nothing', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('none');
  try {
    const m = await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},daemon`, s.ro], { env: s.env });
    t.is(m.code, 1);
    t.regex(m.stderr, /no layerfs daemon answers on .*daemon\.sock.*start one with `layerfs daemon`/);
    t.is(mountedFsType(s.ro), undefined);
    const f = await layerfsCli(['mount', '-f', '-o', `lowerdir=${s.base},daemon`, s.ro], { env: s.env });
    t.is(f.code, 2, 'foreground makes no sense for a mount the daemon serves');
    const e = await layerfsCli(['mount', '-o', `lowerdir=${s.base},daemon,engine=libfuse`, s.ro], { env: s.env });
    t.is(e.code, 1);
    t.regex(e.stderr, /kernel engine only/);
    t.is(mountedFsType(s.ro), undefined);
  } finally {
    await cleanup(s, undefined);
  }
});

test('one daemon serves two mounts; each unmounts alone; SIGTERM unmounts the rest and ends it', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('two');
  let daemon: ChildProcess | undefined;
  try {
    const d = await startDaemon(s);
    daemon = d.child;
    const pid = daemon.pid!;
    const again = await layerfsCli(['daemon'], { env: s.env, timeoutMs: 20_000 });
    t.is(again.code, 1, 'a second daemon refuses to start');
    t.regex(again.stderr, new RegExp(`already answers on .* \\(pid ${pid}\\)`));

    const ro = await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},daemon`, s.ro], { env: s.env });
    t.is(ro.code, 0, ro.stderr);
    const rw = await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},upperdir=${s.upper},workdir=${s.work},daemon`, s.rw], { env: s.env });
    t.is(rw.code, 0, rw.stderr);
    t.is(mountedFsType(s.ro), 'fuse.layerfs');
    t.is(mountedFsType(s.rw), 'fuse.layerfs');
    t.like(record(s, s.ro), { pid, daemon: true });
    t.is(record(s, s.rw)?.pid, pid, 'both served by the daemon');
    t.deepEqual((await requestControl(socket(s), { request: 'ping' })) as object, { pid, mounts: [s.ro, s.rw] });

    // Each mount is its own union.
    t.is(fs.readFileSync(path.join(s.ro, 'hello'), 'utf8'), 'top\n');
    t.throws(() => fs.writeFileSync(path.join(s.ro, 'new'), 'x'), { code: 'EROFS' });
    fs.writeFileSync(path.join(s.rw, 'etc/hostname'), 'changed\n');
    t.is(fs.readFileSync(path.join(s.upper, 'etc/hostname'), 'utf8'), 'changed\n');
    t.is(fs.readFileSync(path.join(s.ro, 'etc/hostname'), 'utf8'), 'base\n');
    for (const mnt of [s.ro, s.rw]) {
      const st = await layerfsCli(['stats', '--json', mnt], { env: s.env });
      t.is(st.code, 0, st.stderr);
    }

    // A mount inside one it serves would have the daemon wait on itself: refused, nothing mounted.
    const nested = path.join(s.ro, 'etc');
    const n = await layerfsCli(['mount', '-o', `lowerdir=${nested},daemon`, path.join(s.upper, 'etc')], { env: s.env });
    t.is(n.code, 1);
    t.regex(n.stderr, /lies inside .*which this daemon serves/);

    // layerfs umount: that mount only; the daemon lives on.
    const u = await layerfsCli(['umount', s.ro], { env: s.env });
    t.is(u.code, 0, u.stderr);
    t.is(mountedFsType(s.ro), undefined);
    t.is(record(s, s.ro), undefined);
    t.true(alive(pid));
    t.is(fs.readFileSync(path.join(s.rw, 'etc/hostname'), 'utf8'), 'changed\n');

    // umount(8) behind the daemon's back: it lets the mount go by itself, and mounts there again.
    t.is(spawnSync('umount', [s.rw]).status, 0);
    t.true(await until(() => record(s, s.rw) === undefined), 'the record goes once the daemon let the mount go');
    t.true(alive(pid));
    const back = await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},upperdir=${s.upper},workdir=${s.work},daemon`, s.rw], { env: s.env });
    t.is(back.code, 0, back.stderr);
    t.is(fs.readFileSync(path.join(s.rw, 'etc/hostname'), 'utf8'), 'changed\n', 'the upper is as it was left');

    // SIGTERM ends the daemon and unmounts what it serves.
    t.is((await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},daemon`, s.ro], { env: s.env })).code, 0);
    daemon.kill('SIGTERM');
    t.true(await until(() => !alive(pid), 15_000), 'the daemon exits on SIGTERM');
    t.is(mountedFsType(s.ro), undefined, 'and unmounts what it served');
    t.is(mountedFsType(s.rw), undefined);
    t.deepEqual(fs.readdirSync(s.runtime), [], 'no record and no socket left');
    t.regex(d.log(), /mounted .*\/rw[\s\S]*unmounted .*\/rw/);
  } finally {
    await cleanup(s, daemon);
  }
});

test('after a SIGKILL of the daemon, layerfs umount clears each dead mount, and a new daemon starts on its socket', async (t) => {
  if (!requireMountCapable(t)) return;
  const s = await setup('killed');
  let daemon: ChildProcess | undefined;
  try {
    daemon = (await startDaemon(s)).child;
    for (const mnt of [s.ro, s.rw]) t.is((await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},daemon`, mnt], { env: s.env })).code, 0);
    daemon.kill('SIGKILL');
    t.true(await until(() => !alive(daemon!.pid!), 10_000));
    // (ECONNABORTED while the kernel is still aborting the connection.)
    const err = t.throws(() => fs.readdirSync(s.ro), undefined, 'one crash ends every mount the daemon served') as NodeJS.ErrnoException | undefined;
    t.regex(err?.code ?? '', /^(ENOTCONN|ECONNABORTED)$/);
    for (const mnt of [s.ro, s.rw]) {
      const u = await layerfsCli(['umount', mnt], { env: s.env });
      t.is(u.code, 0, u.stderr);
      t.is(mountedFsType(mnt), undefined);
      t.is(record(s, mnt), undefined);
    }
    daemon = (await startDaemon(s)).child;
    t.is((await layerfsCli(['mount', '-o', `lowerdir=${s.top}:${s.base},daemon`, s.ro], { env: s.env })).code, 0);
    t.is(fs.readFileSync(path.join(s.ro, 'hello'), 'utf8'), 'top\n');
  } finally {
    await cleanup(s, daemon);
  }
});
