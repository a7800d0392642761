// FUSE passthrough (DECISIONS D51): the kernel reads and writes a file of the upper itself,
// through a backing file layerfs registered, and no READ or WRITE of it reaches layerfs.
//
// The kernel allows it per inode, and each name is its own inode here (nodes.ts): while one file
// of a node is open with a backing file, every other open of that node must name the same
// backing file, and no open of a node whose files are open through layerfs may have one (the
// kernel fails the open with EIO otherwise). So the choice is made per node: the first open of
// a node that has none decides, and later ones follow it until the node's last handle is
// released. The kernel releases a handle before layerfs hears of it (RELEASE), so the counts here
// are never below the kernel's, and a choice that follows them is one the kernel accepts.
//
// A backing file's id stays registered while a handle of its node is open: the kernel looks the
// id up after the reply is written, when the opener goes on, and a second open reuses it.

/** The connection's backing files (the FUSE_DEV_IOC_BACKING_* ioctls, device.ts; a fake in tests). */
export interface BackingFiles {
  /** Register host fd `fd`: its id (> 0), or a negative errno. */
  open(fd: number): number;
  /** Drop a registration (open handles keep their file). */
  close(id: number): void;
}

interface Backed {
  readonly id: number;
  handles: number;
}

const EPERM = 1;
const ELOOP = 40;

export class Passthrough {
  readonly #backed = new Map<number, Backed>();
  /** Per node, its handles open through layerfs. */
  readonly #served = new Map<number, number>();
  /** Per handle, its node, and whether it has the node's backing file. */
  readonly #handles = new Map<number, { readonly node: number; readonly backed: boolean }>();
  #refused = false;
  /** Backing files registered so far (for tests and `layerfs stats`). */
  registered = 0;

  constructor(
    readonly files: BackingFiles,
    /**
     * Told once when the kernel refuses backing files for good (EPERM: no CAP_SYS_ADMIN; ELOOP:
     * the upper's filesystem is itself stacked); passthrough then stops.
     */
    readonly onRefused: (errno: number) => void,
  ) {}

  /**
   * Handle fh of node `node` is being opened: the backing id its reply names, or 0 (through
   * layerfs). `fdOf`: the host fd the file may be read and written through, when it may be
   * (union.passthroughFd and the opener allow it); asked only where a new backing file could be
   * given. A node whose files are open with a backing file gets that one.
   */
  opened(node: number, fh: number, fdOf: () => number | undefined): number {
    const b = this.#backed.get(node);
    if (b !== undefined) {
      b.handles++;
      this.#handles.set(fh, { node, backed: true });
      return b.id;
    }
    const fd = this.#refused || this.#served.has(node) ? undefined : fdOf();
    if (fd !== undefined) {
      const id = this.files.open(fd);
      if (id > 0) {
        this.registered++;
        this.#backed.set(node, { id, handles: 1 });
        this.#handles.set(fh, { node, backed: true });
        return id;
      }
      // Anything else (ENOMEM, EMFILE) is this file's: it goes through layerfs.
      if (id === -EPERM || id === -ELOOP) {
        this.#refused = true;
        this.onRefused(-id);
      }
    }
    this.#served.set(node, (this.#served.get(node) ?? 0) + 1);
    this.#handles.set(fh, { node, backed: false });
    return 0;
  }

  /** Handle fh is released (RELEASE). */
  released(fh: number): void {
    const h = this.#handles.get(fh);
    if (h === undefined) return;
    this.#handles.delete(fh);
    if (h.backed) {
      const b = this.#backed.get(h.node);
      if (b !== undefined && --b.handles === 0) {
        this.#backed.delete(h.node);
        this.files.close(b.id);
      }
      return;
    }
    const n = (this.#served.get(h.node) ?? 1) - 1;
    if (n === 0) this.#served.delete(h.node);
    else this.#served.set(h.node, n);
  }

  /** Backing files registered now. */
  get open(): number {
    return this.#backed.size;
  }
}
