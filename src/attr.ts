// The attributes layerfs shows for an entry: a branch's stat with the union's own inode number
// and, for a merged directory, link count 1. Times are exact, as whole seconds and nanoseconds
// (the EntryStat's own, by reference): the kernel engine writes them to the wire as they are; the
// libfuse engine hands fuse-native ms and, patched, bigint ns (fuse/adapter.ts).
import type { EntryStat, ExactTimes } from './entry-stat.js';

export interface Attr {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly ino: number;
  readonly rdev: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly exact: ExactTimes;
  /**
   * The entry is a lower layer's. Its attributes change only by a copy-up, which the kernel is
   * told of; and a copy-up of one of its names leaves the others as they were (it breaks the hard
   * link, as on the kernel's overlayfs). So the kernel may keep them however many names it has.
   */
  readonly lower: boolean;
}

/** ms as Node computes it for a Stats (sec * 1e3 + nsec / 1e6), so every kind of stat agrees. */
export function msOfTime(sec: number, nsec: number): number {
  return sec * 1e3 + nsec / 1e6;
}

/** Attributes from a resolution's stat (exact times); `lower`: of a lower layer's entry. */
export function attrOfEntry(st: EntryStat, ino: number, nlink = st.nlink, lower = false): Attr {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks,
    exact: st, // an EntryStat never changes: no copy of its times on every reply
    lower,
  };
}
