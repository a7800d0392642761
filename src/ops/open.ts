// open / read / release on real host file descriptors, with positional reads (no shared file
// offset, so concurrent readers of one handle cannot disturb each other; offsets past 4 GiB are
// plain numbers, exact up to 2^53).
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

// Linux's O_ACCMODE; node:fs does not export it.
const O_ACCMODE = 3;
const WRITE_FLAGS = host.O.O_WRONLY | host.O.O_RDWR | host.O.O_TRUNC | host.O.O_APPEND;

export async function open(ctx: UnionCtx, p: VPath, flags: number): Promise<number> {
  const r = await ctx.resolver.get(p, 'open');
  if (r.kind === 'dir') throw new FsError('EISDIR', 'open', p);
  if ((flags & WRITE_FLAGS) !== 0 && !r.branch.writable) {
    // Copy-up comes with the writable union; a union without an upper is read-only.
    throw new FsError('EROFS', 'open', p);
  }
  // O_CREAT/O_EXCL were handled by the kernel's lookup; O_NOFOLLOW is added by the host layer.
  const passed = flags & (O_ACCMODE | host.O.O_APPEND | host.O.O_NOATIME | host.O.O_DIRECT | host.O.O_SYNC | host.O.O_DSYNC);
  const fd = await host.open(r.real, passed);
  return ctx.handles.add({ fd, path: p, branch: r.branch, flags });
}

export async function read(ctx: UnionCtx, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return host.read(ctx.handles.get(fh, 'read').fd, buf, len, pos);
}

export async function release(ctx: UnionCtx, fh: number): Promise<void> {
  const h = ctx.handles.remove(fh);
  if (h !== undefined) await host.close(h.fd);
}
