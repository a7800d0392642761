// getattr: the attributes of the serving branch's entry. A directory shows its top-most branch's
// attributes, as overlayfs does. Entries on the writable upper change under us, so their stat is
// read fresh; a lower's never changes, so the resolution's stat is reused.
import { attrOf, type Attr } from '../attr.js';
import type { UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';

export async function getattr(ctx: UnionCtx, p: VPath): Promise<Attr> {
  const r = await ctx.resolver.get(p, 'getattr');
  if (r.kind === 'file') {
    const st = r.branch.writable ? await host.lstat(r.real) : r.stat;
    return attrOf(st, ctx.inodes.of(st.dev, st.ino));
  }
  const top = r.stack[0];
  const st = top !== undefined && top.writable ? await host.lstat(top.real(p)) : r.stat;
  // A merged directory's link count would have to count subdirectories across branches;
  // overlayfs reports 1 ("unknown", which find and fts accept) and so does layerfs.
  return attrOf(st, ctx.inodes.of(st.dev, st.ino), r.stack.length > 1 ? 1 : st.nlink);
}
