// utimens: set atime and mtime of the upper copy (copied up first), to the nanosecond, with
// UTIME_NOW and UTIME_OMIT as utimensat(2) has them.
import { requireUpper, type UnionCtx } from '../context.js';
import { setTimes, setTimesFd, type TimeSpec } from '../host/libc.js';
import type { VPath } from '../path.js';
import { upperHandle } from './chmod.js';

export async function utimens(ctx: UnionCtx, p: VPath, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
  const up = requireUpper(ctx, 'utimens', p);
  await ctx.resolver.get(p, 'utimens');
  setTimes(await up.copyUp.ensure(p), atime, mtime);
}

/** utimens through an open handle, for a file that has no name any more. */
export async function futimens(ctx: UnionCtx, fh: number, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
  setTimesFd(upperHandle(ctx, fh, 'futimens').fd, atime, mtime);
}
