// One FUSE connection served by layerfs itself (the "kernel" engine, DECISIONS D28): requests are
// read from /dev/fuse on the JavaScript thread (device.ts), decoded here, answered through the
// union's operations, and the replies written back from the same thread. No libfuse loop, no
// binding threads: a request answered from layerfs's caches costs one wake-up of this thread.
//
// What the kernel is allowed to keep, and for how long, is the caller's policy (KernelPolicy):
// the same choices as the libfuse options of src/server.ts, carried in each reply.
import { constants as fsc } from 'node:fs';
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Attr } from '../../attr.js';
import { FsError, codeOfErrno, toErrno } from '../../errno.js';
import type { Log } from '../../log.js';
import type { MergedEntry } from '../../dir-merge.js';
import { ROOT, childOf, isName, parentOf, type Name, type VPath } from '../../path.js';
import { encodeName, nameByteLength } from '../../name-bytes.js';
import type { Owner } from '../../ops/place.js';
import type { InFlight, PassthroughStats } from '../../stats.js';
import type { UnionOps } from '../../union.js';
import { CACHED_READ_MAX, O_ACCMODE, read as hostRead, type KnownFile } from '../../host/fs.js';
import type { TimeSpec } from '../../host/libc.js';
import { opensForWrite } from '../../ops/open.js';
import { fatalSignalPending } from './killed.js';
import { ListingAttrs } from './listing-attrs.js';
import { Passthrough, type BackingFiles } from './passthrough.js';
import { NodeTable, type Node } from './nodes.js';
import {
  ATTR_OUT, ENTRY_OUT, Fattr, Fopen, GETATTR_FH, IN_HEADER, INIT_OUT, Init, Init2, KERNEL_MINOR, KERNEL_VERSION, MIN_KERNEL_MINOR,
  OPEN_KILL_SUIDGID, OPEN_OUT, Op, STATFS_OUT, WRITE_IN, WRITE_KILL_SUIDGID, cString, notifyInvalInode, direntPlusSize, direntSize, readHeader, reply, replyWith, writeAttrOut, writeDirent, writeEntry,
  writeInit, writeOpen, writeStatfs, type Header,
} from './wire.js';

const E = constants.errno;

/** What the kernel may keep, per reply (see fuseOptionsFor in src/server.ts for the reasons). */
export interface KernelPolicy {
  /** Seconds a name stays valid in the kernel's dentry cache. */
  readonly entrySec: number;
  /** Seconds a file's / a directory's attributes stay valid. */
  readonly attrSecFile: number;
  readonly attrSecDir: number;
  /**
   * Seconds the attributes of a file with more than one name stay valid. Each name is its own
   * node here, so a change through one name (a write, a link count) is one the kernel does not
   * see for the others: where files can change, such a file's attributes are not kept. A lower
   * file's are (Attr.lower): a change through one of its names copies that name up, apart (D58).
   */
  readonly attrSecLinked: number;
  /** Seconds an absence stays cached (0: not cached). */
  readonly negativeSec: number;
  /** File pages stay cached across opens (nothing can change them). */
  readonly keepCache: boolean;
  /**
   * Pages of a lower file stay cached across its opens (D70): its data cannot change while it
   * has that node. A write copies the name up, and the copy starts as those very bytes.
   */
  readonly keepLowerPages?: boolean;
  /** Directory listings stay cached across opens (D27). */
  readonly cacheDirs: boolean;
  /** Symlink targets stay cached. */
  readonly cacheSymlinks: boolean;
  /** The kernel opens files itself and reads by path (D26): OPEN answers ENOSYS. */
  readonly kernelOpens: boolean;
  /**
   * The kernel enforces POSIX ACLs and caches them per node. Then layerfs gives new entries
   * what they inherit (ops/place.ts), and the host keeps ACL and mode in step on the upper.
   */
  readonly posixAcl: boolean;
  /** Largest WRITE the kernel sends, in bytes (the read buffer is sized from it). */
  readonly maxWrite: number;
  /** The union takes changes (writes, set-id drops: FUSE_HANDLE_KILLPRIV_V2). */
  readonly writable: boolean;
  /**
   * Files of the upper are read and written by the kernel itself where it can (FUSE passthrough,
   * D51; needs `backing` too).
   */
  readonly passthrough?: boolean;
}

/** The sink replies go to: the connection's fd (device.ts), a recorder in tests. */
export type Send = (reply: Buffer) => void;

/**
 * Answers the READ `unique` with `length` bytes of host fd `fd` at `position`, written to the
 * connection without passing through a buffer of the session's (device.ts, D56): the bytes
 * sent, or -errno with nothing sent (-EAGAIN: the file gave fewer bytes, -EMSGSIZE: the pipe
 * cannot hold them, and the session answers the usual way; -ENOENT: the kernel no longer waits
 * for the answer).
 */
export type SpliceRead = (unique: bigint, fd: number, position: number, length: number) => Promise<number>;

/** What a READ answered by SpliceRead leaves to send: nothing. */
const SENT = Buffer.alloc(0);

type Reply = Buffer | undefined;

interface Answering {
  readonly op: string;
  readonly node: Node;
  readonly unique: bigint;
  /** The caller's thread id (the request header's pid). */
  readonly pid: number;
  /**
   * What the request may be copying up and so waiting for, if its caller is killed (INTERRUPT: see
   * interrupt()): '' its node, a name that child of its node (a rename's source), a number the
   * node of that id (a link's source); else undefined.
   */
  readonly copies: string | number | undefined;
  /** An INTERRUPT came for it: whether its caller is being killed is being watched. */
  watched: boolean;
  /** performance.now() when it came. */
  readonly since: number;
  /** Already in the log as overdue. */
  told: boolean;
}

interface DirHandle {
  readonly node: Node;
  entries: MergedEntry[] | undefined;
}

/** The name libfuse's API would give an unlinked open file; only an index key here, never on disk. */
let unlinkedSeq = 0;
const unlinkedKey = (): Name => `.layerfs-unlinked-${(unlinkedSeq++).toString(16).padStart(8, '0')}` as Name;

const DT_SHIFT = 12;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
/** Reused READ reply buffers: a header and the largest READ the kernel sends (max_pages: 255 pages, src/server.ts). */
const READ_BUFFER_SIZE = 16 + (1 << 20);
const READ_BUFFERS_KEPT = 8;
/** Listings paged without a directory handle (D55) kept between their pages, at most. */
const HANDLELESS_LISTINGS_KEPT = 64;

