// utimens: set atime and mtime of the upper copy (copied up first), to the nanosecond, with
// UTIME_NOW and UTIME_OMIT as utimensat(2) has them.
import { requireUpper, type UnionCtx } from '../context.js';
import { setTimes, type TimeSpec } from '../host/libc.js';
import type { VPath } from '../path.js';

export async function utimens(ctx: UnionCtx, p: VPath, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
  const up = requireUpper(ctx, 'utimens', p);
  await ctx.resolver.get(p, 'utimens');
  setTimes(await up.copyUp.ensure(p), atime, mtime);
}
