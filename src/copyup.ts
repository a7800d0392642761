// Copy-up: bring an entry that a lower branch serves into the upper before it is changed, with
// everything the kernel's overlayfs copies: data (reflink or in-kernel copy), mode, owner,
// timestamps to the nanosecond, xattrs (security.capability included, overlay bookkeeping not),
// a symlink's target, a device's number; missing parent directories first, with their lower
// metadata. Atomic: the copy is built in the work dir under a temporary name and renamed into
// place, so a crash at any moment leaves the upper with the old state or the finished copy,
// never a partial file (leftovers in the work dir are cleared at mount). Concurrent copy-ups of
// one path share one copy.
import { constants } from 'node:fs';
import type { BranchSet } from './branch.js';
import type { EntryStat } from './entry-stat.js';
import { FsError } from './errno.js';
import * as host from './host/fs.js';
import { copyRange, fdGetXattr, fdListXattr, fdSetXattr, getXattr, listXattr, mknod, setTimesFd, setTimesNs, setXattr } from './host/libc.js';
import { keepsIno, markImpure, recordIno, recordInoFd, recordedIno } from './origin.js';
import { ROOT, parentOf, type RealPath, type VPath } from './path.js';
import type { Resolver } from './resolve.js';
import { XATTR_PREFIX } from './whiteout.js';

/** Prefix of layerfs's temporary names in the work dir (all cleared at mount). */
export const WORK_PREFIX = '#layerfs-';

/**
 * What a copy-up found or made: the entry's upper path, and for a file copied by this copy-up
 * (not found there already) the xattr names it was given.
 */
export interface Copied {
  readonly real: RealPath;
  readonly xattrs?: readonly string[];
}

/**
 * One copy-up in progress: every caller waiting for it shares it. `stop` ends its file data copy
 * early, set once every one of those callers has been killed (interrupted()).
 */
interface Flight {
  readonly done: Promise<Copied>;
  readonly stop: Int32Array;
  waiters: number;
  killed: number;
}

export class CopyUp {
  readonly #flights = new Map<VPath, Flight>();
  #seq = 0;
  /** Entries copied up (parents included) and the bytes of file data copied, for stats. */
  readonly counts = { copies: 0, bytes: 0 };
  /**
   * Told of each entry copied up, before the request that caused it is answered: the copy changes
   * its parent's attributes (ctime, size) and, for a directory, its own, with no request on them
   * (D74). The kernel engine has the kernel forget what it kept of them.
   */
  onCopied: ((p: VPath, dir: boolean) => void) | undefined;

  constructor(
    private readonly branches: BranchSet,
    /** The directory temporary copies are built in: on the upper's filesystem. */
    private readonly work: RealPath,
    private readonly resolver: Resolver,
    /** The inode number the union shows for a branch's (dev, ino): recorded on each copy. */
    private readonly inoOf: (dev: number, ino: number) => number,
  ) {}

  /**
   * Mark the upper directory `dir` impure (origin.ts) before an entry that may carry a recorded
   * number arrives in it: readdir looks recorded numbers up only in such directories, and would
   * otherwise give the entry's d_ino as its own number while stat shows the recorded one. A
   * copy-up's parent is always marked; for an entry that moves in (a rename, a link: `entry`, its
   * upper path) only where it carries a record. Once per resolution of `dir` (its mark moves
   * with it; a move drops the resolution). `dir` must be in the upper already.
   */
  async markHolder(dir: VPath, entry?: RealPath): Promise<void> {
    const upper = this.branches.upper;
    if (upper === undefined) return;
    const pr = await this.resolver.resolve(dir);
    if (pr.kind === 'dir' && pr.impure === true) return;
    if (entry !== undefined && recordedIno(entry) === undefined) return;
    markImpure(upper.real(dir));
    if (pr.kind === 'dir' && pr.stack[0] === upper) pr.impure = true;
  }

  /** A fresh path in the work dir, for anything built there before it is renamed into place. */
  scratch(): RealPath {
    return `${this.work}/${WORK_PREFIX}${process.pid}-${this.#seq++}` as RealPath;
  }

  /**
   * Make p exist in the upper (copying it from the lower that serves it); its upper path.
   * `dataLimit`: of a regular file, copy at most this many bytes, for a caller that cuts the
   * file there at once (an open with O_TRUNC: 0, a truncate: the new size). A caller that joins
   * a copy-up under way takes it as it comes: the cut of the caller that started it happens first.
   */
  async ensure(p: VPath, dataLimit = Infinity): Promise<RealPath> {
    return (await this.copy(p, dataLimit)).real;
  }

