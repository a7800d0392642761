// write / truncate / ftruncate. Writes go to an fd on the upper (open copied the file up);
// truncate by path copies up first.
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

export async function write(ctx: UnionCtx, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
  const h = ctx.handles.get(fh, 'write');
  if (!h.branch.writable) throw new FsError('EBADF', 'write', h.path);
  return host.write(h.fd, buf, len, pos);
}

export async function truncate(ctx: UnionCtx, p: VPath, size: number): Promise<void> {
  const up = requireUpper(ctx, 'truncate', p);
  const r = await ctx.resolver.get(p, 'truncate');
  if (r.kind === 'dir') throw new FsError('EISDIR', 'truncate', p);
  await host.truncate(await up.copyUp.ensure(p), size);
}

export async function ftruncate(ctx: UnionCtx, fh: number, size: number): Promise<void> {
  const h = ctx.handles.get(fh, 'ftruncate');
  if (!h.branch.writable) throw new FsError('EINVAL', 'ftruncate', h.path);
  await host.ftruncate(h.fd, size);
}

export async function fsync(ctx: UnionCtx, fh: number, datasync: boolean): Promise<void> {
  const h = ctx.handles.get(fh, 'fsync');
  if (h.branch.writable) await host.fsync(h.fd, datasync);
}