export class KernelSession {
  readonly nodes = new NodeTable();
  /** Whether listings carry the attributes of files (D42). */
  readonly listingAttrs = new ListingAttrs();
  /**
   * [0]: requests handed to the union and not yet answered. Read by the device reader (D32): it
   * spins for the next request only when there are none, as then only the caller can be next.
   * Its own ArrayBuffer, so that the memory never moves.
   */
  readonly pending = new Int32Array(new ArrayBuffer(4));
  /**
   * The requests handed to the union and not yet answered, oldest first, for `layerfs stats`
   * and the log (inFlight, overdue): a request that never gets its answer leaves its caller in
   * the kernel for good, and nothing else would tell which one it was.
   */
  private readonly answering = new Map<number, Answering>();
  private serial = 0;
  private readonly dirs = new Map<number, DirHandle>();
  private nextDir = 1;
  /**
   * Set at INIT where the kernel keeps listings (policy.cacheDirs) and takes ENOSYS to OPENDIR
   * (D55): no OPENDIR or RELEASEDIR comes, and READDIRs come with handle 0.
   */
  private noOpendir = false;
  /**
   * What READDIRs with handle 0 page through (D55), by directory path, oldest first: the listing
   * read at offset 0, dropped once the kernel asks past its end, or when more are kept than
   * HANDLELESS_LISTINGS_KEPT (a listing left half-read). The union is read-only there, so a
   * listing read again would be the same.
   */
  private readonly handleless = new Map<VPath, MergedEntry[]>();
  /** Set at INIT when the kernel takes backing files (D51). */
  private passthrough: Passthrough | undefined;
  /** File handle -> the node it was opened on. */
  private readonly fileNode = new Map<number, Node>();
  private proto = 0;
  /**
   * SETXATTRs and LINKs so far: an OPEN that copied a file up marks its node as having no
   * capability only if none came meanwhile (one may have set it on the copy while it was made).
   */
  private xattrChanges = 0;

  constructor(
    private readonly u: UnionOps,
    private readonly policy: KernelPolicy,
    private readonly log: Log,
    private readonly send: Send,
    /** Runs once INIT is answered: the mount is then set up in the kernel (readahead.ts). */
    private readonly afterInit?: () => void,
    /** The connection's backing files, for passthrough (D51); undefined: none. */
    private readonly backing?: BackingFiles,
    /** How READs of large lower files are answered without a copy in between (D56); undefined: copied. */
    private readonly spliceRead?: SpliceRead,
  ) {}

  /** Backing files so far and now (D51); undefined when the kernel did not take passthrough. */
  passthroughStats(): PassthroughStats | undefined {
    const pt = this.passthrough;
    return pt === undefined ? undefined : { registered: pt.registered, open: pt.open };
  }

  get pendingCount(): number {
    return this.answering.size;
  }

  /** The requests not yet answered, the longest waiting first (at most `max`). */
  inFlight(max = Infinity): InFlight[] {
    const now = performance.now();
    const out: InFlight[] = [];
    for (const a of this.answering.values()) {
      if (out.length >= max) break;
      out.push(this.describeWaiting(a, now));
    }
    return out;
  }

  /** Requests waiting longer than `seconds` that no earlier call returned: each is told once. */
  overdue(seconds: number): InFlight[] {
    const now = performance.now();
    const out: InFlight[] = [];
    for (const a of this.answering.values()) {
      if (now - a.since < seconds * 1000) break; // the rest came later
      if (a.told) continue;
      a.told = true;
      out.push(this.describeWaiting(a, now));
    }
    return out;
  }

  private describeWaiting(a: Answering, now: number): InFlight {
    return { op: a.op, path: this.nodes.path(a.node) ?? '(a node with no name left)', seconds: (now - a.since) / 1000 };
  }

  /** Handle one request, read into `b` (valid only during this call). */
  request(b: Buffer, len: number): void {
    if (len < IN_HEADER) return;
    const h = readHeader(b);
    switch (h.opcode) {
      case Op.FORGET:
        this.nodes.forget(Number(h.nodeid), Number(b.readBigUInt64LE(IN_HEADER)));
        return;
      case Op.BATCH_FORGET: {
        const count = b.readUInt32LE(IN_HEADER);
        for (let i = 0, at = IN_HEADER + 8; i < count && at + 16 <= len; i++, at += 16) {
          this.nodes.forget(Number(b.readBigUInt64LE(at)), Number(b.readBigUInt64LE(at + 8)));
        }
        return;
      }
      case Op.INTERRUPT:
        // Never answered itself (the interrupted request is): see interrupt().
        this.interrupt(b.readBigUInt64LE(IN_HEADER));
        return;
      case Op.INIT: {
        const r = this.init(h, b);
        this.send(r);
        if (r.readInt32LE(4) === 0) this.afterInit?.();
        return;
      }
      case Op.DESTROY:
        this.send(reply(h.unique, 0));
        return;
    }
    const node = this.nodes.get(Number(h.nodeid));
    if (node === undefined) {
      this.send(reply(h.unique, E.ENOENT));
      return;
    }
    // An entry whose xattr names can never change (D20): `ls -l` asks two or three absent
    // names of every file, answered here without a round through the union.
    if ((node.xattrs !== undefined || node.noCapability) && this.knownXattrs(h, node, b, len)) return;
    const t0 = performance.now();
    // Read now: `b` holds the next request by the time this one is answered.
    const traced = this.log.tracing ? this.describe(node, h, b, len) : '';
    const name = opName(h.opcode);
    let result: Reply | Promise<Reply>;
    try {
      result = this.dispatch(h, node, b, len);
    } catch (e) {
      this.failed(h, name, t0, traced, e);
      return;
    }
    // Answered in this turn (a LOOKUP or GETATTR whose answer was at hand): no promise to wait for.
    if (!(result instanceof Promise)) {
      this.answered(h, name, t0, traced, result);
      return;
    }
    const serial = ++this.serial;
    this.answering.set(serial, { op: name, node, since: t0, told: false, unique: h.unique, pid: h.pid, copies: copiesUp(h.opcode, b, len), watched: false });
    this.pending[0] = this.answering.size;
    result.then(
      (out) => {
        this.answering.delete(serial);
        this.pending[0] = this.answering.size;
        this.answered(h, name, t0, traced, out);
      },
      (e: unknown) => {
        this.answering.delete(serial);
        this.pending[0] = this.answering.size;
        this.failed(h, name, t0, traced, e);
      },
    );
  }

  private answered(h: Header, name: string, t0: number, traced: string, out: Reply): void {
    const us = (performance.now() - t0) * 1000;
    this.log.stats?.record(name, us);
    if (this.log.tracing) this.log.trace(name, traced, 'ok', us);
    if (out === SENT) return;
    this.send(out ?? reply(h.unique, 0));
    if (h.opcode === Op.READ && out !== undefined) this.giveBackReadBuffer(out);
  }

  private failed(h: Header, name: string, t0: number, traced: string, e: unknown): void {
    if (!(e instanceof FsError)) this.log.bug(name, e);
    const us = (performance.now() - t0) * 1000;
    const code = e instanceof FsError ? e.code : 'EIO';
    this.log.stats?.record(name, us, code);
    if (this.log.tracing) this.log.trace(name, traced, code, us);
    this.send(e instanceof CachedAbsence ? e.reply : reply(h.unique, toErrno(e)));
  }

