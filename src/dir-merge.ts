// The merged listing of a directory: the union of its stack's entries, top-most first, each name
// once; a name whited out in a branch hides that name in every branch below; markers never show.
// The order is the top branch's order followed by each lower branch's new names, so a listing is
// stable across calls (readdir offsets stay meaningful).
import { entryIno, entryType, type BranchDir, type FileType } from './branch-dir.js';

/** One entry of a merged listing: its name, file type (d_type) and inode number (d_ino). */
export interface MergedEntry {
  readonly name: string;
  readonly type: FileType;
  readonly ino: number;
}

/**
 * `ino` maps an entry of dirs[i] (its device, inode number and name) to the number shown through
 * the mount.
 */
export function mergeListings(
  dirs: readonly BranchDir[],
  ino: (dev: number, ino: number, name: string, i: number) => number,
): MergedEntry[] {
  const seen = new Set<string>();
  const out: MergedEntry[] = [];
  dirs.forEach((d, i) => {
    for (const [name, e] of d.entries) {
      if (seen.has(name)) continue;
      seen.add(name);
      out.push({ name, type: entryType(e), ino: ino(d.dev, entryIno(e), name, i) });
    }
    // After this branch's own entries: an OCI ".wh.X" beside "X" hides only the X of lower branches.
    for (const name of d.whiteouts) seen.add(name);
  });
  return out;
}
