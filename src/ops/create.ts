// create: a new regular file in the upper, owned by the caller, opened with the caller's flags
// (place.ts puts it in place); an existing name is opened instead, unless O_EXCL.
import { constants } from 'node:fs';
import { attrOfEntry, type Attr } from '../attr.js';
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';
import { PASSED_FLAGS, open } from './open.js';
import { placeNew, type Owner } from './place.js';

/** An opened file, and when create made it (rather than finding one), what a lookup of it shows. */
export interface Created {
  readonly fh: number;
  readonly made?: Attr;
}

export async function create(ctx: UnionCtx, p: VPath, mode: number, flags: number, owner: Owner): Promise<Created> {
  const up = requireUpper(ctx, 'create', p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') {
    if ((flags & constants.O_EXCL) !== 0) throw new FsError('EEXIST', 'create', p);
    return { fh: (await open(ctx, p, flags)).fh };
  }
  let fd = -1; // closed again if the new file does not take its name
  try {
    await placeNew(ctx, up, p, { syscall: 'create', isDir: false, owner, mode }, async (at, m) => {
      fd = await host.openFile(at, (flags & PASSED_FLAGS & ~constants.O_TRUNC) | constants.O_CREAT | constants.O_EXCL, m);
      // The file's owner and mode, for placeNew to change only what differs: as the caller's own
      // file it usually needs no chown or chmod (two syscalls fewer for each new file).
      return { value: undefined, stat: host.fstatEntry(fd) };
    });
  } catch (err) {
    if (fd >= 0) await host.close(fd).catch(() => undefined);
    throw err;
  }
  const fh = ctx.handles.add({ fd, path: p, branch: up.branch, flags });
  // placeNew stat'ed the file once it had its name (and no recorded inode number: a new entry).
  const r = await ctx.resolver.resolve(p);
  return r.kind === 'file' ? { fh, made: attrOfEntry(r.stat, ctx.inodes.of(r.stat.dev, r.stat.ino)) } : { fh };
}
