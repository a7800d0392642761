// Whether a READDIRPLUS answer carries the attributes of the files it lists (DECISIONS D42).
//
// The kernel asks for READDIRPLUS at the start of every directory it lists. Attributes for every
// entry spare a walk that stats what it lists (`ls -l`, `du`, `tar c`, `rm -r`) a LOOKUP per
// entry, but cost an lstat and a node per entry in a walk that only wants names: `find` reads
// each directory and descends by d_type. An entry may come without attributes (node id 0): the
// kernel then has its name, inode number and type, as from a plain READDIR, and looks it up when
// it needs more. Directories always carry theirs (a walk descends into them).
//
// Which kind of walk is running shows in what follows a listing without file attributes: LOOKUPs
// of the names it listed, or none. So a listing is a probe: while one of the last PROBES_KEPT
// probes had at least a quarter of its names looked up, listings carry file attributes, and one in
// PROBE_EVERY goes without, to notice when the walk changes; while none had, listings go without.
// A mount starts by probing: a walk pays at most one directory's lookups to be recognised.
//
// A probe is judged on every lookup that comes for it while it is among the last PROBES_KEPT, not
// only on those that came before the next listing started: a depth-first walk (`du`, `rm -r`,
// `tar c`: fts) stats a directory's entries in the order they were listed and descends into each
// subdirectory as it reaches it, so the files listed after a subdirectory are looked up only after
// that subdirectory's whole tree has been listed (D77).

/** In the mode that gives file attributes, one listing in this many is a probe. */
export const PROBE_EVERY = 16;

/** How many of the latest probes decide the mode. */
export const PROBES_KEPT = 4;

interface Probe {
  readonly dir: number;
  /** The names listed without attributes, until looked up. */
  readonly names: Set<string>;
  listed: number;
  hits: number;
}

export class ListingAttrs {
  #withFiles = true;
  #sinceProbe = PROBE_EVERY;
  /** The latest probes, oldest first. */
  readonly #probes: Probe[] = [];
  /** Probes so far, and those that switched the mode (for tests and `layerfs stats`). */
  probes = 0;
  switches = 0;

  /**
   * The first page of a listing of directory node `dir` is being answered: whether its files get
   * their attributes. Decides on what followed the latest probes; a probe that listed no file
   * tells nothing.
   */
  startListing(dir: number): boolean {
    let judged = false;
    let stats = false;
    for (const p of this.#probes) {
      if (p.listed === 0) continue;
      judged = true;
      if (p.hits * 4 >= p.listed) stats = true;
    }
    if (judged) {
      if (stats !== this.#withFiles) this.switches++;
      this.#withFiles = stats;
    }
    if (this.#withFiles && ++this.#sinceProbe < PROBE_EVERY) return true;
    this.#sinceProbe = 0;
    if (this.#probes.length === PROBES_KEPT) this.#probes.shift();
    this.#probes.push({ dir, names: new Set(), listed: 0, hits: 0 });
    this.probes++;
    return false;
  }

  /**
   * A page after the first of a listing is being answered: whether its files get attributes. As
   * the mode is: a walk that stats what it lists gets them on a probe's later pages too (a probe's
   * first page is sample enough: `du` of a directory of 12k names, the first listing of a mount,
   * then takes the first page's LOOKUPs, not 12k), and one that does not goes on bare.
   */
  laterPage(): boolean {
    return this.#withFiles;
  }

  /** A file of the latest probe's listing went without attributes. */
  listedBare(dir: number, name: string): void {
    const p = this.#probes[this.#probes.length - 1];
    if (p === undefined || p.dir !== dir) return;
    p.names.add(name);
    p.listed++;
  }

  /** A LOOKUP of `name` in directory node `parent` came. */
  lookedUp(parent: number, name: string): void {
    for (const p of this.#probes) {
      if (p.dir === parent && p.names.delete(name)) {
        p.hits++;
        return;
      }
    }
  }
}
