// The merged listing of a directory: the union of its stack's entries, top-most first, each name
// once; a name whited out in a branch hides that name in every branch below; markers never show.
// The order is the top branch's order followed by each lower branch's new names, so a listing is
// stable across calls (readdir offsets stay meaningful).
import type { BranchDir, FileType } from './branch-dir.js';

/** One entry of a merged listing: its name and file type (what readdir's d_type carries). */
export interface MergedEntry {
  readonly name: string;
  readonly type: FileType;
}

export function mergeListings(dirs: readonly BranchDir[]): MergedEntry[] {
  const seen = new Set<string>();
  const out: MergedEntry[] = [];
  for (const d of dirs) {
    for (const [name, type] of d.entries) {
      if (seen.has(name)) continue;
      seen.add(name);
      out.push({ name, type });
    }
    // After this branch's own entries: an OCI ".wh.X" beside "X" hides only the X of lower branches.
    for (const name of d.whiteouts) seen.add(name);
  }
  return out;
}
