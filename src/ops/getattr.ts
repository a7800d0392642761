// getattr: the attributes of the serving branch's entry. A directory shows its top-most branch's
// attributes, as overlayfs does. Entries on the writable upper change under us, so their stat is
// read fresh; a lower's never changes, so the resolution's stat is reused.
import type { Stats } from 'node:fs';
import type { UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

export async function getattr(ctx: UnionCtx, p: VPath): Promise<Stats> {
  const r = await ctx.resolver.get(p, 'getattr');
  if (r.kind === 'file') return r.branch.writable ? host.lstat(r.real) : r.stat;
  const top = r.stack[0];
  const st = top !== undefined && top.writable ? await host.lstat(top.real(p)) : r.stat;
  if (r.stack.length > 1 && st.nlink !== 1) {
    // A merged directory's link count would have to count subdirectories across branches;
    // overlayfs reports 1 ("unknown", which find and fts accept) and so does layerfs.
    const merged = Object.create(Object.getPrototypeOf(st) as object) as Stats;
    Object.assign(merged, st, { nlink: 1 });
    return merged;
  }
  return st;
}
