// Mount helpers for the mount tests: the kernel's overlayfs (the oracle) and layerfs (through its CLI).
//
// Both helpers guarantee that nothing stays mounted when they return or throw: the callback runs
// inside try/finally, the callback is raced against a deadline (a hung FUSE server must not hang the
// suite; everything in the callbacks is async so timers still fire), and a process 'exit' hook
// lazily detaches whatever is still registered if the test process goes down abruptly.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mount, type Mount, type MountOptions } from '../../src/index.js';
import { exitOnSignals } from './env.js';
import { run } from './tree.js';

/** Repository root, found from this compiled file: dist/test/helpers/mounts.js -> ../../.. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
export const LAYERFS_BIN = path.join(REPO_ROOT, 'bin', 'layerfs.js');

export interface LayerDirs {
  /** Lower layers, TOP FIRST (overlayfs order). */
  lowers: string[];
  upper?: string;
  work?: string;
}

/** Escape one path for a lowerdir/upperdir value: backslash, colon and comma get a backslash. */
export function escapeLayerPath(p: string): string {
  return p.replace(/[\\:,]/g, (c) => `\\${c}`);
}

export function lowerdirValue(lowers: string[]): string {
  return lowers.map(escapeLayerPath).join(':');
}

// ---------------------------------------------------------------------------------------------
// Mount table and emergency cleanup

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Is `mnt` a mount point right now (per /proc/self/mountinfo)? Returns the fs type if so. */
export function mountedFsType(mnt: string): string | undefined {
  const info = fs.readFileSync('/proc/self/mountinfo', 'latin1');
  const want = Buffer.from(path.resolve(mnt), 'utf8').toString('latin1');
  let found: string | undefined;
  for (const line of info.split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f[4] !== undefined && unescapeMountinfo(f[4]) === want && sep > 0) found = f[sep + 1]; // last one wins
  }
  return found;
}

