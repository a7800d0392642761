// layerfs's own native addon (native/fuse-dev, built on install by scripts/build-native.sh): the
// /dev/fuse reader of the kernel engine (src/fuse/kernel/device.ts), and reads from the page
// cache on the calling thread (src/host/fs.ts).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FuseDevAddon {
  start(fd: number, buffer: Buffer, onRequest: (len: number) => void, onEnd: (errno: number) => void, spinMicros: number, pending: Int32Array): unknown;
  stop(handle: unknown): void;
  /**
   * Bytes read from the page cache only (0: the end of the file), or -errno (-EAGAIN: not
   * cached). `dev`: the file's st_dev, or -1.
   */
  readCached(fd: number, buffer: Buffer, position: number, dev: number): number;
  /**
   * The first `length` bytes of `from` (all, if shorter) into the empty file `to`, in libuv's pool
   * (copy_file_range, else sendfile), holes kept; done: the copy's size, or -errno.
   * `stop[0]` set: the copy ends at the next 64 MiB, done(-ECANCELED).
   */
  copyRange(from: number, to: number, length: number, done: (result: number) => void, stop?: Int32Array): void;
  /**
   * Answer the READ `unique` on connection `dev` with `length` bytes of `fd` at `position`,
   * moved through a pipe in libuv's pool (D56); done: the bytes sent, or -errno with nothing
   * sent (-EAGAIN: the file gave fewer bytes; -EMSGSIZE: the thread's pipe cannot hold them).
   */
  spliceRead(dev: number, unique: bigint, fd: number, position: number, length: number, done: (result: number) => void): void;
  /** lstat(2) into `out` (Float64Array(16): src/entry-stat.ts RAW_STAT_FIELDS); 0 or the errno. */
  lstat(path: string, out: Float64Array): number;
  /** fstat(2) into `out`, as lstat. */
  fstat(fd: number, out: Float64Array): number;
  /** fallocate(2) in libuv's pool; done(0), or done(-errno). */
  fallocate(fd: number, mode: number, offset: number, length: number, done: (result: number) => void): void;
  /** lseek(2): the new offset, or -errno. */
  lseek(fd: number, offset: number, whence: number): number;
}

let addon: FuseDevAddon | undefined;

/** The addon, or an error that says how to build it. */
export function loadFuseDev(): FuseDevAddon {
  if (addon !== undefined) return addon;
  const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
  const file = join(root, 'native/fuse-dev/build/Release/fuse_dev.node');
  try {
    addon = createRequire(import.meta.url)(file) as FuseDevAddon;
  } catch (e) {
    throw new Error(`cannot load ${file} (${(e as Error).message.split('\n')[0]}): it is built on install; in a checkout run npm install (or bash scripts/build-native.sh)`);
  }
  return addon;
}

let optional: FuseDevAddon | null | undefined = null;

/** The addon, or undefined where it cannot load: for callers that have a slower way without it. */
export function fuseDevIfBuilt(): FuseDevAddon | undefined {
  if (optional === null) {
    try {
      optional = loadFuseDev();
    } catch {
      optional = undefined;
    }
  }
  return optional;
}