  /** ensure, telling also what a copy made now was given. */
  copy(p: VPath, dataLimit = Infinity): Promise<Copied> {
    let f = this.#flights.get(p);
    if (f === undefined) {
      // Concurrent copy-ups of one path share one copy.
      const stop = new Int32Array(1);
      const done = this.#ensure(p, stop, dataLimit).finally(() => {
        if (this.#flights.get(p) === flight) this.#flights.delete(p);
      });
      const flight: Flight = { done, stop, waiters: 0, killed: 0 };
      f = flight;
      this.#flights.set(p, f);
    }
    f.waiters++;
    return f.done;
  }

  /**
   * A caller waiting for p's copy-up was killed (the FUSE layer saw its request interrupted by a
   * fatal signal). Once every caller waiting for it was, the file data copy stops and the copy-up
   * fails with EINTR, leaving nothing behind, as the kernel's overlayfs stops one on a fatal
   * signal: else the killed process could not exit before the last byte of a file of many GiB was
   * copied. Copies of 128 KiB and less, and of what is not a regular file, run to their end.
   */
  interrupted(p: VPath): void {
    const f = this.#flights.get(p);
    if (f === undefined) return;
    f.killed++;
    if (f.killed >= f.waiters) f.stop[0] = 1;
  }

  async #ensure(p: VPath, stop: Int32Array, dataLimit: number): Promise<Copied> {
    const upper = this.branches.upper;
    if (upper === undefined) throw new FsError('EROFS', 'copyup', p);
    const r = await this.resolver.get(p, 'copyup');
    const source = r.kind === 'file' ? r.branch : r.stack[0];
    if (source === undefined) throw new FsError('EIO', 'copyup', p);
    if (source === upper) return { real: upper.real(p) };
    if (p !== ROOT) await this.ensure(parentOf(p));
    const from = source.real(p);
    const to = upper.real(p);
    const tmp = this.scratch();
    // A copy-up is no change of the parent directory: its times are put back afterwards, as
    // the kernel's overlayfs does.
    const parent = p === ROOT ? undefined : upper.real(parentOf(p));
    const parentTimes = parent === undefined ? undefined : host.lstatEntry(parent);
    // Before the entry arrives, so that no crash leaves one with a recorded number unmarked.
    if (p !== ROOT) await this.markHolder(parentOf(p));
    const ino = keepsIno(r.kind === 'dir', r.stat.nlink) ? this.inoOf(r.stat.dev, r.stat.ino) : undefined;
    let xattrs: readonly string[];
    try {
      xattrs = await copyEntry(from, tmp, ino, r.kind === 'file' ? r.stat : undefined, { stop, dataLimit });
      await host.rename(tmp, to);
    } catch (e) {
      await host.rmTree(tmp).catch(() => undefined);
      throw e;
    }
    if (parent !== undefined && parentTimes !== undefined) setTimesNs(parent, parentTimes.atimeNs, parentTimes.mtimeNs);
    // After the rename, not before: a lookup racing with the copy re-resolves from disk. The
    // entry is known as it now is, so what follows a copy-up (a write, a getxattr, the copy-up of
    // a child) needs no lookup. A directory's copy is not opaque: the same lowers stay below it.
    const st = host.lstatEntryOrUndefined(to);
    if (st === undefined) this.resolver.invalidate(p);
    else if (r.kind === 'file') this.resolver.learn(p, { kind: 'file', branch: upper, real: to, stat: st, recordedIno: ino ?? null });
    else this.resolver.learn(p, { kind: 'dir', stack: [upper, ...r.stack], stat: st, recordedIno: ino ?? null });
    this.counts.copies++;
    if (r.kind === 'file' && r.stat.isFile()) this.counts.bytes += Math.min(r.stat.size, dataLimit);
    this.onCopied?.(p, r.kind === 'dir');
    return r.kind === 'file' ? { real: to, xattrs } : { real: to };
  }
}

/**
 * Build a copy of `from` (one entry, not a directory's contents) at `to`, which will show the
 * inode number `ino` (origin.ts), or its own where undefined (keepsIno). `known`: what the
 * resolution knows of `from`. The names of the xattrs the copy was given.
 */
