// readlink: the link's target exactly as stored in the branch. It is never followed here: the
// kernel resolves it in the caller's namespace, exactly as for a link on the kernel's overlayfs.
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

export async function readlink(ctx: UnionCtx, p: VPath): Promise<string> {
  const r = await ctx.resolver.get(p, 'readlink');
  if (r.kind !== 'file' || !r.stat.isSymbolicLink()) throw new FsError('EINVAL', 'readlink', p);
  return host.readlink(r.real);
}
