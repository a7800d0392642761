// Resolution: which branch serves a vpath. A child is looked up only inside its parent's
// directory stack (the branches where the parent is a directory, top-most first, cut at the
// first opaque one), so a symlink or file in a branch can never lead resolution outside it, and
// ENOTDIR / ENOENT come from the parent, not from a skipped branch. Per branch, top-down:
// a whiteout ends the search; a non-directory wins unless a directory was found above it (then it
// cuts the stack, as in overlayfs); a directory joins the stack, and an opaque one ends it.
import type { Branch, BranchSet } from './branch.js';
import { ByteCache } from './byte-cache.js';
import { CountedLRU } from './counted-lru.js';
import {
  isOpaqueDir, isXattrWhiteout, probeIn, probeOnDisk, readBranchDir, type BranchDir, type Probe,
} from './branch-dir.js';
import { EntryStat } from './entry-stat.js';
import { FsError } from './errno.js';
import { buildLowerIndex, type LowerHit } from './lower-index.js';
import * as host from './host/fs.js';
import { NAME_MAX, ROOT, baseName, childOf, parentOf, type Name, type RealPath, type VPath } from './path.js';
import { SingleFlight } from './single-flight.js';
import { isMarkerName } from './whiteout.js';

export type FileResolution = {
  readonly kind: 'file';
  readonly branch: Branch;
  readonly real: RealPath;
  readonly stat: EntryStat;
  /** An upper entry's inode number recorded at its copy-up (origin.ts), once read; null: none. */
  recordedIno?: number | null;
};
export type DirResolution = {
  readonly kind: 'dir';
  /** Branches where this is a directory, top-most first; never empty. */
  readonly stack: readonly Branch[];
  /** Attributes of the top-most directory. */
  readonly stat: EntryStat;
  /** As FileResolution's, for the top-most directory when it is the upper's. */
  recordedIno?: number | null;
  /** The upper directory is known to carry the impure mark (origin.ts), set by copy-up. */
  impure?: boolean;
};
export type Resolution = FileResolution | DirResolution | { readonly kind: 'absent' };

const ABSENT: Resolution = { kind: 'absent' };

export interface ResolverOptions {
  /** Most resolutions kept (positive and negative). */
  readonly maxEntries: number;
  /** Most lower-branch directory listings (and as many merged indexes) kept. */
  readonly maxDirs: number;
  /** Heap budget of the kept resolutions, in bytes (estimated per entry; default 16 MiB). */
  readonly maxBytes?: number;
  /** Heap budget of the kept listings, and again of the merged indexes (default 8 MiB each). */
  readonly maxDirBytes?: number;
  /** Answer lookups in directories that several lowers share from one merged index (default). */
  readonly lowerIndex?: boolean;
  /** Forget what was learned after this many ms (lower_ttl=); undefined: keep it until evicted. */
  readonly ttlMs?: number | undefined;
}

const MIB = 1024 * 1024;

/**
 * Bounded by count and by bytes, so the serving process stays small whatever the image: with
 * these, V8's heap growth held to 1.3x (D30) and its young generation to 2 x 4 MiB (D39), a
 * server the CLI starts stays under 200 MB RSS after a walk of 100k files (issue 4; measured by
 * `npm run bench:memory`). At 24 and 12 MiB it ended that walk at 196-206 MB (D44). An evicted
 * entry costs one stat again; the kernel keeps its own copy of what it was told for the entry
 * timeout anyway.
 */
const DEFAULT_MAX_BYTES = 16 * MIB;
const DEFAULT_MAX_DIR_BYTES = 8 * MIB;
// The count is a second bound: lru-cache allocates its tables for `max` entries up front (two
// arrays and four typed arrays, ~32 bytes an entry), and with 16 MiB a file's resolution (about
// 440 estimated bytes) reaches the byte bound at ~38k entries; 100k leaves room for absences,
// which weigh less. (200k was 3 MiB of tables never filled.)
export const DEFAULT_RESOLVER_OPTIONS: ResolverOptions = {
  maxEntries: 100_000, maxDirs: 20_000, maxBytes: DEFAULT_MAX_BYTES, maxDirBytes: DEFAULT_MAX_DIR_BYTES,
};

// Heap estimates (V8, 64-bit, measured with --expose-gc on a 100k-file walk): the object and
// cache bookkeeping, plus two bytes per character of the strings an entry holds.
const ENTRY_BYTES = 120;
const STAT_BYTES = 210;
const DIRENT_BYTES = 110;

function resolutionBytes(r: Resolution, key: string): number {
  const base = ENTRY_BYTES + 2 * key.length;
  if (r.kind === 'absent') return base;
  if (r.kind === 'file') return base + STAT_BYTES + 2 * r.real.length;
  return base + STAT_BYTES + 8 * r.stack.length;
}