export async function copyEntry(
  from: RealPath, to: RealPath, ino: number | undefined, known?: EntryStat,
  o: { readonly stop?: Int32Array; readonly dataLimit?: number } = {},
): Promise<readonly string[]> {
  const limit = o.dataLimit ?? Infinity;
  if (known !== undefined && known.isFile() && Math.min(known.size, limit) <= host.SMALL_WRITE) {
    const copied = copySmallFile(from, to, ino, limit);
    if (copied !== undefined) return copied;
  }
  const st = host.lstatEntry(from);
  const mode = st.mode;
  const perm = mode & 0o7777;
  const type = mode & constants.S_IFMT;
  if (type === constants.S_IFDIR) await host.mkdir(to, 0o700);
  else if (type === constants.S_IFREG) await host.copyFileData(from, to, Math.min(st.size, limit), o.stop, limit);
  else if (type === constants.S_IFLNK) await host.symlink(await host.readlink(from), to);
  else mknod(to, mode, st.rdev);
  // Owner before mode (chown clears set-id bits), and both before xattrs: chown also drops
  // security.capability, which must survive the copy.
  await host.lchown(to, st.uid, st.gid);
  if (type !== constants.S_IFLNK) await host.chmod(to, perm);
  const xattrs = copyXattrs(listXattr(from), (name) => getXattr(from, name), (name, v) => setXattr(to, name, v));
  if (ino !== undefined) recordIno(to, ino);
  setTimesNs(to, st.atimeNs, st.mtimeNs);
  return xattrs;
}

/**
 * copyEntry of a small regular file (D35): on the calling thread, and through fds from the open
 * on, so that nothing walks a path twice: 10 syscalls where the general way (lstat, libuv's
 * copyfile, then each attribute by path) makes 14. Undefined, with nothing made, where `from` is
 * no longer a regular file of that size (a lower changed under the mount) or a path is too long
 * for one syscall: the general way then copies it.
 */
function copySmallFile(from: RealPath, to: RealPath, ino: number | undefined, limit: number): readonly string[] | undefined {
  if (host.isLongPath(from) || host.isLongPath(to)) return undefined;
  // O_NONBLOCK: were it a FIFO now, the open must not wait for a writer.
  const src = host.openFileNow(from, constants.O_RDONLY | constants.O_NONBLOCK | host.READ_LOWER);
  try {
    const st = host.fstatEntry(src);
    const mode = st.mode;
    const size = st.size;
    if ((mode & constants.S_IFMT) !== constants.S_IFREG || Math.min(size, limit) > host.SMALL_WRITE) return undefined;
    const perm = mode & 0o7777;
    const dst = host.openFileNow(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, perm & 0o777);
    try {
      copyRange(src, dst, Math.min(size, limit));
      // The owner and mode the host gave the copy (the server's, its umask, the work dir's
      // default ACL): changed only where they differ. Owner before mode: chown clears set-id bits.
      const made = host.fstatEntry(dst);
      const chown = made.uid !== st.uid || made.gid !== st.gid;
      if (chown) host.fchownNow(dst, st.uid, st.gid);
      if (chown || (made.mode & 0o7777) !== perm) host.fchmodNow(dst, perm);
      const xattrs = copyXattrs(fdListXattr(src), (name) => fdGetXattr(src, name), (name, v) => fdSetXattr(dst, name, v));
      if (ino !== undefined) recordInoFd(dst, ino);
      setTimesFd(dst, st.atimeNs, st.mtimeNs);
      return xattrs;
    } finally {
      host.closeNow(dst);
    }
  } finally {
    host.closeNow(src);
  }
}

/** Copy the xattrs listed (security.capability and ACLs too), after owner and mode; the names copied. */
function copyXattrs(names: readonly string[], get: (name: string) => Buffer | undefined, set: (name: string, v: Buffer) => void): string[] {
  const copied: string[] = [];
  for (const name of names) {
    if (name.startsWith(XATTR_PREFIX)) continue; // the overlay's own bookkeeping is per-branch
    const v = get(name);
    if (v === undefined) continue;
    set(name, v);
    copied.push(name);
  }
  return copied;
}

/** Remove what an interrupted copy-up left in the work dir (at mount, before serving). */
export async function clearWorkDir(work: RealPath): Promise<number> {
  let n = 0;
  for (const d of await host.readdirTyped(work)) {
    if (!d.name.startsWith(WORK_PREFIX)) continue;
    await host.rmTree(`${work}/${d.name}` as RealPath);
    n++;
  }
  return n;
}