  /**
   * A request was interrupted by a signal (INTERRUPT; the kernel sends one per request). layerfs
   * cuts short one thing only, as the kernel's overlayfs does: a copy-up whose callers were all
   * killed (copyup.ts, interrupted). Anything else is answered when done, which a killed caller
   * waits for in the kernel: a request in user space cannot be withdrawn. A caller interrupted by
   * a signal it handles is watched on, since the kernel sends no second INTERRUPT should a
   * fatal one follow.
   */
  private interrupt(unique: bigint): void {
    for (const [serial, a] of this.answering) {
      if (a.unique !== unique) continue;
      const copies = a.copies;
      if (copies === undefined || a.watched) return;
      a.watched = true;
      const check = (): void => {
        if (this.answering.get(serial) !== a) return; // answered meanwhile
        if (fatalSignalPending(a.pid)) {
          const n = typeof copies === 'number' ? this.nodes.get(copies) : a.node;
          const p = n === undefined ? null : this.nodes.path(n);
          if (p !== null) this.u.interrupted(typeof copies === 'string' && copies !== '' ? childOf(p, copies as Name) : p);
          return;
        }
        setTimeout(check, KILL_CHECK_MS).unref();
      };
      check();
      return;
    }
  }

  /**
   * p was copied up (union.tellCopiedUp): its parent's attributes changed, and a directory's own,
   * with no request on them the kernel saw. It is told to forget them, before the request that
   * caused the copy is answered, so that it may keep directories' attributes as long as files'
   * (D74). Entries the kernel holds no node for have nothing kept.
   */
  readonly copiedUp = (p: VPath, dir: boolean): void => {
    if (this.policy.attrSecDir <= 0) return;
    if (p !== ROOT) {
      const parent = this.nodes.find(parentOf(p));
      if (parent !== undefined) this.invalidateAttrs(parent);
    }
    const n = dir ? this.nodes.find(p) : undefined;
    if (n !== undefined) this.invalidateAttrs(n);
  };

  /** Where the union tells the xattr names of entries that can never change (union.tellFixedXattrNames). */
  readonly knowXattrs = (p: VPath, names: readonly string[]): void => {
    const n = this.nodes.find(p);
    if (n !== undefined) n.xattrs = names;
  };

  /**
   * Answer GETXATTR of a name known to be absent, and LISTXATTR from a node's known names;
   * false: not answered.
   */
  private knownXattrs(h: Header, n: Node, b: Buffer, len: number): boolean {
    const t0 = performance.now();
    const names = n.xattrs;
    let out: Buffer;
    let error: string | undefined;
    if (h.opcode === Op.GETXATTR) {
      const name = cString(b, IN_HEADER + 8, len)[0];
      if (names !== undefined ? names.includes(name) : name !== CAPABILITY) return false;
      out = reply(h.unique, E.ENODATA);
      error = 'ENODATA';
    } else if (h.opcode === Op.LISTXATTR && names !== undefined) {
      try {
        out = sized(h, encodeName(names.map((x) => `${x}\0`).join('')), b.readUInt32LE(IN_HEADER));
      } catch {
        out = reply(h.unique, E.ERANGE);
        error = 'ERANGE';
      }
    } else {
      return false;
    }
    this.known++;
    // Counted as the union's answers are (layerfs stats): the time to the reply, not its write.
    this.log.stats?.record(opName(h.opcode), (performance.now() - t0) * 1000, error);
    this.send(out);
    return true;
  }

  /**
   * Reply buffers of READs, reused: a sequential read of a large file is thousands of READs of
   * up to 1 MiB, and a fresh buffer for each (memory the kernel then copies out of once) costs
   * more than the read. A reply is written synchronously, so its buffer is free again right
   * after; with several READs in flight (FUSE_ASYNC_READ) each has its own.
   */
  private readonly readBuffers: Buffer[] = [];

  private takeReadBuffer(size: number): Buffer {
    if (size > READ_BUFFER_SIZE) return Buffer.allocUnsafe(size);
    return this.readBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
  }

  /** Give back a READ reply's buffer (a reply of any other size is left alone). */
  private giveBackReadBuffer(out: Buffer): void {
    if (out.buffer.byteLength === READ_BUFFER_SIZE && this.readBuffers.length < READ_BUFFERS_KEPT) {
      this.readBuffers.push(Buffer.from(out.buffer, 0, READ_BUFFER_SIZE));
    }
  }

  /**
   * A READ's answer through the connection's splice (D56), or where that cannot be, read from
   * `fd` into a buffer of the session's. The length a spliced reply states must be what the file
   * holds: known only of a file that cannot change.
   */
  private spliceOrRead(h: Header, n: Node, fd: number, size: number, pos: number, known: KnownFile | undefined): Promise<Buffer> {
    const splice = this.spliceRead;
    const len = known === undefined ? 0 : Math.max(0, Math.min(size, known.size - pos));
    if (splice === undefined || len <= CACHED_READ_MAX) return this.readInto(h, fd, size, pos, known);
    return splice(h.unique, fd, pos, len).then((r) => {
      if (r >= 0) {
        this.spliced.reads++;
        this.spliced.bytes += r;
        return SENT;
      }
      if (r === -E.ENOENT) return SENT;
      if (r === -E.EMSGSIZE && !this.spliceRefused) {
        // A pipe of the size asked was refused (a user past fs.pipe-user-pages-soft): copy from now on.
        this.spliceRefused = true;
        this.log.info('large reads are copied: this process cannot have a pipe that holds one (fs.pipe-user-pages-soft?)');
      }
      if (r === -E.EAGAIN || r === -E.EMSGSIZE) return this.readInto(h, fd, size, pos, known);
      throw new FsError(codeOfErrno(-r), 'read', this.nodes.path(n) ?? undefined);
    });
  }

  /** A READ's answer, read from `fd` into a buffer of the session's. */
  private readInto(h: Header, fd: number, size: number, pos: number, known: KnownFile | undefined): Promise<Buffer> {
    const out = this.takeReadBuffer(16 + size);
    return hostRead(fd, out.subarray(16, 16 + size), size, pos, known).then((got) => {
      out.writeUInt32LE(16 + got, 0);
      out.writeInt32LE(0, 4);
      out.writeBigUInt64LE(h.unique, 8);
      return out.subarray(0, 16 + got);
    }, (e: unknown) => {
      this.giveBackReadBuffer(out);
      throw e;
    });
  }

  /** Requests answered from known xattr names (D20). */
  known = 0;

  /** READs answered through a pipe (D56), and their bytes. */
  readonly spliced = { reads: 0, bytes: 0 };
  /** A pipe that holds a READ was refused: READs are copied (D56). */
  private spliceRefused = false;

