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
import { nameByteLength } from './name-bytes.js';

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
    try {
      const r = this.resolveNow(p);
      return r instanceof Promise ? r : Promise.resolve(r);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * As resolve, but the answer comes back as it is when nothing has to be waited for: a kept
   * resolution, or a child of a kept directory whose branches' listings are kept (lowers) or
   * read on this thread (the upper). Throws (ENOTDIR) where resolve would reject.
   */
  resolveNow(p: VPath): Resolution | Promise<Resolution> {
    const hit = this.#cache.get(p);
    if (hit !== undefined) {
      this.#hits++;
      return hit;
    }
    this.#misses++;
    return this.#inflight.runNow(p, () => {
      const r = p === ROOT ? this.#resolveRoot() : this.#resolveChild(p);
      if (r instanceof Promise) return r.then((x) => this.#keep(p, x));
      return this.#keep(p, r);
    });
  }

  #keep(p: VPath, r: Resolution): Resolution {
    this.#cache.set(p, r);
    return r;
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
   * through the mount (create, mknod, symlink, link, copy-up), or a directory just copied up.
   * Saves resolving it again at once.
   */
  learn(p: VPath, r: FileResolution | DirResolution): void {
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

  #resolveChild(p: VPath): Resolution | Promise<Resolution> {
    const dir = parentOf(p);
    const parent = this.resolveNow(dir);
    if (parent instanceof Promise) return parent.then((x) => this.#childOf(x, dir, p));
    return this.#childOf(parent, dir, p);
  }

  #childOf(parent: Resolution, dir: VPath, p: VPath): Resolution | Promise<Resolution> {
    if (parent.kind === 'absent') return ABSENT;
    if (parent.kind === 'file') throw new FsError('ENOTDIR', 'lookup', p);
    const name = baseName(p);
    // The kernel hands over names up to its own limit; a branch filesystem would answer
    // ENAMETOOLONG, but a union must answer it without asking any branch.
    if (name.length > NAME_MAX / 4 && nameByteLength(name) > NAME_MAX) throw new FsError('ENAMETOOLONG', 'lookup', p);
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

  #lookupIn(parent: DirResolution, dir: VPath, name: Name): Resolution | Promise<Resolution> {
    const stack = parent.stack;
    const upper = stack[0]?.writable === true ? stack[0] : undefined;
    const lowers = upper === undefined ? stack : stack.slice(1);
    // Shared by two or more lowers: answer from the directory's merged lower index.
    if (lowers.length >= 2 && this.#useIndex) return this.#lookupShared(stack, upper, lowers, dir, name);
    return this.#lookupEach(eachLookup(stack, dir, name), 0);
  }

  /** The lookup through the merged index of the lowers; branch by branch where it fails. */
  #lookupShared(
    stack: readonly Branch[],
    upper: Branch | undefined,
    lowers: readonly Branch[],
    dir: VPath,
    name: Name,
  ): Resolution | Promise<Resolution> {
    const slow = (): Resolution | Promise<Resolution> => this.#lookupEach(eachLookup(stack, dir, name), 0);
    const within = (index: ReadonlyMap<string, LowerHit>): Resolution | Promise<Resolution> => {
      const r = this.#lookupIndexed(upper, lowers, index, dir, name);
      if (r instanceof Promise) return r.then((x) => x ?? slow());
      return r ?? slow();
    };
    const index = this.#lowerIndex(dir, lowers);
    return index instanceof Promise ? index.then(within) : within(index);
  }

  /**
   * The lookup, branch by branch, from branches[from]: synchronous as long as each branch's
   * answer is at hand, else it goes on once it is.
   */
  #lookupEach(s: EachLookup, from: number): Resolution | Promise<Resolution> {
    for (let i = from; i < s.branches.length; i++) {
      const b = s.branches[i] as Branch;
      // Whether a branch below may have the name: only then do the upper's markers matter.
      const below = b.writable && this.#mayHave(s.branches, i + 1, s.dir, s.name);
      const pr = this.#probe(b, s.dir, s.name, below);
      if (pr instanceof Promise) return pr.then((probe) => this.#then(s, i, this.#took(s, b, below, probe)));
      const next = this.#took(s, b, below, pr);
      if (next !== NEXT) return this.#then(s, i, next);
    }
    return found(s);
  }

  /** What follows branch i's answer: the next branch, or the result as it stands. */
  #then(s: EachLookup, i: number, next: Step): Resolution | Promise<Resolution> {
    if (next === NEXT) return this.#lookupEach(s, i + 1);
    if (next instanceof Promise) return next.then((x) => this.#then(s, i, x));
    return next;
  }

  /** Take branch b's answer into the lookup: NEXT to go on to the next branch. */
  #took(s: EachLookup, b: Branch, below: boolean, probe: Probe): Step {
    if (probe.kind === 'whiteout') return found(s);
    if (probe.kind === 'absent') return NEXT;
    const p = s.p;
    if (probe.kind === 'nondir') {
      if (s.top !== undefined) return found(s); // a non-directory below a directory ends the merge
      const real = b.real(p);
      const stat = probe.stat ?? statEntry(real);
      if (stat === undefined) return NEXT; // gone from a lower since it was indexed
      if (probe.stat === undefined && isXattrWhiteout(real, stat)) return found(s); // (probeOnDisk looked)
      return { kind: 'file', branch: b, real, stat };
    }
    if (s.top === undefined) {
      const stat = probe.stat ?? statEntry(b.real(p));
      if (stat === undefined) return NEXT;
      s.top = stat;
    }
    s.stack.push(b);
    if (probe.hidesBelow) return found(s);
    if (b.writable && !below) return found(s); // opaque or not, nothing below has it
    const op = this.#isOpaque(b, p);
    if (op instanceof Promise) return op.then((o) => (o ? found(s) : NEXT));
    return op ? found(s) : NEXT;
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
   * Synchronous unless an opaque mark has to be read.
   */
  #lookupIndexed(
    upper: Branch | undefined,
    lowers: readonly Branch[],
    index: ReadonlyMap<string, LowerHit>,
    dir: VPath,
    name: Name,
  ): Indexed | Promise<Indexed> {
    const p = childOf(dir, name);
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
        const f: Found = { stack: [upper], top: stat };
        if (!below || probe.hidesBelow) return found(f);
        return isOpaqueDir(upper.real(p)).then((o) => (o ? found(f) : this.#indexedLowers(lowers, hit, p, f)));
      }
    }
    return this.#indexedLowers(lowers, hit, p, { stack: [], top: undefined });
  }

  /** The indexed lookup's lowers, below what the upper had (`f`). */
  #indexedLowers(lowers: readonly Branch[], hit: LowerHit | undefined, p: VPath, f: Found): Indexed | Promise<Indexed> {
    if (hit === undefined || hit.kind === 'whiteout') return found(f);
    if (hit.kind === 'nondir') {
      if (f.top !== undefined) return found(f); // a non-directory below a directory ends the merge
      const b = lowers[hit.at];
      if (b === undefined) return undefined;
      const real = b.real(p);
      const stat = statEntry(real);
      if (stat === undefined) return undefined;
      if (isXattrWhiteout(real, stat)) return ABSENT;
      return { kind: 'file', branch: b, real, stat };
    }
    return this.#indexedDirs(lowers, hit.at, 0, p, f);
  }

  /** The lowers that have p as a directory (`at`, from at[from]) join its stack, to an opaque one. */
  #indexedDirs(lowers: readonly Branch[], at: readonly number[], from: number, p: VPath, f: Found): Indexed | Promise<Indexed> {
    for (let i = from; i < at.length; i++) {
      const b = lowers[at[i] as number];
      if (b === undefined) return undefined;
      if (f.top === undefined) {
        f.top = statEntry(b.real(p));
        if (f.top === undefined) return undefined;
      }
      f.stack.push(b);
      const op = this.#isOpaque(b, p);
      if (op instanceof Promise) return op.then((o) => (o ? found(f) : this.#indexedDirs(lowers, at, i + 1, p, f)));
      if (op) break;
    }
    return found(f);
  }

  /** The merged index of dir over these lowers (the lower part of its stack, which is fixed). */
  #lowerIndex(dir: VPath, lowers: readonly Branch[]): ReadonlyMap<string, LowerHit> | Promise<ReadonlyMap<string, LowerHit>> {
    const key = `${dir}\0${lowers.map((b) => b.index).join(',')}`;
    const hit = this.#indexes.get(key);
    if (hit !== undefined) return hit;
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

/** An indexed lookup's result; undefined: an indexed entry is gone, the slow way decides. */
type Indexed = Resolution | undefined;

/** The directories found so far for a lookup, and the top one's attributes. */
interface Found {
  readonly stack: Branch[];
  top: EntryStat | undefined;
}

function found(f: Found): Resolution {
  return f.top === undefined ? ABSENT : { kind: 'dir', stack: f.stack, stat: f.top };
}

/** A lookup branch by branch, as it goes. */
interface EachLookup extends Found {
  readonly branches: readonly Branch[];
  readonly dir: VPath;
  readonly name: Name;
  /** dir's child `name`, made once per lookup rather than per branch. */
  readonly p: VPath;
}

function eachLookup(branches: readonly Branch[], dir: VPath, name: Name): EachLookup {
  return { branches, dir, name, p: childOf(dir, name), stack: [], top: undefined };
}

/** A step of it: go on to the next branch, the result, or either once a branch has answered. */
const NEXT = Symbol('next');
type Step = typeof NEXT | Resolution | Promise<typeof NEXT | Resolution>;

/** The entry at real as a resolution keeps it; undefined when nothing is there. */
function statEntry(real: RealPath): EntryStat | undefined {
  // On the calling thread: see host.lstatSyncOrUndefined.
  return host.lstatEntryOrUndefined(real);
}
