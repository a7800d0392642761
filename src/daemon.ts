// The host daemon (D36): one long-lived process that serves every mount handed to it with
// `layerfs mount -o daemon ...`. A fresh server interprets its code, then compiles it, as the
// requests of each kind first come (V8), and a short workload is over before that is done; a
// daemon that served earlier mounts answers the first request of a new one with compiled code.
// Each mount keeps its own union, caches, FUSE session, record and stats socket (server.ts).
// What the mounts share is the process: its JIT, its heap, and its fate (a crash ends them all).
import { ControlUnavailable, listenControl, requestControl } from './host/control.js';
import { daemonSocket } from './host/runtime.js';
import type { Log } from './log.js';
import { mountPoints } from './preflight.js';
import type { MountReply } from './mount-process.js';
import type { ServeConfig } from './serve-config.js';
import { serve, type Serving } from './server.js';

/** Where a path lies inside a mount this daemon serves: the mountpoint, else undefined. */
function servedAbove(p: string, served: Iterable<string>): string | undefined {
  for (const m of served) if (p === m || p.startsWith(`${m}/`)) return m;
  return undefined;
}

function isServeConfig(c: unknown): c is ServeConfig {
  const o = c as Partial<ServeConfig> | null;
  const str = (v: unknown): boolean => typeof v === 'string' && v.startsWith('/');
  return o !== null && typeof o === 'object' && str(o.mountpoint) && Array.isArray(o.lowers) && o.lowers.length > 0 && o.lowers.every(str) &&
    (o.upper === undefined || str(o.upper)) && (o.work === undefined || str(o.work)) &&
    typeof o.readOnly === 'boolean' && typeof o.allowOther === 'boolean' && Array.isArray(o.fuseOptions) && o.fuseOptions.every((x) => typeof x === 'string');
}

/**
 * Serve mount requests on the daemon socket until SIGINT, SIGTERM or SIGHUP, which unmount every
 * mount served (lazily where one is busy). Rejects when another daemon already answers there.
 */
export async function runDaemon(log: Log): Promise<void> {
  const socket = daemonSocket();
  try {
    const other = (await requestControl(socket, { request: 'ping' }, 2_000)) as { pid?: number };
    throw new Error(`a layerfs daemon already answers on ${socket} (pid ${other.pid})`);
  } catch (e) {
    if (!(e instanceof ControlUnavailable)) throw e;
  }
  // A daemon must never enter a mount it serves (the request would wait for the thread that is
  // to answer it): not by its working directory either.
  process.chdir('/');
  const mounts = new Map<string, Serving>();
  const starting = new Set<string>();

  const mount = async (c: ServeConfig): Promise<MountReply> => {
    const served = [...mounts.keys(), ...starting];
    for (const p of [c.mountpoint, ...c.lowers, c.upper, c.work]) {
      if (p === undefined) continue;
      const m = servedAbove(p, served);
      // The daemon would wait on itself: its checks and its union would ask that mount.
      if (m !== undefined) return { error: `${p} lies inside ${m}, which this daemon serves: mount it with a server of its own (without -o daemon)` };
    }
    if (mountPoints().has(c.mountpoint)) return { error: `mountpoint ${c.mountpoint}: already mounted` };
    // An earlier mount there that was unmounted but is still letting go (its record must go
    // first, or it would take the new mount's with it).
    await mounts.get(c.mountpoint)?.ended;
    starting.add(c.mountpoint);
    try {
      const s = await serve(c, log, { daemon: true });
      mounts.set(c.mountpoint, s);
      void s.ended.then(() => {
        if (mounts.get(c.mountpoint) === s) mounts.delete(c.mountpoint);
        log.info(`unmounted ${c.mountpoint}`);
      });
      log.info(`mounted ${c.mountpoint}`);
      return { ready: true, pid: process.pid };
    } catch (e) {
      return { error: `cannot mount ${c.mountpoint}: ${(e as Error).message}` };
    } finally {
      starting.delete(c.mountpoint);
    }
  };

  const control = await listenControl(socket, (req) => {
    const r = req as { request?: unknown; config?: unknown } | null;
    if (r?.request === 'ping') return { pid: process.pid, mounts: [...mounts.keys()] };
    if (r?.request !== 'mount') return { error: 'unknown request' };
    if (!isServeConfig(r.config)) return { error: 'malformed mount request' };
    return mount(r.config);
  });
  log.info(`layerfs daemon (pid ${process.pid}) takes mounts on ${socket}`);
  // The control socket does not keep a process alive (control.ts); the daemon lives until told.
  const alive = setInterval(() => undefined, 1 << 30);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop).off('SIGTERM', stop).off('SIGHUP', stop);
      void (async () => {
        await control.close();
        await Promise.allSettled([...mounts.values()].map((s) => s.stop()));
        clearInterval(alive);
        resolve();
      })();
    };
    process.on('SIGINT', stop).on('SIGTERM', stop).on('SIGHUP', stop);
  });
}
