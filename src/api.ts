// The programmatic API: mount a union from a program and get a handle on it.
//
//   import { mount } from 'layerfs';
//   const m = await mount('/mnt/merged', { lowers: ['/img/top', '/img/base'], upper: '/c/upper', work: '/c/work' });
//   ... use /mnt/merged ...
//   console.log(await m.stats());
//   await m.unmount();
//
// The union is served by a child process, exactly as `layerfs mount` serves it (the same checks,
// the same server, src/mount-process.ts): the calling process may then use the mount freely,
// which a process serving its own FUSE mount cannot do without deadlocking.
import { ConfigError } from './config.js';
import { removeRecord } from './host/runtime.js';
import { LayerfsError, checkMount, requestStats, startServer, stopMount } from './mount-process.js';
import type { MountStats } from './stats.js';

export interface MountOptions {
  /** Read-only branch directories, top-most first (as lowerdir=); at least one. */
  readonly lowers: readonly string[];
  /** The writable branch; needs `work` on the same filesystem. Without it the mount is read-only. */
  readonly upper?: string;
  /** An empty directory on the upper's filesystem (as workdir=). */
  readonly work?: string;
  /** How deletions are written to the upper: the kernel's format (default) or OCI's `.wh.` files. */
  readonly whiteout?: 'overlay' | 'oci';
  /**
   * Seconds a change made to a lower branch underneath the mount may stay unseen (lower_ttl=);
   * default: until remount (lowers are meant to be immutable).
   */
  readonly lowerTtl?: number;
  /** Mount read-only even with an upper. */
  readonly readOnly?: boolean;
  /**
   * Let other users use the mount (permissions are checked either way). Default: yes where the
   * server runs as root, as on the kernel's overlayfs; no otherwise (D69).
   */
  readonly allowOther?: boolean;
  /** Mount options passed to the kernel: nodev, nosuid, noexec, noatime, ... */
  readonly fuseOptions?: readonly string[];
  /**
   * false: every read and write of the upper's files goes through layerfs (passthrough=off);
   * default: the kernel reads and writes them itself where it can (D51).
   */
  readonly passthrough?: boolean;
  /**
   * false: the kernel checks access against the mode bits only, not the POSIX ACLs (still shown,
   * copied up and inherited); a request fewer per path walk through the root by users other than
   * its owner (D71). Default: ACLs are enforced.
   */
  readonly acl?: boolean;
  /**
   * false (default): the mount ends when this process exits, even without unmount().
   * true: it stays, as `layerfs mount` leaves it, until unmount() or `layerfs umount`.
   */
  readonly persist?: boolean;
  /** Trace every operation on this process's stderr, one line each (as `layerfs mount -d`). */
  readonly trace?: boolean;
}

/** A running mount. */
export interface Mount {
  /** The mountpoint, as a resolved absolute path. */
  readonly mountpoint: string;
  /** The pid of the process serving the mount. */
  readonly pid: number;
  /** Resolves when the server has exited: after unmount(), or when anyone else unmounted it. */
  readonly ended: Promise<void>;
  /** What the mount has done so far: operations, latencies, cache hits, copy-ups, whiteouts. */
  stats(): Promise<MountStats>;
  /** Unmount and wait until the server has exited. Rejects (UNMOUNT_FAILED) while the mount is busy. */
  unmount(): Promise<void>;
}

/** Escape a path for an option value: backslash, colon and comma get a backslash. */
const escapePath = (p: string): string => p.replace(/[\\:,]/g, (c) => `\\${c}`);

/** The -o option string that says what `o` says. */
export function optionString(o: MountOptions): string {
  const opts = [`lowerdir=${o.lowers.map(escapePath).join(':')}`];
  if (o.upper !== undefined) opts.push(`upperdir=${escapePath(o.upper)}`);
  if (o.work !== undefined) opts.push(`workdir=${escapePath(o.work)}`);
  if (o.whiteout !== undefined) opts.push(`whiteout=${o.whiteout}`);
  if (o.lowerTtl !== undefined) opts.push(`lower_ttl=${o.lowerTtl}`);
  if (o.readOnly === true) opts.push('ro');
  if (o.allowOther !== undefined) opts.push(o.allowOther ? 'allow_other' : 'allow_other=off');
  if (o.passthrough === false) opts.push('passthrough=off');
  if (o.acl === false) opts.push('noacl');
  for (const f of o.fuseOptions ?? []) {
    // One option each: a comma would smuggle in another.
    if (f.includes(',')) throw new LayerfsError('CONFIG', `fuseOptions: one option per entry, not ${JSON.stringify(f)}`);
    opts.push(f);
  }
  return opts.join(',');
}

/** Mount a union on `mountpoint` (an existing directory); resolves once it serves. */
export async function mount(mountpoint: string, options: MountOptions): Promise<Mount> {
  const opts = optionString(options);
  let real: string;
  try {
    real = (await checkMount([opts], mountpoint)).paths.mountpoint;
  } catch (e) {
    if (e instanceof ConfigError) throw new LayerfsError('CONFIG', e.message, { cause: e });
    throw e;
  }
  const args = [...(options.trace === true ? ['-d'] : []), '-o', opts, real];
  const server = await startServer(args, { persist: options.persist ?? false, stderr: options.trace === true ? 'inherit' : 'ignore' });
  let unmounting: Promise<void> | undefined;
  return {
    mountpoint: real,
    pid: server.pid,
    ended: server.exited,
    stats: () => requestStats(real),
    unmount() {
      unmounting ??= (async () => {
        try {
          await stopMount(real, real, server);
        } catch (e) {
          unmounting = undefined; // busy now, maybe not later
          throw e;
        }
        removeRecord(real, server.pid);
      })();
      return unmounting;
    },
  };
}