  /** What a trace line names: the node's path, and for a request about a name in it, the name. */
  private describe(n: Node, h: Header, b: Buffer, len: number): string {
    const at = this.nodes.path(n) ?? `<node ${n.id}, no name>`;
    switch (h.opcode) {
      case Op.LOOKUP: case Op.UNLINK: case Op.RMDIR: return `${at}, ${cString(b, IN_HEADER, len)[0]}`;
      case Op.MKDIR: return `${at}, ${cString(b, IN_HEADER + 8, len)[0]}`;
      case Op.MKNOD: case Op.CREATE: return `${at}, ${cString(b, IN_HEADER + 16, len)[0]}`;
      default: return at;
    }
  }

  private init(h: Header, b: Buffer): Buffer {
    const major = b.readUInt32LE(IN_HEADER);
    const minor = b.readUInt32LE(IN_HEADER + 4);
    const maxReadahead = b.readUInt32LE(IN_HEADER + 8);
    const offered = b.readUInt32LE(IN_HEADER + 12);
    if (major !== KERNEL_VERSION || minor < MIN_KERNEL_MINOR) {
      this.log.info(`the kernel speaks FUSE ${major}.${minor}; layerfs needs ${KERNEL_VERSION}.${MIN_KERNEL_MINOR} or newer`);
      return reply(h.unique, E.EPROTO);
    }
    this.proto = Math.min(minor, KERNEL_MINOR);
    // Every page of a listing is asked as READDIRPLUS, not only the first (no READDIRPLUS_AUTO):
    // which pages carry attributes is layerfs's choice (D42, D77). The kernel's guess for the
    // later pages is made while they are read, before a walk that reads a whole directory first
    // (`du`, `rm -r`, `tar c`: fts) has looked up anything, so a large directory's later pages
    // came bare and each of their entries cost a LOOKUP.
    let want = Init.ASYNC_READ | Init.BIG_WRITES | Init.MAX_PAGES | Init.DO_READDIRPLUS;
    // Dropping set-ids on writes is layerfs's (WRITE_KILL_SUIDGID and kin): the kernel then marks
    // the superblock SB_NOSEC and stops asking for security.capability before every write (D29).
    if (this.policy.writable) want |= Init.HANDLE_KILLPRIV_V2;
    // A new entry's mode comes as asked, with the umask beside it: where the directory has a
    // default ACL the umask does not apply (posix_acl_create), and only layerfs can tell.
    if (this.policy.writable) want |= Init.DONT_MASK;
    // An open with O_TRUNC comes with O_TRUNC (else as an open, then a truncate): a lower file is
    // then copied up without its data, which the open discards (D49).
    if (this.policy.writable) want |= Init.ATOMIC_O_TRUNC;
    if (this.policy.cacheSymlinks) want |= Init.CACHE_SYMLINKS;
    if (this.policy.posixAcl) want |= Init.POSIX_ACL;
    // Passthrough (D51) where the kernel offers it (Linux 6.9+ built with it) to a writable union.
    // Backing files are those of the upper, on a filesystem that stacks nothing (depth 0): the
    // mount itself counts as stacked once, so an overlayfs may still be mounted over it.
    const offered2 = (offered & Init.INIT_EXT) !== 0 && this.proto >= 40 ? b.readUInt32LE(IN_HEADER + 16) : 0;
    let flags2 = 0;
    if (this.policy.writable && this.policy.passthrough === true && this.backing !== undefined && (offered2 & Init2.PASSTHROUGH) !== 0) {
      want |= Init.INIT_EXT;
      flags2 |= Init2.PASSTHROUGH;
      this.passthrough = new Passthrough(this.backing, (errno) => this.log.info(errno === E.ELOOP
        ? 'passthrough is off: the upper is on a stacked filesystem (an overlayfs?), whose files the kernel takes no backing files from'
        : `passthrough is off: the kernel refused a backing file (errno ${errno}); layerfs needs CAP_SYS_ADMIN for it`));
    }
    const flags = (want & offered) >>> 0;
    this.noOpendir = this.policy.cacheDirs && (offered & Init.NO_OPENDIR_SUPPORT) !== 0;
    return replyWith(h.unique, INIT_OUT, (o, at) => writeInit(o, at, {
      minor: this.proto, maxReadahead, flags, maxBackground: 64, congestionThreshold: 48,
      maxWrite: this.policy.maxWrite, maxPages: Math.ceil(this.policy.maxWrite / 4096),
      flags2, maxStackDepth: flags2 !== 0 ? 1 : 0,
    }));
  }

  private path(n: Node): VPath {
    const p = this.nodes.path(n);
    if (p === null) throw new FsError('ENOENT', 'path');
    return p;
  }

  private child(parent: Node, name: string): VPath {
    if (!isName(name)) throw new FsError('EINVAL', 'name');
    if (nameByteLength(name) > 255) throw new FsError('ENAMETOOLONG', 'name');
    return childOf(this.path(parent), name);
  }

  private attrSec(a: Attr): number {
    if ((a.mode & fsc.S_IFMT) === fsc.S_IFDIR) return this.policy.attrSecDir;
    return a.nlink > 1 && !a.lower ? this.policy.attrSecLinked : this.policy.attrSecFile;
  }

  /** The kernel forgets what it keeps of n's attributes (a change it did not see happen to n). */
  private invalidateAttrs(n: Node): void {
    this.send(notifyInvalInode(BigInt(n.id)));
  }

  private entry(h: Header, parent: Node, name: string, a: Attr): Buffer {
    const n = this.nodes.lookedUp(parent, name);
    return replyWith(h.unique, ENTRY_OUT, (o, at) => writeEntry(o, at, n.id, a, this.policy.entrySec, this.attrSec(a)));
  }

  private attrOut(h: Header, a: Attr): Buffer {
    return replyWith(h.unique, ATTR_OUT, (o, at) => writeAttrOut(o, at, a, this.attrSec(a)));
  }

  /** A new entry (mkdir, create, ...) in `parent`: look it up as the kernel would. */
  private async created(h: Header, parent: Node, name: string, p: VPath): Promise<Buffer> {
    return this.entry(h, parent, name, await this.u.getattr(p));
  }

  /** Attributes of a node: through a handle when one is given or the node has no name. */
  private attrOf(n: Node, fh?: number): Attr | Promise<Attr> {
    const p = this.nodes.path(n);
    const handle = fh ?? this.namelessHandle(n, p);
    if (handle !== undefined && this.fileNode.has(handle)) return this.u.fgetattr(handle, p).then((x) => x.attr);
    if (p === null) throw new FsError('ENOENT', 'getattr');
    return this.u.getattrNow(p);
  }

  /**
   * A handle open on n when n has no name any more (unlinked while open): fstat may come without
   * one, fchmod and kin and the xattr calls always do. Undefined when n has a name (`p`: its path).
   */
  private namelessHandle(n: Node, p: VPath | null = this.nodes.path(n)): number | undefined {
    return p === null ? n.handles?.values().next().value : undefined;
  }

  /** The caller, and for a new entry its umask: with FUSE_DONT_MASK the mode comes unmasked. */
  private owner(h: Header, umask?: number): Owner {
    return umask === undefined ? { uid: h.uid, gid: h.gid } : { uid: h.uid, gid: h.gid, umask: umask & 0o777 };
  }

