// readdir: the merged listing of a directory's stack (see dir-merge.ts), with "." and "..".
import type { UnionCtx } from '../context.js';
import { constants } from 'node:fs';
import { mergeListings, type MergedEntry } from '../dir-merge.js';
import { FsError } from '../errno.js';
import { isImpure, recordedIno, shownIno } from '../origin.js';
import { ROOT, parentOf, type RealPath, type VPath } from '../path.js';

/**
 * The entries come with their file type so that the kernel can hand d_type to the caller: find,
 * du and fts then skip a stat of every non-directory.
 */
export async function readdir(ctx: UnionCtx, p: VPath): Promise<MergedEntry[]> {
  const r = await ctx.resolver.get(p, 'readdir');
  if (r.kind !== 'dir') throw new FsError('ENOTDIR', 'readdir', p);
  const dirs = await Promise.all(r.stack.map((b) => ctx.resolver.branchDir(b, p)));
  const top = r.stack[0];
  if (top === undefined) throw new Error('a directory resolution has an empty stack');
  const topReal = top.real(p);
  // Upper entries that were copied up show their recorded number (origin.ts); only a directory
  // marked impure can hold one, so the others cost no lookup per entry.
  const recorded = top.writable && isImpure(topReal);
  const ino = (dev: number, n: number, name: string, i: number): number =>
    (recorded && i === 0 ? recordedIno(`${topReal}/${name}` as RealPath) : undefined) ?? ctx.inodes.of(dev, n);
  // ".." needs a non-zero d_ino too: glibc's readdir skips entries whose d_ino is 0 as deleted,
  // and `ls -a` would miss "..". The parent's resolution is cached; the root is its own parent.
  const self = shownIno(ctx.inodes, top, topReal, r.stat.dev, r.stat.ino);
  return [
    { name: '.', type: constants.S_IFDIR, ino: self },
    { name: '..', type: constants.S_IFDIR, ino: p === ROOT ? self : await dirIno(ctx, parentOf(p)) },
    ...mergeListings(dirs, ino),
  ];
}

async function dirIno(ctx: UnionCtx, p: VPath): Promise<number> {
  const r = await ctx.resolver.get(p, 'readdir');
  const top = r.kind === 'dir' ? r.stack[0] : undefined;
  if (top === undefined) return ctx.inodes.of(r.stat.dev, r.stat.ino);
  return shownIno(ctx.inodes, top, top.real(p), r.stat.dev, r.stat.ino);
}
