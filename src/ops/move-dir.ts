// Moving a directory that lower branches have (D16). The kernel's overlayfs answers EXDEV here
// unless redirect_dir is on, and tools then copy the tree themselves or fail. layerfs does that
// copy itself, inside the one rename request:
//  1. the merged subtree is built in the work dir: lower files are copied up (hard links among
//     them kept), entries the upper already holds are hard-linked, so open files and the upper's
//     own hard links move with them;
//  2. the copy takes the new name in one rename (over a whiteout or an empty directory);
//  3. the old name gets a whiteout.
// The upper stays in the plain format every overlayfs mounts: no redirect xattrs. A crash between
// 2 and 3 shows the directory under both names; nothing is lost. Cost: the subtree's size in
// copied bytes (reflinks where the upper's filesystem has them) plus a few syscalls per entry.
import type { UnionCtx, UpperCtx } from '../context.js';
import { copyEntry } from '../copyup.js';
import { markImpure, shownIno } from '../origin.js';
import * as host from '../host/fs.js';
import { renameExchange, setTimesNs } from '../host/libc.js';
import { baseName, childOf, parentOf, type Name, type RealPath, type VPath } from '../path.js';
import { readdir } from './readdir.js';

export async function moveMergedDir(ctx: UnionCtx, up: UpperCtx, from: VPath, to: VPath): Promise<void> {
  const src = await ctx.resolver.get(from, 'rename');
  const fromInUpper = src.kind === 'dir' && src.stack[0] === up.branch;
  // Where a lower branch could show something at the new name, the copy must hide it.
  const opaque = await ctx.resolver.lowerHas(to);
  await up.copyUp.ensure(parentOf(from));
  await up.copyUp.ensure(parentOf(to));
  const tmp = up.scratch();
  const target = up.branch.real(to);
  markImpure(up.branch.real(parentOf(to))); // the moved directory keeps its number
  try {
    await copyMerged(ctx, up, from, tmp, new Map(), opaque);
    if ((await host.lstatOrUndefined(target)) !== undefined) {
      // rename(2) cannot put a directory over a char device; the exchange also takes an empty
      // directory's place (it may hold whiteouts, which go with it).
      renameExchange(tmp, target);
      await host.rmTree(tmp);
    } else {
      await host.rename(tmp, target);
    }
  } catch (e) {
    await host.rmTree(tmp).catch(() => undefined);
    throw e;
  }
  if (up.whiteouts.format === 'oci') await up.whiteouts.remove(up.branch, parentOf(to), baseName(to));
  const dir = parentOf(from);
  const name = baseName(from);
  if (fromInUpper) await up.whiteouts.replace(up.branch, dir, name, up.scratch());
  else await up.whiteouts.add(up.branch, dir, name);
  ctx.resolver.invalidateTree(from);
  ctx.resolver.invalidateTree(to);
}

/** Build at `to` a copy of what the merged view shows at p (recursively). */
async function copyMerged(
  ctx: UnionCtx,
  up: UpperCtx,
  p: VPath,
  to: RealPath,
  links: Map<string, RealPath>,
  opaque = false,
): Promise<void> {
  const r = await ctx.resolver.get(p, 'rename');
  if (r.kind === 'file') {
    if (r.branch === up.branch) return host.link(r.real, to);
    const key = `${r.stat.dev}:${r.stat.ino}`;
    const first = r.stat.nlink > 1 ? links.get(key) : undefined;
    if (first !== undefined) return host.link(first, to);
    await copyEntry(r.real, to, ctx.inodes.of(r.stat.dev, r.stat.ino));
    if (r.stat.nlink > 1) links.set(key, to);
    return;
  }
  const top = r.stack[0];
  if (top === undefined) return;
  const real = top.real(p);
  // Mode, owner, xattrs and inode number of the top-most directory, as the merged view shows them.
  await copyEntry(real, to, shownIno(ctx.inodes, top, real, r.stat.dev, r.stat.ino));
  markImpure(to);
  for (const e of await readdir(ctx, p)) {
    if (e.name === '.' || e.name === '..') continue;
    await copyMerged(ctx, up, childOf(p, e.name as Name), `${to}/${e.name}` as RealPath, links);
  }
  if (opaque) await up.whiteouts.makeOpaque(to);
  // Last: filling the directory changed its times.
  const st = await host.lstatNs(real);
  setTimesNs(to, st.atimeNs, st.mtimeNs);
}
