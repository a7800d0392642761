// The composition root: builds the context of one union and exposes its operations as plain
// async functions in layerfs's own types (VPath in, Stats / Buffer / names out, FsError thrown).
// Nothing here knows about FUSE, so the whole union can be tested against temp directories.
import type { StatsFs } from 'node:fs';
import type { Attr } from './attr.js';
import { CountedLRU } from './counted-lru.js';
import { BranchSet } from './branch.js';
import type { UnionCtx, UpperCtx } from './context.js';
import { ChangeGate } from './change-gate.js';
import { CopyUp } from './copyup.js';
import { WhiteoutWriter, type WhiteoutFormat } from './whiteout-writer.js';
import type { MergedEntry } from './dir-merge.js';
import { FsError } from './errno.js';
import { Handles } from './handles.js';
import { lstatSync, type KnownFile } from './host/fs.js';
import { InodeNumbers } from './inode.js';
import { access } from './ops/access.js';
import { getattr, getattrNow } from './ops/getattr.js';
import { detachOpen, fgetattr, forgetUnlinked, open, passthroughFd, read, release, unlinkOpen, unlinkedAttr, useForRead, type Opened } from './ops/open.js';
import { readdir } from './ops/readdir.js';
import { readlink } from './ops/readlink.js';
import { statfs } from './ops/statfs.js';
import { fgetxattr, flistxattr, fremovexattr, fsetxattr, getxattr, listxattr, removexattr, setxattr } from './ops/xattr.js';
import { chmod, chown, fchmod, fchown } from './ops/chmod.js';
import { create, type Created } from './ops/create.js';
import { mkdir } from './ops/mkdir.js';
import type { Owner } from './ops/place.js';
import { exchange, rename } from './ops/rename.js';
import { link, mknod, symlink } from './ops/symlink.js';
import { rmdir, unlink } from './ops/unlink.js';
import { futimens, utimens } from './ops/utimens.js';
import { dropSetIds, fsync, ftruncate, truncate, write, type Writer } from './ops/write.js';
import { fallocate, seekExtent } from './ops/extents.js';
import { fsyncdir } from './ops/fsyncdir.js';
import type { TimeSpec } from './host/libc.js';
import type { Name, RealPath, VPath } from './path.js';
import { PathReads } from './path-reads.js';
import { DEFAULT_RESOLVER_OPTIONS, Resolver, type ResolverOptions } from './resolve.js';

export interface UnionConfig {
  /** Lower branch roots (absolute, resolved), top-most first. */
  readonly lowers: readonly string[];
  readonly upper?: string | undefined;
  /** layerfs's scratch dir on the upper's filesystem; needed with an upper. */
  readonly work?: string | undefined;
  readonly whiteout?: WhiteoutFormat;
  readonly resolver?: ResolverOptions;
  /** Seconds what layerfs learned of the lowers is kept (lower_ttl=); undefined: forever. */
  readonly lowerTtl?: number | undefined;
}

