// The narrow set of dependencies every operation receives. Built once per mount in union.ts.
import type { CountedLRU } from './counted-lru.js';
import type { Branch, BranchSet } from './branch.js';
import type { ChangeGate } from './change-gate.js';
import type { CopyUp } from './copyup.js';
import { FsError } from './errno.js';
import type { RealPath, VPath } from './path.js';
import type { WhiteoutWriter } from './whiteout-writer.js';
import type { Handles } from './handles.js';
import type { InodeNumbers } from './inode.js';
import type { Resolver } from './resolve.js';

/** What a writable union has on top of a read-only one. */
export interface UpperCtx {
  readonly branch: Branch;
  /** layerfs's scratch directory on the upper's filesystem (WORKDIR/work, as the kernel's). */
  readonly work: RealPath;
  readonly copyUp: CopyUp;
  readonly whiteouts: WhiteoutWriter;
  /** Changes take it shared; a move of a merged directory takes it alone (D16). */
  readonly gate: ChangeGate;
  /** A fresh, unused path in the work dir. */
  scratch(): RealPath;
  /**
   * Moves of merged directories under way (D16), by the moved path: setting [0] stops one, for a
   * caller that was killed (D48; move-dir.ts).
   */
  readonly moving: Map<VPath, Int32Array>;
}

/**
 * Where an entry's xattr names (as shown through the mount) go once they are known never to
 * change, so that the FUSE layer answers absent names and listxattr itself (DECISIONS D20).
 * Present only in a union in which no xattr can change while mounted; `to` is set once mounted.
 */
export interface FixedXattrNames {
  to: ((p: VPath, shown: readonly string[]) => void) | undefined;
}

export interface UnionCtx {
  readonly branches: BranchSet;
  readonly resolver: Resolver;
  readonly handles: Handles;
  readonly inodes: InodeNumbers;
  /** Stored xattr names of lower-branch entries, by real path. */
  readonly xattrNames: CountedLRU<string, readonly string[]>;
  /** Present when no entry's xattrs can change while mounted: no upper branch, no lower_ttl. */
  readonly fixedXattrNames: FixedXattrNames | undefined;
  /** No lower_ttl: nothing changes a lower file while mounted (its size is what it was). */
  readonly lowersFixed: boolean;
  /** Present when the union has an upper and a work dir. */
  readonly upper: UpperCtx | undefined;
}

/** The writable part of the union, or EROFS: a union without an upper and work dir is read-only. */
export function requireUpper(ctx: UnionCtx, syscall: string, p: VPath): UpperCtx {
  if (ctx.upper === undefined) throw new FsError('EROFS', syscall, p);
  return ctx.upper;
}
