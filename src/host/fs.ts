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
