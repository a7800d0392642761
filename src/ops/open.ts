// open / read / release on real host file descriptors, with positional reads (no shared file
// offset, so concurrent readers of one handle cannot disturb each other; offsets past 4 GiB are
// plain numbers, exact up to 2^53).
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

// Linux's O_ACCMODE; node:fs does not export it.
const O_ACCMODE = 3;
const WRITE_FLAGS = host.O.O_WRONLY | host.O.O_RDWR | host.O.O_TRUNC | host.O.O_APPEND;

/** Flags handed to the host's open(2): O_CREAT/O_EXCL were settled by the kernel's lookup. */
export const PASSED_FLAGS = O_ACCMODE | host.O.O_APPEND | host.O.O_TRUNC | host.O.O_NOATIME | host.O.O_DIRECT | host.O.O_SYNC | host.O.O_DSYNC;

export async function open(ctx: UnionCtx, p: VPath, flags: number): Promise<number> {
  const r = await ctx.resolver.get(p, 'open');
  if (r.kind === 'dir') throw new FsError('EISDIR', 'open', p);
  let { real, branch } = r;
  if ((flags & WRITE_FLAGS) !== 0 && !branch.writable) {
    // Opening a lower file for writing copies it up first (EROFS without an upper).
    const up = requireUpper(ctx, 'open', p);
    real = await up.copyUp.ensure(p);
    branch = up.branch;
  }
  // O_NOFOLLOW is added by the host layer.
  const fd = await host.open(real, flags & PASSED_FLAGS);
  return ctx.handles.add({ fd, path: p, branch, flags });
}

export async function read(ctx: UnionCtx, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return host.read(ctx.handles.get(fh, 'read').fd, buf, len, pos);
}

export async function release(ctx: UnionCtx, fh: number): Promise<void> {
  const h = ctx.handles.remove(fh);
  if (h !== undefined) await host.close(h.fd);
}
