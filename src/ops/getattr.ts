// getattr: the attributes of the serving branch's entry. A directory shows its top-most branch's
// attributes, as overlayfs does. Entries on the writable upper change under us, so their stat is
// read fresh; a lower's never changes, so the resolution's stat is reused.
//
// Times go out to the nanosecond: every stat is a bigint one (in Node about as fast as a plain
// stat; see native-notes), and a lower entry's resolution keeps its exact times.
import type { BigIntStats } from 'node:fs';
import { attrOfEntry, attrOfNs, type Attr } from '../attr.js';
import type { UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import { recordedIno } from '../origin.js';
import type { RealPath, VPath } from '../path.js';
import type { Resolution } from '../resolve.js';

export async function getattr(ctx: UnionCtx, p: VPath): Promise<Attr> {
  const r = await ctx.resolver.get(p, 'getattr');
  if (r.kind === 'file') {
    if (r.branch.writable) return nsAttr(ctx, await host.lstatNs(r.real), undefined, recorded(r, r.real));
    return attrOfEntry(r.stat, ctx.inodes.of(r.stat.dev, r.stat.ino));
  }
  const top = r.stack[0];
  // A merged directory's link count would have to count subdirectories across branches;
  // overlayfs reports 1 ("unknown", which find and fts accept) and so does layerfs.
  const merged = r.stack.length > 1;
  if (top !== undefined && top.writable) {
    const st = await host.lstatNs(top.real(p));
    return nsAttr(ctx, st, merged ? 1 : Number(st.nlink), recorded(r, top.real(p)));
  }
  const st = r.stat;
  return attrOfEntry(st, ctx.inodes.of(st.dev, st.ino), merged ? 1 : st.nlink);
}

/**
 * The attributes of an open file, through its fd (also when no name leads to it any more);
 * `ino`: the number the union showed for it while it had a name.
 */
export async function fdAttr(ctx: UnionCtx, fd: number, ino?: number): Promise<Attr> {
  const st = await host.fstatNs(fd);
  return ino === undefined ? nsAttr(ctx, st) : attrOfNs(st, ino);
}

/** An upper entry's attributes, with the inode number recorded at its copy-up when it has one. */
function nsAttr(ctx: UnionCtx, st: BigIntStats, nlink?: number, recordedNo?: number): Attr {
  return attrOfNs(st, recordedNo ?? ctx.inodes.of(Number(st.dev), Number(st.ino)), nlink);
}

/**
 * The number recorded on an upper entry (origin.ts), read once per resolution: it is written
 * before the entry takes its name (copy-up), and any change of the name drops the resolution.
 */
function recorded(r: Resolution & { kind: 'file' | 'dir' }, real: RealPath): number | undefined {
  if (r.recordedIno === undefined) r.recordedIno = recordedIno(real) ?? null;
  return r.recordedIno ?? undefined;
}