/** The operations of a union, named after the FUSE operations they serve. */
export interface UnionOps {
  getattr(p: VPath): Promise<Attr>;
  /** getattr, answered as it is when nothing has to be waited for; throws an error found at once. */
  getattrNow(p: VPath): Attr | Promise<Attr>;
  access(p: VPath, mode: number): Promise<void>;
  readlink(p: VPath): Promise<string>;
  readdir(p: VPath): Promise<MergedEntry[]>;
  /** The new handle; and where the open copied the file up, the xattr names the copy was given. */
  open(p: VPath, flags: number): Promise<Opened>;
  read(fh: number, buf: Buffer, len: number, pos: number): Promise<number>;
  /**
   * A read that names its file instead of a handle: what the kernel sends once a read-only
   * union answered OPEN with ENOSYS (D26). EBADF on a writable union, which always opens.
   */
  readByPath(p: VPath, buf: Buffer, len: number, pos: number): Promise<number>;
  /**
   * The file a read by path reads (as readByPath), for a caller that moves its data itself:
   * `fn` gets a host fd of it, open until what `fn` returns has settled, and the file's size and
   * device where nothing can change them (else undefined). EBADF where readByPath gives it.
   */
  useByPath<T>(p: VPath, fn: (fd: number, known: KnownFile | undefined) => Promise<T>): Promise<T>;
  /** The same for a read of handle fh (as read): `known` only of a lower file, which cannot change. */
  useHandle<T>(fh: number, fn: (fd: number, known: KnownFile | undefined) => Promise<T>): Promise<T>;
  /**
   * nameless: the caller has no name for the file any more, so no forgetUnlinked of its key
   * follows the release of its last handle (see unlinkOpen).
   */
  release(fh: number, nameless?: boolean): Promise<void>;
  /**
   * The host fd the kernel may read and write fh's file through itself (FUSE passthrough, D51);
   * `mode`: the file's, where the caller has it at hand.
   */
  passthroughFd(fh: number, mode?: number): number | undefined;
  /** The attributes of the file behind an open handle; p is null when it has no name any more. */
  fgetattr(fh: number, p: VPath | null): Promise<{ attr: Attr; unlinked: boolean }>;
  /**
   * Unlink p, which is open, keeping the file for its handles under the name `key` (how libfuse's
   * high-level API unlinks an open file: a rename to a hidden name). False: p is not open.
   */
  unlinkOpen(p: VPath, key: Name): Promise<boolean>;
  /** The attributes of a file unlinked while open, by its key; undefined if key is not one. */
  unlinkedAttr(key: string): Promise<Attr | undefined>;
  /** The last handle of the file called key is gone: forget the key. False if key is not one. */
  forgetUnlinked(key: string): Promise<boolean>;
  statfs(p: VPath): Promise<StatsFs>;
  /** undefined: the entry has no such attribute. */
  getxattr(p: VPath, name: string): Promise<Buffer | undefined>;
  listxattr(p: VPath): Promise<string[]>;
  // Changes (EROFS when the union has no upper and work dir).
  /** The new handle; and, when the file was made here rather than found, its attributes. */
  create(p: VPath, mode: number, flags: number, owner: Owner): Promise<Created>;
  write(fh: number, buf: Buffer, len: number, pos: number): Promise<number>;
  truncate(p: VPath, size: number): Promise<void>;
  ftruncate(fh: number, size: number): Promise<void>;
  /** fallocate(2) on an open file (ops/extents.ts). */
  fallocate(fh: number, mode: number, offset: number, length: number): Promise<void>;
  /** lseek(2) with SEEK_DATA (3) or SEEK_HOLE (4) on an open file: the offset found. */
  seekExtent(fh: number, offset: number, whence: number): Promise<number>;
  /** Drop the set-ids a write by a caller without CAP_FSETID drops (ops/write.ts). */
  dropSetIds(target: { fh: number } | { path: VPath }, by: Writer): Promise<void>;
  flush(fh: number): Promise<void>;
  fsync(fh: number, datasync: boolean): Promise<void>;
  fsyncdir(p: VPath, datasync: boolean): Promise<void>;
  mkdir(p: VPath, mode: number, owner: Owner): Promise<void>;
  mknod(p: VPath, mode: number, dev: number, owner: Owner): Promise<void>;
  symlink(target: string, p: VPath, owner: Owner): Promise<void>;
  link(from: VPath, p: VPath): Promise<void>;
  unlink(p: VPath): Promise<void>;
  rmdir(p: VPath): Promise<void>;
  /** rename(2); handles open by `to` keep the file it replaced (as with unlinkOpen). */
  rename(from: VPath, to: VPath): Promise<void>;
  /** renameat2(RENAME_EXCHANGE): a and b swap places; handles open by either follow their file. */
  exchange(a: VPath, b: VPath): Promise<void>;
  chmod(p: VPath, mode: number): Promise<void>;
  chown(p: VPath, uid: number, gid: number): Promise<void>;
  utimens(p: VPath, atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  /** chmod, chown and utimens through an open handle: for a file with no name left (unlinked while open). */
  fchmod(fh: number, mode: number): Promise<void>;
  fchown(fh: number, uid: number, gid: number): Promise<void>;
  futimens(fh: number, atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  setxattr(p: VPath, name: string, value: Buffer, flags: number): Promise<void>;
  removexattr(p: VPath, name: string): Promise<void>;
  /** The xattr calls through an open handle: for a file with no name left. */
  fgetxattr(fh: number, name: string): Promise<Buffer | undefined>;
  flistxattr(fh: number): Promise<string[]>;
  fsetxattr(fh: number, name: string, value: Buffer, flags: number): Promise<void>;
  fremovexattr(fh: number, name: string): Promise<void>;
  /**
   * The caller of a request on p was killed while it waited for the answer: a copy-up of p that
   * only killed callers still wait for stops (copyup.ts, interrupted), and so does a move of the
   * merged directory p (move-dir.ts).
   */
  interrupted(p: VPath): void;
}

export interface Union {
  readonly ops: UnionOps;
  readonly ctx: UnionCtx;
  /**
   * Where the FUSE layer takes the xattr names of entries whose xattrs can never change (D20).
   * False, and never called, when this union's xattrs can change (an upper branch, lower_ttl).
   */
  tellFixedXattrNames(to: (p: VPath, shown: readonly string[]) => void): boolean;
  /** Have `to` told of each entry copied up (CopyUp.onCopied, D74). */
  tellCopiedUp(to: (p: VPath, dir: boolean) => void): void;
  /** Close every open host fd. */
  close(): Promise<void>;
}

function upperCtx(branches: BranchSet, resolver: Resolver, inodes: InodeNumbers, config: UnionConfig): UpperCtx | undefined {
  const branch = branches.upper;
  // Without a work dir the upper is only read (a union served read-only).
  if (branch === undefined || config.work === undefined) return undefined;
  const work = config.work as RealPath;
  const copyUp = new CopyUp(branches, work, resolver, (dev, ino) => inodes.of(dev, ino));
  return {
    branch, work, copyUp, gate: new ChangeGate(), whiteouts: new WhiteoutWriter(config.whiteout ?? 'overlay'), scratch: () => copyUp.scratch(),
    moving: new Map(),
  };
}

/** Heap budget of the cached xattr name lists of lower entries. */
const XATTR_NAMES_MAX_BYTES = 4 * 1024 * 1024;
const XATTR_NAMES_MAX_ENTRIES = 32_768;

/** Keys of files renamed over while open (Handles.markUnlinked): unique, never a name on disk. */
let renamedOver = 0;

export function createUnion(config: UnionConfig): Union {
  if (config.lowers.length === 0) throw new Error('a union needs at least one lower branch');
  const branches = new BranchSet(config.lowers as readonly RealPath[], config.upper as RealPath | undefined);
  const resolverOptions = config.resolver ?? DEFAULT_RESOLVER_OPTIONS;
  const ttlMs = config.lowerTtl === undefined ? undefined : config.lowerTtl * 1000;
  const resolver = new Resolver(branches, ttlMs === undefined ? resolverOptions : { ...resolverOptions, ttlMs });
  const inodes = new InodeNumbers(branches.all.map((b) => lstatSync(b.root).dev));
  const ctx: UnionCtx = {
    branches,
    resolver,
    handles: new Handles(),
    inodes,
    // Bounded in bytes too (estimated: bookkeeping plus two bytes a character), as the resolver is.
    // The byte bound allows ~32k lists at most (each is 100 bytes and more).
    xattrNames: new CountedLRU<string, readonly string[]>(Math.min(resolverOptions.maxEntries, XATTR_NAMES_MAX_ENTRIES), {
      maxSize: XATTR_NAMES_MAX_BYTES,
      sizeCalculation: (names, real) => 100 + 2 * real.length + names.reduce((n, x) => n + 40 + 2 * x.length, 0),
      ...(ttlMs === undefined ? {} : { ttl: Math.max(1, ttlMs) }),
    }),
    // Lowers are immutable by contract: without an upper (nothing copies up, nothing is written)
    // and without lower_ttl (which admits changes underneath), an entry's xattrs never change.
    fixedXattrNames: branches.upper === undefined && ttlMs === undefined ? { to: undefined } : undefined,
    lowersFixed: ttlMs === undefined,
    upper: upperCtx(branches, resolver, inodes, config),
  };
  // Changes by name take the gate shared, so that a directory move (D16) sees its subtree hold
  // still; reads, and changes through an open file (an upper file, which a move links along), don't.
  const change = <T>(fn: () => Promise<T>): Promise<T> => (ctx.upper === undefined ? fn() : ctx.upper.gate.shared(fn));
  // Only where nothing can change a file's content or place: an fd kept open for reads by name
  // would go on reading a lower file after a copy-up.
  const pathReads = ctx.upper === undefined
    ? new PathReads(async (p) => {
      const r = await ctx.resolver.get(p, 'read');
      if (r.kind === 'dir') throw new FsError('EISDIR', 'read', p);
      // A lower file's size and device, as the kernel was told them: nothing changes either
      // (unless lower_ttl admits changes underneath).
      return { real: r.real, known: ctx.lowersFixed ? { size: r.stat.size, dev: r.stat.dev } : undefined };
    })
    : undefined;
  const ops: UnionOps = {
    getattr: (p) => getattr(ctx, p),
    getattrNow: (p) => getattrNow(ctx, p),
    access: (p, mode) => access(ctx, p, mode),
    readlink: (p) => readlink(ctx, p),
    readdir: (p) => readdir(ctx, p),
    open: (p, flags) => change(() => open(ctx, p, flags)),
    read: (fh, buf, len, pos) => read(ctx, fh, buf, len, pos),
    readByPath: (p, buf, len, pos) => (pathReads === undefined ? Promise.reject(new FsError('EBADF', 'read', p)) : pathReads.read(p, buf, len, pos)),
    useHandle: (fh, fn) => useForRead(ctx, fh, fn),
    useByPath: (p, fn) => (pathReads === undefined ? Promise.reject(new FsError('EBADF', 'read', p)) : pathReads.use(p, fn)),
    release: (fh, nameless) => release(ctx, fh, nameless),
    passthroughFd: (fh, mode) => passthroughFd(ctx, fh, mode),
    fgetattr: (fh, p) => fgetattr(ctx, fh, p),
    unlinkOpen: (p, key) => change(() => unlinkOpen(ctx, p, key)),
    unlinkedAttr: (key) => unlinkedAttr(ctx, key),
    forgetUnlinked: async (key) => forgetUnlinked(ctx, key),
    statfs: () => statfs(ctx),
    getxattr: (p, name) => getxattr(ctx, p, name),
    listxattr: (p) => listxattr(ctx, p),
    create: (p, mode, flags, owner) => change(() => create(ctx, p, mode, flags, owner)),
    write: (fh, buf, len, pos) => write(ctx, fh, buf, len, pos),
    truncate: (p, size) => change(() => truncate(ctx, p, size)),
    ftruncate: (fh, size) => ftruncate(ctx, fh, size),
    fallocate: (fh, mode, offset, length) => fallocate(ctx, fh, mode, offset, length),
    seekExtent: (fh, offset, whence) => seekExtent(ctx, fh, offset, whence),
    dropSetIds: (target, by) => ('fh' in target ? dropSetIds(ctx, target, by) : change(() => dropSetIds(ctx, target, by))),
    flush: async (fh) => void ctx.handles.get(fh, 'flush'),
    fsync: (fh, datasync) => fsync(ctx, fh, datasync),
    fsyncdir: (p, datasync) => fsyncdir(ctx, p, datasync),
    mkdir: (p, mode, owner) => change(() => mkdir(ctx, p, mode, owner)),
    mknod: (p, mode, dev, owner) => change(() => mknod(ctx, p, mode, dev, owner)),
    symlink: (target, p, owner) => change(() => symlink(ctx, target, p, owner)),
    link: (from, p) => change(() => link(ctx, from, p)),
    unlink: (p) => change(() => unlink(ctx, p)),
    rmdir: (p) => change(() => rmdir(ctx, p)),
    rename: async (from, to) => {
      // A file open by the target name keeps its handles, as on any filesystem. They let go of
      // the name only once the rename has replaced it: a rename that fails leaves the target as
      // it was, and no moment passes, nor a crash can fall, where the name is missing.
      const over = from === to ? undefined : await detachOpen(ctx, to, 'rename');
      try {
        await rename(ctx, from, to);
      } catch (e) {
        await over?.cancel();
        throw e;
      }
      over?.commit(`.layerfs-renamed-over-${(renamedOver++).toString(16)}`);
      ctx.handles.moved(from, to); // open files keep their (new) name
    },
    exchange: async (a, b) => {
      await exchange(ctx, a, b);
      ctx.handles.exchanged(a, b);
    },
    chmod: (p, mode) => change(() => chmod(ctx, p, mode)),
    chown: (p, uid, gid) => change(() => chown(ctx, p, uid, gid)),
    utimens: (p, a, m) => change(() => utimens(ctx, p, a, m)),
    fchmod: (fh, mode) => fchmod(ctx, fh, mode),
    fchown: (fh, uid, gid) => fchown(ctx, fh, uid, gid),
    futimens: (fh, a, m) => futimens(ctx, fh, a, m),
    setxattr: (p, name, value, flags) => change(() => setxattr(ctx, p, name, value, flags)),
    removexattr: (p, name) => change(() => removexattr(ctx, p, name)),
    interrupted: (p) => {
      ctx.upper?.copyUp.interrupted(p);
      const move = ctx.upper?.moving.get(p);
      if (move !== undefined) move[0] = 1; // a move has one caller
    },
    fgetxattr: async (fh, name) => fgetxattr(ctx, fh, name),
    flistxattr: async (fh) => flistxattr(ctx, fh),
    fsetxattr: async (fh, name, value, flags) => fsetxattr(ctx, fh, name, value, flags),
    fremovexattr: async (fh, name) => fremovexattr(ctx, fh, name),
  };
  return {
    ops,
    ctx,
    tellFixedXattrNames(to) {
      if (ctx.fixedXattrNames === undefined) return false;
      ctx.fixedXattrNames.to = to;
      return true;
    },
    tellCopiedUp(to) {
      if (ctx.upper !== undefined) ctx.upper.copyUp.onCopied = to;
    },
    async close() {
      await Promise.allSettled([...ctx.handles.all().map((h) => release(ctx, h.fd)), pathReads?.close()]);
    },
  };
}