function branchDirBytes(d: BranchDir): number {
  let n = ENTRY_BYTES;
  for (const name of d.entries.keys()) n += DIRENT_BYTES + 2 * name.length;
  for (const name of d.whiteouts) n += DIRENT_BYTES + 2 * name.length;
  return n;
}

function indexBytes(m: ReadonlyMap<string, LowerHit>): number {
  let n = ENTRY_BYTES;
  for (const name of m.keys()) n += DIRENT_BYTES + 2 * name.length;
  return n;
}

export interface ResolverCacheStats {
  readonly entries: number;
  readonly bytes: number;
  readonly dirs: number;
  readonly dirBytes: number;
  readonly indexes: number;
  readonly indexBytes: number;
  /** Lookups of resolutions answered from the cache, and not. */
  readonly hits: number;
  readonly misses: number;
  /** The same, of lower-branch directory listings. */
  readonly dirHits: number;
  readonly dirMisses: number;
}

export class Resolver {
  readonly #branches: BranchSet;
  readonly #cache: CountedLRU<string, Resolution>;
  readonly #dirs: ByteCache<BranchDir>;
  readonly #inflight = new SingleFlight<string, Resolution>();
  readonly #dirInflight = new SingleFlight<string, BranchDir>();
  /** Merged indexes of directories that several lowers share (lower-index.ts). */
  readonly #indexes: ByteCache<ReadonlyMap<string, LowerHit>>;
  readonly #indexInflight = new SingleFlight<string, ReadonlyMap<string, LowerHit>>();
  readonly #useIndex: boolean;
  #hits = 0;
  #misses = 0;
  #dirHits = 0;
  #dirMisses = 0;

  constructor(branches: BranchSet, opts: ResolverOptions = DEFAULT_RESOLVER_OPTIONS) {
    this.#branches = branches;
    // lru-cache treats a ttl of 0 as none: "keep nothing" is 1 ms.
    const ttl = opts.ttlMs === undefined ? {} : { ttl: Math.max(1, opts.ttlMs) };
    const dirBytes = opts.maxDirBytes ?? DEFAULT_MAX_DIR_BYTES;
    this.#cache = new CountedLRU(opts.maxEntries, { maxSize: opts.maxBytes ?? DEFAULT_MAX_BYTES, sizeCalculation: resolutionBytes, ...ttl });
    // A listing or index larger than the bound is still kept, the last one alone (D45): else a
    // lookup in a huge directory would read all of it again for each name.
    this.#dirs = new ByteCache({ max: opts.maxDirs, maxBytes: dirBytes, sizeOf: branchDirBytes, ttlMs: opts.ttlMs });
    this.#indexes = new ByteCache({ max: opts.maxDirs, maxBytes: dirBytes, sizeOf: indexBytes, ttlMs: opts.ttlMs });
    this.#useIndex = opts.lowerIndex ?? true;
  }

  /** What the caches hold now, with their estimated heap bytes (for stats and bench:micro). */
  cacheStats(): ResolverCacheStats {
    return {
      entries: this.#cache.size, bytes: this.#cache.calculatedSize,
      dirs: this.#dirs.size, dirBytes: this.#dirs.bytes,
      indexes: this.#indexes.size, indexBytes: this.#indexes.bytes,
      hits: this.#hits, misses: this.#misses, dirHits: this.#dirHits, dirMisses: this.#dirMisses,
    };
  }

