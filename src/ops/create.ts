// create: a new regular file in the upper, owned by the caller, then opened. Over a whiteout of
// the upper the file takes the whiteout's place in one rename (both are non-directories).
import { constants } from 'node:fs';
import { probeOnDisk } from '../branch-dir.js';
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { baseName, parentOf, type VPath } from '../path.js';
import type { Owner } from './mkdir.js';
import { PASSED_FLAGS, open } from './open.js';
import { requireUpper } from './unlink.js';

export async function create(ctx: UnionCtx, p: VPath, mode: number, flags: number, owner: Owner): Promise<number> {
  const up = requireUpper(ctx, 'create', p);
  const r = await ctx.resolver.resolve(p);
  if (r.kind !== 'absent') {
    if ((flags & constants.O_EXCL) !== 0) throw new FsError('EEXIST', 'create', p);
    return open(ctx, p, flags);
  }
  const dir = parentOf(p);
  const name = baseName(p);
  await up.copyUp.ensure(dir);
  const overWhiteout = (await probeOnDisk(up.branch, dir, name)).kind === 'whiteout';
  const tmp = up.scratch();
  const target = up.branch.real(p);
  let fd: number;
  try {
    fd = await host.open(tmp, (flags & PASSED_FLAGS & ~constants.O_TRUNC) | constants.O_CREAT | constants.O_EXCL, mode & 0o7777);
    await host.lchown(tmp, owner.uid, owner.gid);
    await host.chmod(tmp, mode & 0o7777); // not cut by the server's umask
    await host.rename(tmp, target); // replaces a char 0:0 whiteout of that name, if any
    if (overWhiteout) await up.whiteouts.remove(up.branch, dir, name); // an OCI marker beside it
  } catch (e) {
    await host.rmTree(tmp).catch(() => undefined);
    throw e;
  }
  ctx.resolver.invalidate(p);
  return ctx.handles.add({ fd, path: p, branch: up.branch, flags });
}
