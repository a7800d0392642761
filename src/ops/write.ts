// write / truncate / ftruncate. Writes go to an fd on the upper (open copied the file up);
// truncate by path copies up first.
import { constants } from 'node:fs';
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
  // Only the bytes the cut keeps are copied up (none for a truncate to 0).
  await host.truncate(await up.copyUp.ensure(p, size), size);
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

// node:fs's typings lack these two.
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;

/** Who wrote: the request's fsgid and pid (for the supplementary groups, read only if needed). */
export interface Writer {
  readonly gid: number;
  readonly pid: number;
}

/**
 * What the kernel's VFS does to a file written, truncated or opened with O_TRUNC by a caller
 * without CAP_FSETID: set-user-ID goes, and set-group-ID where group execution is allowed or the
 * caller is not in the file's group (setattr_should_drop_sgid). The kernel leaves this to layerfs
 * under FUSE_HANDLE_KILLPRIV_V2 (D29); layerfs writes to the upper as root, which keeps both.
 * By handle when there is one (the file may have no name left), else by path.
 */
export async function dropSetIds(ctx: UnionCtx, target: { fh: number } | { path: VPath }, by: Writer): Promise<void> {
  if ('fh' in target) {
    const h = ctx.handles.get(target.fh, 'write');
    if (!h.branch.writable) return; // nothing was written through it
    const st = await host.fstatNs(h.fd);
    const kept = withoutSetIds(Number(st.mode), Number(st.gid), by);
    if (kept !== undefined) await host.fchmod(h.fd, kept);
    return;
  }
  const up = requireUpper(ctx, 'chmod', target.path);
  const r = await ctx.resolver.get(target.path, 'chmod');
  if (r.kind !== 'file' || !r.stat.isFile()) return;
  const real = await up.copyUp.ensure(target.path);
  const st = await host.lstatNs(real);
  const kept = withoutSetIds(Number(st.mode), Number(st.gid), by);
  if (kept !== undefined) await host.chmod(real, kept);
}

/** The permission bits without the set-ids a write by `by` drops; undefined when none are dropped. */
function withoutSetIds(mode: number, fileGid: number, by: Writer): number | undefined {
  let drop = mode & S_ISUID;
  if ((mode & S_ISGID) !== 0 && ((mode & constants.S_IXGRP) !== 0 || !inGroup(by, fileGid))) drop |= S_ISGID;
  return drop === 0 ? undefined : mode & 0o7777 & ~drop;
}

/** Is the writer in group gid? Its fsgid, else its supplementary groups (gone: taken as not). */
function inGroup(by: Writer, gid: number): boolean {
  if (by.gid === gid) return true;
  const status = host.readFileSyncOrUndefined(`/proc/${by.pid}/status`);
  const groups = status === undefined ? undefined : /^Groups:\s*(.*)$/m.exec(status)?.[1];
  return groups !== undefined && groups.split(/\s+/).includes(String(gid));
}
