// The FUSE lifecycle of one union: mount, serve, unmount. Uses layerfs's patch of fuse-native
// (patches/, native-notes/fuse-native.md): any libfuse option through `extraOptions`, and
// `onExit` when the serving session has ended, whoever unmounted it.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import type FuseType from 'fuse-native';
import type { FuseOps } from 'fuse-native';
import type { InFlightStats, PassthroughStats, SplicedStats } from '../stats.js';

export interface FuseMountOptions {
  /** libfuse / kernel mount options, e.g. ['ro', 'default_permissions', 'entry_timeout=1']. */
  readonly options: readonly string[];
  /**
   * libfuse passes null as the path of reads, writes, flushes and the like that carry a file
   * handle (default true). False when reads come by path without a handle (D26).
   */
  readonly nullPathOk?: boolean;
  /** The kernel may keep directory listings across opens (patched binding, ABI 3; D27). */
  readonly cacheDirs?: boolean;
  /** Seconds the kernel may keep a directory's attributes; files keep attr_timeout (ABI 4; D25). */
  readonly attrTimeoutDir?: number;
}

type FuseCtor = typeof FuseType;

let cached: FuseCtor | undefined;

/** Load fuse-native, turning a missing libfuse.so.2 into an instruction. */
export function loadFuse(): FuseCtor {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    cached = require('fuse-native') as FuseCtor;
  } catch (e) {
    const msg = (e as Error).message;
    if (/libfuse\.so/.test(msg)) {
      throw new Error('libfuse.so.2 is missing: install it (Debian/Ubuntu: apt-get install libfuse2)');
    }
    throw new Error(`cannot load fuse-native: ${msg.split('\n')[0]}`);
  }
  return cached;
}

export interface Mounted {
  readonly mountpoint: string;
  /** Unmount (the kernel detaches the mount; the serving thread then ends). */
  unmount(): Promise<void>;
  /** The requests being answered (the kernel engine; libfuse's does not tell). */
  inFlight?(): InFlightStats;
  /** Backing files (FUSE passthrough, D51): the kernel engine's, once the kernel took it. */
  passthrough?(): PassthroughStats | undefined;
  /** READs of lower files answered through a pipe (D56): the kernel engine's. */
  spliced?(): SplicedStats | undefined;
}

/**
 * Tell the binding every xattr name an entry shows, for an entry whose xattrs can never change
 * while mounted: it then answers absent names (ENODATA) and listxattr itself, on the FUSE
 * thread, without a round trip to JavaScript (fuse-native patch, DECISIONS D20).
 */
export type XattrKnown = (path: string, names: readonly string[]) => void;

/**
 * `makeOps` gets the caller of the request being handled (valid while its handler runs) and
 * the binding's xattrKnown.
 */
export function mountFuse(
  mountpoint: string,
  makeOps: (caller: () => { uid: number; gid: number } | null, xattrKnown: XattrKnown) => FuseOps,
  o: FuseMountOptions & { onExit: () => void },
): Promise<Mounted> {
  const Fuse = loadFuse();
  if (Fuse.PATCH_ABI !== 4) throw new Error('fuse-native is not patched (installed with --ignore-scripts?): layerfs\'s postinstall patches and builds it; run npm rebuild -g layerfs (without -g in a project, npm install in a checkout)');
  // Timeouts: a per-op timeout would answer EIO for a slow but healthy request (a copy-up of a
  // large file, a cold directory on slow storage). layerfs replies to every request itself.
  let instance: FuseType | undefined;
  const ops = makeOps(() => instance?.context() ?? null, (path, names) => void instance?.xattrKnown(path, names));
  // nullPathOk: an open file whose name libfuse cannot build any more (its directory was
  // removed) still gets read, write, fgetattr, flush, fsync, release, with path null.
  const fuse = new Fuse(mountpoint, ops, { timeout: false, nullPathOk: o.nullPathOk ?? true, cacheDirs: o.cacheDirs === true, ...(o.attrTimeoutDir === undefined ? {} : { attrTimeoutDir: o.attrTimeoutDir }), extraOptions: [...o.options], onExit: o.onExit });
  instance = fuse;
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({ mountpoint, unmount: () => unmountPath(mountpoint) });
    });
  });
}

/**
 * Detach a FUSE mount: umount(8) as root, fusermount3/fusermount otherwise. (fuse-native's own
 * unmount runs `fusermount -uz`, which Debian's fuse3 does not provide.)
 */
export function unmountPath(mountpoint: string, o: { lazy?: boolean } = {}): Promise<void> {
  const asRoot = process.getuid?.() === 0;
  const tries: Array<[string, string[]]> = asRoot
    ? [['umount', o.lazy ? ['-l', mountpoint] : [mountpoint]]]
    : [['fusermount3', ['-u', ...(o.lazy ? ['-z'] : []), mountpoint]], ['fusermount', ['-u', ...(o.lazy ? ['-z'] : []), mountpoint]]];
  return new Promise((resolve, reject) => {
    const attempt = (i: number, lastErr?: Error): void => {
      const t = tries[i];
      if (t === undefined) {
        reject(lastErr ?? new Error('no unmount command'));
        return;
      }
      execFile(t[0], t[1], (err, _out, stderr) => {
        if (!err) resolve();
        else if ((err as NodeJS.ErrnoException).code === 'ENOENT') attempt(i + 1, err);
        else reject(new Error(stderr.trim() || err.message));
      });
    };
    attempt(0);
  });
}
