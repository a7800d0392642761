// symlink, mknod and link: new non-directories in the upper (place.ts). mknod makes fifos and
// sockets, and devices as root. link copies the source up first (as the kernel's overlayfs does),
// so both names are one upper inode.
import { constants } from 'node:fs';
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { mknod as mknodAt } from '../host/libc.js';
import { baseName, parentOf, type VPath } from '../path.js';
import { isMarkerName } from '../whiteout.js';
import { placeNew, type Owner } from './place.js';

const { S_IFMT } = constants;

export async function symlink(ctx: UnionCtx, target: string, p: VPath, owner: Owner): Promise<void> {
  const up = requireUpper(ctx, 'symlink', p);
  await placeNew(ctx, up, p, { syscall: 'symlink', isDir: false, owner }, async (at) => ({ value: await host.symlink(target, at) }));
}

export async function mknod(ctx: UnionCtx, p: VPath, mode: number, dev: number, owner: Owner): Promise<void> {
  const up = requireUpper(ctx, 'mknod', p);
  await placeNew(ctx, up, p, { syscall: 'mknod', isDir: false, owner, mode }, async (at, perm) => ({ value: mknodAt(at, (mode & S_IFMT) | perm, dev) }));
}

export async function link(ctx: UnionCtx, from: VPath, p: VPath): Promise<void> {
  const up = requireUpper(ctx, 'link', p);
  const r = await ctx.resolver.get(from, 'link');
  if (r.kind === 'dir') throw new FsError('EPERM', 'link', from);
  // What placeNew would refuse, refused before the copy-up: a failed link leaves no copy behind.
  if (isMarkerName(baseName(p))) throw new FsError('EINVAL', 'link', p);
  const parent = await ctx.resolver.get(parentOf(p), 'link');
  if (parent.kind !== 'dir') throw new FsError('ENOTDIR', 'link', p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') throw new FsError('EEXIST', 'link', p);
  const source = await up.copyUp.ensure(from);
  if (parentOf(from) !== parentOf(p)) {
    await up.copyUp.ensure(parentOf(p));
    await up.copyUp.markHolder(parentOf(p), source);
  }
  await placeNew(ctx, up, p, { syscall: 'link', isDir: false }, async (at) => ({ value: await host.link(source, at) }));
  ctx.resolver.invalidate(from); // its link count changed
}
