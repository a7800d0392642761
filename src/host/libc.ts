// What Node does not have: extended attributes, mknod, and directory entries with their inode
// numbers (getdents64). They come from libc through koffi
// (a maintained FFI with prebuilt binaries for Node 20; no compiler needed at install). Every
// call by path is l*-variant: a symlink's own xattrs, never its target's; the f* ones serve files
// open by fd that have no name left. Calls are synchronous: each is
// one short syscall, done once per directory and branch on the lookup path (the result is cached),
// and an async FFI hop through the libuv pool costs more than the syscall (see native-notes).
import koffi from 'koffi';
import { constants } from 'node:os';
import { FsError, codeOfErrno } from '../errno.js';
import type { RealPath } from '../path.js';
import { isLongPath, viaShortPathsSync } from './fs.js';
import { cPath as cp, decodeName } from '../name-bytes.js';

const libc = koffi.load('libc.so.6');
const c = {
  lgetxattr: libc.func('long lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)'),
  llistxattr: libc.func('long llistxattr(const char *path, _Out_ uint8_t *list, size_t size)'),
  lsetxattr: libc.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)'),
  lremovexattr: libc.func('int lremovexattr(const char *path, const char *name)'),
  fgetxattr: libc.func('long fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)'),
  flistxattr: libc.func('long flistxattr(int fd, _Out_ uint8_t *list, size_t size)'),
  fsetxattr: libc.func('int fsetxattr(int fd, const char *name, const uint8_t *value, size_t size, int flags)'),
  fremovexattr: libc.func('int fremovexattr(int fd, const char *name)'),
  mknod: libc.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
  open: libc.func('int open(const char *path, int flags)'),
  close: libc.func('int close(int fd)'),
  getdents64: libc.func('long getdents64(int fd, _Out_ uint8_t *buf, size_t size)'),
  utimensat: libc.func('int utimensat(int dirfd, const char *path, const int64_t *times, int flags)'),
  futimens: libc.func('int futimens(int fd, const int64_t *times)'),
  renameat2: libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)'),
  copy_file_range: libc.func('long copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)'),
  sendfile: libc.func('long sendfile(int out_fd, int in_fd, int64_t *offset, size_t count)'),
};

const RENAME_EXCHANGE = 2;
const RENAME_WHITEOUT = 4;

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const O_NOATIME = 0o1000000;
const EPERM = constants.errno.EPERM;

// Paths of PATH_MAX bytes or more: each call below starts with isLongPath(p) (one comparison for a
// short path) and, for a long one, calls itself again on the short "/proc/self/fd/N/<rest>" path
// that fs.ts reaches it by (see there), closing that fd right after.
const via = <T>(p: RealPath, syscall: string, fn: (short: RealPath) => T): T =>
  viaShortPathsSync([p], syscall, ([q]) => fn(q as RealPath));
const via2 = <T>(a: RealPath, b: RealPath, syscall: string, fn: (a: RealPath, b: RealPath) => T): T =>
  viaShortPathsSync([a, b], syscall, ([qa, qb]) => fn(qa as RealPath, qb as RealPath));

const { ENODATA, ENOTSUP, ERANGE } = constants.errno;

function lastError(syscall: string, path: string): FsError {
  return new FsError(codeOfErrno(koffi.errno()), syscall, path);
}

/** The value of xattr `name`, or undefined when it is not set (or xattrs are unsupported there). */
export function getXattr(p: RealPath, name: string): Buffer | undefined {
  if (isLongPath(p)) return via(p, 'getxattr', (q) => getXattr(q, name));
  return readValue((buf, size) => Number(c.lgetxattr(cp(p), cp(name), buf, size)), 'getxattr', p);
}

/** getXattr through an open fd (a file that may have no name any more). */
export function fdGetXattr(fd: number, name: string): Buffer | undefined {
  return readValue((buf, size) => Number(c.fgetxattr(fd, cp(name), buf, size)), 'fgetxattr', `fd ${fd}`);
}

function readValue(get: (buf: Buffer | null, size: number) => number, syscall: string, where: string): Buffer | undefined {
  // Try a small buffer first: nearly every value layerfs reads (opaque markers) is 1 byte.
  let size = 256;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = get(buf, size);
    if (n >= 0) return buf.subarray(0, n);
    // The errno first: "no such attribute" is the common answer, and an Error (with its stack)
    // costs several µs to make.
    const errno = koffi.errno();
    if (errno === ENODATA || errno === ENOTSUP) return undefined;
    if (errno !== ERANGE) throw lastError(syscall, where);
    const need = get(null, 0);
    if (need < 0) throw lastError(syscall, where);
    size = need;
  }
}

