// The FUSE kernel protocol, as far as layerfs speaks it: opcodes, the layout of the requests
// it reads and of the replies it writes (Linux include/uapi/linux/fuse.h, protocol 7.40;
// little-endian, as on every host the kernel's FUSE runs on here). Plain encoding and decoding,
// no policy: src/fuse/kernel/session.ts decides what to answer.
import type { Attr } from '../../attr.js';
import { decodeName, encodeName, hasEscapes } from '../../name-bytes.js';

export const KERNEL_VERSION = 7;
/** The newest minor version layerfs knows the structures of; the kernel adapts to it. */
export const KERNEL_MINOR = 40;
/**
 * The oldest minor layerfs answers: 7.28 (Linux 4.20) brought max_pages, FOPEN_CACHE_DIR and
 * cached symlinks, and every structure below has had its present size since then.
 */
export const MIN_KERNEL_MINOR = 28;

export const enum Op {
  LOOKUP = 1, FORGET = 2, GETATTR = 3, SETATTR = 4, READLINK = 5, SYMLINK = 6, MKNOD = 8,
  MKDIR = 9, UNLINK = 10, RMDIR = 11, RENAME = 12, LINK = 13, OPEN = 14, READ = 15, WRITE = 16,
  STATFS = 17, RELEASE = 18, FSYNC = 20, SETXATTR = 21, GETXATTR = 22, LISTXATTR = 23,
  REMOVEXATTR = 24, FLUSH = 25, INIT = 26, OPENDIR = 27, READDIR = 28, RELEASEDIR = 29,
  FSYNCDIR = 30, ACCESS = 34, CREATE = 35, INTERRUPT = 36, DESTROY = 38, BATCH_FORGET = 42, FALLOCATE = 43,
  READDIRPLUS = 44, RENAME2 = 45, LSEEK = 46,
}

/** INIT flags (fuse_init_in.flags / fuse_init_out.flags). */
export const Init = {
  ASYNC_READ: 1 << 0,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  POSIX_ACL: 1 << 20,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  /** The kernel takes ENOSYS to OPENDIR as "no opens needed" (7.29, Linux 5.1). */
  NO_OPENDIR_SUPPORT: 1 << 24,
  HANDLE_KILLPRIV_V2: 1 << 28,
  /** fuse_init_in/out carry flags2 (the flags from bit 32 on). */
  INIT_EXT: 1 << 30,
} as const;

/** INIT flags2 (fuse_init_in.flags2 / fuse_init_out.flags2): bit 32 + n of the flags. */
export const Init2 = {
  /** FUSE_PASSTHROUGH (7.40, Linux 6.9): opens may name a backing file (FOPEN_PASSTHROUGH). */
  PASSTHROUGH: 1 << 5,
} as const;

/** ioctls on /dev/fuse (7.40): register a backing file (struct fuse_backing_map), drop one. */
export const DEV_IOC_BACKING_OPEN = 0x4010e501;
export const DEV_IOC_BACKING_CLOSE = 0x4004e502;

/** fuse_setattr_in.valid */
export const Fattr = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, KILL_SUIDGID: 1 << 11,
} as const;

/** fuse_write_in.write_flags: the writer has no CAP_FSETID (with HANDLE_KILLPRIV_V2). */
export const WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_open_in.open_flags / fuse_create_in.open_flags: the same, for an open with O_TRUNC. */
export const OPEN_KILL_SUIDGID = 1 << 0;

/** fuse_open_out.open_flags */
export const Fopen = { KEEP_CACHE: 1 << 1, CACHE_DIR: 1 << 3, PASSTHROUGH: 1 << 7 } as const;

export const GETATTR_FH = 1;
export const IN_HEADER = 40;
export const OUT_HEADER = 16;
/** fuse_write_in: what precedes a WRITE's data after the header. */
export const WRITE_IN = 40;

export interface Header {
  readonly len: number;
  readonly opcode: number;
  readonly unique: bigint;
  readonly nodeid: bigint;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

export function readHeader(b: Buffer): Header {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8),
    nodeid: b.readBigUInt64LE(16),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
  };
}

/** A NUL-terminated name at `at`; returns it and where the next one starts. */
export function cString(b: Buffer, at: number, end: number): [string, number] {
  let z = b.indexOf(0, at);
  if (z < 0 || z > end) z = end;
  return [decodeName(b, at, z), z + 1];
}

