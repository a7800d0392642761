// chmod / chown: change the upper copy (copied up first). chown of a symlink changes the link.
// fchmod / fchown: the same through an open handle, for a file that has no name any more.
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import type { Handle } from '../handles.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

export async function chmod(ctx: UnionCtx, p: VPath, mode: number): Promise<void> {
  const up = requireUpper(ctx, 'chmod', p);
  await ctx.resolver.get(p, 'chmod');
  await host.chmod(await up.copyUp.ensure(p), mode & 0o7777);
}

/** uid or gid -1 (0xffffffff) leaves that one unchanged, as chown(2). */
export async function chown(ctx: UnionCtx, p: VPath, uid: number, gid: number): Promise<void> {
  const up = requireUpper(ctx, 'chown', p);
  const r = await ctx.resolver.get(p, 'chown');
  const keep = (v: number, cur: number): number => (v === -1 || v === 0xffff_ffff ? cur : v);
  await host.lchown(await up.copyUp.ensure(p), keep(uid, r.stat.uid), keep(gid, r.stat.gid));
}

export async function fchmod(ctx: UnionCtx, fh: number, mode: number): Promise<void> {
  await host.fchmod(upperHandle(ctx, fh, 'fchmod').fd, mode & 0o7777);
}

/** As chown: -1 (0xffffffff) leaves that id as it is. */
export async function fchown(ctx: UnionCtx, fh: number, uid: number, gid: number): Promise<void> {
  const keep = (v: number): number => (v === 0xffff_ffff ? -1 : v);
  await host.fchown(upperHandle(ctx, fh, 'fchown').fd, keep(uid), keep(gid));
}

/**
 * A handle on an upper file: one opened for writing (the file was copied up at open) or on a
 * file that lived in the upper. A read-only handle on a lower file has no upper file to change;
 * with no name left there is nothing to copy up either.
 */
export function upperHandle(ctx: UnionCtx, fh: number, syscall: string): Handle {
  const h = ctx.handles.get(fh, syscall);
  if (!h.branch.writable) throw new FsError('ENOENT', syscall, h.path);
  return h;
}
