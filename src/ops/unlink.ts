// unlink / rmdir: remove a name from the merged view. What the upper holds there is removed; if a
// lower branch would then show the name again, a whiteout takes its place. An upper entry with a
// lower one under it is replaced by the whiteout in one step (D14), so the lower entry can never
// show through, even after a crash. rmdir needs the directory empty in the merged view.
import { requireUpper, type UnionCtx, type UpperCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { baseName, parentOf, type VPath } from '../path.js';
import { readdir } from './readdir.js';

export async function unlink(ctx: UnionCtx, p: VPath): Promise<void> {
  const up = requireUpper(ctx, 'unlink', p);
  const r = await ctx.resolver.get(p, 'unlink');
  if (r.kind === 'dir') throw new FsError('EISDIR', 'unlink', p);
  await remove(ctx, up, p, r.branch === up.branch);
}

export async function rmdir(ctx: UnionCtx, p: VPath): Promise<void> {
  const up = requireUpper(ctx, 'rmdir', p);
  const r = await ctx.resolver.get(p, 'rmdir');
  if (r.kind !== 'dir') throw new FsError('ENOTDIR', 'rmdir', p);
  if ((await readdir(ctx, p)).length > 2) throw new FsError('ENOTEMPTY', 'rmdir', p);
  await remove(ctx, up, p, r.stack[0] === up.branch);
}

async function remove(ctx: UnionCtx, up: UpperCtx, p: VPath, inUpper: boolean): Promise<void> {
  const dir = parentOf(p);
  const name = baseName(p);
  const needWhiteout = await ctx.resolver.lowerHas(p);
  await up.copyUp.ensure(dir);
  if (inUpper && needWhiteout) await up.whiteouts.replace(up.branch, dir, name, up.scratch());
  else if (inUpper) await host.rmTree(up.branch.real(p)); // an emptied dir may still hold whiteouts
  else await up.whiteouts.add(up.branch, dir, name);
  // After the change on disk: a lookup racing with it re-resolves from the new state.
  ctx.resolver.invalidate(p);
}