/** A reply: the header, then `body` (already laid out). */
export function reply(unique: bigint, error: number, body?: Buffer): Buffer {
  const len = OUT_HEADER + (body?.length ?? 0);
  const out = Buffer.allocUnsafe(len);
  out.writeUInt32LE(len, 0);
  out.writeInt32LE(error === 0 ? 0 : -Math.abs(error), 4);
  out.writeBigUInt64LE(unique, 8);
  body?.copy(out, OUT_HEADER);
  return out;
}

/** fuse_notify_code: an unsolicited message to the kernel carries it in the error field, unique 0. */
const NOTIFY_INVAL_INODE = 2;

/**
 * Tell the kernel to forget what it keeps of node `nodeid`'s attributes (fuse_notify_inval_inode
 * with offset -1: the attributes only, no pages, so it never waits on a page lock that a request
 * in flight may hold).
 */
export function notifyInvalInode(nodeid: bigint): Buffer {
  const out = Buffer.allocUnsafe(OUT_HEADER + 24);
  out.writeUInt32LE(out.length, 0);
  out.writeInt32LE(NOTIFY_INVAL_INODE, 4);
  out.writeBigUInt64LE(0n, 8);
  out.writeBigUInt64LE(nodeid, 16);
  out.writeBigInt64LE(-1n, 24);
  out.writeBigInt64LE(0n, 32);
  return out;
}

/** A reply whose body is written in place by `fill` (one allocation on the hot path). */
export function replyWith(unique: bigint, bodyLen: number, fill: (b: Buffer, at: number) => void): Buffer {
  const out = Buffer.allocUnsafe(OUT_HEADER + bodyLen);
  out.writeUInt32LE(OUT_HEADER + bodyLen, 0);
  out.writeInt32LE(0, 4);
  out.writeBigUInt64LE(unique, 8);
  fill(out, OUT_HEADER);
  return out;
}

const TWO_32 = 4294967296;

/**
 * An integer below 2^53 in size as a little-endian 64-bit field, two's complement (a time
 * before 1970 is negative): no BigInt made (D43).
 */
export function writeI64(b: Buffer, x: number, at: number): void {
  const hi = Math.floor(x / TWO_32);
  b.writeUInt32LE(x - hi * TWO_32, at);
  b.writeInt32LE(hi, at + 4);
}

export const ATTR_SIZE = 88;

/** struct fuse_attr at `at`. */
export function writeAttr(b: Buffer, at: number, a: Attr): void {
  const x = a.exact;
  writeI64(b, x.atimeSec, at + 24);
  writeI64(b, x.mtimeSec, at + 32);
  writeI64(b, x.ctimeSec, at + 40);
  b.writeUInt32LE(x.atimeNsec, at + 48);
  b.writeUInt32LE(x.mtimeNsec, at + 52);
  b.writeUInt32LE(x.ctimeNsec, at + 56);
  writeI64(b, a.ino, at);
  writeI64(b, a.size, at + 8);
  writeI64(b, a.blocks, at + 16);
  b.writeUInt32LE(a.mode >>> 0, at + 60);
  b.writeUInt32LE(a.nlink >>> 0, at + 64);
  b.writeUInt32LE(a.uid >>> 0, at + 68);
  b.writeUInt32LE(a.gid >>> 0, at + 72);
  b.writeUInt32LE(a.rdev >>> 0, at + 76);
  b.writeUInt32LE(a.blksize >>> 0, at + 80);
  b.writeUInt32LE(0, at + 84);
}

/** Seconds (possibly fractional) as fuse's (u64 seconds, u32 nanoseconds). */
function validity(seconds: number): [number, number] {
  const s = Math.max(0, seconds);
  const whole = Math.floor(s);
  return [whole, Math.floor((s - whole) * 1e9)];
}

export const ENTRY_OUT = 40 + ATTR_SIZE;

/** struct fuse_entry_out. nodeid 0 with an entry timeout: a cached absence. */
export function writeEntry(b: Buffer, at: number, nodeid: number, a: Attr | undefined, entrySec: number, attrSec: number): void {
  const [es, en] = validity(entrySec);
  const [as, an] = validity(attrSec);
  writeI64(b, nodeid, at);
  writeI64(b, 0, at + 8); // generation: nodeids are never reused while mounted
  writeI64(b, es, at + 16);
  writeI64(b, as, at + 24);
  b.writeUInt32LE(en, at + 32);
  b.writeUInt32LE(an, at + 36);
  if (a === undefined) b.fill(0, at + 40, at + 40 + ATTR_SIZE);
  else writeAttr(b, at + 40, a);
}

