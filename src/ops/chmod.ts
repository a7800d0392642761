// chmod / chown: change the upper copy (copied up first). chown of a symlink changes the link.
import { requireUpper, type UnionCtx } from '../context.js';
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