  /** Resolve p; throws ENOTDIR when an ancestor is not a directory. */
  resolve(p: VPath): Promise<Resolution> {
    const hit = this.#cache.get(p);
    if (hit !== undefined) {
      this.#hits++;
      return Promise.resolve(hit);
    }
    this.#misses++;
    return this.#inflight.run(p, async () => {
      const r = p === ROOT ? await this.#resolveRoot() : await this.#resolveChild(p);
      this.#cache.set(p, r);
      return r;
    });
  }

  /** Resolve p and require it to exist. */
  async get(p: VPath, syscall: string): Promise<FileResolution | DirResolution> {
    const r = await this.resolve(p);
    if (r.kind === 'absent') throw new FsError('ENOENT', syscall, p);
    return r;
  }

  /**
   * Would p show if the upper had nothing at its name? (Then removing it needs a whiteout.)
   * Looks only at the lower branches of the parent's stack, whiteouts there included.
   */
  async lowerHas(p: VPath): Promise<boolean> {
    if (p === ROOT) return true;
    const dir = parentOf(p);
    const parent = await this.resolve(dir);
    if (parent.kind !== 'dir') return false;
    const lowers = parent.stack.filter((b) => !b.writable);
    if (lowers.length === 0) return false;
    const r = await this.#lookupIn({ ...parent, stack: lowers }, dir, baseName(p));
    return r.kind !== 'absent';
  }

  /**
   * What p is now, known without a lookup: a non-directory just put in the upper by a change
   * through the mount (create, mknod, symlink, link, copy-up). Saves resolving it again at once.
   */
  learn(p: VPath, r: FileResolution): void {
    this.#cache.set(p, r);
  }

  /** Forget what is known about p (after a change through the mount). */
  invalidate(p: VPath): void {
    this.#cache.delete(p);
  }

  /** Forget p and everything below it (after a directory moved). A walk of the whole cache. */
  invalidateTree(p: VPath): void {
    const below = p === ROOT ? ROOT : `${p}/`;
    const gone: string[] = [];
    for (const k of this.#cache.keys()) if (k === p || k.startsWith(below)) gone.push(k);
    for (const k of gone) this.#cache.delete(k);
  }

  /** The branch directory listing of dir on branch b (cached for immutable branches). */
  branchDir(b: Branch, dir: VPath): Promise<BranchDir> {
    if (b.writable) return readBranchDir(b.real(dir), { lower: false });
    const key = `${b.index}\0${dir}`;
    const hit = this.#dir(key);
    if (hit !== undefined) return Promise.resolve(hit);
    this.#dirMisses++;
    return this.#dirInflight.run(key, async () => {
      const d = await readBranchDir(b.real(dir), { lower: true });
      this.#dirs.set(key, d);
      return d;
    });
  }

  /** A kept listing, counted as a hit (a miss goes on to branchDir, which counts it). */
  #dir(key: string): BranchDir | undefined {
    const d = this.#dirs.get(key);
    if (d !== undefined) this.#dirHits++;
    return d;
  }

  async #resolveRoot(): Promise<Resolution> {
    // The root of every branch takes part; overlayfs ignores opaque markers on layer roots.
    const stack = this.#branches.all;
    const top = stack[0];
    if (top === undefined) throw new Error('a union needs at least one branch');
    return { kind: 'dir', stack, stat: EntryStat.of(await host.lstatNs(top.root)) };
  }

  async #resolveChild(p: VPath): Promise<Resolution> {
    const dir = parentOf(p);
    const parent = await this.resolve(dir);
    if (parent.kind === 'absent') return ABSENT;
    if (parent.kind === 'file') throw new FsError('ENOTDIR', 'lookup', p);
    const name = baseName(p);
    // The kernel hands over names up to its own limit; a branch filesystem would answer
    // ENAMETOOLONG, but a union must answer it without asking any branch.
    if (name.length > NAME_MAX / 4 && Buffer.byteLength(name) > NAME_MAX) throw new FsError('ENAMETOOLONG', 'lookup', p);
    // Marker files are format, not content: never found by name, in any branch (readdir never
    // lists them either).
    if (isMarkerName(name)) return ABSENT;
    return this.#lookupIn(parent, dir, name);
  }

  /** Synchronous when the answer is at hand (the upper, or a lower directory already indexed). */
  #probe(b: Branch, dir: VPath, name: Name, below: boolean): Probe | Promise<Probe> {
    if (b.writable) return probeOnDisk(b, dir, name, below);
    const d = this.#dir(`${b.index}\0${dir}`);
    return d !== undefined ? probeIn(d, name) : this.branchDir(b, dir).then((x) => probeIn(x, name));
  }

  async #lookupIn(parent: DirResolution, dir: VPath, name: Name): Promise<Resolution> {
    const stack = parent.stack;
    const upper = stack[0]?.writable === true ? stack[0] : undefined;
    const lowers = upper === undefined ? stack : stack.slice(1);
    // Shared by two or more lowers: answer from the directory's merged lower index.
    if (lowers.length >= 2 && this.#useIndex) {
      const index = await this.#lowerIndex(dir, lowers);
      if (index !== undefined) {
        const r = await this.#lookupIndexed(upper, lowers, index, dir, name);
        if (r !== undefined) return r;
      }
    }
    return this.#lookupEach(stack, dir, name);
  }

  /** The lookup, branch by branch. */
  async #lookupEach(branches: readonly Branch[], dir: VPath, name: Name): Promise<Resolution> {
    const p = childOf(dir, name);
    const stack: Branch[] = [];
    let top: EntryStat | undefined;
    for (let i = 0; i < branches.length; i++) {
      const b = branches[i] as Branch;
      // Whether a branch below may have the name: only then do the upper's markers matter.
      const below = b.writable && this.#mayHave(branches, i + 1, dir, name);
      const pr = this.#probe(b, dir, name, below);
      const probe = pr instanceof Promise ? await pr : pr; // no await (a microtask) per branch
      if (probe.kind === 'whiteout') break;
      if (probe.kind === 'absent') continue;
      if (probe.kind === 'nondir') {
        if (top !== undefined) break; // a non-directory below a directory ends the merge
        const real = b.real(p);
        const stat = probe.stat ?? statEntry(real);
        if (stat === undefined) continue; // gone from a lower since it was indexed
        if (probe.stat === undefined && isXattrWhiteout(real, stat)) break; // (probeOnDisk looked)
        return { kind: 'file', branch: b, real, stat };
      }
      const real = b.real(p);
      if (top === undefined) {
        const stat = probe.stat ?? statEntry(real);
        if (stat === undefined) continue;
        top = stat;
      }
      stack.push(b);
      if (probe.hidesBelow) break;
      if (b.writable && !below) break; // opaque or not, nothing below has it
      const op = this.#isOpaque(b, p);
      if (op instanceof Promise ? await op : op) break;
    }
    return top === undefined ? ABSENT : { kind: 'dir', stack, stat: top };
  }

  /**
   * Could one of branches[from..] have `name` in dir? Answered from the listings at hand; true
   * when one is not (then the markers are looked at, as before there were listings).
   */
  #mayHave(branches: readonly Branch[], from: number, dir: VPath, name: Name): boolean {
    for (let i = from; i < branches.length; i++) {
      const b = branches[i] as Branch;
      if (b.writable) return true;
      const d = this.#dirs.peek(`${b.index}\0${dir}`);
      if (d === undefined || probeIn(d, name).kind !== 'absent') return true;
    }
    return false;
  }

  /**
   * The lookup with the lowers answered by their merged index; undefined when an indexed entry
   * is gone from its branch (a lower changed under the mount): then the slow way decides.
   */
  async #lookupIndexed(
    upper: Branch | undefined,
    lowers: readonly Branch[],
    index: ReadonlyMap<string, LowerHit>,
    dir: VPath,
    name: Name,
  ): Promise<Resolution | undefined> {
    const p = childOf(dir, name);
    const stack: Branch[] = [];
    let top: EntryStat | undefined;
    const hit = index.get(name);
    // The upper's markers and opaqueness hide only what the lowers have.
    const below = hit !== undefined && hit.kind !== 'whiteout';
    if (upper !== undefined) {
      const probe = probeOnDisk(upper, dir, name, below);
      if (probe.kind === 'whiteout') return ABSENT;
      if (probe.kind === 'nondir') {
        // The upper's file wins outright (probeOnDisk ruled out an xattr whiteout).
        const real = upper.real(p);
        return probe.stat === undefined ? undefined : { kind: 'file', branch: upper, real, stat: probe.stat };
      }
      if (probe.kind === 'dir') {
        const stat = probe.stat;
        if (stat === undefined) return undefined;
        top = stat;
        stack.push(upper);
        if (!below || probe.hidesBelow || (await isOpaqueDir(upper.real(p)))) return { kind: 'dir', stack, stat };
      }
    }
    const done = (): Resolution => (top === undefined ? ABSENT : { kind: 'dir', stack, stat: top });
    if (hit === undefined || hit.kind === 'whiteout') return done();
    if (hit.kind === 'nondir') {
      if (top !== undefined) return done(); // a non-directory below a directory ends the merge
      const b = lowers[hit.at];
      if (b === undefined) return undefined;
      const real = b.real(p);
      const stat = statEntry(real);
      if (stat === undefined) return undefined;
      if (isXattrWhiteout(real, stat)) return ABSENT;
      return { kind: 'file', branch: b, real, stat };
    }
    for (const at of hit.at) {
      const b = lowers[at];
      if (b === undefined) return undefined;
      if (top === undefined) {
        top = statEntry(b.real(p));
        if (top === undefined) return undefined;
      }
      stack.push(b);
      const op = this.#isOpaque(b, p);
      if (op instanceof Promise ? await op : op) break;
    }
    return done();
  }

  /** The merged index of dir over these lowers (the lower part of its stack, which is fixed). */
  #lowerIndex(dir: VPath, lowers: readonly Branch[]): Promise<ReadonlyMap<string, LowerHit> | undefined> {
    const key = `${dir}\0${lowers.map((b) => b.index).join(',')}`;
    const hit = this.#indexes.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    return this.#indexInflight.run(key, async () => {
      const index = buildLowerIndex(await Promise.all(lowers.map((b) => this.branchDir(b, dir))));
      this.#indexes.set(key, index);
      return index;
    });
  }

  #isOpaque(b: Branch, p: VPath): boolean | Promise<boolean> {
    if (b.writable) return isOpaqueDir(b.real(p));
    const d = this.#dir(`${b.index}\0${p}`);
    return d !== undefined ? d.opaque : this.branchDir(b, p).then((x) => x.opaque);
  }
}

/** The entry at real as a resolution keeps it; undefined when nothing is there. */
function statEntry(real: RealPath): EntryStat | undefined {
  // On the calling thread: see host.lstatSyncOrUndefined.
  return host.lstatEntryOrUndefined(real);
}