interface Active {
  mnt: string;
  pid: number | undefined;
}
const active = new Map<string, Active>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  exitOnSignals();
  process.on('exit', () => {
    for (const a of active.values()) {
      spawnSync('umount', ['-l', a.mnt], { stdio: 'ignore', timeout: 10_000 });
      if (a.pid !== undefined) {
        try { process.kill(a.pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    }
    // Every mount point made and not removed yet: also one whose mount was in flight.
    for (const d of madeMountpoints) {
      if (mountedFsType(d) !== undefined) spawnSync('umount', ['-l', d], { stdio: 'ignore', timeout: 10_000 });
      rmdirQuiet(d);
    }
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still "exists"; treat it as gone.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Find the pid of the process serving the FUSE mount `mnt`: a process that has /dev/fuse open and
 * whose command line names exactly `mnt` as one word (mount points are unique temporary directories
 * without spaces). Returns
 * undefined when there is no such process or more than one.
 */
export function findFuseServerPid(mnt: string): number | undefined {
  const want = path.resolve(mnt);
  const hits: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    // A server may rewrite its command line (process.title): then the arguments are joined by
    // spaces in one string. Our mount points are mkdtemp paths without spaces, so split on both.
    const words = argv.flatMap((a) => a.split(/\s+/));
    if (!words.some((a) => a === want || a === mnt || a === `${want}/`)) continue;
    let hasFuse = false;
    try {
      for (const fd of fs.readdirSync(`/proc/${d}/fd`)) {
        try {
          if (fs.readlinkSync(`/proc/${d}/fd/${fd}`) === '/dev/fuse') { hasFuse = true; break; }
        } catch { /* fd closed meanwhile */ }
      }
    } catch {
      continue;
    }
    if (hasFuse) hits.push(pid);
  }
  return hits.length === 1 ? hits[0] : undefined;
}

/** Run fn with a deadline; on expiry, call onTimeout (which should unblock fn) and reject. */
async function withDeadline<T>(fn: () => Promise<T>, ms: number, what: string, onTimeout: () => Promise<void>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const work = fn();
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      onTimeout().then(
        () => reject(new Error(`${what}: timed out after ${ms} ms (mount forcibly detached)`)),
        (e: unknown) => reject(new Error(`${what}: timed out after ${ms} ms; cleanup failed too: ${String(e)}`)),
      );
    }, ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    if (timer) clearTimeout(timer);
    if (timedOut) work.catch(() => undefined); // its rejection (ENOTCONN...) is expected now
  }
}

/** Mount points this process made and has not removed (the exit hook removes them). */
const madeMountpoints = new Set<string>();

function mkMountpoint(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  madeMountpoints.add(d);
  return d;
}

function rmdirQuiet(d: string): void {
  try {
    fs.rmdirSync(d);
    madeMountpoints.delete(d);
  } catch { /* still busy or not empty: leave it */ }
}

// ---------------------------------------------------------------------------------------------
// Kernel overlayfs

/** Options we pin so that the oracle does not depend on the kernel's build-time defaults. */
export const PINNED_OVERLAY_OPTIONS = ['redirect_dir=off', 'index=off', 'metacopy=off', 'xino=off'];
let acceptedPinned: string[] | undefined;

/** Which pinned options this kernel accepts (probed once with a throwaway two-layer mount). */
async function pinnedOptions(): Promise<string[]> {
  if (acceptedPinned !== undefined) return acceptedPinned;
  installExitHook();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-probe-'));
  const [a, b, m] = ['a', 'b', 'm'].map((x) => path.join(base, x)) as [string, string, string];
  for (const d of [a, b, m]) fs.mkdirSync(d);
  const tryMount = async (opts: string[]) => {
    const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', [`lowerdir=${lowerdirValue([a, b])}`, ...opts].join(','), m], { timeoutMs: 30_000 });
    if (r.code === 0) {
      active.set(m, { mnt: m, pid: undefined });
      const u = await run('umount', [m], { timeoutMs: 30_000 });
      if (u.code !== 0) await run('umount', ['-l', m], { timeoutMs: 30_000 });
      active.delete(m);
    }
    return r.code === 0;
  };
  try {
    if (await tryMount(PINNED_OVERLAY_OPTIONS)) {
      acceptedPinned = [...PINNED_OVERLAY_OPTIONS];
    } else {
      acceptedPinned = [];
      for (const o of PINNED_OVERLAY_OPTIONS) if (await tryMount([o])) acceptedPinned.push(o);
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
  return acceptedPinned;
}

export interface KernelOverlayOptions extends LayerDirs {
  /** Extra mount options (e.g. "ro"). */
  options?: string[];
  /** Deadline for fn (default 240 s). */
  timeoutMs?: number;
}

/**
 * Mount the kernel's overlayfs on a fresh temporary directory, run fn(mountpoint), and unmount.
 * Without an upper layer the kernel insists on at least two lowers: a single lower gets an extra,
 * empty bottom layer (it adds no entries; the root's attributes still come from the real layer,
 * which is the top one).
 */
export async function withKernelOverlay<T>(dirs: KernelOverlayOptions, fn: (mnt: string) => Promise<T>): Promise<T> {
  if (dirs.lowers.length === 0) throw new Error('withKernelOverlay: no lower layers');
  installExitHook();
  const mnt = mkMountpoint('layerfs-kmnt-');
  let emptyLower: string | undefined;
  const lowers = [...dirs.lowers];
  if (lowers.length === 1 && dirs.upper === undefined) {
    emptyLower = mkMountpoint('layerfs-kempty-');
    lowers.push(emptyLower);
  }
  const opts = [`lowerdir=${lowerdirValue(lowers)}`];
  if (dirs.upper !== undefined) {
    if (dirs.work === undefined) throw new Error('withKernelOverlay: upper without work');
    opts.push(`upperdir=${escapeLayerPath(dirs.upper)}`, `workdir=${escapeLayerPath(dirs.work)}`);
  }
  opts.push(...(await pinnedOptions()), ...(dirs.options ?? []));
  const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', opts.join(','), mnt], { timeoutMs: 60_000 });
  if (r.code !== 0) {
    rmdirQuiet(mnt);
    if (emptyLower !== undefined) rmdirQuiet(emptyLower);
    const dmesg = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout?.split('\n').filter((l) => l.includes('overlayfs')).slice(-3).join(' | ');
    throw new Error(`kernel overlay mount failed (${r.code}): ${r.stderr.trim()} [dmesg: ${dmesg ?? ''}] options: ${opts.join(',')}`);
  }
  active.set(mnt, { mnt, pid: undefined });
  const detach = async () => {
    let u = await run('umount', [mnt], { timeoutMs: 60_000 });
    if (u.code !== 0) u = await run('umount', ['-l', mnt], { timeoutMs: 60_000 });
    if (u.code === 0 || mountedFsType(mnt) === undefined) active.delete(mnt);
  };
  try {
    return await withDeadline(() => fn(mnt), dirs.timeoutMs ?? 240_000, `kernel overlay on ${mnt}`, detach);
  } finally {
    if (active.has(mnt)) await detach();
    rmdirQuiet(mnt);
    if (emptyLower !== undefined) rmdirQuiet(emptyLower);
  }
}

// ---------------------------------------------------------------------------------------------
// layerfs

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `node bin/layerfs.js ...args` and collect its output (killed after timeoutMs, default 60 s). */
export async function layerfsCli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const r = await run(process.execPath, [LAYERFS_BIN, ...args], {
    timeoutMs: opts.timeoutMs ?? 60_000,
    ...(opts.env !== undefined ? { env: opts.env } : {}),
  });
  return { code: r.signal !== null ? null : r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

export interface LayerfsMountOptions extends LayerDirs {
  /** Extra -o options (e.g. "allow_other"). */
  options?: string[];
  /** Deadline for fn (default 240 s). */
  timeoutMs?: number;
}

/** The -o value for a layerfs mount. */
export function layerfsOptionString(dirs: LayerfsMountOptions): string {
  const opts = [`lowerdir=${lowerdirValue(dirs.lowers)}`];
  if (dirs.upper !== undefined) opts.push(`upperdir=${escapeLayerPath(dirs.upper)}`);
  if (dirs.work !== undefined) opts.push(`workdir=${escapeLayerPath(dirs.work)}`);
  opts.push(...(dirs.options ?? []));
  return opts.join(',');
}

/**
 * Mount layerfs with its CLI on a fresh temporary directory, run fn(mountpoint), then unmount with
 * `layerfs umount`. If that fails (or fn hung): `umount -l`, and the server is killed if we know its
 * pid (found through /proc: the process holding /dev/fuse whose argv names our unique mount point).
 * A failing `layerfs umount` is reported as an error after cleanup, unless fn already failed.
 */
export async function withLayerfs<T>(dirs: LayerfsMountOptions, fn: (mnt: string) => Promise<T>): Promise<T> {
  installExitHook();
  const mnt = mkMountpoint('layerfs-mnt-');
  const optString = layerfsOptionString(dirs);
  const m = await layerfsCli(['mount', '-o', optString, mnt]);
  if (m.code !== 0) {
    // Even a failed mount must not leave anything behind.
    if (mountedFsType(mnt) !== undefined) await run('umount', ['-l', mnt], { timeoutMs: 30_000 });
    rmdirQuiet(mnt);
    throw new Error(`layerfs mount failed (exit ${m.code}): ${(m.stderr + m.stdout).trim().slice(0, 2000)}\n  -o ${optString}`);
  }
  const fstype = mountedFsType(mnt);
  const pid = findFuseServerPid(mnt);
  if (fstype === undefined) {
    if (pid !== undefined) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    rmdirQuiet(mnt);
    throw new Error(`layerfs mount exited 0 but ${mnt} is not a mount point (stdout: ${m.stdout.trim()} stderr: ${m.stderr.trim()})`);
  }
  active.set(mnt, { mnt, pid });

  const cleanupProblems: string[] = [];
  const forceDetach = async () => {
    if (mountedFsType(mnt) !== undefined) {
      const u = await run('umount', ['-l', mnt], { timeoutMs: 30_000 });
      if (u.code !== 0) cleanupProblems.push(`umount -l ${mnt} failed: ${u.stderr.trim()}`);
    }
    if (pid !== undefined) {
      for (let i = 0; i < 20 && pidAlive(pid); i++) await sleep(100);
      if (pidAlive(pid)) {
        try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
        for (let i = 0; i < 20 && pidAlive(pid); i++) await sleep(100);
        if (pidAlive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      }
    }
    if (mountedFsType(mnt) === undefined) active.delete(mnt);
  };

  let fnFailed = false;
  try {
    return await withDeadline(() => fn(mnt), dirs.timeoutMs ?? 240_000, `layerfs on ${mnt}`, forceDetach);
  } catch (e) {
    fnFailed = true;
    throw e;
  } finally {
    if (active.has(mnt)) {
      const u = await layerfsCli(['umount', mnt], { timeoutMs: 60_000 });
      const still = mountedFsType(mnt) !== undefined;
      if (u.code !== 0 || still) {
        cleanupProblems.push(`layerfs umount ${mnt} ${u.code !== 0 ? `exited ${u.code}` : 'exited 0'}${still ? ' and left it mounted' : ''}: ${(u.stderr + u.stdout).trim().slice(0, 500)}`);
        await forceDetach();
      } else {
        active.delete(mnt);
        if (pid !== undefined && pidAlive(pid)) {
          // The CLI promises to wait for the server to exit.
          for (let i = 0; i < 20 && pidAlive(pid); i++) await sleep(100);
          if (pidAlive(pid)) {
            cleanupProblems.push(`layerfs umount returned but server pid ${pid} is still running after 2 s`);
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
          }
        }
      }
    }
    rmdirQuiet(mnt);
    if (cleanupProblems.length > 0 && !fnFailed) {
      // eslint-disable-next-line no-unsafe-finally
      throw new Error(`layerfs cleanup: ${cleanupProblems.join('; ')}`);
    }
  }
}

/** Is the layerfs CLI able to mount at all right now? (tiny probe mount; used by the suites' logs) */
export async function layerfsCanMount(): Promise<{ ok: boolean; why: string }> {
  if (!fs.existsSync(LAYERFS_BIN)) return { ok: false, why: `${LAYERFS_BIN} does not exist` };
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-probe-'));
  try {
    const l = path.join(base, 'l');
    fs.mkdirSync(l);
    fs.writeFileSync(path.join(l, 'f'), 'x');
    return await withLayerfs({ lowers: [l], timeoutMs: 30_000 }, async (mnt) => {
      const s = await fsp.readFile(path.join(mnt, 'f'), 'utf8');
      return s === 'x' ? { ok: true, why: '' } : { ok: false, why: `read ${JSON.stringify(s)}` };
    });
  } catch (e) {
    return { ok: false, why: (e as Error).message };
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/**
 * Mount through the API at `mnt`, run fn, and unmount whatever happens: by the API, then by the
 * CLI, and at last lazily, so that no mount is left behind.
 */
export async function withApiMount<T>(mnt: string, options: MountOptions, fn: (m: Mount) => Promise<T>): Promise<T> {
  const m = await mount(mnt, options);
  try {
    return await fn(m);
  } finally {
    await m.unmount().catch(() => undefined);
    if (mountedFsType(mnt) !== undefined) {
      await layerfsCli(['umount', mnt]).catch(() => undefined);
      if (mountedFsType(mnt) !== undefined) spawnSync('umount', ['-l', mnt]);
    }
  }
}
