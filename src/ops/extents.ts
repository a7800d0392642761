// fallocate and lseek(SEEK_DATA / SEEK_HOLE): where a file's space is, by open handle. The kernel's
// overlayfs passes both to the file of the branch; so does layerfs. Without them a FUSE mount
// answers fallocate(2) with EOPNOTSUPP (`fallocate -l`, rsync --preallocate, databases that
// reserve their files) and shows every sparse file as data from end to end, so that `cp` and
// `tar --sparse` fill the holes of what they copy out.
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { useForRead } from './open.js';

export async function fallocate(ctx: UnionCtx, fh: number, mode: number, offset: number, length: number): Promise<void> {
  const h = ctx.handles.get(fh, 'fallocate');
  // The kernel asks only of a file open for writing, which open copied up.
  if (!h.branch.writable) throw new FsError('EBADF', 'fallocate', h.path);
  await host.fallocate(h.fd, mode, offset, length);
}

/**
 * Where the next data (SEEK_DATA) or hole (SEEK_HOLE) starts at or after offset, in the file the
 * handle's reads read (a handle opened on a lower file that was copied up since reads the copy).
 */
export async function seekExtent(ctx: UnionCtx, fh: number, offset: number, whence: number): Promise<number> {
  if (whence !== host.SEEK_DATA && whence !== host.SEEK_HOLE) throw new FsError('EINVAL', 'lseek');
  return useForRead(ctx, fh, async (fd) => host.seekExtent(fd, offset, whence));
}
