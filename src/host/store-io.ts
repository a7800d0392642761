// File operations of the image store and the image readers (src/image/): whole-file reads and
// streams of image blobs, atomic publication of finished directories (rename without replace,
// fsync of the directory, syncfs of the filesystem), and advisory locks (flock). Kept apart from
// fs.ts, whose calls serve the union's request path; these serve a command that runs once.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import koffi from 'koffi';
import { constants } from 'node:os';
import { FsError, fromNodeError, hasCode, isErrnoCode } from '../errno.js';

const libc = koffi.load('libc.so.6');
const c = {
  flock: libc.func('int flock(int fd, int op)'),
  syncfs: libc.func('int syncfs(int fd)'),
  renameat2: libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)'),
};
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const AT_FDCWD = -100;
const RENAME_NOREPLACE = 1;

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

function lastError(syscall: string, path?: string): FsError {
  const code = errnoNames.get(koffi.errno());
  return new FsError(code !== undefined && isErrnoCode(code) ? code : 'EIO', syscall, path);
}

async function wrap<T>(syscall: string, p: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromNodeError(e, syscall, p);
  }
}

export type { Stats } from 'node:fs';

/** lstat, or undefined when nothing is there. */
export async function lstatOrUndefined(p: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw fromNodeError(e, 'lstat', p);
  }
}

export const stat = (p: string): Promise<fs.Stats> => wrap('stat', p, () => fsp.stat(p));
export const realpath = (p: string): Promise<string> => wrap('realpath', p, () => fsp.realpath(p));
export const readFile = (p: string): Promise<Buffer> => wrap('read', p, () => fsp.readFile(p));

/** Names in a directory; none when it does not exist. */
export async function listDir(p: string): Promise<string[]> {
  try {
    return await fsp.readdir(p);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return [];
    throw fromNodeError(e, 'readdir', p);
  }
}

/** The first n bytes of a file (fewer when it is shorter). */
export async function readHead(p: string, n: number): Promise<Buffer> {
  return wrap('read', p, async () => {
    const fh = await fsp.open(p, fs.constants.O_RDONLY);
    try {
      const buf = Buffer.alloc(n);
      const { bytesRead } = await fh.read(buf, 0, n, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  });
}

/** A stream of a file's bytes (1 MiB reads). Errors surface on the stream as FsError. */
export function readStream(p: string): Readable {
  return fs.createReadStream(p, { highWaterMark: 1 << 20 });
}

/** mkdir -p. */
export const mkdirs = (p: string, mode = 0o755): Promise<void> => wrap('mkdir', p, () => fsp.mkdir(p, { recursive: true, mode }).then(() => undefined));

/** mkdir of one new directory; false when the name exists already. The mode is set exactly (no umask). */
export async function mkdirNew(p: string, mode: number): Promise<boolean> {
  try {
    await fsp.mkdir(p, { mode });
  } catch (e) {
    if (hasCode(e, 'EEXIST')) return false;
    throw fromNodeError(e, 'mkdir', p);
  }
  await chmod(p, mode);
  return true;
}

export const chmod = (p: string, mode: number): Promise<void> => wrap('chmod', p, () => fsp.chmod(p, mode));
export const lchown = (p: string, uid: number, gid: number): Promise<void> => wrap('lchown', p, () => fsp.lchown(p, uid, gid));
export const utimes = (p: string, atime: Date, mtime: Date): Promise<void> => wrap('utimes', p, () => fsp.utimes(p, atime, mtime));

/** fsync a file or directory by name (a directory: so that a rename in it survives a crash). */
export async function fsyncPath(p: string): Promise<void> {
  await wrap('fsync', p, async () => {
    const fh = await fsp.open(p, fs.constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  });
}

/**
 * Flush everything written to the filesystem holding p (syncfs(2)): one call makes a whole
 * unpacked tree durable, where an fsync per file would cost one call per entry.
 */
export function syncFilesystem(p: string): void {
  const fd = fs.openSync(p, fs.constants.O_RDONLY);
  try {
    if (c.syncfs(fd) !== 0) throw lastError('syncfs', p);
  } finally {
    fs.closeSync(fd);
  }
}

/** Write a small file so that readers see the old content or the new one, never a part. */
export async function writeFileAtomic(p: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = `${p}.${process.pid}.tmp`;
  await wrap('write', tmp, async () => {
    const fh = await fsp.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  });
  await wrap('rename', p, () => fsp.rename(tmp, p));
}

/** rename(2) that fails with EEXIST (or ENOTEMPTY) instead of replacing what is at `to`. */
export function renameNoReplace(from: string, to: string): void {
  if (c.renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) !== 0) throw lastError('renameat2', to);
}

export const rename = (from: string, to: string): Promise<void> => wrap('rename', to, () => fsp.rename(from, to));
export const unlink = (p: string): Promise<void> => wrap('unlink', p, () => fsp.unlink(p));

/**
 * rm -rf, also where a directory inside denies writing (a layer or an upper may hold 0555
 * directories, which stop a non-root owner from removing their entries): those directories
 * are made writable and the removal tried again.
 */
export async function removeTree(p: string): Promise<void> {
  try {
    await fsp.rm(p, { recursive: true, force: true });
    return;
  } catch (e) {
    if (!hasCode(e, 'EACCES') && !hasCode(e, 'EPERM')) throw fromNodeError(e, 'rm', p);
  }
  await makeDirsWritable(p);
  await wrap('rm', p, () => fsp.rm(p, { recursive: true, force: true }));
}

async function makeDirsWritable(p: string): Promise<void> {
  const st = await lstatOrUndefined(p);
  if (st === undefined || !st.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) await chmod(p, (st.mode & 0o7777) | 0o700);
  for (const name of await listDir(p)) await makeDirsWritable(`${p}/${name}`);
}

/** An open lock file; closing it releases the lock. */
export interface LockFd {
  readonly fd: number;
  readonly path: string;
}

/** Open (creating) a lock file. */
export function openLockFile(p: string): LockFd {
  try {
    return { fd: fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600), path: p };
  } catch (e) {
    throw fromNodeError(e, 'open', p);
  }
}

/**
 * Try to take an exclusive flock(2) on the lock file without waiting. The kernel drops the lock
 * when the process dies, however it dies, so a crash never leaves a lock that must be broken.
 */
export function tryFlock(l: LockFd): boolean {
  if (c.flock(l.fd, LOCK_EX | LOCK_NB) === 0) return true;
  const err = lastError('flock', l.path);
  if (err.code === 'EWOULDBLOCK' || err.code === 'EAGAIN' || err.code === 'EINTR') return false;
  throw err;
}

export function closeLockFile(l: LockFd): void {
  c.flock(l.fd, LOCK_UN);
  fs.closeSync(l.fd);
}