/** All xattr names of p (empty where the filesystem has none or no xattr support). */
export function listXattr(p: RealPath): string[] {
  if (isLongPath(p)) return via(p, 'listxattr', listXattr);
  return readNames((buf, size) => Number(c.llistxattr(cp(p), buf, size)), 'listxattr', p);
}

/** listXattr through an open fd. */
export function fdListXattr(fd: number): string[] {
  return readNames((buf, size) => Number(c.flistxattr(fd, buf, size)), 'flistxattr', `fd ${fd}`);
}

function readNames(list: (buf: Buffer | null, size: number) => number, syscall: string, where: string): string[] {
  for (;;) {
    const need = list(null, 0);
    if (need < 0) {
      const err = lastError(syscall, where);
      if (err.code === 'ENOTSUP') return [];
      throw err;
    }
    if (need === 0) return [];
    const buf = Buffer.allocUnsafe(need);
    const n = list(buf, need);
    if (n < 0) {
      const err = lastError(syscall, where);
      if (err.code === 'ERANGE') continue; // grew between the two calls
      throw err;
    }
    const names: string[] = [];
    for (let at = 0; at < n;) {
      let z = buf.indexOf(0, at);
      if (z < 0 || z > n) z = n;
      if (z > at) names.push(decodeName(buf, at, z));
      at = z + 1;
    }
    return names;
  }
}

export function setXattr(p: RealPath, name: string, value: Buffer, flags = 0): void {
  if (isLongPath(p)) return via(p, 'setxattr', (q) => setXattr(q, name, value, flags));
  if (c.lsetxattr(cp(p), cp(name), value, value.length, flags) !== 0) throw lastError('setxattr', p);
}

export function removeXattr(p: RealPath, name: string): void {
  if (isLongPath(p)) return via(p, 'removexattr', (q) => removeXattr(q, name));
  if (c.lremovexattr(cp(p), cp(name)) !== 0) throw lastError('removexattr', p);
}

export function fdSetXattr(fd: number, name: string, value: Buffer, flags = 0): void {
  if (c.fsetxattr(fd, cp(name), value, value.length, flags) !== 0) throw lastError('fsetxattr', `fd ${fd}`);
}

export function fdRemoveXattr(fd: number, name: string): void {
  if (c.fremovexattr(fd, cp(name)) !== 0) throw lastError('fremovexattr', `fd ${fd}`);
}

/**
 * Copy up to `len` bytes from fd `from` to fd `to`, each at its file offset, inside the kernel:
 * copy_file_range (a reflink where the filesystem can: btrfs, XFS), or sendfile where the two
 * files are on filesystems that cannot copy between each other. Stops early at the source's end.
 */
export function copyRange(from: number, to: number, len: number): void {
  let left = len;
  let viaSendfile = false;
  while (left > 0) {
    const n = Number(viaSendfile ? c.sendfile(to, from, null, left) : c.copy_file_range(from, null, to, null, left, 0));
    if (n > 0) {
      left -= n;
      continue;
    }
    if (n === 0) return;
    const err = lastError(viaSendfile ? 'sendfile' : 'copy_file_range', `fd ${to}`);
    if (viaSendfile || !CROSS_FS.has(err.code)) throw err;
    viaSendfile = true;
  }
}

/** What copy_file_range answers where sendfile can still copy (filesystems of different kinds). */
const CROSS_FS = new Set<string>(['EXDEV', 'EINVAL', 'EOPNOTSUPP', 'ENOTSUP', 'ENOSYS']);

/** mknod(2); dev is makedev(major, minor) as the kernel encodes it. */
export function mknod(p: RealPath, mode: number, dev: number): void {
  if (isLongPath(p)) return via(p, 'mknod', (q) => mknod(q, mode, dev));
  if (c.mknod(cp(p), mode, dev) !== 0) throw lastError('mknod', p);
}

/** One directory entry as the kernel returns it: name, inode number and d_type (DT_*). */
export interface RawDirent {
  readonly name: string;
  readonly ino: number;
  readonly dtype: number;
}

export const DT = { UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12 } as const;

const direntBuf = Buffer.allocUnsafe(256 * 1024);

/**
 * All entries of a directory except "." and "..", with their inode numbers, which Node's
 * readdir does not give: readdir replies carry d_ino, and without it every entry would show
 * inode 0 there. Reads in 256 KiB batches (a 100k-entry directory is about 15 calls).
 * `lower`: p is in a lower branch, which the listing must leave as it is. `withFd`: called
 * with the directory's open fd, for what else the caller wants of it (its stat, an xattr)
 * without walking the path again.
 */
