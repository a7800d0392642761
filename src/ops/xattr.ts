// getxattr / listxattr: the serving entry's own attributes (a merged directory shows its top-most
// branch's), with the overlay's bookkeeping (trusted.overlay.*) hidden as the kernel hides it
// and a nested overlay's escaped names (trusted.overlay.overlay.X) shown unescaped.
// `ls -l` asks two or three attributes of every file, nearly always absent: for an entry on an
// immutable lower the list of its names is read once and kept, so an absent one costs no syscall,
// and absence is a value (undefined), not an exception. Where no xattr can change while mounted
// (ctx.fixedXattrNames), the shown names are handed to the FUSE layer too, which then answers
// absent names and listxattr without asking again (DECISIONS D20).
import type { Branch } from '../branch.js';
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import { fdGetXattr, fdListXattr, fdRemoveXattr, fdSetXattr, getXattr, listXattr, removeXattr, setXattr } from '../host/libc.js';
import type { RealPath, VPath } from '../path.js';
import { shownXattrName, storedXattrName } from '../whiteout.js';
import { upperHandle } from './chmod.js';

async function serving(ctx: UnionCtx, p: VPath, syscall: string): Promise<{ real: RealPath; branch: Branch }> {
  const r = await ctx.resolver.get(p, syscall);
  if (r.kind === 'file') return { real: r.real, branch: r.branch };
  const top = r.stack[0];
  if (top === undefined) throw new FsError('EIO', syscall, p);
  return { real: top.real(p), branch: top };
}

/** The stored names of an entry's xattrs (cached for lower branches, which never change). */
function storedNames(ctx: UnionCtx, real: RealPath, branch: Branch): readonly string[] {
  if (branch.writable) return listXattr(real);
  let names = ctx.xattrNames.get(real);
  if (names === undefined) {
    names = listXattr(real);
    ctx.xattrNames.set(real, names);
  }
  return names;
}

const shownNames = (stored: readonly string[]): string[] => stored.flatMap((n) => shownXattrName(n) ?? []);

/**
 * Hand p's shown names to the FUSE layer when they can never change. Told again on every
 * answer that reaches here: the FUSE layer's table is bounded and forgets when full.
 */
function tellFixed(ctx: UnionCtx, p: VPath, branch: Branch, stored: readonly string[], shown?: readonly string[]): void {
  const to = ctx.fixedXattrNames?.to;
  if (to !== undefined && !branch.writable) to(p, shown ?? shownNames(stored));
}

/** The value, or undefined when the entry has no such attribute (ENODATA at the boundary). */
export async function getxattr(ctx: UnionCtx, p: VPath, name: string): Promise<Buffer | undefined> {
  const { real, branch } = await serving(ctx, p, 'getxattr');
  const stored = storedXattrName(name);
  if (!branch.writable) {
    const names = storedNames(ctx, real, branch);
    tellFixed(ctx, p, branch, names);
    if (!names.includes(stored)) return undefined;
  }
  return getXattr(real, stored);
}

export async function listxattr(ctx: UnionCtx, p: VPath): Promise<string[]> {
  const { real, branch } = await serving(ctx, p, 'listxattr');
  const names = storedNames(ctx, real, branch);
  const shown = shownNames(names);
  tellFixed(ctx, p, branch, names, shown);
  return shown;
}

/** setxattr on the upper copy (copied up first); overlay names are stored escaped, as the kernel does. */
export async function setxattr(ctx: UnionCtx, p: VPath, name: string, value: Buffer, flags: number): Promise<void> {
  const up = requireUpper(ctx, 'setxattr', p);
  await ctx.resolver.get(p, 'setxattr');
  setXattr(await up.copyUp.ensure(p), storedXattrName(name), value, flags);
}

export async function removexattr(ctx: UnionCtx, p: VPath, name: string): Promise<void> {
  const up = requireUpper(ctx, 'removexattr', p);
  const { real, branch } = await serving(ctx, p, 'removexattr');
  const stored = storedXattrName(name);
  // Removing what is not there is ENODATA without a copy-up.
  if (!storedNames(ctx, real, branch).includes(stored)) throw new FsError('ENODATA', 'removexattr', p);
  removeXattr(await up.copyUp.ensure(p), stored);
}

// Through an open handle, for a file unlinked while open (the kernel names it by a node that has
// no path any more). Reading works on any handle; a change needs one on an upper file, since a
// file with no name cannot be copied up (as fchmod: chmod.ts).

export function fgetxattr(ctx: UnionCtx, fh: number, name: string): Buffer | undefined {
  return fdGetXattr(ctx.handles.get(fh, 'getxattr').fd, storedXattrName(name));
}

export function flistxattr(ctx: UnionCtx, fh: number): string[] {
  return shownNames(fdListXattr(ctx.handles.get(fh, 'listxattr').fd));
}

export function fsetxattr(ctx: UnionCtx, fh: number, name: string, value: Buffer, flags: number): void {
  fdSetXattr(upperHandle(ctx, fh, 'setxattr').fd, storedXattrName(name), value, flags);
}

export function fremovexattr(ctx: UnionCtx, fh: number, name: string): void {
  const stored = storedXattrName(name);
  // Removing what is not there is ENODATA, on any handle (as removexattr above).
  if (!fdListXattr(ctx.handles.get(fh, 'removexattr').fd).includes(stored)) throw new FsError('ENODATA', 'removexattr');
  fdRemoveXattr(upperHandle(ctx, fh, 'removexattr').fd, stored);
}
