// mkdir: a new directory in the upper. Over a whiteout of the upper it is made opaque, so that
// a lower directory of that name does not merge back in; it is built in the work dir and swapped
// with the whiteout in one step (D14).
import type { UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import { renameExchange } from '../host/libc.js';
import { probeOnDisk } from '../branch-dir.js';
import { baseName, parentOf, type VPath } from '../path.js';
import { requireUpper } from './unlink.js';

export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

export async function mkdir(ctx: UnionCtx, p: VPath, mode: number, owner: Owner): Promise<void> {
  const up = requireUpper(ctx, 'mkdir', p);
  if ((await ctx.resolver.resolve(p)).kind !== 'absent') throw new FsError('EEXIST', 'mkdir', p);
  const dir = parentOf(p);
  const name = baseName(p);
  await up.copyUp.ensure(dir);
  const overWhiteout = (await probeOnDisk(up.branch, dir, name)).kind === 'whiteout';
  const tmp = up.scratch();
  const target = up.branch.real(p);
  try {
    await host.mkdir(tmp, 0o700);
    await host.lchown(tmp, owner.uid, owner.gid);
    await host.chmod(tmp, mode & 0o7777);
    if (overWhiteout) {
      await up.whiteouts.makeOpaque(tmp);
      const kernelWhiteout = await host.lstatOrUndefined(target);
      if (kernelWhiteout !== undefined) {
        renameExchange(tmp, target); // the whiteout is now at tmp
        await host.rmTree(tmp);
      } else {
        await host.rename(tmp, target);
      }
      await up.whiteouts.remove(up.branch, dir, name); // an OCI marker beside the new dir
    } else {
      await host.rename(tmp, target);
    }
  } catch (e) {
    await host.rmTree(tmp).catch(() => undefined);
    throw e;
  }
  ctx.resolver.invalidate(p);
}
