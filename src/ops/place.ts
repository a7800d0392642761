// Putting a new entry at a name of the merged view. Where no lower has the name and the entry is
// the server's own, it is made at its name in the upper (D37). Otherwise it is built in the work
// dir and moved into the upper in one step, replacing a whiteout of that name if there is one (a
// non-directory by rename, a directory by exchange, D14); a directory over a whiteout is made
// opaque, so that a lower directory of that name does not merge back in. Shared by create,
// mkdir, mknod, symlink and link.
import { ACL_ACCESS, ACL_DEFAULT, inherit } from '../acl.js';
import { probeOnDisk } from '../branch-dir.js';
import type { UnionCtx, UpperCtx } from '../context.js';
import type { EntryStat } from '../entry-stat.js';
import { FsError, hasCode } from '../errno.js';
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

/** What is to be made: for a new entry of the caller's own, the caller and the mode it asked for. */
export interface NewSpec {
  readonly syscall: string;
  readonly isDir: boolean;
  /** The caller; none for a link, which is a new name of an existing inode. */
  readonly owner?: Owner;
  /** The mode asked for (with the type bits for mknod); none for a symlink or a link. */
  readonly mode?: number;
}

/** What a builder made: its result, and where it has one at hand (an open file's fstat), its stat. */
export interface Made<T> {
  readonly value: T;
  readonly stat?: EntryStat;
}

/**
 * Makes the bare entry at `at`, with `mode` (the permission bits it is to have; the host may cut
 * them with the server's umask or a default ACL: placeNew mends that).
 */
export type Make<T> = (at: RealPath, mode: number) => Promise<Made<T>>;

/** Who the server makes entries as (its credentials do not change while it serves). */
const SERVER = { uid: process.geteuid?.() ?? -1, gid: process.getegid?.() ?? -1 };

