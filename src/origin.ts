// Inode numbers that survive a copy-up. The kernel's overlayfs keeps showing a file's lower inode
// number after copying it up (it records the origin in trusted.overlay.origin, a file handle), and
// tools rely on that: tar checks that a directory it extracts into keeps its (st_dev, st_ino)
// before it sets the directory's times, and git, rsync -H and du key on st_ino. layerfs records the
// number it showed before the copy in its own xattr on the upper entry, which hard links share and
// renames keep, and shows that number from then on. The name is in the trusted.overlay. namespace,
// so that neither layerfs nor the kernel lists it (a user's own trusted.overlay.* names are stored
// escaped, so none can collide with it).
import type { Branch } from './branch.js';
import { hasCode } from './errno.js';
import { fdSetXattr, getXattr, setXattr } from './host/libc.js';
import type { InodeNumbers } from './inode.js';
import type { RealPath } from './path.js';

export const XATTR_ORIGIN_INO = 'trusted.overlay.layerfs.ino';
/**
 * The kernel's mark on an upper directory that holds copied-up entries (so that readdir looks up
 * their d_ino); layerfs sets and reads it for the same reason, and the kernel may read ours.
 */
export const XATTR_IMPURE = 'trusted.overlay.impure';

/** The inode number recorded on an upper entry at its copy-up, if any. */
export function recordedIno(real: RealPath): number | undefined {
  let v: Buffer | undefined;
  try {
    v = getXattr(real, XATTR_ORIGIN_INO);
  } catch {
    return undefined; // gone meanwhile, or a filesystem without trusted xattrs: its own number
  }
  if (v === undefined) return undefined;
  const n = Number(v.toString('latin1'));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * Record on a copy (before it takes its name) the number its original showed. Best effort: an
 * upper without trusted xattrs (no CAP_SYS_ADMIN, or no xattr support) shows its own numbers.
 */
export function recordIno(real: RealPath, ino: number): void {
  bestEffort(() => setXattr(real, XATTR_ORIGIN_INO, Buffer.from(String(ino), 'latin1')));
}

/** recordIno through the copy's open fd. */
export function recordInoFd(fd: number, ino: number): void {
  bestEffort(() => fdSetXattr(fd, XATTR_ORIGIN_INO, Buffer.from(String(ino), 'latin1')));
}

function bestEffort(set: () => void): void {
  try {
    set();
  } catch (e) {
    if (!(hasCode(e, 'EPERM') || hasCode(e, 'ENOTSUP') || hasCode(e, 'EOPNOTSUPP') || hasCode(e, 'EACCES'))) throw e;
  }
}

/**
 * Whether a copy of a lower entry keeps the number its original showed (the kernel's rule, in
 * ovl_getattr without the index feature): a directory, or a file of one name. A copy of one name
 * of a file with several is another file from then on, while its other names still show the lower
 * one: sharing their number would make tar store the copy as a hard link to them, and du and
 * rsync -H count the two as one. Such a copy shows its own number, as under the kernel.
 */
export function keepsIno(isDir: boolean, nlink: number): boolean {
  return isDir || nlink <= 1;
}

/** The inode number the union shows for a branch's entry: an upper one's recorded number first. */
export function shownIno(inodes: InodeNumbers, b: Branch, real: RealPath, dev: number, ino: number): number {
  return (b.writable ? recordedIno(real) : undefined) ?? inodes.of(dev, ino);
}

/** Mark an upper directory as holding entries with recorded numbers (before they arrive). */
export function markImpure(dir: RealPath): void {
  bestEffort(() => setXattr(dir, XATTR_IMPURE, Buffer.from('y')));
}

export function isImpure(dir: RealPath): boolean {
  try {
    return getXattr(dir, XATTR_IMPURE)?.toString('latin1') === 'y';
  } catch {
    return false;
  }
}
