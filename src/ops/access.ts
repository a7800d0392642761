// access: existence, and EROFS for W_OK on a read-only union. Permission bits are checked by the
// kernel itself: layerfs always mounts with default_permissions, as overlayfs always checks them.
import { constants } from 'node:fs';
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import type { VPath } from '../path.js';

export async function access(ctx: UnionCtx, p: VPath, mode: number): Promise<void> {
  const r = await ctx.resolver.get(p, 'access');
  if ((mode & constants.W_OK) !== 0 && ctx.branches.upper === undefined) {
    if (!(r.kind === 'file' && (r.stat.isCharacterDevice() || r.stat.isBlockDevice() || r.stat.isFIFO() || r.stat.isSocket()))) {
      throw new FsError('EROFS', 'access', p);
    }
  }
}
