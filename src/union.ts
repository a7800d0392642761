// The composition root: builds the context of one union and exposes its operations as plain
// async functions in layerfs's own types (VPath in, Stats / Buffer / names out, FsError thrown).
// Nothing here knows about FUSE, so the whole union can be tested against temp directories.
import type { StatsFs } from 'node:fs';
import type { Attr } from './attr.js';
import { LRUCache } from 'lru-cache';
import { BranchSet } from './branch.js';
import type { UnionCtx, UpperCtx } from './context.js';
import { CopyUp } from './copyup.js';
import { WhiteoutWriter, type WhiteoutFormat } from './whiteout-writer.js';
import type { MergedEntry } from './dir-merge.js';
import { FsError } from './errno.js';
import { Handles } from './handles.js';
import { lstatSync } from './host/fs.js';
import { InodeNumbers } from './inode.js';
import { access } from './ops/access.js';
import { getattr } from './ops/getattr.js';
import { open, read, release } from './ops/open.js';
import { readdir } from './ops/readdir.js';
import { readlink } from './ops/readlink.js';
import { statfs } from './ops/statfs.js';
import { getxattr, listxattr } from './ops/xattr.js';
import type { RealPath, VPath } from './path.js';
import { DEFAULT_RESOLVER_OPTIONS, Resolver, type ResolverOptions } from './resolve.js';

export interface UnionConfig {
  /** Lower branch roots (absolute, resolved), top-most first. */
  readonly lowers: readonly string[];
  readonly upper?: string | undefined;
  /** layerfs's scratch dir on the upper's filesystem; needed with an upper. */
  readonly work?: string | undefined;
  readonly whiteout?: WhiteoutFormat;
  readonly resolver?: ResolverOptions;
}

/** The operations of a union, named after the FUSE operations they serve. */
export interface UnionOps {
  getattr(p: VPath): Promise<Attr>;
  access(p: VPath, mode: number): Promise<void>;
  readlink(p: VPath): Promise<string>;
  readdir(p: VPath): Promise<MergedEntry[]>;
  open(p: VPath, flags: number): Promise<number>;
  read(fh: number, buf: Buffer, len: number, pos: number): Promise<number>;
  release(fh: number): Promise<void>;
  statfs(p: VPath): Promise<StatsFs>;
  /** undefined: the entry has no such attribute. */
  getxattr(p: VPath, name: string): Promise<Buffer | undefined>;
  listxattr(p: VPath): Promise<string[]>;
  /** Every operation that would change the tree (EROFS while the union is read-only). */
  refuseWrite(op: string, p: VPath): Promise<never>;
}

export interface Union {
  readonly ops: UnionOps;
  readonly ctx: UnionCtx;
  /** Close every open host fd. */
  close(): Promise<void>;
}

function upperCtx(branches: BranchSet, resolver: Resolver, config: UnionConfig): UpperCtx | undefined {
  const branch = branches.upper;
  // Without a work dir the upper is only read (a union served read-only).
  if (branch === undefined || config.work === undefined) return undefined;
  const work = config.work as RealPath;
  const copyUp = new CopyUp(branches, work, resolver);
  return { branch, work, copyUp, whiteouts: new WhiteoutWriter(config.whiteout ?? 'overlay'), scratch: () => copyUp.scratch() };
}

export function createUnion(config: UnionConfig): Union {
  if (config.lowers.length === 0) throw new Error('a union needs at least one lower branch');
  const branches = new BranchSet(config.lowers as readonly RealPath[], config.upper as RealPath | undefined);
  const resolver = new Resolver(branches, config.resolver ?? DEFAULT_RESOLVER_OPTIONS);
  const ctx: UnionCtx = {
    branches,
    resolver,
    handles: new Handles(),
    inodes: new InodeNumbers(branches.all.map((b) => lstatSync(b.root).dev)),
    xattrNames: new LRUCache({ max: config.resolver?.maxEntries ?? DEFAULT_RESOLVER_OPTIONS.maxEntries }),
    upper: upperCtx(branches, resolver, config),
  };
  const ops: UnionOps = {
    getattr: (p) => getattr(ctx, p),
    access: (p, mode) => access(ctx, p, mode),
    readlink: (p) => readlink(ctx, p),
    readdir: (p) => readdir(ctx, p),
    open: (p, flags) => open(ctx, p, flags),
    read: (fh, buf, len, pos) => read(ctx, fh, buf, len, pos),
    release: (fh) => release(ctx, fh),
    statfs: () => statfs(ctx),
    getxattr: (p, name) => getxattr(ctx, p, name),
    listxattr: (p) => listxattr(ctx, p),
    refuseWrite: (op, p) => Promise.reject(new FsError('EROFS', op, p)),
  };
  return {
    ops,
    ctx,
    async close() {
      await Promise.allSettled(ctx.handles.all().map((h) => release(ctx, h.fd)));
    },
  };
}