export function readDirents(p: RealPath, o: { readonly lower: boolean; readonly withFd?: (fd: number) => void }): RawDirent[] {
  if (isLongPath(p)) return via(p, 'opendir', (q) => readDirents(q, o));
  const flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  // A lower directory is listed with O_NOATIME, as a lower file is read (fs.ts, READ_LOWER, D40);
  // without it where the kernel refuses it.
  let fd = c.open(cp(p), o.lower ? flags | O_NOATIME : flags) as number;
  if (fd < 0 && o.lower && koffi.errno() === EPERM) fd = c.open(cp(p), flags) as number;
  if (fd < 0) throw lastError('opendir', p);
  const out: RawDirent[] = [];
  try {
    o.withFd?.(fd);
    for (;;) {
      const n = Number(c.getdents64(fd, direntBuf, direntBuf.length));
      if (n < 0) throw lastError('getdents64', p);
      if (n === 0) break;
      for (let off = 0; off < n;) {
        const reclen = direntBuf.readUInt16LE(off + 16);
        const dtype = direntBuf[off + 18]!;
        const nameStart = off + 19;
        const nameEnd = direntBuf.indexOf(0, nameStart);
        const name = decodeName(direntBuf, nameStart, nameEnd < 0 || nameEnd > off + reclen ? off + reclen : nameEnd);
        if (name !== '.' && name !== '..') {
          out.push({ name, ino: Number(direntBuf.readBigUInt64LE(off)), dtype });
        }
        off += reclen;
      }
    }
  } finally {
    c.close(fd);
  }
  return out;
}

/** A time for setTimes: nanoseconds since the epoch, the current time, or "leave it". */
export type TimeSpec = bigint | 'now' | 'omit';

const UTIME_NOW = (1n << 30n) - 1n;
const UTIME_OMIT = (1n << 30n) - 2n;

function timespec(t: TimeSpec): [bigint, bigint] {
  if (t === 'now') return [0n, UTIME_NOW];
  if (t === 'omit') return [0n, UTIME_OMIT];
  const sec = t >= 0n ? t / 1_000_000_000n : -((-t + 999_999_999n) / 1_000_000_000n);
  return [sec, t - sec * 1_000_000_000n];
}

/**
 * Set atime and mtime to the nanosecond, or to now, or leave one as it is (Node's utimes takes
 * seconds as a double, about 240 ns at today's dates, and knows neither NOW nor OMIT), never
 * following a symlink.
 */
export function setTimes(p: RealPath, atime: TimeSpec, mtime: TimeSpec): void {
  if (isLongPath(p)) return via(p, 'utimensat', (q) => setTimes(q, atime, mtime));
  const times = new BigInt64Array([...timespec(atime), ...timespec(mtime)]);
  if (c.utimensat(AT_FDCWD, cp(p), times, AT_SYMLINK_NOFOLLOW) !== 0) throw lastError('utimensat', p);
}

/** setTimes through an open fd (futimens): for a file that may have no name left. */
export function setTimesFd(fd: number, atime: TimeSpec, mtime: TimeSpec): void {
  const times = new BigInt64Array([...timespec(atime), ...timespec(mtime)]);
  if (c.futimens(fd, times) !== 0) throw lastError('futimens', `fd ${fd}`);
}

/** setTimes with exact nanosecond values (copy-up). */
export function setTimesNs(p: RealPath, atimeNs: bigint, mtimeNs: bigint): void {
  setTimes(p, atimeNs, mtimeNs);
}

/**
 * Swap two paths atomically (renameat2 RENAME_EXCHANGE): how a whiteout and a directory trade
 * places without a moment in which neither is there.
 */
export function renameExchange(a: RealPath, b: RealPath): void {
  if (isLongPath(a) || isLongPath(b)) return via2(a, b, 'renameat2', renameExchange);
  if (c.renameat2(AT_FDCWD, cp(a), AT_FDCWD, cp(b), RENAME_EXCHANGE) !== 0) throw lastError('renameat2', b);
}

/**
 * rename(2) that leaves a whiteout (char 0:0) at the old name in the same step
 * (renameat2 RENAME_WHITEOUT, what the kernel's overlayfs uses): a lower entry of the old name
 * can never show through, even after a crash.
 */
export function renameWhiteout(from: RealPath, to: RealPath): void {
  if (isLongPath(from) || isLongPath(to)) return via2(from, to, 'renameat2', renameWhiteout);
  if (c.renameat2(AT_FDCWD, cp(from), AT_FDCWD, cp(to), RENAME_WHITEOUT) !== 0) throw lastError('renameat2', to);
}