  private opened(n: Node, fh: number): void {
    this.fileNode.set(fh, n);
    (n.handles ??= new Set()).add(fh);
  }

  /**
   * The backing file handle fh of node n opens with (D51), or 0. A file gets one of its own only
   * when a write through it needs nothing of layerfs: the opener is root (whose writes keep
   * set-ids) or reads only, and the file has no set-ids to drop (union.passthroughFd).
   */
  private backingFor(h: Header, n: Node, fh: number, flags: number, mode?: number): number {
    const pt = this.passthrough;
    if (pt === undefined) return 0;
    const may = h.uid === 0 || (flags & O_ACCMODE) === fsc.O_RDONLY;
    return pt.opened(n.id, fh, () => (may ? this.u.passthroughFd(fh, mode) : undefined));
  }

  /**
   * The set goes with the last handle: kept empty, it held ~150 bytes on every file ever opened,
   * 15 MB after reading each file of a 100k-file image once (issue 4's 200 MB bound).
   */
  private closed(fh: number): void {
    const n = this.fileNode.get(fh);
    if (n === undefined) return;
    this.fileNode.delete(fh);
    n.handles?.delete(fh);
    if (n.handles?.size === 0) n.handles = undefined;
  }

  /** Unlink `p` (in `parent` as `name`), keeping it for the handles still open on it. */
  private async unlinkName(p: VPath): Promise<void> {
    if (!(await this.u.unlinkOpen(p, unlinkedKey()))) await this.u.unlink(p);
  }

