// mkdir: a new directory in the upper, owned by the caller; opaque over a whiteout (place.ts).
import { requireUpper, type UnionCtx } from '../context.js';
import * as host from '../host/fs.js';
import type { VPath } from '../path.js';
import { placeNew, type Owner } from './place.js';

export type { Owner };

export async function mkdir(ctx: UnionCtx, p: VPath, mode: number, owner: Owner): Promise<void> {
  const up = requireUpper(ctx, 'mkdir', p);
  await placeNew(ctx, up, p, { syscall: 'mkdir', isDir: true, owner, mode }, async (at, m) => ({ value: await host.mkdir(at, m) }));
}
