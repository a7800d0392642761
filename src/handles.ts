// Open files. The number handed to the kernel (fh) is the host fd the file was opened with: it
// stays open until release, so the number is unique while the handle lives. The table also keeps
// what an open file needs to behave as on the kernel's overlayfs:
// - its current name: a rename through the mount takes the handles opened by the old name (or
//   below a renamed directory) along, as libfuse's high-level API does with its nodes;
// - after a copy-up, reads of a handle opened on the lower go to the upper copy (upperFd);
// - unlinked while open: the name is gone, the handles keep the file, and what fstat shows is
//   read through a pinned fd of the file (Unlinked).
import type { KnownFile } from './host/fs.js';
import type { Branch } from './branch.js';
import { FsError } from './errno.js';
import type { VPath } from './path.js';

export interface Handle {
  /** The host fd opened for this handle; also its number. */
  readonly fd: number;
  /** The name it is open by now (the hidden name libfuse gave it, once unlinked). */
  path: VPath;
  /** The branch the file was opened on. */
  readonly branch: Branch;
  readonly flags: number;
  /** A lower file that cannot change (no lower_ttl): what host.read may rely on (D41). */
  readonly known?: KnownFile | undefined;
  /** For a handle opened read-only on a lower file that was copied up since: an fd on the copy. */
  upperFd?: number | undefined;
  /** Set once the file was unlinked while this handle was open. */
  unlinked?: Unlinked | undefined;
}

/**
 * A file unlinked while open. libfuse's high-level API then keeps its node under a hidden name
 * (`.fuse_hidden…`, `key`) and keeps sending that name (fstat of the open file comes as a getattr
 * of it); nothing of that name exists in any branch.
 */
export interface Unlinked {
  readonly key: string;
  /** An O_PATH fd of the file as the union served it when it was unlinked. */
  readonly pin: number;
  /** The inode number the union showed for it (fstat keeps showing it). */
  readonly ino: number;
  /** The handles still open on it. */
  readonly handles: Set<number>;
  /** Every handle is released; the pin is closed, and libfuse's unlink of `key` is still to come. */
  released: boolean;
}

export class Handles {
  readonly #open = new Map<number, Handle>();
  readonly #unlinked = new Map<string, Unlinked>();

  add(h: Handle): number {
    this.#open.set(h.fd, h);
    return h.fd;
  }

  get(fh: number, syscall: string): Handle {
    const h = this.#open.get(fh);
    if (h === undefined) throw new FsError('EBADF', syscall);
    return h;
  }

  /** Forget a handle; closing its fds is the caller's. */
  remove(fh: number): Handle | undefined {
    const h = this.#open.get(fh);
    this.#open.delete(fh);
    h?.unlinked?.handles.delete(fh);
    return h;
  }

  /** Is h still open (not released)? */
  isOpen(h: Handle): boolean {
    return this.#open.get(h.fd) === h;
  }

  get size(): number {
    return this.#open.size;
  }

  all(): Handle[] {
    return [...this.#open.values()];
  }

  /** The handles open by the name p (not unlinked ones). */
  openBy(p: VPath): Handle[] {
    const out: Handle[] = [];
    for (const h of this.#open.values()) if (h.path === p && h.unlinked === undefined) out.push(h);
    return out;
  }

  /** A rename from -> to happened: handles open by from, or by a name below it, follow. */
  moved(from: VPath, to: VPath): void {
    const below = `${from}/`;
    for (const h of this.#open.values()) {
      if (h.path === from) h.path = to;
      else if (h.path.startsWith(below)) h.path = `${to}${h.path.slice(from.length)}` as VPath;
    }
  }

  /** a and b swapped places (RENAME_EXCHANGE): handles open by either, or below either, follow. */
  exchanged(a: VPath, b: VPath): void {
    const swap = (p: VPath, from: VPath, to: VPath): VPath | undefined =>
      p === from ? to : p.startsWith(`${from}/`) ? (`${to}${p.slice(from.length)}` as VPath) : undefined;
    for (const h of this.#open.values()) {
      if (h.unlinked !== undefined) continue;
      h.path = swap(h.path, a, b) ?? swap(h.path, b, a) ?? h.path;
    }
  }

  /** The file that `handles` have open was unlinked; libfuse calls it `key` now, at `hiddenPath`. */
  markUnlinked(key: string, pin: number, ino: number, handles: readonly Handle[], hiddenPath: VPath): Unlinked {
    const u: Unlinked = { key, pin, ino, handles: new Set(handles.map((h) => h.fd)), released: false };
    for (const h of handles) {
      h.unlinked = u;
      h.path = hiddenPath;
    }
    this.#unlinked.set(key, u);
    return u;
  }

  unlinkedBy(key: string): Unlinked | undefined {
    return this.#unlinked.get(key);
  }

  forgetUnlinked(key: string): void {
    this.#unlinked.delete(key);
  }
}