  private dispatch(h: Header, n: Node, b: Buffer, len: number): Reply | Promise<Reply> {
    const at = IN_HEADER;
    switch (h.opcode) {
      case Op.LOOKUP: return this.lookup(h, n, cString(b, at, len)[0]);
      case Op.GETATTR: {
        const flags = b.readUInt32LE(at);
        const fh = (flags & GETATTR_FH) !== 0 ? Number(b.readBigUInt64LE(at + 8)) : undefined;
        const a = this.attrOf(n, fh);
        return a instanceof Promise ? a.then((x) => this.attrOut(h, x)) : this.attrOut(h, a);
      }
      case Op.SETATTR: return this.setattr(h, n, Buffer.from(b.subarray(at, at + 88)));
      case Op.READLINK: return this.u.readlink(this.path(n)).then((t) => reply(h.unique, 0, encodeName(t)));
      case Op.SYMLINK: {
        const [name, next] = cString(b, at, len);
        const target = cString(b, next, len)[0];
        const p = this.child(n, name);
        return this.u.symlink(target, p, this.owner(h)).then(() => this.created(h, n, name, p));
      }
      case Op.MKNOD: {
        const mode = b.readUInt32LE(at);
        const rdev = b.readUInt32LE(at + 4);
        const name = cString(b, at + 16, len)[0];
        const p = this.child(n, name);
        return this.u.mknod(p, mode, rdev, this.owner(h, b.readUInt32LE(at + 8))).then(() => this.created(h, n, name, p));
      }
      case Op.MKDIR: {
        const mode = b.readUInt32LE(at);
        const name = cString(b, at + 8, len)[0];
        const p = this.child(n, name);
        return this.u.mkdir(p, mode, this.owner(h, b.readUInt32LE(at + 4))).then(() => this.created(h, n, name, p));
      }
      case Op.UNLINK: {
        const name = cString(b, at, len)[0];
        return this.unlinkName(this.child(n, name)).then(() => (this.nodes.removed(n, name), undefined));
      }
      case Op.RMDIR: {
        const name = cString(b, at, len)[0];
        return this.u.rmdir(this.child(n, name)).then(() => (this.nodes.removed(n, name), undefined));
      }
      case Op.RENAME: return this.rename(n, Number(b.readBigUInt64LE(at)), b, at + 8, len, 0);
      case Op.RENAME2: return this.rename(n, Number(b.readBigUInt64LE(at)), b, at + 16, len, b.readUInt32LE(at + 8));
      case Op.LINK: {
        const from = this.nodes.get(Number(b.readBigUInt64LE(at)));
        if (from === undefined) throw new FsError('ENOENT', 'link');
        const name = cString(b, at + 8, len)[0];
        const p = this.child(n, name);
        // What is known of the source's xattrs would not hold for its other name's node.
        from.noCapability = false;
        this.xattrChanges++;
        // The source's link count changed: a change the kernel (6.x) does not forget by itself,
        // since to it the new name is another inode (ctime is all it updates).
        return this.u.link(this.path(from), p).then(() => {
          this.invalidateAttrs(from);
          return this.created(h, n, name, p);
        });
      }
      case Op.OPEN: {
        if (this.policy.kernelOpens) throw new FsError('ENOSYS', 'open');
        const flags = b.readUInt32LE(at);
        const kill = (b.readUInt32LE(at + 4) & OPEN_KILL_SUIDGID) !== 0;
        const changes = this.xattrChanges;
        return this.u.open(this.path(n), flags).then(async ({ fh, copied, lower }) => {
          // A failed open must leave no handle behind: the kernel will never release it.
          if (kill) await this.u.dropSetIds({ fh }, h).catch(async (e: unknown) => {
            await this.u.release(fh, true).catch(() => {});
            throw e;
          });
          this.opened(n, fh);
          const backingId = this.backingFor(h, n, fh, flags);
          // Copied up just now: the kernel asks for its capability before the first write, and
          // the copy has one only if its lower file had one (until an xattr is set, as after CREATE).
          if (copied !== undefined && !copied.includes(CAPABILITY) && changes === this.xattrChanges) n.noCapability = true;
          // Opening for writing may have copied the file up: a new ctime and block count that
          // the kernel, keeping the lower's, would show until its attributes time out.
          if ((flags & O_ACCMODE) !== fsc.O_RDONLY && this.policy.attrSecFile > 0) this.invalidateAttrs(n);
          if (backingId > 0) return replyWith(h.unique, OPEN_OUT, (o, o2) => writeOpen(o, o2, BigInt(fh), Fopen.PASSTHROUGH, backingId));
          const keep = this.policy.keepCache || (lower === true && this.policy.keepLowerPages === true);
          return replyWith(h.unique, OPEN_OUT, (o, o2) => writeOpen(o, o2, BigInt(fh), keep ? Fopen.KEEP_CACHE : 0));
        });
      }
      case Op.READ: {
        const fh = Number(b.readBigUInt64LE(at));
        const pos = Number(b.readBigUInt64LE(at + 8));
        const size = b.readUInt32LE(at + 16);
        // A large READ of a file that cannot change goes from the file to the kernel through a
        // pipe (D56). One that small is read on this thread from the page cache (host/fs.ts).
        const splice = this.spliceRead !== undefined && size > CACHED_READ_MAX && !this.spliceRefused;
        const answer = (fd: number, known: KnownFile | undefined): Promise<Buffer> =>
          (splice ? this.spliceOrRead(h, n, fd, size, pos, known) : this.readInto(h, fd, size, pos, known));
        return this.policy.kernelOpens ? this.u.useByPath(this.path(n), answer) : this.u.useHandle(fh, answer);
      }
      case Op.WRITE: {
        const fh = Number(b.readBigUInt64LE(at));
        const pos = Number(b.readBigUInt64LE(at + 8));
        const size = b.readUInt32LE(at + 16);
        const kill = (b.readUInt32LE(at + 20) & WRITE_KILL_SUIDGID) !== 0;
        // The request buffer is reused for the next request: the data must be copied out.
        const data = Buffer.from(b.subarray(at + WRITE_IN, at + WRITE_IN + size));
        const written = kill ? this.u.dropSetIds({ fh }, h).then(() => this.u.write(fh, data, size, pos)) : this.u.write(fh, data, size, pos);
        return written.then((wrote) => replyWith(h.unique, 8, (o, o2) => {
          o.writeUInt32LE(wrote, o2);
          o.writeUInt32LE(0, o2 + 4);
        }));
      }
      case Op.STATFS: return this.u.statfs(this.nodes.path(n) ?? ROOT).then((s) =>
        replyWith(h.unique, STATFS_OUT, (o, o2) => writeStatfs(o, o2, {
          blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree,
          bsize: s.bsize, namelen: 255, frsize: s.bsize,
        })));
      case Op.RELEASE: {
        const fh = Number(b.readBigUInt64LE(at));
        this.passthrough?.released(fh);
        this.closed(fh);
        // nameless: no hidden name ever reaches the union from this engine (see unlinkName).
        return this.u.release(fh, true).then(() => undefined);
      }
      case Op.FSYNC: return this.u.fsync(Number(b.readBigUInt64LE(at)), (b.readUInt32LE(at + 8) & 1) !== 0).then(() => undefined);
      case Op.FLUSH:
        // Every WRITE reaches the branch before it is answered: a close has nothing left to
        // report. ENOSYS makes the kernel stop sending FLUSH for good (fuse_flush: no_flush),
        // two round trips fewer per `echo > file`.
        throw new FsError('ENOSYS', 'flush');
      case Op.SETXATTR: {
        const size = b.readUInt32LE(at);
        const flags = b.readUInt32LE(at + 4);
        const [name, next] = cString(b, at + 8, len);
        const value = Buffer.from(b.subarray(next, next + size));
        n.noCapability = false;
        this.xattrChanges++;
        const fh = this.namelessHandle(n);
        return (fh !== undefined ? this.u.fsetxattr(fh, name, value, flags) : this.u.setxattr(this.path(n), name, value, flags)).then(() => undefined);
      }
      case Op.GETXATTR: {
        const size = b.readUInt32LE(at);
        const name = cString(b, at + 8, len)[0];
        const fh = this.namelessHandle(n);
        return (fh !== undefined ? this.u.fgetxattr(fh, name) : this.u.getxattr(this.path(n), name)).then((v) => {
          if (v === undefined) throw new FsError('ENODATA', 'getxattr');
          return sized(h, v, size);
        });
      }
      case Op.LISTXATTR: {
        const size = b.readUInt32LE(at);
        const fh = this.namelessHandle(n);
        return (fh !== undefined ? this.u.flistxattr(fh) : this.u.listxattr(this.path(n))).then((names) => sized(h, encodeName(names.map((x) => `${x}\0`).join('')), size));
      }
      case Op.REMOVEXATTR: {
        const name = cString(b, at, len)[0];
        const fh = this.namelessHandle(n);
        return (fh !== undefined ? this.u.fremovexattr(fh, name) : this.u.removexattr(this.path(n), name)).then(() => undefined);
      }
      case Op.OPENDIR: {
        // Where nothing can change a listing, the kernel needs no handle (D55): after this one
        // ENOSYS it opens and closes directories itself and keeps their listings.
        if (this.noOpendir) throw new FsError('ENOSYS', 'opendir');
        this.path(n); // a directory that has no name any more cannot be opened
        const fh = this.nextDir++;
        this.dirs.set(fh, { node: n, entries: undefined });
        const flags = this.policy.cacheDirs ? Fopen.CACHE_DIR | Fopen.KEEP_CACHE : 0;
        return Promise.resolve(replyWith(h.unique, OPEN_OUT, (o, o2) => writeOpen(o, o2, BigInt(fh), flags)));
      }
      case Op.READDIR: return this.readdir(h, n, b, false);
      case Op.READDIRPLUS: return this.readdir(h, n, b, true);
      case Op.RELEASEDIR:
        this.dirs.delete(Number(b.readBigUInt64LE(at)));
        return Promise.resolve(undefined);
      case Op.FSYNCDIR: return this.u.fsyncdir(this.path(n), (b.readUInt32LE(at + 8) & 1) !== 0).then(() => undefined);
      case Op.ACCESS: return this.u.access(this.path(n), b.readUInt32LE(at)).then(() => undefined);
      case Op.CREATE: return this.create(h, n, b, len);
      case Op.FALLOCATE: {
        // fuse_fallocate_in: fh, offset, length, mode. The kernel itself updates the size it shows.
        const fh = Number(b.readBigUInt64LE(at));
        return this.u.fallocate(fh, b.readUInt32LE(at + 24), Number(b.readBigUInt64LE(at + 8)), Number(b.readBigUInt64LE(at + 16))).then(() => undefined);
      }
      case Op.LSEEK: {
        // fuse_lseek_in: fh, offset, whence; only SEEK_DATA and SEEK_HOLE come (the kernel
        // answers the others itself). The reply, fuse_lseek_out: the offset.
        const fh = Number(b.readBigUInt64LE(at));
        return this.u.seekExtent(fh, Number(b.readBigUInt64LE(at + 8)), b.readUInt32LE(at + 16)).then((off) =>
          replyWith(h.unique, 8, (o, o2) => o.writeBigUInt64LE(BigInt(off), o2)));
      }
      default:
        // Locks (the kernel then keeps them itself, as with libfuse), ioctl, poll, ...
        throw new FsError('ENOSYS', opName(h.opcode));
    }
  }

  /** Answered in this turn when the union has the answer at hand (getattrNow). */
  private lookup(h: Header, parent: Node, name: string): Reply | Promise<Reply> {
    this.listingAttrs.lookedUp(parent.id, name);
    const p = this.child(parent, name);
    let a: Attr | Promise<Attr>;
    try {
      a = this.u.getattrNow(p);
    } catch (e) {
      throw this.absence(h, p, e);
    }
    if (a instanceof Promise) {
      return a.then((x) => this.entry(h, parent, name, x), (e: unknown) => {
        throw this.absence(h, p, e);
      });
    }
    return this.entry(h, parent, name, a);
  }

