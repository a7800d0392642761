// create: a new regular file in the upper, owned by the caller, opened with the caller's flags
// (place.ts puts it in place); an existing name is opened instead, unless O_EXCL.
import { constants } from 'node:fs';
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';
import { PASSED_FLAGS, open } from './open.js';
import { own, placeNew, type Owner } from './place.js';

export async function create(ctx: UnionCtx, p: VPath, mode: number, flags: number, owner: Owner): Promise<number> {
  const up = requireUpper(ctx, 'create', p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') {
    if ((flags & constants.O_EXCL) !== 0) throw new FsError('EEXIST', 'create', p);
    return open(ctx, p, flags);
  }
  const fd = await placeNew(ctx, up, p, { syscall: 'create', isDir: false }, async (tmp, parent) => {
    const fd = await host.openFile(tmp, (flags & PASSED_FLAGS & ~constants.O_TRUNC) | constants.O_CREAT | constants.O_EXCL, mode & 0o7777);
    await own(tmp, owner, parent, mode);
    return fd;
  });
  return ctx.handles.add({ fd, path: p, branch: up.branch, flags });
}
