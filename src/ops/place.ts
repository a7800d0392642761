// Putting a new entry at a name of the merged view: it is built in the work dir and moved into
// the upper in one step, replacing a whiteout of that name if there is one (a non-directory by
// rename, a directory by exchange, D14); a directory over a whiteout is made opaque, so that a
// lower directory of that name does not merge back in. Shared by create, mkdir, mknod, symlink
// and link.
import { ACL_ACCESS, ACL_DEFAULT, inherit } from '../acl.js';
import { probeOnDisk } from '../branch-dir.js';
import type { UnionCtx, UpperCtx } from '../context.js';
import { EntryStat } from '../entry-stat.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { getXattr, renameExchange, setXattr } from '../host/libc.js';
import { baseName, parentOf, type RealPath, type VPath } from '../path.js';
import { isMarkerName } from '../whiteout.js';

export interface Owner {
  readonly uid: number;
  readonly gid: number;
  /**
   * The caller's umask, where the kernel left it to layerfs (FUSE_DONT_MASK); without it the
   * mode asked for is already masked.
   */
  readonly umask?: number;
}

/** What a new entry takes from the directory it is made in (see own). */
export interface Parent {
  readonly mode: number;
  readonly gid: number;
  /** The directory in the upper, where its default ACL is read. */
  readonly real: RealPath;
}

const S_ISGID = 0o2000;

export async function placeNew<T>(
  ctx: UnionCtx,
  up: UpperCtx,
  p: VPath,
  o: { syscall: string; isDir: boolean },
  build: (tmp: RealPath, parent: Parent) => Promise<T>,
): Promise<T> {
  const dir = parentOf(p);
  const name = baseName(p);
  // ".wh.*" names are whiteout markers in every branch (D3): one made by a user would delete
  // another name, or vanish. Refused, as a name the filesystem cannot hold.
  if (isMarkerName(name)) throw new FsError('EINVAL', o.syscall, p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') throw new FsError('EEXIST', o.syscall, p);
  await up.copyUp.ensure(dir);
  const parent = await ctx.resolver.get(dir, o.syscall);
  // What a whiteout at the name changes: a directory made there is opaque, and an OCI marker is
  // removed. Both matter only where a lower has the name; elsewhere a non-directory simply
  // replaces whatever whiteout is there (rename), and no probe is made.
  const overWhiteout = (o.isDir || (await ctx.resolver.lowerHas(p))) && probeOnDisk(up.branch, dir, name).kind === 'whiteout';
  const tmp = up.scratch();
  const target = up.branch.real(p);
  let result: T;
  try {
    result = await build(tmp, { mode: parent.stat.mode, gid: parent.stat.gid, real: up.branch.real(dir) });
    if (o.isDir && overWhiteout) await up.whiteouts.makeOpaque(tmp);
    if (o.isDir && (await host.lstatOrUndefined(target)) !== undefined) {
      renameExchange(tmp, target); // the char 0:0 whiteout is now at tmp
      await host.rmTree(tmp);
    } else {
      await host.rename(tmp, target); // a non-directory replaces a char 0:0 whiteout
    }
    if (overWhiteout) await up.whiteouts.remove(up.branch, dir, name); // an OCI marker beside it
  } catch (e) {
    await host.rmTree(tmp).catch(() => undefined);
    throw e;
  }
  // After the change on disk: a lookup racing with it re-resolves from the new state. A new
  // non-directory is known as it is (a directory's stack depends on what lies below: resolved).
  const st = o.isDir ? undefined : host.lstatNsSyncOrUndefined(target);
  if (st !== undefined) ctx.resolver.learn(p, { kind: 'file', branch: up.branch, real: target, stat: new EntryStat(st),
    // A new entry has no recorded number; a new link shares its file's.
    ...(o.syscall === 'link' ? {} : { recordedIno: null }) });
  else ctx.resolver.invalidate(p);
  return result;
}

/** What a new entry is given: its owner, and but for a symlink its mode and ACLs (see entryFor). */
export interface NewEntry {
  readonly uid: number;
  readonly gid: number;
  readonly mode?: number;
  readonly access?: Buffer | undefined;
  readonly defaults?: Buffer | undefined;
}

/**
 * What a new entry gets from the caller and the directory it is made in. The entry is built in
 * the work dir, so what a new inode would get from its directory is worked out here: in a
 * set-group-ID directory the directory's group, and a new directory the set-group-ID bit as well
 * (inode_init_owner; the VFS already took set-group-ID off a file made there by a caller outside
 * that group); and from the directory's default ACL, an access ACL and for a directory the same
 * default ACL, or else the umask (posix_acl_create, acl.ts). Symlinks have no mode or ACL of their own.
 */
export function entryFor(owner: Owner, parent: Parent, mode?: number, isDir = false): NewEntry {
  const inherits = (parent.mode & S_ISGID) !== 0;
  const uid = owner.uid;
  const gid = inherits ? parent.gid : owner.gid;
  if (mode === undefined) return { uid, gid };
  const made = inherit(getXattr(parent.real, ACL_DEFAULT), mode & 0o7777, owner.umask, isDir);
  return { uid, gid, mode: made.mode | (inherits && isDir ? S_ISGID : 0), access: made.access, defaults: made.defaults };
}

/**
 * Give the entry built at tmp what `e` says: owner, then mode (chown clears set-id bits), then
 * ACLs. `now`: the owner and mode it was made with, where known; then only what differs is
 * changed (a file made by this process for its own caller is usually right already).
 */
export async function own(tmp: RealPath, e: NewEntry, now?: { readonly uid: number; readonly gid: number; readonly mode: number }): Promise<void> {
  const chown = now === undefined || now.uid !== e.uid || now.gid !== e.gid;
  if (chown) await host.lchown(tmp, e.uid, e.gid);
  if (e.mode === undefined) return;
  if (chown || (now.mode & 0o7777) !== e.mode) await host.chmod(tmp, e.mode);
  // The host sets the mode's group bits from the access ACL's mask: the same bits as above.
  if (e.access !== undefined) setXattr(tmp, ACL_ACCESS, e.access, 0);
  if (e.defaults !== undefined) setXattr(tmp, ACL_DEFAULT, e.defaults, 0);
}
