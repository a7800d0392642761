// The serving process of a mount, seen from outside it: check a mount request, start the server
// (src/cli.ts's `mount -f` in a child process) and wait until it serves, stop it, ask it for its
// stats. Shared by the CLI's `mount`/`umount`/`stats` and the programmatic API (src/api.ts).
// The server is always another process: a process that touches a FUSE mount it serves itself
// deadlocks (the request waits for the thread that would answer it), and a library's caller
// will touch the mount it asked for.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions, type ParsedOptions } from './config.js';
import { loadFuse, unmountPath } from './fuse/mount.js';
import { ControlUnavailable, requestControl } from './host/control.js';
import { canOpenReadWrite, statSyncOrUndefined } from './host/fs.js';
import { daemonSocket, logFor, socketFor } from './host/runtime.js';
import { checkPaths, mountPoints, type CheckedPaths } from './preflight.js';
import type { ServeConfig } from './serve-config.js';
import type { MountStats } from './stats.js';

/**
 * What went wrong, for a program to tell apart:
 * - CONFIG: a bad option or path (nothing was started);
 * - NO_FUSE: /dev/fuse or libfuse is missing or not usable;
 * - MOUNT_FAILED: the server started but could not mount;
 * - UNMOUNT_FAILED: the mount is busy, or the server did not exit;
 * - NOT_MOUNTED: no layerfs mount (or no server answering) at that mountpoint.
 */
export type LayerfsErrorCode = 'CONFIG' | 'NO_FUSE' | 'MOUNT_FAILED' | 'UNMOUNT_FAILED' | 'NOT_MOUNTED';

export class LayerfsError extends Error {
  override name = 'LayerfsError';
  constructor(
    readonly code: LayerfsErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function checkFuseDevice(): void {
  if (statSyncOrUndefined('/dev/fuse') === undefined) {
    throw new LayerfsError('NO_FUSE', '/dev/fuse is missing: load the fuse module (modprobe fuse), or give the container --device /dev/fuse');
  }
  const err = canOpenReadWrite('/dev/fuse');
  if (err) throw new LayerfsError('NO_FUSE', `/dev/fuse is not usable (${err.code}): run as root or give this user access to it`);
}

/**
 * Everything checked before a server is started: the options, the paths, /dev/fuse and libfuse.
 * Throws ConfigError for bad input, LayerfsError NO_FUSE for a machine that cannot mount.
 */
export async function checkMount(optionStrings: readonly string[], mountpoint: string): Promise<{ opts: ParsedOptions; paths: CheckedPaths }> {
  const opts = parseOptions(optionStrings);
  const paths = checkPaths({ lowers: opts.lowers, upper: opts.upper, work: opts.work, mountpoint });
  checkFuseDevice();
  try {
    // What the engine will load, loaded here first (only that engine's: fuse-native alone
    // takes ~60 ms to load, and every mount waits for this check).
    if (opts.engine === 'libfuse') loadFuse();
    else (await import('./fuse/kernel/device.js')).checkKernelEngine();
  } catch (e) {
    throw new LayerfsError('NO_FUSE', (e as Error).message, { cause: e });
  }
  return { opts, paths };
}

/** A server process this process started. */
export interface ServerProcess {
  readonly pid: number;
  /** Resolves when the server process has exited. */
  readonly exited: Promise<void>;
  gone(): boolean;
}

export interface StartOptions {
  /**
   * true: the server outlives this process (the CLI's mount). false: the server keeps the IPC
   * channel to this process and unmounts when it closes, i.e. when this process exits.
   */
  readonly persist: boolean;
  /**
   * The server's stderr (its -d trace and diagnostics): dropped, this process's, or a file made
   * anew (runtime.ts, logFor).
   */
  readonly stderr?: 'ignore' | 'inherit' | { readonly file: string };
}

/** The stderr to hand a server: an fd of its log file (the caller closes it once spawned). */
function stderrFor(o: StartOptions): 'ignore' | 'inherit' | number {
  const e = o.stderr ?? 'ignore';
  if (typeof e === 'string') return e;
  fs.mkdirSync(path.dirname(e.file), { recursive: true, mode: 0o700 });
  return fs.openSync(e.file, 'w', 0o600);
}

const CLI = fileURLToPath(new URL('./cli.js', import.meta.url));

/**
 * V8 gives its young generation two semi-spaces of up to 16 MiB; in a server walking a large
 * image they fill, and hold ~30 MB of its RSS to the end. At 4 MiB the walk of a 100k-file image
 * stays under issue 4's 200 MB, at no cost measured (D39). Node reads it only at start, so the
 * server is started with it, unless the user's NODE_OPTIONS chose a size.
 */
const YOUNG_GENERATION = '--max-semi-space-size=4';

export function serverNodeFlags(env: NodeJS.ProcessEnv): string[] {
  return /--max-semi-space-size\b/.test(env.NODE_OPTIONS ?? '') ? [] : [YOUNG_GENERATION];
}
/** How long a server that reported a failure may take to exit before it is killed. */
const EXIT_GRACE_MS = 5_000;

/** Start `layerfs mount -f ARGS...` as a child and resolve once it serves; reject with why not. */
export function startServer(args: readonly string[], o: StartOptions): Promise<ServerProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, LAYERFS_NOTIFY: 'ipc', UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '8' };
  if (o.persist) delete env.LAYERFS_ATTACHED;
  else env.LAYERFS_ATTACHED = '1';
  const stderr = stderrFor(o);
  const child = (() => {
    try {
      return spawn(process.execPath, [...serverNodeFlags(env), CLI, 'mount', '-f', ...args], {
        detached: o.persist,
        stdio: ['ignore', 'ignore', stderr, 'ipc'],
        env,
      });
    } finally {
      if (typeof stderr === 'number') fs.closeSync(stderr); // the child has its own copy
    }
  })();
  let gone = false;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      gone = true;
      resolve();
    }),
  );
  const server: ServerProcess = { pid: child.pid ?? -1, exited, gone: () => gone };
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (msg: string, running = true): void => {
      if (settled) return;
      settled = true;
      if (!running || gone) {
        reject(new LayerfsError('MOUNT_FAILED', msg));
        return;
      }
      // Reject only once the failed server is gone: a failure leaves nothing running.
      const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_GRACE_MS);
      void exited.then(() => {
        clearTimeout(timer);
        reject(new LayerfsError('MOUNT_FAILED', msg));
      });
    };
    child.on('message', (m: { ready?: boolean; error?: string }) => {
      if (m.ready && !settled) {
        settled = true;
        child.unref();
        if (o.persist) child.disconnect();
        else child.channel?.unref(); // the channel stays open, but does not keep this process alive
        resolve(server);
      } else if (m.error) fail(m.error);
    });
    child.on('exit', (code, signal) => fail(`the server exited before the mount was ready (${signal ?? `code ${code}`})`));
    child.on('error', (e) => fail(`cannot start the server: ${e.message}`, child.pid !== undefined));
  });
}

