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
// of the names it listed, or none. So a listing is a probe: while probes are followed by lookups
// of at least a quarter of their names, listings carry file attributes, and one in PROBE_EVERY
// goes without, to notice when the walk changes; while probes are not, listings go without.
// A mount starts by probing: a walk pays at most one directory's lookups to be recognised.

/** In the mode that gives file attributes, one listing in this many is a probe. */
export const PROBE_EVERY = 16;

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
  #probe: Probe | undefined;
  /** Probes so far, and those that switched the mode (for tests and `layerfs stats`). */
  probes = 0;
  switches = 0;

  /**
   * The first page of a listing of directory node `dir` is being answered: whether its files get
   * their attributes. Decides on what followed the last probe.
   */
  startListing(dir: number): boolean {
    const p = this.#probe;
    if (p !== undefined && p.listed > 0) {
      const withFiles = p.hits * 4 >= p.listed;
      if (withFiles !== this.#withFiles) this.switches++;
      this.#withFiles = withFiles;
      this.#probe = undefined;
    }
    if (this.#withFiles && ++this.#sinceProbe < PROBE_EVERY) return true;
    this.#sinceProbe = 0;
    this.#probe = { dir, names: new Set(), listed: 0, hits: 0 };
    this.probes++;
    return false;
  }

  /** A file of the probe's listing went without attributes. */
  listedBare(dir: number, name: string): void {
    const p = this.#probe;
    if (p === undefined || p.dir !== dir) return;
    p.names.add(name);
    p.listed++;
  }

  /** A LOOKUP of `name` in directory node `parent` came. */
  lookedUp(parent: number, name: string): void {
    const p = this.#probe;
    if (p !== undefined && p.dir === parent && p.names.delete(name)) p.hits++;
  }
}
