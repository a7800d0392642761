// statfs: the numbers of the filesystem that takes writes (the upper), or of the top-most branch
// for a read-only union, as overlayfs reports them.
import type { StatsFs } from 'node:fs';
import type { UnionCtx } from '../context.js';
import * as host from '../host/fs.js';

export function statfs(ctx: UnionCtx): Promise<StatsFs> {
  const top = ctx.branches.upper ?? ctx.branches.all[0];
  if (top === undefined) throw new Error('a union needs at least one branch');
  return host.statfs(top.root);
}
