// Reads that come by name, without an open (DECISIONS D26). A read-only union answers the
// kernel's first OPEN with ENOSYS; from then on the kernel opens files without asking, keeps
// their pages across opens, and sends a READ only for what it has not cached, with no file
// handle: the read names its file by path. This keeps a host fd per recently read file, so
// that a file read in many pieces is opened once, and at most `capacity` fds stay open.
//
// An fd is closed when it falls out of the bounded set and no read is using it (in the loop's
// next turn, after the answers being made are written: D41); a read in flight keeps its fd open
// until it is done. Concurrent first reads of one file open it once.
import * as host from './host/fs.js';
import type { KnownFile } from './host/fs.js';
import type { RealPath, VPath } from './path.js';

/** Where a name's content is, and what the union knows of that file. */
export interface Located {
  readonly real: RealPath;
  readonly known?: KnownFile | undefined;
}

/** The host calls PathReads makes (the host's own by default; tests pass their own). */
export interface PathReadsIO {
  open(real: RealPath): Promise<number>;
  read(fd: number, buf: Buffer, len: number, pos: number, known?: KnownFile): Promise<number>;
  close(fd: number): Promise<void>;
}

const HOST_IO: PathReadsIO = {
  // On the calling thread, as every metadata call (D21): a cold `cat` of small files is one
  // open and one read each, and a trip through libuv's pool for the open cost as much as the
  // read. Only regular files are read by path (the kernel serves fifos and devices itself);
  // O_NONBLOCK keeps a fifo that appeared underneath from holding the thread for a writer.
  // Every branch of a union whose reads come by path is a lower one (READ_LOWER, D40).
  open: (real) => host.openFile(real, host.O.O_RDONLY | host.O.O_NONBLOCK | host.READ_LOWER),
  read: host.read,
  close: host.close,
};

interface Entry {
  readonly fd: Promise<number>;
  /** What the union knew of the file when it was located (host.read's `known`). */
  known: KnownFile | undefined;
  /** Reads in flight on this fd. */
  users: number;
  /** Out of the set: closed once the last read in flight is done. */
  evicted: boolean;
}

export class PathReads {
  /** Insertion order is recency order: a hit moves the entry to the end. */
  readonly #open = new Map<VPath, Entry>();

  constructor(
    /** Where a name's content is (resolution through the union); rejects with an FsError. */
    readonly locate: (p: VPath) => Promise<Located>,
    readonly capacity = 64,
    readonly io: PathReadsIO = HOST_IO,
  ) {}

  /** Files with an fd kept now (tests read it). */
  get size(): number {
    return this.#open.size;
  }

  read(p: VPath, buf: Buffer, len: number, pos: number): Promise<number> {
    return this.use(p, (fd, known) => this.io.read(fd, buf, len, pos, known));
  }

  /**
   * Run `fn` with the file's fd and what the union knows of the file; the fd stays open until
   * what `fn` returns has settled.
   */
  async use<T>(p: VPath, fn: (fd: number, known: KnownFile | undefined) => Promise<T>): Promise<T> {
    const e = this.#acquire(p);
    try {
      const fd = await e.fd;
      return await fn(fd, e.known);
    } finally {
      e.users--;
      if (e.evicted && e.users === 0) this.#closeEntry(e, true);
    }
  }

  /** Close every fd (at unmount). Reads in flight close theirs when done. */
  async close(): Promise<void> {
    const all = [...this.#open.values()];
    this.#open.clear();
    for (const e of all) {
      e.evicted = true;
      if (e.users === 0) this.#closeEntry(e, false);
    }
    await Promise.allSettled(all.map((e) => e.fd));
  }

  #acquire(p: VPath): Entry {
    let e = this.#open.get(p);
    if (e !== undefined) {
      this.#open.delete(p);
      this.#open.set(p, e);
    } else {
      const entry: Entry = {
        fd: this.locate(p).then((at) => {
          entry.known = at.known;
          return this.io.open(at.real);
        }),
        known: undefined,
        users: 0,
        evicted: false,
      };
      e = entry;
      const fd = entry.fd;
      this.#open.set(p, e);
      // A failed open is not kept: the next read tries again (and gets the error anew).
      const failed = e;
      fd.catch(() => {
        if (this.#open.get(p) === failed) this.#open.delete(p);
      });
      this.#evictOver();
    }
    e.users++;
    return e;
  }

  #evictOver(): void {
    for (const [p, e] of this.#open) {
      if (this.#open.size <= this.capacity) break;
      this.#open.delete(p);
      e.evicted = true;
      if (e.users === 0) this.#closeEntry(e, true);
    }
  }

  /**
   * `later`: after the answers now being made are written. A read that pushes another file out
   * waits for its own answer only; the close is the server's business, once the caller goes on.
   */
  #closeEntry(e: Entry, later: boolean): void {
    e.fd.then((fd) => {
      if (!later) return this.io.close(fd);
      setImmediate(() => void this.io.close(fd).catch(() => undefined));
      return undefined;
    }).catch(() => undefined);
  }
}
