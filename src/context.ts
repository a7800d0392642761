// The narrow set of dependencies every operation receives. Built once per mount in union.ts.
import type { LRUCache } from 'lru-cache';
import type { BranchSet } from './branch.js';
import type { Handles } from './handles.js';
import type { InodeNumbers } from './inode.js';
import type { Resolver } from './resolve.js';

export interface UnionCtx {
  readonly branches: BranchSet;
  readonly resolver: Resolver;
  readonly handles: Handles;
  readonly inodes: InodeNumbers;
  /** Stored xattr names of lower-branch entries, by real path. */
  readonly xattrNames: LRUCache<string, readonly string[]>;
}
