// getxattr / listxattr: the serving entry's own attributes (a merged directory shows its top-most
// branch's), with the overlay's bookkeeping (trusted.overlay.*) hidden as the kernel hides it
// and a nested overlay's escaped names (trusted.overlay.overlay.X) shown unescaped.
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import { getXattr, listXattr } from '../host/libc.js';
import type { RealPath, VPath } from '../path.js';
import { shownXattrName, storedXattrName } from '../whiteout.js';

async function servingReal(ctx: UnionCtx, p: VPath, syscall: string): Promise<RealPath> {
  const r = await ctx.resolver.get(p, syscall);
  if (r.kind === 'file') return r.real;
  const top = r.stack[0];
  if (top === undefined) throw new FsError('EIO', syscall, p);
  return top.real(p);
}

export async function getxattr(ctx: UnionCtx, p: VPath, name: string): Promise<Buffer> {
  const real = await servingReal(ctx, p, 'getxattr');
  const v = getXattr(real, storedXattrName(name));
  if (v === undefined) throw new FsError('ENODATA', 'getxattr', p);
  return v;
}

export async function listxattr(ctx: UnionCtx, p: VPath): Promise<string[]> {
  const real = await servingReal(ctx, p, 'listxattr');
  return listXattr(real).flatMap((n) => shownXattrName(n) ?? []);
}