/** What `layerfs mount -o daemon` sends the daemon (src/daemon.ts): the mount, checked, with real paths. */
export interface MountRequest {
  readonly request: 'mount';
  readonly config: ServeConfig;
}

/** The daemon's answer to a mount request. */
export type MountReply = { readonly ready: true; readonly pid: number } | { readonly error: string };

/**
 * Hand a checked mount to the running host daemon (D36) and wait until it serves it; throws
 * MOUNT_FAILED with the daemon's reason, or with how to start one where none answers.
 */
export async function startDaemonMount(config: ServeConfig): Promise<void> {
  let reply: MountReply;
  try {
    // A mount may clear a work dir full of leftovers first: no short timeout.
    reply = (await requestControl(daemonSocket(), { request: 'mount', config } satisfies MountRequest, 600_000)) as MountReply;
  } catch (e) {
    if (!(e instanceof ControlUnavailable)) throw e;
    throw new LayerfsError('MOUNT_FAILED', `no layerfs daemon answers on ${daemonSocket()} (${e.code}): start one with \`layerfs daemon\``, { cause: e });
  }
  if ('error' in reply) throw new LayerfsError('MOUNT_FAILED', reply.error);
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/**
 * Unmount `mountpoint` (absolute; named `name` in messages) and stop its server, waiting until it
 * has exited (the daemon: until it has let the mount go). Also clears a mount whose server died,
 * and stops a server whose mount is gone.
 */
export async function stopMount(mountpoint: string, name: string, server: { pid: number; gone(): boolean; daemon?: boolean } | undefined): Promise<void> {
  if (mountPoints().has(mountpoint)) {
    try {
      await unmountPath(mountpoint);
    } catch (e) {
      throw new LayerfsError('UNMOUNT_FAILED', `cannot unmount ${name}: ${(e as Error).message}`, { cause: e });
    }
  } else if (server === undefined) {
    throw new LayerfsError('NOT_MOUNTED', `${name}: not mounted`);
  }
  if (server === undefined || server.gone()) {
    removeEmptyLog(mountpoint); // (a server often exits by itself as soon as its mount is gone)
    return;
  }
  if (server.daemon === true) {
    // The daemon serves other mounts: it lets this one go by itself once it is unmounted (and
    // removes its record, which is what `gone` watches).
    if (!(await waitFor(server.gone, 15_000))) throw new LayerfsError('UNMOUNT_FAILED', `the daemon (pid ${server.pid}) did not let ${name} go after the unmount`);
    return;
  }
  // The server ends by itself once its mount is gone; the signal covers a server that was
  // serving a mount someone else already detached.
  try {
    process.kill(server.pid, 'SIGTERM');
  } catch {
    // exited meanwhile
  }
  if (!(await waitFor(server.gone, 15_000))) {
    throw new LayerfsError('UNMOUNT_FAILED', `the server (pid ${server.pid}) did not exit after the unmount`);
  }
  removeEmptyLog(mountpoint);
}

/** A server's log file is kept after its mount only when it has something in it. */
function removeEmptyLog(mountpoint: string): void {
  const f = logFor(mountpoint);
  try {
    if (fs.statSync(f).size === 0) fs.unlinkSync(f);
  } catch {
    // none (a server run with -f, or by the API), or removed meanwhile
  }
}

/** Ask the server of `mountpoint` (absolute) for its stats. */
export async function requestStats(mountpoint: string, name = mountpoint): Promise<MountStats> {
  let reply: unknown;
  try {
    reply = await requestControl(socketFor(mountpoint), { request: 'stats' });
  } catch (e) {
    if (e instanceof ControlUnavailable) throw new LayerfsError('NOT_MOUNTED', `${name}: no layerfs server answers for it (${e.code})`, { cause: e });
    throw e;
  }
  const err = (reply as { error?: unknown } | null)?.error;
  if (typeof err === 'string') throw new LayerfsError('NOT_MOUNTED', `${name}: the server answered: ${err}`);
  return reply as MountStats;
}
