// Open files: the number handed to the kernel is the host fd itself (unique while open), and the
// table remembers which vpath and branch it serves so that release can close it and later
// operations can tell a lower fd from an upper one.
import type { Branch } from './branch.js';
import { FsError } from './errno.js';
import type { VPath } from './path.js';

export interface Handle {
  readonly fd: number;
  readonly path: VPath;
  readonly branch: Branch;
  readonly flags: number;
}

export class Handles {
  readonly #open = new Map<number, Handle>();

  add(h: Handle): number {
    this.#open.set(h.fd, h);
    return h.fd;
  }

  get(fh: number, syscall: string): Handle {
    const h = this.#open.get(fh);
    if (h === undefined) throw new FsError('EBADF', syscall);
    return h;
  }

  remove(fh: number): Handle | undefined {
    const h = this.#open.get(fh);
    this.#open.delete(fh);
    return h;
  }

  get size(): number {
    return this.#open.size;
  }

  all(): Handle[] {
    return [...this.#open.values()];
  }
}
