// readdir: the merged listing of a directory's stack (see dir-merge.ts), with "." and "..".
import type { UnionCtx } from '../context.js';
import { constants } from 'node:fs';
import { mergeListings, type MergedEntry } from '../dir-merge.js';
import { FsError } from '../errno.js';
import { isImpure, recordedIno, shownIno } from '../origin.js';
import type { RealPath, VPath } from '../path.js';


/**
 * The entries come with their file type so that the kernel can hand d_type to the caller: find,
 * du and fts then skip a stat of every non-directory.
 */
export async function readdir(ctx: UnionCtx, p: VPath): Promise<MergedEntry[]> {
  const r = await ctx.resolver.get(p, 'readdir');
  if (r.kind !== 'dir') throw new FsError('ENOTDIR', 'readdir', p);
  const dirs = await Promise.all(r.stack.map((b) => ctx.resolver.branchDir(b, p)));
  const top = r.stack[0];
  const topReal = top?.real(p);
  const self = top !== undefined && topReal !== undefined ? shownIno(ctx.inodes, top, topReal, r.stat.dev, r.stat.ino) : ctx.inodes.of(r.stat.dev, r.stat.ino);
  // Upper entries that were copied up show their recorded number (origin.ts); only a directory
  // marked impure can hold one, so the others cost no lookup per entry.
  const recorded = top?.writable === true && topReal !== undefined && isImpure(topReal);
  const ino = (dev: number, n: number, name: string, i: number): number =>
    (recorded && i === 0 ? recordedIno(`${topReal}/${name}` as RealPath) : undefined) ?? ctx.inodes.of(dev, n);
  // ".." is answered by the kernel from its own dentry; its d_ino is not looked at by callers
  // that matter (fts and find stat ".." when they need it).
  return [
    { name: '.', type: constants.S_IFDIR, ino: self },
    { name: '..', type: constants.S_IFDIR, ino: 0 },
    ...mergeListings(dirs, ino),
  ];
}
