// The merged listing of a directory: the union of its stack's entries, top-most first, each name
// once; a name whited out in a branch hides that name in every branch below; markers never show.
// The order is the top branch's order followed by each lower branch's new names, so a listing is
// stable across calls (readdir offsets stay meaningful).
import type { BranchDir } from './branch-dir.js';

export function mergeListings(dirs: readonly BranchDir[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const d of dirs) {
    for (const name of d.entries.keys()) {
      if (seen.has(name)) continue;
      seen.add(name);
      out.push(name);
    }
    // After this branch's own entries: an OCI ".wh.X" beside "X" hides only the X of lower branches.
    for (const name of d.whiteouts) seen.add(name);
  }
  return out;
}
