// Extended attributes and mknod, which Node does not have. They come from libc through koffi
// (a maintained FFI with prebuilt binaries for Node 20; no compiler needed at install). Every
// call is l*-variant: a symlink's own xattrs, never its target's. Calls are synchronous: each is
// one short syscall, done once per directory and branch on the lookup path (the result is cached),
// and an async FFI hop through the libuv pool costs more than the syscall (see native-notes).
import koffi from 'koffi';
import { constants } from 'node:os';
import { FsError, isErrnoCode, type ErrnoCode } from '../errno.js';
import type { RealPath } from '../path.js';

const libc = koffi.load('libc.so.6');
const c = {
  lgetxattr: libc.func('long lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)'),
  llistxattr: libc.func('long llistxattr(const char *path, _Out_ uint8_t *list, size_t size)'),
  lsetxattr: libc.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)'),
  lremovexattr: libc.func('int lremovexattr(const char *path, const char *name)'),
  mknod: libc.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
};

const errnoNames = new Map<number, ErrnoCode>(
  Object.entries(constants.errno).map(([k, v]) => [v, k as ErrnoCode]),
);

function lastError(syscall: string, path: string): FsError {
  const code = errnoNames.get(koffi.errno());
  return new FsError(code !== undefined && isErrnoCode(code) ? code : 'EIO', syscall, path);
}

/** The value of xattr `name`, or undefined when it is not set (or xattrs are unsupported there). */
export function getXattr(p: RealPath, name: string): Buffer | undefined {
  // Try a small buffer first: nearly every value layerfs reads (opaque markers) is 1 byte.
  let size = 256;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = Number(c.lgetxattr(p, name, buf, size));
    if (n >= 0) return buf.subarray(0, n);
    const err = lastError('getxattr', p);
    if (err.code === 'ENODATA' || err.code === 'ENOTSUP') return undefined;
    if (err.code !== 'ERANGE') throw err;
    const need = Number(c.lgetxattr(p, name, null, 0));
    if (need < 0) throw lastError('getxattr', p);
    size = need;
  }
}

/** All xattr names of p (empty where the filesystem has none or no xattr support). */
export function listXattr(p: RealPath): string[] {
  for (;;) {
    const need = Number(c.llistxattr(p, null, 0));
    if (need < 0) {
      const err = lastError('listxattr', p);
      if (err.code === 'ENOTSUP') return [];
      throw err;
    }
    if (need === 0) return [];
    const buf = Buffer.allocUnsafe(need);
    const n = Number(c.llistxattr(p, buf, need));
    if (n < 0) {
      const err = lastError('listxattr', p);
      if (err.code === 'ERANGE') continue; // grew between the two calls
      throw err;
    }
    return buf.toString('utf8', 0, n).split('\0').filter((s) => s.length > 0);
  }
}

export function setXattr(p: RealPath, name: string, value: Buffer, flags = 0): void {
  if (c.lsetxattr(p, name, value, value.length, flags) !== 0) throw lastError('setxattr', p);
}

export function removeXattr(p: RealPath, name: string): void {
  if (c.lremovexattr(p, name) !== 0) throw lastError('removexattr', p);
}

/** mknod(2); dev is makedev(major, minor) as the kernel encodes it. */
export function mknod(p: RealPath, mode: number, dev: number): void {
  if (c.mknod(p, mode, dev) !== 0) throw lastError('mknod', p);
}
