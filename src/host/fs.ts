// The only module that imports node:fs. Every call here either returns a value (absence of an
// entry is `undefined`, not an exception) or throws FsError. ENOTDIR, EACCES, ELOOP, EIO... are
// real errors and always propagate: a branch is never silently skipped.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Dirent, Stats, StatsFs } from 'node:fs';
import { FsError, fromNodeError, hasCode } from '../errno.js';
import type { RealPath } from '../path.js';

export type { Dirent, Stats, StatsFs };

export const O = fs.constants;

export async function lstatOrUndefined(p: RealPath): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw fromNodeError(e, 'lstat', p);
  }
}

/** lstat with nanosecond times (BigInt fields), for copying timestamps exactly. */
export async function lstatNs(p: RealPath): Promise<fs.BigIntStats> {
  try {
    return await fsp.lstat(p, { bigint: true });
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

export async function lstat(p: RealPath): Promise<Stats> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

/** Directory entries with their d_type. */
export async function readdirTyped(p: RealPath): Promise<Dirent[]> {
  try {
    return await fsp.readdir(p, { withFileTypes: true });
  } catch (e) {
    throw fromNodeError(e, 'readdir', p);
  }
}

export async function readlink(p: RealPath): Promise<string> {
  try {
    return await fsp.readlink(p);
  } catch (e) {
    throw fromNodeError(e, 'readlink', p);
  }
}

/**
 * open(2) that never follows a symlink in the last component: layers are untrusted, and a link
 * inside a branch must not open a host file. Earlier components are known directories of the
 * branch (resolution checked them), so O_NOFOLLOW on the last one is enough.
 */
export function open(p: RealPath, flags: number, mode = 0o666): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.open(p, flags | O.O_NOFOLLOW, mode, (err, fd) => {
      if (err) reject(fromNodeError(err, 'open', p));
      else resolve(fd);
    });
  });
}

export function read(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, 0, len, pos, (err, n) => {
      if (err) reject(fromNodeError(err, 'read'));
      else resolve(n);
    });
  });
}

export function close(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.close(fd, (err) => {
      if (err) reject(fromNodeError(err, 'close'));
      else resolve();
    });
  });
}

export async function statfs(p: RealPath): Promise<StatsFs> {
  try {
    return await fsp.statfs(p);
  } catch (e) {
    throw fromNodeError(e, 'statfs', p);
  }
}

/** Synchronous lstat for start-up (not on any request path). */
export function lstatSync(p: RealPath): Stats {
  try {
    return fs.lstatSync(p);
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

/** Synchronous stat for start-up checks (not on any request path). */
export function statSyncOrUndefined(p: string): Stats | undefined {
  try {
    return fs.statSync(p);
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw fromNodeError(e, 'stat', p);
  }
}

export function realpathSync(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch (e) {
    throw fromNodeError(e, 'realpath', p);
  }
}

export function readFileSyncOrUndefined(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw fromNodeError(e, 'read', p);
  }
}

/** Can this process open p for reading and writing? (Used to check /dev/fuse up front.) */
export function canOpenReadWrite(p: string): FsError | undefined {
  try {
    fs.closeSync(fs.openSync(p, 'r+'));
    return undefined;
  } catch (e) {
    return fromNodeError(e, 'open', p);
  }
}

// --- Writing (the upper and work dirs only; lowers are never passed here) -------------------

async function wrap<T>(syscall: string, p: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromNodeError(e, syscall, p);
  }
}

export const mkdir = (p: RealPath, mode: number): Promise<void> => wrap('mkdir', p, () => fsp.mkdir(p, { mode }).then(() => undefined));
export const rename = (from: RealPath, to: RealPath): Promise<void> => wrap('rename', to, () => fsp.rename(from, to));
export const unlink = (p: RealPath): Promise<void> => wrap('unlink', p, () => fsp.unlink(p));
export const rmdir = (p: RealPath): Promise<void> => wrap('rmdir', p, () => fsp.rmdir(p));
export const link = (existing: RealPath, p: RealPath): Promise<void> => wrap('link', p, () => fsp.link(existing, p));
export const symlink = (target: string, p: RealPath): Promise<void> => wrap('symlink', p, () => fsp.symlink(target, p));
export const lchown = (p: RealPath, uid: number, gid: number): Promise<void> => wrap('lchown', p, () => fsp.lchown(p, uid, gid));
export const chmod = (p: RealPath, mode: number): Promise<void> => wrap('chmod', p, () => fsp.chmod(p, mode));
export const rmTree = (p: RealPath): Promise<void> => wrap('rm', p, () => fsp.rm(p, { recursive: true, force: true }));

/**
 * Copy a regular file's data with the kernel's fastest means: a reflink where the filesystem
 * has one (FICLONE), else copy_file_range / sendfile inside the kernel (libuv's copyfile).
 * The destination must not exist.
 */
export const copyFileData = (from: RealPath, to: RealPath): Promise<void> =>
  wrap('copy_file_range', to, () => fsp.copyFile(from, to, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE));

export function write(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, 0, len, pos, (err, n) => {
      if (err) reject(fromNodeError(err, 'write'));
      else resolve(n);
    });
  });
}

export const truncate = (p: RealPath, size: number): Promise<void> => wrap('truncate', p, () => fsp.truncate(p, size));
export function ftruncate(fd: number, size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.ftruncate(fd, size, (err) => (err ? reject(fromNodeError(err, 'ftruncate')) : resolve()));
  });
}

export function fsync(fd: number, datasync: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err: NodeJS.ErrnoException | null): void => (err ? reject(fromNodeError(err, 'fsync')) : resolve());
    if (datasync) fs.fdatasync(fd, done);
    else fs.fsync(fd, done);
  });
}

/** mkdir -p for layerfs's own directories (the work dir). */
export const ensureDir = (p: RealPath): Promise<void> => wrap('mkdir', p, () => fsp.mkdir(p, { recursive: true, mode: 0o700 }).then(() => undefined));
