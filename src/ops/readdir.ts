// readdir: the merged listing of a directory's stack (see dir-merge.ts), with "." and "..".
import type { UnionCtx } from '../context.js';
import { mergeListings } from '../dir-merge.js';
import { FsError } from '../errno.js';
import type { VPath } from '../path.js';

export async function readdir(ctx: UnionCtx, p: VPath): Promise<string[]> {
  const r = await ctx.resolver.get(p, 'readdir');
  if (r.kind !== 'dir') throw new FsError('ENOTDIR', 'readdir', p);
  const dirs = await Promise.all(r.stack.map((b) => ctx.resolver.branchDir(b, p)));
  return ['.', '..', ...mergeListings(dirs)];
}