  /** A lookup's error; an absence as one the kernel may keep, when it is told to keep them. */
  private absence(h: Header, p: VPath, e: unknown): unknown {
    if (!(e instanceof FsError && e.code === 'ENOENT' && this.policy.negativeSec > 0)) return e;
    // Node id 0 with a timeout: the kernel keeps the absence that long.
    return new CachedAbsence(p, replyWith(h.unique, ENTRY_OUT, (o, at) => writeEntry(o, at, 0, undefined, this.policy.negativeSec, 0)));
  }

  private async setattr(h: Header, n: Node, s: Buffer): Promise<Buffer> {
    const valid = s.readUInt32LE(0);
    const fh = (valid & Fattr.FH) !== 0 ? Number(s.readBigUInt64LE(8)) : undefined;
    const p = this.nodes.path(n);
    const need = (): VPath => {
      if (p === null) throw new FsError('ENOENT', 'setattr');
      return p;
    };
    // A file unlinked while open is changed through a handle (fchmod and kin carry none, but the
    // node knows the handles open on it); one with a name, by its name.
    const known = fh !== undefined && this.fileNode.has(fh) ? fh : undefined;
    const byHandle = p === null ? known ?? this.namelessHandle(n, p) : undefined;
    // A size change (ftruncate) and a set-id drop also take the request's own handle.
    const anyHandle = known ?? byHandle;
    if ((valid & Fattr.MODE) !== 0) {
      const mode = s.readUInt32LE(68);
      await (byHandle !== undefined ? this.u.fchmod(byHandle, mode) : this.u.chmod(need(), mode));
    }
    if ((valid & (Fattr.UID | Fattr.GID)) !== 0) {
      const uid = (valid & Fattr.UID) !== 0 ? s.readUInt32LE(76) : 0xffff_ffff;
      const gid = (valid & Fattr.GID) !== 0 ? s.readUInt32LE(80) : 0xffff_ffff;
      await (byHandle !== undefined ? this.u.fchown(byHandle, uid, gid) : this.u.chown(need(), uid, gid));
    }
    if ((valid & Fattr.SIZE) !== 0) {
      const size = Number(s.readBigUInt64LE(16));
      await (anyHandle !== undefined ? this.u.ftruncate(anyHandle, size) : this.u.truncate(need(), size));
    }
    if ((valid & (Fattr.ATIME | Fattr.MTIME)) !== 0) {
      const time = (set: number, now: number, sec: number, nsec: number): TimeSpec =>
        (valid & set) === 0 ? 'omit' : (valid & now) !== 0 ? 'now' : s.readBigInt64LE(sec) * 1_000_000_000n + BigInt(s.readUInt32LE(nsec));
      const atime = time(Fattr.ATIME, Fattr.ATIME_NOW, 32, 56);
      const mtime = time(Fattr.MTIME, Fattr.MTIME_NOW, 40, 60);
      await (byHandle !== undefined ? this.u.futimens(byHandle, atime, mtime) : this.u.utimens(need(), atime, mtime));
    }
    // A truncate by a caller without CAP_FSETID. The kernel asks the same of a chown, which
    // dropped them in the upper by itself (the host's chown does), and a chmod sets the mode.
    if ((valid & Fattr.KILL_SUIDGID) !== 0 && (valid & (Fattr.MODE | Fattr.UID | Fattr.GID)) === 0) {
      await this.u.dropSetIds(anyHandle !== undefined ? { fh: anyHandle } : { path: need() }, h);
    }
    return this.attrOut(h, await this.attrOf(n, known));
  }

  /** rename, and renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE; RENAME_WHITEOUT: EINVAL. */
  private async rename(from: Node, toId: number, b: Buffer, at: number, len: number, flags: number): Promise<Reply> {
    const to = this.nodes.get(toId);
    if (to === undefined) throw new FsError('ENOENT', 'rename');
    if (flags !== 0 && flags !== RENAME_NOREPLACE && flags !== RENAME_EXCHANGE) throw new FsError('EINVAL', 'rename');
    const [oldName, next] = cString(b, at, len);
    const newName = cString(b, next, len)[0];
    const src = this.child(from, oldName);
    const dest = this.child(to, newName);
    if (flags === RENAME_EXCHANGE) {
      await this.u.exchange(src, dest);
      this.nodes.exchanged(from, oldName, to, newName);
      return undefined;
    }
    // (The kernel's locks on both directories keep other requests from making dest meanwhile.)
    if ((flags & RENAME_NOREPLACE) !== 0 && (await this.u.getattr(dest).then(() => true, () => false))) throw new FsError('EEXIST', 'rename');
    // (Handles open on a file renamed over keep it: the union's rename sees to that.)
    await this.u.rename(src, dest);
    this.nodes.renamed(from, oldName, to, newName);
    return undefined;
  }

  private async create(h: Header, parent: Node, b: Buffer, len: number): Promise<Buffer> {
    const at = IN_HEADER;
    const flags = b.readUInt32LE(at);
    const mode = b.readUInt32LE(at + 4);
    const kill = (b.readUInt32LE(at + 12) & OPEN_KILL_SUIDGID) !== 0; // an existing file, O_TRUNC
    const name = cString(b, at + 16, len)[0];
    const p = this.child(parent, name);
    const { fh, made } = await this.u.create(p, mode, flags, this.owner(h, b.readUInt32LE(at + 8)));
    let a: Attr;
    if (made !== undefined && !kill) {
      a = made;
    } else {
      try {
        if (kill) await this.u.dropSetIds({ fh }, h);
        a = (await this.u.fgetattr(fh, p)).attr;
      } catch (e) {
        await this.u.release(fh, true).catch(() => {});
        throw e;
      }
    }
    const n = this.nodes.lookedUp(parent, name);
    n.noCapability = made !== undefined;
    this.opened(n, fh);
    const backingId = this.backingFor(h, n, fh, flags, a.mode);
    return replyWith(h.unique, ENTRY_OUT + OPEN_OUT, (o, o2) => {
      writeEntry(o, o2, n.id, a, this.policy.entrySec, this.attrSec(a));
      writeOpen(o, o2 + ENTRY_OUT, BigInt(fh), backingId > 0 ? Fopen.PASSTHROUGH : 0, backingId);
    });
  }

