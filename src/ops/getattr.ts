// getattr: the attributes of the serving branch's entry. A directory shows its top-most branch's
// attributes, as overlayfs does. Entries on the writable upper change under us, so their stat is
// read fresh; a lower's never changes, so the resolution's stat is reused.
//
// Times go out to the nanosecond: every stat is an exact one (the addon's, D43), and a lower
// entry's resolution keeps its exact times.
import { attrOfEntry, type Attr } from '../attr.js';
import type { UnionCtx } from '../context.js';
import type { EntryStat } from '../entry-stat.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { recordedIno } from '../origin.js';
import type { RealPath, VPath } from '../path.js';
import type { Resolution } from '../resolve.js';

export function getattr(ctx: UnionCtx, p: VPath): Promise<Attr> {
  try {
    const a = getattrNow(ctx, p);
    return a instanceof Promise ? a : Promise.resolve(a);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * getattr, answered as it is when nothing has to be waited for (Resolver.resolveNow): the kernel
 * engine then replies to a LOOKUP in the same turn, with no promise to settle. An error found at
 * once is thrown.
 */
export function getattrNow(ctx: UnionCtx, p: VPath): Attr | Promise<Attr> {
  const r = ctx.resolver.resolveNow(p);
  return r instanceof Promise ? r.then((x) => attrOf(ctx, p, x)) : attrOf(ctx, p, r);
}

function attrOf(ctx: UnionCtx, p: VPath, r: Resolution): Attr {
  if (r.kind === 'absent') throw new FsError('ENOENT', 'getattr', p);
  if (r.kind === 'file') {
    if (r.branch.writable) return upperAttr(ctx, host.lstatEntry(r.real), undefined, recorded(r, r.real));
    return attrOfEntry(r.stat, ctx.inodes.of(r.stat.dev, r.stat.ino), r.stat.nlink, true);
  }
  const top = r.stack[0];
  // A merged directory's link count would have to count subdirectories across branches;
  // overlayfs reports 1 ("unknown", which find and fts accept) and so does layerfs.
  const merged = r.stack.length > 1;
  if (top !== undefined && top.writable) {
    const st = host.lstatEntry(top.real(p));
    return upperAttr(ctx, st, merged ? 1 : st.nlink, recorded(r, top.real(p)));
  }
  const st = r.stat;
  return attrOfEntry(st, ctx.inodes.of(st.dev, st.ino), merged ? 1 : st.nlink, true);
}

/**
 * The attributes of an open file, through its fd (also when no name leads to it any more);
 * `ino`: the number the union showed for it while it had a name.
 */
export async function fdAttr(ctx: UnionCtx, fd: number, ino?: number): Promise<Attr> {
  const st = host.fstatEntry(fd);
  return ino === undefined ? upperAttr(ctx, st) : attrOfEntry(st, ino);
}

/** An upper entry's attributes, with the inode number recorded at its copy-up when it has one. */
function upperAttr(ctx: UnionCtx, st: EntryStat, nlink?: number, recordedNo?: number): Attr {
  return attrOfEntry(st, recordedNo ?? ctx.inodes.of(st.dev, st.ino), nlink);
}

/**
 * The number recorded on an upper entry (origin.ts), read once per resolution: it is written
 * before the entry takes its name (copy-up), and any change of the name drops the resolution.
 */
function recorded(r: Resolution & { kind: 'file' | 'dir' }, real: RealPath): number | undefined {
  if (r.recordedIno === undefined) r.recordedIno = recordedIno(real) ?? null;
  return r.recordedIno ?? undefined;
}
