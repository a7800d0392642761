// open / read / release on real host file descriptors, with positional reads (no shared file
// offset, so concurrent readers of one handle cannot disturb each other; offsets past 4 GiB are
// plain numbers, exact up to 2^53). An open file behaves as on the kernel's overlayfs:
// - a handle opened read-only on a lower file reads the upper copy once the file was copied up
//   (overlayfs's read goes to the inode's current real file, so writes made through other
//   handles, and a truncate, show through it);
// - unlinked while open, it keeps working through its handles, and its attributes (fstat) are
//   those of the file, link count included (0 when no name is left, else the remaining names).
import { constants } from 'node:fs';
import type { Attr } from '../attr.js';
import { requireUpper, type UnionCtx } from '../context.js';
import { FsError } from '../errno.js';
import * as host from '../host/fs.js';
import type { Handle } from '../handles.js';
import { childOf, parentOf, type Name, type VPath } from '../path.js';
import { fdAttr, getattr } from './getattr.js';
import { unlink } from './unlink.js';

const { S_IFMT, S_IFREG } = constants;
const WRITE_FLAGS = host.O.O_WRONLY | host.O.O_RDWR | host.O.O_TRUNC | host.O.O_APPEND;

/** An open with these flags copies a lower file up first. */
export const opensForWrite = (flags: number): boolean => (flags & WRITE_FLAGS) !== 0;

/** Flags handed to the host's open(2): O_CREAT/O_EXCL were settled by the kernel's lookup. */
export const PASSED_FLAGS = host.O_ACCMODE | host.O.O_APPEND | host.O.O_TRUNC | host.O.O_NOATIME | host.O.O_DIRECT | host.O.O_SYNC | host.O.O_DSYNC;

/** An opened file; `copied`: the xattr names it was given, where this open copied it up. */
export interface Opened {
  readonly fh: number;
  readonly copied?: readonly string[];
  /** Opened on a lower branch: a read of a file no write has copied up (its data cannot change). */
  readonly lower?: true;
}

export async function open(ctx: UnionCtx, p: VPath, flags: number): Promise<Opened> {
  const r = await ctx.resolver.get(p, 'open');
  if (r.kind === 'dir') throw new FsError('EISDIR', 'open', p);
  let { real, branch } = r;
  let copied: readonly string[] | undefined;
  if (opensForWrite(flags) && !branch.writable) {
    // Opening a lower file for writing copies it up first (EROFS without an upper).
    const up = requireUpper(ctx, 'open', p);
    // With O_TRUNC the copy gets none of the data, as the kernel's overlayfs copies up: the open
    // empties it anyway (and a file of many GiB needs neither the time nor the room).
    ({ real, xattrs: copied } = await up.copyUp.copy(p, (flags & host.O.O_TRUNC) !== 0 ? 0 : Infinity));
    branch = up.branch;
  }
  // O_NOFOLLOW is added by the host layer. A regular file's open cannot wait: the calling thread
  // makes it; a FIFO's or a device's goes through the pool.
  const regular = (r.stat.mode & S_IFMT) === S_IFREG;
  // A lower file is only ever opened for reading here, and read as a lower must be (D40).
  const fd = await (regular ? host.openFile : host.open)(real, (flags & PASSED_FLAGS) | (branch.writable ? 0 : host.READ_LOWER));
  const known = regular && !branch.writable && ctx.lowersFixed ? { size: r.stat.size, dev: r.stat.dev } : undefined;
  const fh = ctx.handles.add({ fd, path: p, branch, flags, known });
  if (!branch.writable) return { fh, lower: true };
  return copied === undefined ? { fh } : { fh, copied };
}

export function read(ctx: UnionCtx, fh: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return useForRead(ctx, fh, (fd, known) => host.read(fd, buf, len, pos, known));
}

/**
 * Run `fn` with the fd a read of fh reads now (readFd) and what is known of that file: its size
 * and device where it is the lower file the handle was opened on (it cannot change), not a copy
 * made since. The fd stays open meanwhile: the kernel releases no handle with a read in flight.
 */
export async function useForRead<T>(ctx: UnionCtx, fh: number, fn: (fd: number, known: host.KnownFile | undefined) => Promise<T>): Promise<T> {
  const h = ctx.handles.get(fh, 'read');
  const fd = await readFd(ctx, h);
  return fn(fd, fd === h.fd ? h.known : undefined);
}

/** Where a handle's reads go: its own fd, or the upper copy of the lower file it was opened on. */
async function readFd(ctx: UnionCtx, h: Handle): Promise<number> {
  if (h.upperFd !== undefined) return h.upperFd;
  // A read-only union never copies up; an unlinked file has no name to look up any more.
  if (h.branch.writable || ctx.upper === undefined || h.unlinked !== undefined) return h.fd;
  let r;
  try {
    r = await ctx.resolver.resolve(h.path); // a cache hit unless the name changed
  } catch {
    return h.fd;
  }
  if (r.kind !== 'file' || !r.branch.writable) return h.fd;
  const fd = await host.open(r.real, host.O.O_RDONLY | (h.flags & host.O.O_NOATIME));
  // Another read of this handle may have got there first, or the handle was released meanwhile.
  if (h.upperFd !== undefined || !ctx.handles.isOpen(h)) {
    await host.close(fd);
    return h.upperFd ?? h.fd;
  }
  h.upperFd = fd;
  return fd;
}

