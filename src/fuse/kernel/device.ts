// The connection of the "kernel" engine (D28): a FUSE mount made by libfuse's fuse_mount (which
// mounts directly as root and through fusermount otherwise, as every libfuse filesystem does),
// its /dev/fuse fd read on the JavaScript thread by layerfs's small addon (native/fuse-dev), and
// replies written back with a plain write(2).
import { closeSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import koffi from 'koffi';
import { loadFuseDev } from '../../host/addon.js';
import type { BackingFiles } from './passthrough.js';
import type { SpliceRead } from './session.js';
import { DEV_IOC_BACKING_CLOSE, DEV_IOC_BACKING_OPEN } from './wire.js';

interface LibFuse {
  addArg(args: unknown, arg: string): number;
  mount(mountpoint: string, args: unknown): unknown;
  chanFd(chan: unknown): number;
  freeArgs(args: unknown): void;
}

let libfuse: LibFuse | undefined;

function loadLibfuse(): LibFuse {
  if (libfuse !== undefined) return libfuse;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('libfuse.so.2');
  } catch {
    throw new Error('libfuse.so.2 is missing: install it (Debian/Ubuntu: apt-get install libfuse2)');
  }
  // struct fuse_args is handled as an opaque block that libfuse itself fills.
  const addArg = lib.func('int fuse_opt_add_arg(void *args, const char *arg)');
  const mount = lib.func('void *fuse_mount(const char *mountpoint, void *args)');
  const chanFd = lib.func('int fuse_chan_fd(void *ch)');
  const freeArgs = lib.func('void fuse_opt_free_args(void *args)');
  libfuse = { addArg, mount, chanFd, freeArgs };
  return libfuse;
}

/** Load what this engine needs (libfuse.so.2 for the mount, the addon), or say what is missing. */
export function checkKernelEngine(): void {
  loadLibfuse();
  loadFuseDev();
}

/**
 * Mount an empty FUSE connection at `mountpoint` with kernel mount options (ro, allow_other,
 * default_permissions, fsname=, subtype=, ...): the /dev/fuse fd, whose first request will be INIT.
 */
export function mountConnection(mountpoint: string, options: readonly string[]): number {
  const f = loadLibfuse();
  // struct fuse_args { int argc; char **argv; int allocated; }: 24 bytes, zeroed = empty.
  const args = koffi.alloc('uint8_t', 24);
  koffi.encode(args, 'uint8_t', new Array(24).fill(0), 24);
  try {
    for (const a of ['layerfs', ...(options.length > 0 ? ['-o', options.join(',')] : [])]) {
      if (f.addArg(args, a) !== 0) throw new Error('fuse_opt_add_arg failed');
    }
    const chan = f.mount(mountpoint, args);
    if (chan === null) throw new Error(`cannot mount ${mountpoint} (libfuse printed why, above)`);
    return f.chanFd(chan);
  } finally {
    f.freeArgs(args);
    koffi.free(args);
  }
}

export interface Connection {
  /** Stop reading and close the fd (after the kernel ended the connection, or to abandon it). */
  close(): void;
}

/**
 * How long the reader goes on reading after a burst of requests before the loop sleeps, while
 * requests come that quickly (D32, native/fuse-dev/fuse_dev.c). Not where this process has one
 * CPU: the program sending the requests would need it, and every spin would run out.
 */
export const SPIN_MICROS = availableParallelism() > 1 ? 50 : 0;

/**
 * Serve `fd`: every request goes to `onRequest` (its buffer is reused for the next), and
 * `onEnd` runs once when the connection is gone (unmounted: ENODEV). `spin.pending[0]` counts
 * the requests not yet answered: the reader spins only while it is 0.
 */
export function readConnection(
  fd: number, bufferSize: number, onRequest: (b: Buffer, len: number) => void, onEnd: (errno: number) => void,
  spin: { readonly micros: number; readonly pending: Int32Array },
): Connection {
  const dev = loadFuseDev();
  const buf = Buffer.alloc(bufferSize);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    dev.stop(handle);
    closeSync(fd);
  };
  const handle = dev.start(fd, buf, (len) => onRequest(buf, len), (errno) => {
    close();
    onEnd(errno);
  }, spin.micros, spin.pending);
  return { close };
}

let ioctl: ((fd: number, request: number, arg: Buffer) => number) | undefined;

/**
 * The backing files of connection `fd` (D51): FUSE_DEV_IOC_BACKING_OPEN takes a struct
 * fuse_backing_map (the fd, then flags and padding, zero) and gives the id, or fails with the
 * errno (EPERM without CAP_SYS_ADMIN, ELOOP for a file on a filesystem stacked too deep).
 */
export function backingFiles(fd: number): BackingFiles {
  if (ioctl === undefined) {
    const f = koffi.load('libc.so.6').func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)');
    ioctl = (d, request, arg) => Number(f(d, request, arg));
  }
  const call = ioctl;
  const map = Buffer.alloc(16);
  const id = Buffer.alloc(4);
  return {
    open: (file) => {
      map.fill(0);
      map.writeInt32LE(file, 0);
      const r = call(fd, DEV_IOC_BACKING_OPEN, map);
      return r > 0 ? r : -koffi.errno();
    },
    close: (backingId) => {
      id.writeUInt32LE(backingId, 0);
      call(fd, DEV_IOC_BACKING_CLOSE, id);
    },
  };
}

/** READ answers of connection `fd` spliced from the file (D56): session.ts, SpliceRead. */
export function spliceReads(fd: number): SpliceRead {
  const addon = loadFuseDev();
  return (unique, file, position, length) => new Promise((resolve) => addon.spliceRead(fd, unique, file, position, length, resolve));
}

/** Write one reply; a request the kernel withdrew meanwhile (ENOENT) or a closed connection is no error. */
export function writeReply(fd: number, reply: Buffer): string | undefined {
  try {
    writeSync(fd, reply);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EBADF' || code === 'ENODEV') return undefined;
    return code ?? String(e);
  }
}