export const ATTR_OUT = 16 + ATTR_SIZE;

export function writeAttrOut(b: Buffer, at: number, a: Attr, attrSec: number): void {
  const [s, n] = validity(attrSec);
  writeI64(b, s, at);
  b.writeUInt32LE(n, at + 8);
  b.writeUInt32LE(0, at + 12);
  writeAttr(b, at + 16, a);
}

export const OPEN_OUT = 16;

/** fuse_open_out; `backingId` with Fopen.PASSTHROUGH (else 0). */
export function writeOpen(b: Buffer, at: number, fh: bigint, flags: number, backingId = 0): void {
  b.writeBigUInt64LE(fh, at);
  b.writeUInt32LE(flags, at + 8);
  b.writeInt32LE(backingId, at + 12);
}

export const INIT_OUT = 64;

export interface InitOut {
  readonly minor: number;
  readonly maxReadahead: number;
  readonly flags: number;
  readonly maxBackground: number;
  readonly congestionThreshold: number;
  readonly maxWrite: number;
  readonly maxPages: number;
  /** With Init.INIT_EXT in flags. */
  readonly flags2?: number;
  /** With Init2.PASSTHROUGH: how deep the stack under a backing file may be. */
  readonly maxStackDepth?: number;
}

export function writeInit(b: Buffer, at: number, o: InitOut): void {
  b.fill(0, at, at + INIT_OUT);
  b.writeUInt32LE(KERNEL_VERSION, at);
  b.writeUInt32LE(o.minor, at + 4);
  b.writeUInt32LE(o.maxReadahead, at + 8);
  b.writeUInt32LE(o.flags >>> 0, at + 12);
  b.writeUInt16LE(o.maxBackground, at + 16);
  b.writeUInt16LE(o.congestionThreshold, at + 18);
  b.writeUInt32LE(o.maxWrite, at + 20);
  b.writeUInt32LE(1, at + 24); // time_gran: nanoseconds
  b.writeUInt16LE(o.maxPages, at + 28);
  b.writeUInt32LE(o.flags2 ?? 0, at + 32);
  b.writeUInt32LE(o.maxStackDepth ?? 0, at + 36);
}

export const STATFS_OUT = 80;

export interface KStatfs {
  readonly blocks: number; readonly bfree: number; readonly bavail: number;
  readonly files: number; readonly ffree: number; readonly bsize: number;
  readonly namelen: number; readonly frsize: number;
}

export function writeStatfs(b: Buffer, at: number, s: KStatfs): void {
  b.fill(0, at, at + STATFS_OUT);
  b.writeBigUInt64LE(BigInt(s.blocks), at);
  b.writeBigUInt64LE(BigInt(s.bfree), at + 8);
  b.writeBigUInt64LE(BigInt(s.bavail), at + 16);
  b.writeBigUInt64LE(BigInt(s.files), at + 24);
  b.writeBigUInt64LE(BigInt(s.ffree), at + 32);
  b.writeUInt32LE(s.bsize, at + 40);
  b.writeUInt32LE(s.namelen, at + 44);
  b.writeUInt32LE(s.frsize, at + 48);
}

/** Bytes one struct fuse_dirent takes for a name of `nameBytes` bytes (8-byte aligned). */
export const direntSize = (nameBytes: number): number => (24 + nameBytes + 7) & ~7;

/** Bytes one struct fuse_direntplus takes (entry_out, then the dirent). */
export const direntPlusSize = (nameBytes: number): number => ENTRY_OUT + direntSize(nameBytes);

/**
 * struct fuse_dirent at `at`, `name` encoded in place (`nameBytes`: its UTF-8 length): a listing
 * of 50k entries made 100k BigInts and 50k Buffers more, about 20 MB for the young generation.
 */
export function writeDirent(b: Buffer, at: number, ino: number, off: number, type: number, name: string, nameBytes: number): number {
  const size = direntSize(nameBytes);
  writeI64(b, ino, at);
  writeI64(b, off, at + 8);
  b.writeUInt32LE(nameBytes, at + 16);
  b.writeUInt32LE(type, at + 20);
  if (!hasEscapes(name)) b.write(name, at + 24, nameBytes, 'utf8');
  else encodeName(name).copy(b, at + 24);
  b.fill(0, at + 24 + nameBytes, at + size);
  return size;
}