/**
 * The host fd through which the kernel may read and write fh's file itself (FUSE passthrough,
 * D51), or undefined: only a regular file of the upper, opened there, and without set-ids. A
 * write that bypasses layerfs is one whose set-ids layerfs cannot drop (ops/write.ts,
 * dropSetIds), and a lower file is one that a write would first copy up.
 */
export function passthroughFd(ctx: UnionCtx, fh: number, mode?: number): number | undefined {
  const h = ctx.handles.get(fh, 'open');
  if (!h.branch.writable || h.unlinked !== undefined) return undefined;
  const m = mode ?? host.fstatEntry(h.fd).mode;
  if ((m & constants.S_IFMT) !== constants.S_IFREG || (m & (SET_UID | SET_GID)) !== 0) return undefined;
  return h.fd;
}

const SET_UID = 0o4000;
const SET_GID = 0o2000;

/**
 * Release a handle. Once the last handle of a file unlinked while open is gone, libfuse unlinks
 * the hidden name it gave the file, unless it has no path for it any more (`nameless`); until
 * then the name is remembered, so that the unlink is recognised as libfuse's.
 */
export async function release(ctx: UnionCtx, fh: number, nameless = false): Promise<void> {
  const h = ctx.handles.remove(fh);
  if (h === undefined) return;
  const u = h.unlinked;
  const closing = [h.fd];
  if (h.upperFd !== undefined) closing.push(h.upperFd);
  if (u !== undefined && u.handles.size === 0 && !u.released) {
    u.released = true;
    closing.push(u.pin);
    if (nameless) ctx.handles.forgetUnlinked(u.key);
  }
  const results = await Promise.allSettled(closing.map((fd) => host.close(fd)));
  for (const x of results) if (x.status === 'rejected') throw x.reason;
}

/**
 * libfuse's high-level API, asked to unlink (or rename over) a file that is open, renames it to a
 * hidden name in the same directory instead (`key`, e.g. ".fuse_hidden0000000500000001") and
 * unlinks that name once the last handle is released. layerfs turns that rename into what the
 * kernel's overlayfs does: the name is removed (a whiteout where a lower has it), nothing is
 * left under the hidden name in any branch, and the handles keep the file. False when no handle
 * is open by p: then it is a plain rename to a name that merely looks like libfuse's.
 */
export async function unlinkOpen(ctx: UnionCtx, p: VPath, key: Name): Promise<boolean> {
  if (ctx.handles.unlinkedBy(key) !== undefined) return false;
  const d = await detachOpen(ctx, p, 'unlink');
  if (d === undefined) return false;
  try {
    await unlink(ctx, p);
  } catch (e) {
    await d.cancel();
    throw e;
  }
  d.commit(key);
  return true;
}

/** What keeps an open file for its handles once its name is gone (see detachOpen). */
export interface Detached {
  /** The name is gone: the handles go on with the file, known as `key`. */
  commit(key: string): void;
  /** The name stays (the change failed): nothing is kept. */
  cancel(): Promise<void>;
}

/**
 * Ready the handles open by p to outlive its name (an unlink, a rename over it), changing
 * nothing yet: their reads go to the copy they should read, and a pin (an O_PATH fd) and the
 * inode number the union showed keep what fstat shows. Undefined when no handle is open by p.
 */
export async function detachOpen(ctx: UnionCtx, p: VPath, syscall: string): Promise<Detached | undefined> {
  const handles = ctx.handles.openBy(p);
  if (handles.length === 0) return undefined;
  const r = await ctx.resolver.get(p, syscall);
  if (r.kind === 'dir') return undefined;
  // Handles opened on the lower of a file copied up since read the copy from now on: with the
  // name gone, they could not find it any more.
  for (const h of handles) await readFd(ctx, h);
  const { ino } = await getattr(ctx, p);
  const pin = await host.open(r.real, host.O_PATH);
  return {
    commit: (key) => void ctx.handles.markUnlinked(key, pin, ino, handles, childOf(parentOf(p), key as Name)),
    cancel: () => host.close(pin),
  };
}

/** The attributes of a file unlinked while open, by the hidden name libfuse gave it. */
export async function unlinkedAttr(ctx: UnionCtx, key: string): Promise<Attr | undefined> {
  const u = ctx.handles.unlinkedBy(key);
  if (u === undefined || u.released) return undefined;
  return fdAttr(ctx, u.pin, u.ino);
}

/** libfuse's unlink of a hidden name: nothing is on disk. False when the name is not one. */
export function forgetUnlinked(ctx: UnionCtx, key: string): boolean {
  const u = ctx.handles.unlinkedBy(key);
  if (u === undefined) return false;
  ctx.handles.forgetUnlinked(key);
  // (A handle still open would be libfuse's mistake; the pin then closes with the last one.)
  return true;
}

/**
 * The attributes of the file behind a handle (fgetattr). By name while it has one (what getattr
 * shows, the upper copy included); once unlinked, through the file itself. `p` is null when
 * libfuse has no path for the file any more.
 */
export async function fgetattr(ctx: UnionCtx, fh: number, p: VPath | null): Promise<{ attr: Attr; unlinked: boolean }> {
  const h = ctx.handles.get(fh, 'fstat');
  const u = h.unlinked;
  if (u !== undefined) return { attr: await fdAttr(ctx, u.released ? (h.upperFd ?? h.fd) : u.pin, u.ino), unlinked: true };
  if (p !== null) return { attr: await getattr(ctx, p), unlinked: false };
  return { attr: await fdAttr(ctx, h.upperFd ?? h.fd), unlinked: false };
}
