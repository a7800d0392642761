// rename of non-directories: the source is copied up, renamed inside the upper (over the
// target, as POSIX says), and where a lower branch still has the old name a whiteout is left
// there in the same step (RENAME_WHITEOUT, kernel format) or right after (OCI format).
// Directory rename is decided separately (native-notes, issue 3) and refused with EXDEV here,
// which is what the kernel's overlayfs answers without redirect_dir.
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { isOpaqueDir } from '../branch-dir.js';
import { renameExchange, renameWhiteout } from '../host/libc.js';
import { baseName, parentOf, type VPath } from '../path.js';
import { isKernelWhiteout, isMarkerName } from '../whiteout.js';
import { readdir } from './readdir.js';

export async function rename(ctx: UnionCtx, from: VPath, to: VPath): Promise<void> {
  const up = requireUpper(ctx, 'rename', from);
  if (isMarkerName(baseName(to))) throw new FsError('EINVAL', 'rename', to); // as in place.ts
  const src = await ctx.resolver.get(from, 'rename');
  const dst = await ctx.resolver.resolve(to);
  if (from === to) return;
  if (dst.kind === 'dir' && src.kind !== 'dir') throw new FsError('EISDIR', 'rename', to);
  if (dst.kind === 'file' && src.kind === 'dir') throw new FsError('ENOTDIR', 'rename', to);
  if (src.kind === 'dir') {
    if (to.startsWith(`${from}/`)) throw new FsError('EINVAL', 'rename', to);
    // Before the emptiness check, as the kernel's overlayfs answers.
    if (src.stack.some((b) => !b.writable) || (await ctx.resolver.lowerHas(from))) throw new FsError('EXDEV', 'rename', from);
    if (dst.kind === 'dir' && (await readdir(ctx, to)).length > 2) throw new FsError('ENOTEMPTY', 'rename', to);
  }
  const dstParent = await ctx.resolver.get(parentOf(to), 'rename');
  const leaveWhiteout = await ctx.resolver.lowerHas(from);
  const realFrom = await up.copyUp.ensure(from);
  await up.copyUp.ensure(parentOf(to));
  const realTo = up.branch.real(to);
  if (src.kind === 'dir' && dstParent.kind === 'dir' && dstParent.stack.some((b) => !b.writable) && !(await isOpaqueDir(realFrom))) {
    // An upper-only directory moved into a directory that lower branches also have would merge
    // with a lower one of its new name: it becomes opaque, as the kernel makes it.
    await up.whiteouts.makeOpaque(realFrom);
  }
  const targetStat = await host.lstatOrUndefined(realTo);
  if (src.kind === 'dir' && targetStat !== undefined && isKernelWhiteout(targetStat)) {
    // rename(2) cannot put a directory over a char device: swap them, then drop the whiteout.
    renameExchange(realFrom, realTo);
    await host.unlink(realFrom);
  } else if (leaveWhiteout && up.whiteouts.format === 'overlay') {
    renameWhiteout(realFrom, realTo);
  } else {
    // OCI: marker first, so that a crash leaves "X beside .wh.X" (X shown, nothing below).
    if (leaveWhiteout) await up.whiteouts.add(up.branch, parentOf(from), baseName(from));
    await host.rename(realFrom, realTo);
  }
  if (up.whiteouts.format === 'oci') await up.whiteouts.remove(up.branch, parentOf(to), baseName(to));
  ctx.resolver.invalidate(from);
  ctx.resolver.invalidate(to);
}
