// create: a new regular file in the upper, owned by the caller, opened with the caller's flags
// (place.ts puts it in place); an existing name is opened instead, unless O_EXCL.
import { constants } from 'node:fs';
import { attrOfEntry, type Attr } from '../attr.js';
import { requireUpper, type UnionCtx, type UpperCtx } from '../context.js';
import { EntryStat } from '../entry-stat.js';
import { FsError, hasCode } from '../errno.js';
import * as host from '../host/fs.js';
import { baseName, parentOf, type VPath } from '../path.js';
import { isMarkerName } from '../whiteout.js';
import { PASSED_FLAGS, open } from './open.js';
import { entryFor, own, placeNew, type Owner } from './place.js';

const S_ISGID = 0o2000;
/** Who the server makes files as (its credentials do not change while it serves). */
const SERVER = { uid: process.geteuid?.() ?? -1, gid: process.getegid?.() ?? -1 };

/** An opened file, and when create made it (rather than finding one), what a lookup of it shows. */
export interface Created {
  readonly fh: number;
  readonly made?: Attr;
}

export async function create(ctx: UnionCtx, p: VPath, mode: number, flags: number, owner: Owner): Promise<Created> {
  const up = requireUpper(ctx, 'create', p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') {
    if ((flags & constants.O_EXCL) !== 0) throw new FsError('EEXIST', 'create', p);
    return { fh: (await open(ctx, p, flags)).fh };
  }
  const direct = await createAtName(ctx, up, p, mode, flags, owner);
  if (direct !== undefined) return direct;
  let fd = -1; // closed again if the new file does not take its name
  try {
    await placeNew(ctx, up, p, { syscall: 'create', isDir: false }, async (tmp, parent) => {
      const e = entryFor(owner, parent, mode);
      fd = await host.openFile(tmp, (flags & PASSED_FLAGS & ~constants.O_TRUNC) | constants.O_CREAT | constants.O_EXCL, e.mode);
      // Made by this process with the mode asked: as the caller's own file it usually needs no
      // chown or chmod (two syscalls fewer for each new file), which one fstat tells.
      const st = await host.fstatNs(fd);
      await own(tmp, e, { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) });
    });
  } catch (err) {
    if (fd >= 0) await host.close(fd).catch(() => undefined);
    throw err;
  }
  const fh = ctx.handles.add({ fd, path: p, branch: up.branch, flags });
  // placeNew stat'ed the file once it had its name (and no recorded inode number: a new entry).
  const r = await ctx.resolver.resolve(p);
  return r.kind === 'file' ? { fh, made: attrOfEntry(r.stat, ctx.inodes.of(r.stat.dev, r.stat.ino)) } : { fh };
}

/**
 * The common create, as the kernel's overlayfs makes it (ovl_create_upper): the file is made at
 * its name in the upper with O_EXCL (D37), where nothing is to be replaced there (no lower has
 * the name, so no whiteout should be there; a stale one makes O_EXCL fail) and the file needs no
 * other owner than the server's and no ACL: two syscalls fewer than building it in the work dir
 * and renaming it. Its mode is set in place where the server's umask cut it (a crash then
 * leaves a new file with fewer permission bits, never more). Undefined where the general way
 * (placeNew) must make it.
 */
async function createAtName(ctx: UnionCtx, up: UpperCtx, p: VPath, mode: number, flags: number, owner: Owner): Promise<Created | undefined> {
  const dir = parentOf(p);
  if (isMarkerName(baseName(p)) || host.isLongPath(up.branch.real(p))) return undefined; // placeNew says why, or reaches it
  await up.copyUp.ensure(dir);
  if (await ctx.resolver.lowerHas(p)) return undefined;
  const parent = await ctx.resolver.get(dir, 'create');
  const e = entryFor(owner, { mode: parent.stat.mode, gid: parent.stat.gid, real: up.branch.real(dir) }, mode);
  if (e.access !== undefined || e.defaults !== undefined || e.mode === undefined) return undefined;
  if (e.uid !== SERVER.uid || e.gid !== ((parent.stat.mode & S_ISGID) !== 0 ? parent.stat.gid : SERVER.gid)) return undefined;
  const target = up.branch.real(p);
  let fd: number;
  try {
    fd = await host.openFile(target, (flags & PASSED_FLAGS & ~constants.O_TRUNC) | constants.O_CREAT | constants.O_EXCL, e.mode);
  } catch (err) {
    if (hasCode(err, 'EEXIST')) return undefined; // a whiteout left there, or a name made meanwhile
    throw err;
  }
  try {
    let st = await host.fstatNs(fd);
    if (Number(st.uid) !== e.uid || Number(st.gid) !== e.gid || Number(st.mode & 0o7777n) !== e.mode) {
      await own(target, e, { uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) });
      st = await host.fstatNs(fd);
    }
    const stat = new EntryStat(st);
    ctx.resolver.learn(p, { kind: 'file', branch: up.branch, real: target, stat, recordedIno: null });
    const fh = ctx.handles.add({ fd, path: p, branch: up.branch, flags });
    return { fh, made: attrOfEntry(stat, ctx.inodes.of(stat.dev, stat.ino)) };
  } catch (err) {
    ctx.resolver.invalidate(p);
    await host.close(fd).catch(() => undefined);
    await host.unlink(target).catch(() => undefined);
    throw err;
  }
}
