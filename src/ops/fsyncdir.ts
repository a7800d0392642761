// fsyncdir: make the directory's entries durable. Only the upper can have changed; a directory
// the upper does not hold has nothing to flush. (Without a handler, the kernel's FUSE client
// answers fsync on a directory with success after the first ENOSYS, and flushes nothing.)
import type { UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

export async function fsyncdir(ctx: UnionCtx, p: VPath, datasync: boolean): Promise<void> {
  const r = await ctx.resolver.get(p, 'fsyncdir');
  const upper = ctx.upper?.branch;
  if (upper === undefined || r.kind !== 'dir' || r.stack[0] !== upper) return;
  const fd = await host.open(upper.real(p), host.O.O_RDONLY | host.O.O_DIRECTORY);
  try {
    await host.fsync(fd, datasync);
  } finally {
    await host.close(fd);
  }
}
