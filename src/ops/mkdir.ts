// mkdir: a new directory in the upper, owned by the caller; opaque over a whiteout (place.ts).
import { requireUpper, type UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';
import { entryFor, own, placeNew, type Owner } from './place.js';

export type { Owner };

export async function mkdir(ctx: UnionCtx, p: VPath, mode: number, owner: Owner): Promise<void> {
  const up = requireUpper(ctx, 'mkdir', p);
  await placeNew(ctx, up, p, { syscall: 'mkdir', isDir: true }, async (tmp, parent) => {
    await host.mkdir(tmp, 0o700);
    await own(tmp, entryFor(owner, parent, mode, true));
  });
}
