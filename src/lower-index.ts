// What the lower branches of one merged directory answer for every name, built once: lower
// branches never change, so a lookup in a directory that N lowers share costs one map lookup,
// not N probes (issue 4: a lookup must not get slower with every added layer). The rules are
// the resolver's (resolve.ts), applied to whole listings: top-most first, a whiteout ends the
// search, a non-directory wins unless a directory was found above it (then it ends the merge),
// directories merge until an OCI ".wh.X" beside X. Opaque markers of the child directories
// themselves are not known from the parent's listings; the resolver applies them at lookup.
import { entryType, type BranchDir } from './branch-dir.js';
import { constants } from 'node:fs';

export type LowerHit =
  | { readonly kind: 'whiteout' }
  | { readonly kind: 'nondir'; readonly at: number }
  /** Positions (in the lower list) of the branches where the name is a directory that merges. */
  | { readonly kind: 'dir'; readonly at: readonly number[] };

interface Building {
  kind: 'whiteout' | 'nondir' | 'dir';
  at: number[];
  done: boolean;
}

const WHITEOUT: LowerHit = { kind: 'whiteout' };
// Hits are read-only, and nearly all are "a non-directory in lower i" or "a directory in lower i
// alone": shared, they cost an index nothing but its map slot (~40 bytes a name saved).
const nondirs: LowerHit[] = [];
const soleDirs: LowerHit[] = [];
const nondirAt = (i: number): LowerHit => (nondirs[i] ??= { kind: 'nondir', at: i });
// A copy: an array grown by push keeps room for ~16 more.
const dirAt = (at: number[]): LowerHit =>
  at.length === 1 ? (soleDirs[at[0] ?? 0] ??= { kind: 'dir', at: [at[0] ?? 0] }) : { kind: 'dir', at: [...at] };

/** dirs: one directory's listing in each lower branch of its stack, top-most first. */
export function buildLowerIndex(dirs: readonly BranchDir[]): ReadonlyMap<string, LowerHit> {
  const m = new Map<string, Building>();
  dirs.forEach((d, i) => {
    for (const [name, e] of d.entries) {
      const isDir = entryType(e) === constants.S_IFDIR;
      const hidesBelow = d.whiteouts.has(name);
      const s = m.get(name);
      if (s === undefined) m.set(name, { kind: isDir ? 'dir' : 'nondir', at: [i], done: !isDir || hidesBelow });
      else if (!s.done) {
        // s is a directory found above: another directory merges, a non-directory ends it.
        if (isDir) s.at.push(i);
        s.done = !isDir || hidesBelow;
      }
    }
    for (const name of d.whiteouts) {
      const s = m.get(name);
      if (s === undefined) m.set(name, { kind: 'whiteout', at: [], done: true });
      else s.done = true;
    }
  });
  const out = new Map<string, LowerHit>();
  for (const [name, s] of m) {
    if (s.kind === 'whiteout') out.set(name, WHITEOUT);
    else if (s.kind === 'nondir') out.set(name, nondirAt(s.at[0] ?? 0));
    else out.set(name, dirAt(s.at));
  }
  return out;
}
