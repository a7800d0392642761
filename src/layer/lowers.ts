// What a stack of lower directories shows, for `diff --lower`: the same rules as the mount
// (src/branch-dir.ts reads each branch directory), without a mount. Lowers are read-only by
// contract, so each directory is read once per run.
import { readBranchDir, probeIn, type BranchDir } from '../branch-dir.js';
import type { Name, RealPath } from '../path.js';

/** The entry a stack of lowers shows at a path: the top-most one's real path. */
export interface LowerEntry {
  readonly abs: RealPath;
  readonly isDir: boolean;
}

export class LowerView {
  readonly #dirs = new Map<string, Promise<BranchDir>>();

  /** lowers: topmost first. */
  constructor(readonly lowers: readonly RealPath[]) {}

  #read(real: RealPath): Promise<BranchDir> {
    let d = this.#dirs.get(real);
    if (d === undefined) {
      d = readBranchDir(real, { lower: true });
      this.#dirs.set(real, d);
    }
    return d;
  }

  /** The real directories that make up the merged directory at comps, top first (cut at an opaque one). */
  async #stackOf(dirs: readonly RealPath[]): Promise<RealPath[]> {
    const out: RealPath[] = [];
    for (const d of dirs) {
      out.push(d);
      if ((await this.#read(d)).opaque) break;
    }
    return out;
  }

  /** What the lowers show at the path of these components, or undefined. */
  async lookup(comps: readonly string[]): Promise<LowerEntry | undefined> {
    let stack = await this.#stackOf(this.lowers);
    if (stack.length === 0) return undefined;
    for (const [i, c] of comps.entries()) {
      const found = await this.#child(stack, c);
      if (found === undefined) return undefined;
      if (!Array.isArray(found)) return i === comps.length - 1 ? { abs: found, isDir: false } : undefined;
      stack = found;
    }
    return { abs: stack[0]!, isDir: true };
  }

  /** Name c in the merged directory `stack`: a non-directory's path, a directory's stack, or nothing. */
  async #child(stack: readonly RealPath[], c: string): Promise<RealPath | RealPath[] | undefined> {
    const dirs: RealPath[] = [];
    for (const d of stack) {
      const p = probeIn(await this.#read(d), c as Name);
      if (p.kind === 'whiteout') break;
      if (p.kind === 'absent') continue;
      if (p.kind === 'nondir') {
        if (dirs.length === 0) return `${d}/${c}` as RealPath;
        break; // a directory above hides it
      }
      dirs.push(`${d}/${c}` as RealPath);
      if (p.hidesBelow) break;
    }
    return dirs.length === 0 ? undefined : this.#stackOf(dirs);
  }

  /** The names the lowers show in the directory at comps (none when it is not a directory there). */
  async list(comps: readonly string[]): Promise<string[]> {
    let stack = await this.#stackOf(this.lowers);
    for (const c of comps) {
      const found = await this.#child(stack, c);
      if (!Array.isArray(found)) return [];
      stack = found;
    }
    const names = new Set<string>();
    const hidden = new Set<string>();
    for (const d of stack) {
      const bd = await this.#read(d);
      for (const name of bd.entries.keys()) if (!hidden.has(name)) names.add(name);
      for (const w of bd.whiteouts) hidden.add(w);
    }
    return [...names];
  }
}
