// getattr: the attributes of the serving branch's entry. A directory shows its top-most branch's
// attributes, as overlayfs does. Entries on the writable upper change under us, so their stat is
// read fresh; a lower's never changes, so the resolution's stat is reused. An upper entry that
// was copied up shows the inode number recorded at its copy-up (origin.ts).
import { attrOf, type Attr } from '../attr.js';
import type { UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import { shownIno } from '../origin.js';
import type { VPath } from '../path.js';

export async function getattr(ctx: UnionCtx, p: VPath): Promise<Attr> {
  const r = await ctx.resolver.get(p, 'getattr');
  if (r.kind === 'file') {
    const st = r.branch.writable ? await host.lstat(r.real) : r.stat;
    return attrOf(st, shownIno(ctx.inodes, r.branch, r.real, st.dev, st.ino));
  }
  const top = r.stack[0];
  if (top === undefined) throw new Error('a directory resolution has an empty stack');
  const st = top.writable ? await host.lstat(top.real(p)) : r.stat;
  // A merged directory's link count would have to count subdirectories across branches;
  // overlayfs reports 1 ("unknown", which find and fts accept) and so does layerfs.
  return attrOf(st, shownIno(ctx.inodes, top, top.real(p), st.dev, st.ino), r.stack.length > 1 ? 1 : st.nlink);
}
