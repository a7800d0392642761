// rename: the source is copied up, renamed inside the upper (over the target, as POSIX says),
// and where a lower branch still has the old name a whiteout is left there in the same step
// (RENAME_WHITEOUT, kernel format) or right after (OCI format). A directory the upper alone
// holds moves the same way. A directory that lower branches have is copied into place instead
// (move-dir.ts, D16), with other changes held back meanwhile; the kernel's overlayfs answers EXDEV.
// An exchange (renameat2 RENAME_EXCHANGE) copies both up and swaps them in the upper (D61).
import { requireUpper, type UnionCtx, type UpperCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { isOpaqueDir } from '../branch-dir.js';
import { renameExchange, renameWhiteout } from '../host/libc.js';
import { baseName, parentOf, type VPath } from '../path.js';
import { isKernelWhiteout, isMarkerName } from '../whiteout.js';
import { moveMergedDir } from './move-dir.js';
import { readdir } from './readdir.js';

/** The source turned out to be a merged directory: retry alone (ChangeGate.exclusive). */
const NEEDS_EXCLUSIVE = Symbol('needs exclusive');

export async function rename(ctx: UnionCtx, from: VPath, to: VPath): Promise<void> {
  const up = requireUpper(ctx, 'rename', from);
  const r = await up.gate.shared(() => renameIn(ctx, up, from, to, false));
  if (r === NEEDS_EXCLUSIVE) await up.gate.exclusive(() => renameIn(ctx, up, from, to, true));
}

async function renameIn(ctx: UnionCtx, up: UpperCtx, from: VPath, to: VPath, alone: boolean): Promise<typeof NEEDS_EXCLUSIVE | void> {
  if (isMarkerName(baseName(to))) throw new FsError('EINVAL', 'rename', to); // as in place.ts
  const src = await ctx.resolver.get(from, 'rename');
  const dst = await ctx.resolver.resolve(to);
  if (from === to) return;
  if (dst.kind === 'dir' && src.kind !== 'dir') throw new FsError('EISDIR', 'rename', to);
  if (dst.kind === 'file' && src.kind === 'dir') throw new FsError('ENOTDIR', 'rename', to);
  if (src.kind === 'dir') {
    if (to.startsWith(`${from}/`)) throw new FsError('EINVAL', 'rename', to);
    if (dst.kind === 'dir' && (await readdir(ctx, to)).length > 2) throw new FsError('ENOTEMPTY', 'rename', to);
    if (src.stack.some((b) => !b.writable)) {
      if (!alone) return NEEDS_EXCLUSIVE;
      return moveMergedDir(ctx, up, from, to);
    }
  }
  const dstParent = await ctx.resolver.get(parentOf(to), 'rename');
  const leaveWhiteout = await ctx.resolver.lowerHas(from);
  const realFrom = await up.copyUp.ensure(from);
  await up.copyUp.ensure(parentOf(to));
  if (parentOf(from) !== parentOf(to)) await up.copyUp.markHolder(parentOf(to), realFrom);
  const realTo = up.branch.real(to);
  if (src.kind === 'dir' && dstParent.kind === 'dir' && dstParent.stack.some((b) => !b.writable) && !(await isOpaqueDir(realFrom))) {
    // An upper-only directory moved into a directory that lower branches also have would merge
    // with a lower one of its new name: it becomes opaque, as the kernel makes it.
    await up.whiteouts.makeOpaque(realFrom);
  }
  const targetStat = await host.lstatOrUndefined(realTo);
  if (src.kind === 'dir' && targetStat !== undefined) {
    // rename(2) cannot put a directory over a char device, nor over a directory that still holds
    // whiteouts (empty only in the merged view): swap them, then clear what is at the old name.
    renameExchange(realFrom, realTo);
    if (!leaveWhiteout) await host.rmTree(realFrom);
    else if (!isKernelWhiteout(targetStat)) await up.whiteouts.replace(up.branch, parentOf(from), baseName(from), up.scratch());
    // else: the whiteout that stood at the new name now stands at the old one, as it should.
  } else if (leaveWhiteout && up.whiteouts.format === 'overlay') {
    renameWhiteout(realFrom, realTo);
  } else {
    // OCI: marker first, so that a crash leaves "X beside .wh.X" (X shown, nothing below).
    if (leaveWhiteout) await up.whiteouts.add(up.branch, parentOf(from), baseName(from));
    await host.rename(realFrom, realTo);
  }
  if (up.whiteouts.format === 'oci') await up.whiteouts.remove(up.branch, parentOf(to), baseName(to));
  if (src.kind === 'dir') {
    ctx.resolver.invalidateTree(from);
    ctx.resolver.invalidateTree(to);
  } else {
    ctx.resolver.invalidate(from);
    ctx.resolver.invalidate(to);
  }
}

/**
 * renameat2(RENAME_EXCHANGE): a and b swap places, both copied up first (D61). Both names stay
 * taken, so no whiteout is needed; a directory moved into a directory that lower branches also
 * have becomes opaque, as in a rename. A directory that lower branches have cannot move this way:
 * EXDEV, as from the kernel's overlayfs without redirect_dir (copying it, as a rename does (D16),
 * would leave the other entry nowhere to go meanwhile).
 */
export async function exchange(ctx: UnionCtx, a: VPath, b: VPath): Promise<void> {
  const up = requireUpper(ctx, 'rename', a);
  await up.gate.shared(() => exchangeIn(ctx, up, a, b));
}

async function exchangeIn(ctx: UnionCtx, up: UpperCtx, a: VPath, b: VPath): Promise<void> {
  const ra = await ctx.resolver.get(a, 'rename');
  const rb = await ctx.resolver.get(b, 'rename');
  if (a === b) return;
  // (The kernel refuses an exchange of a directory with one of its descendants before asking.)
  for (const [p, r] of [[a, ra], [b, rb]] as const) {
    if (r.kind === 'dir' && r.stack.some((x) => !x.writable)) throw new FsError('EXDEV', 'rename', p);
  }
  const parentA = await ctx.resolver.get(parentOf(a), 'rename');
  const parentB = await ctx.resolver.get(parentOf(b), 'rename');
  const realA = await up.copyUp.ensure(a);
  const realB = await up.copyUp.ensure(b);
  if (parentOf(a) !== parentOf(b)) {
    await up.copyUp.markHolder(parentOf(b), realA);
    await up.copyUp.markHolder(parentOf(a), realB);
  }
  const hasLower = (r: typeof parentA): boolean => r.kind === 'dir' && r.stack.some((x) => !x.writable);
  if (ra.kind === 'dir' && hasLower(parentB) && !(await isOpaqueDir(realA))) await up.whiteouts.makeOpaque(realA);
  if (rb.kind === 'dir' && hasLower(parentA) && !(await isOpaqueDir(realB))) await up.whiteouts.makeOpaque(realB);
  renameExchange(realA, realB);
  // A directory's tree is known under neither name any more, whichever way it went.
  if (ra.kind === 'dir' || rb.kind === 'dir') {
    ctx.resolver.invalidateTree(a);
    ctx.resolver.invalidateTree(b);
  } else {
    ctx.resolver.invalidate(a);
    ctx.resolver.invalidate(b);
  }
}