  /**
   * READDIR, and READDIRPLUS: each entry with its attributes, as a lookup would give them, so
   * that the kernel need not look up what it lists (`ls -l`, a walk that descends). The kernel
   * asks every page as READDIRPLUS; whether files get their attributes is decided per listing
   * (ListingAttrs, D42).
   */
  private async readdir(h: Header, dir: Node, b: Buffer, plus: boolean): Promise<Buffer> {
    const at = IN_HEADER;
    const fh = Number(b.readBigUInt64LE(at));
    const offset = Number(b.readBigUInt64LE(at + 8));
    const size = b.readUInt32LE(at + 16);
    const handleless = fh === 0 && this.noOpendir;
    const d = handleless ? undefined : this.dirs.get(fh);
    if (!handleless && d === undefined) throw new FsError('EBADF', 'readdir');
    const node = d?.node ?? dir;
    const dirPath = this.path(node);
    // Offset 0 (opendir, rewinddir) reads the directory afresh; later offsets page through that.
    let entries: MergedEntry[];
    if (d !== undefined) {
      if (offset === 0 || d.entries === undefined) d.entries = await this.u.readdir(dirPath);
      entries = d.entries;
    } else {
      entries = (offset === 0 ? undefined : this.handleless.get(dirPath)) ?? await this.u.readdir(dirPath);
    }
    // The entries that fit, by their encoded names.
    const page: Array<{ e: MergedEntry; nameBytes: number; off: number }> = [];
    let used = 0;
    for (let i = offset; i < entries.length; i++) {
      const e = entries[i] as MergedEntry;
      const nameBytes = nameByteLength(e.name);
      const need = plus ? direntPlusSize(nameBytes) : direntSize(nameBytes);
      if (used + need > size) break;
      used += need;
      page.push({ e, nameBytes, off: i + 1 });
    }
    // (Kept until the kernel asks past the end, which a listing read to its end always does.)
    if (handleless) this.keepHandleless(dirPath, entries, offset >= entries.length);
    const body = Buffer.allocUnsafe(used);
    if (!plus) {
      let pos = 0;
      for (const { e, nameBytes, off } of page) pos += writeDirent(body, pos, e.ino, off, (e.type & fsc.S_IFMT) >> DT_SHIFT, e.name, nameBytes);
      return reply(h.unique, 0, body);
    }
    // "." and ".." carry no entry (the kernel takes none for them); an entry gone meanwhile
    // neither, nor a file where the walk is one that does not stat what it lists (D42): the
    // kernel then looks it up if it wants it. The first page decides for the listing; a probe's
    // later pages go as the mode goes (ListingAttrs.laterPage).
    const withFiles = offset === 0 ? this.listingAttrs.startListing(node.id) : this.listingAttrs.laterPage();
    const attrs = await Promise.all(page.map(({ e }) => {
      if (e.name === '.' || e.name === '..') return undefined;
      if (!withFiles && (e.type & fsc.S_IFMT) !== fsc.S_IFDIR) {
        this.listingAttrs.listedBare(node.id, e.name);
        return undefined;
      }
      return this.u.getattr(childOf(dirPath, e.name as Name)).catch(() => undefined);
    }));
    // The directory may have lost its name while the attributes were read: its entries then get none.
    const named = this.nodes.path(node) === dirPath;
    let pos = 0;
    page.forEach(({ e, nameBytes, off }, i) => {
      const a = named ? attrs[i] : undefined;
      if (a === undefined) writeEntry(body, pos, 0, undefined, 0, 0);
      else writeEntry(body, pos, this.nodes.lookedUp(node, e.name).id, a, this.policy.entrySec, this.attrSec(a));
      pos += ENTRY_OUT;
      pos += writeDirent(body, pos, a?.ino ?? e.ino, off, (e.type & fsc.S_IFMT) >> DT_SHIFT, e.name, nameBytes);
    });
    return reply(h.unique, 0, body);
  }

  /** Keep a handleless listing for its next page, or drop it once it has been read (D55). */
  private keepHandleless(dirPath: VPath, entries: MergedEntry[], done: boolean): void {
    this.handleless.delete(dirPath);
    if (done) return;
    this.handleless.set(dirPath, entries);
    if (this.handleless.size > HANDLELESS_LISTINGS_KEPT) this.handleless.delete(this.handleless.keys().next().value as VPath);
  }
}

/** How often a caller interrupted by a signal it handles is looked at again. */
const KILL_CHECK_MS = 100;

/**
 * What a request copies up first when a lower serves it, and waits for: its node, for an open
 * for writing or a change of attributes or xattrs (''); the source, a child of its node, for a
 * rename (a lower file copied up, a merged directory's tree copied: move-dir.ts); the source
 * node's id, for a link.
 */
function copiesUp(opcode: number, b: Buffer, len: number): string | number | undefined {
  switch (opcode) {
    case Op.OPEN: return opensForWrite(b.readUInt32LE(IN_HEADER)) ? '' : undefined;
    case Op.SETATTR: case Op.SETXATTR: case Op.REMOVEXATTR: return '';
    case Op.RENAME: return cString(b, IN_HEADER + 8, len)[0];
    case Op.RENAME2: return cString(b, IN_HEADER + 16, len)[0];
    case Op.LINK: return Number(b.readBigUInt64LE(IN_HEADER));
    default: return undefined;
  }
}

/**
 * The xattr the kernel asks of a regular file before its first write and at every chown
 * (cap_inode_need_killpriv), to know whether file capabilities must go. A file this mount just
 * made has none, and none comes until an xattr is set through the mount (D33).
 */
const CAPABILITY = 'security.capability';

/** A failed lookup answered as an absence the kernel may keep: counted as ENOENT, sent as `reply`. */
class CachedAbsence extends FsError {
  constructor(p: VPath, readonly reply: Buffer) {
    super('ENOENT', 'lookup', p);
  }
}

/** A getxattr/listxattr answer: the size alone when asked with size 0, ERANGE when it does not fit. */
function sized(h: Header, v: Buffer, size: number): Buffer {
  if (size === 0) {
    return replyWith(h.unique, 8, (o, at) => {
      o.writeUInt32LE(v.length, at);
      o.writeUInt32LE(0, at + 4);
    });
  }
  if (v.length > size) throw new FsError('ERANGE', 'xattr');
  return reply(h.unique, 0, v);
}

const OP_NAMES: Record<number, string> = {
  [Op.LOOKUP]: 'lookup', [Op.GETATTR]: 'getattr', [Op.SETATTR]: 'setattr', [Op.READLINK]: 'readlink',
  [Op.SYMLINK]: 'symlink', [Op.MKNOD]: 'mknod', [Op.MKDIR]: 'mkdir', [Op.UNLINK]: 'unlink', [Op.RMDIR]: 'rmdir',
  [Op.RENAME]: 'rename', [Op.RENAME2]: 'rename', [Op.LINK]: 'link', [Op.OPEN]: 'open', [Op.READ]: 'read', [Op.WRITE]: 'write',
  [Op.STATFS]: 'statfs', [Op.RELEASE]: 'release', [Op.FSYNC]: 'fsync', [Op.SETXATTR]: 'setxattr',
  [Op.GETXATTR]: 'getxattr', [Op.LISTXATTR]: 'listxattr', [Op.REMOVEXATTR]: 'removexattr', [Op.FLUSH]: 'flush',
  [Op.OPENDIR]: 'opendir', [Op.READDIR]: 'readdir', [Op.READDIRPLUS]: 'readdirplus', [Op.RELEASEDIR]: 'releasedir', [Op.FSYNCDIR]: 'fsyncdir',
  [Op.FALLOCATE]: 'fallocate', [Op.LSEEK]: 'lseek',
  [Op.ACCESS]: 'access', [Op.CREATE]: 'create',
};

function opName(opcode: number): string {
  return OP_NAMES[opcode] ?? `op${opcode}`;
}