export async function placeNew<T>(ctx: UnionCtx, up: UpperCtx, p: VPath, spec: NewSpec, make: Make<T>): Promise<T> {
  const dir = parentOf(p);
  const name = baseName(p);
  // ".wh.*" names are whiteout markers in every branch (D3): one made by a user would delete
  // another name, or vanish. Refused, as a name the filesystem cannot hold.
  if (isMarkerName(name)) throw new FsError('EINVAL', spec.syscall, p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') throw new FsError('EEXIST', spec.syscall, p);
  await up.copyUp.ensure(dir);
  const parent = await ctx.resolver.get(dir, spec.syscall);
  const from: Parent = { mode: parent.stat.mode, gid: parent.stat.gid, real: up.branch.real(dir) };
  const e = spec.owner === undefined ? undefined : entryFor(spec.owner, from, spec.mode, spec.isDir);
  const lowerHas = await ctx.resolver.lowerHas(p);
  if (!lowerHas && atNameFits(up, e, parent.stat) && !host.isLongPath(up.branch.real(p))) {
    const made = await placeAtName(ctx, up, p, spec, e, make);
    if (made !== undefined) return made.value;
  }
  // What a whiteout at the name changes: a directory made there is opaque, and an OCI marker is
  // removed. Both matter only where a lower has the name; elsewhere a non-directory simply
  // replaces whatever whiteout is there (rename), and no probe is made.
  const overWhiteout = (spec.isDir || lowerHas) && probeOnDisk(up.branch, dir, name).kind === 'whiteout';
  const tmp = up.scratch();
  const target = up.branch.real(p);
  let result: T;
  try {
    // A directory is made 0700 first: the server must be able to mark it opaque whatever mode it
    // is to have.
    const made = await make(tmp, spec.isDir ? 0o700 : (e?.mode ?? 0));
    result = made.value;
    if (e !== undefined) await own(tmp, e, made.stat === undefined ? undefined : nowOf(made.stat));
    if (spec.isDir && overWhiteout) await up.whiteouts.makeOpaque(tmp);
    if (spec.isDir && (await host.lstatOrUndefined(target)) !== undefined) {
      renameExchange(tmp, target); // the char 0:0 whiteout is now at tmp
      await host.rmTree(tmp);
    } else {
      await host.rename(tmp, target); // a non-directory replaces a char 0:0 whiteout
    }
    if (overWhiteout) await up.whiteouts.remove(up.branch, dir, name); // an OCI marker beside it
  } catch (err) {
    await host.rmTree(tmp).catch(() => undefined);
    throw err;
  }
  // After the change on disk: a lookup racing with it re-resolves from the new state.
  learnNew(ctx, up, p, spec, spec.isDir ? undefined : host.lstatEntryOrUndefined(target));
  return result;
}

/**
 * Whether the entry can be made at its name rather than in the work dir (D37, as the kernel's
 * overlayfs makes it, ovl_create_upper): where what the host gives a new entry of the server's
 * is what it is to have, but perhaps for mode bits the umask cut (set in place after; a crash
 * then leaves fewer permission bits, never more), and nothing is to be replaced: no lower has
 * the name (checked by the caller), so no whiteout should be there, and where one is left the
 * make fails with EEXIST and the work-dir way replaces it. Not with OCI markers, which sit
 * beside the name and would hide the new entry.
 */
function atNameFits(up: UpperCtx, e: NewEntry | undefined, parent: { readonly mode: number; readonly gid: number }): boolean {
  if (up.whiteouts.format !== 'overlay') return false;
  if (e === undefined) return true; // a link: a new name for an inode that has its owner
  if (e.access !== undefined || e.defaults !== undefined) return false;
  return e.uid === SERVER.uid && e.gid === ((parent.mode & S_ISGID) !== 0 ? parent.gid : SERVER.gid);
}

/** placeNew's way at the name; undefined where the name is taken on disk (a stale whiteout). */
async function placeAtName<T>(ctx: UnionCtx, up: UpperCtx, p: VPath, spec: NewSpec, e: NewEntry | undefined, make: Make<T>): Promise<Made<T> | undefined> {
  const target = up.branch.real(p);
  let made: Made<T>;
  try {
    made = await make(target, e?.mode ?? 0);
  } catch (err) {
    if (hasCode(err, 'EEXIST')) return undefined; // a whiteout left there, or a name made meanwhile
    throw err;
  }
  try {
    let st = made.stat ?? host.lstatEntry(target);
    if (e !== undefined && !sameOwnerAndMode(st, e)) {
      await own(target, e, nowOf(st));
      st = host.lstatEntry(target);
    }
    learnNew(ctx, up, p, spec, spec.isDir ? undefined : st);
    return made;
  } catch (err) {
    ctx.resolver.invalidate(p);
    await (spec.isDir ? host.rmdir(target) : host.unlink(target)).catch(() => undefined);
    throw err;
  }
}

/**
 * Tell the resolver of the new entry: a new non-directory is known as it is (a new entry has no
 * recorded inode number; a new link shares its file's); a directory's stack depends on what lies
 * below, so it is resolved again.
 */
function learnNew(ctx: UnionCtx, up: UpperCtx, p: VPath, spec: NewSpec, st: EntryStat | undefined): void {
  if (st === undefined) {
    ctx.resolver.invalidate(p);
    return;
  }
  const real = up.branch.real(p);
  ctx.resolver.learn(p, { kind: 'file', branch: up.branch, real, stat: st, ...(spec.syscall === 'link' ? {} : { recordedIno: null }) });
}

function nowOf(st: EntryStat): { uid: number; gid: number; mode: number } {
  return { uid: st.uid, gid: st.gid, mode: st.mode };
}

function sameOwnerAndMode(st: EntryStat, e: NewEntry): boolean {
  return st.uid === e.uid && st.gid === e.gid && (e.mode === undefined || (st.mode & 0o7777) === e.mode);
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
