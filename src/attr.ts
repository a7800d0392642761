// The attributes layerfs shows for an entry: a branch's stat with the union's own inode number
// and, for a merged directory, link count 1. Times are ms numbers, and where the exact times are
// known (from an EntryStat), also as whole seconds and nanoseconds: the kernel engine writes those
// to the wire as they are, the patched fuse-native takes them as bigint ns.
import type { Stats } from 'node:fs';
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
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /** The exact times, when known (else the ms above are all there is, good to about 0.25 µs). */
  readonly exact?: ExactTimes;
}

/** ms as Node computes it for a Stats (sec * 1e3 + nsec / 1e6), so every kind of stat agrees. */
export function msOfTime(sec: number, nsec: number): number {
  return sec * 1e3 + nsec / 1e6;
}

/** Attributes from a Stats: its times are doubles of ms, good to about 0.25 µs. */
export function attrOf(st: Stats, ino: number, nlink = st.nlink): Attr {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs,
  };
}

/** Attributes from a resolution's stat (exact times). */
export function attrOfEntry(st: EntryStat, ino: number, nlink = st.nlink): Attr {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks,
    atimeMs: msOfTime(st.atimeSec, st.atimeNsec), mtimeMs: msOfTime(st.mtimeSec, st.mtimeNsec), ctimeMs: msOfTime(st.ctimeSec, st.ctimeNsec),
    exact: st, // an EntryStat never changes: no copy of its times on every reply
  };
}
