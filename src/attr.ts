// The attributes layerfs shows for an entry: a branch's stat with the union's own inode number
// and, for a merged directory, link count 1. Times are ms numbers, and where the exact times are
// known (a bigint stat), also bigint ns since the epoch, which the patched fuse-native hands to
// the kernel as they are.
import type { BigIntStats, Stats } from 'node:fs';
import type { EntryStat } from './entry-stat.js';

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
  readonly atimeNs?: bigint;
  readonly mtimeNs?: bigint;
  readonly ctimeNs?: bigint;
}

/** The three times of an entry, exact. */
export interface NsTimes {
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

const NS_PER_S = 1_000_000_000n;

/** ms as Node computes it for a Stats (sec * 1e3 + nsec / 1e6), so both kinds of stat agree. */
export function msOf(ns: bigint): number {
  let sec = ns / NS_PER_S;
  let nsec = ns % NS_PER_S;
  if (nsec < 0n) {
    nsec += NS_PER_S;
    sec -= 1n;
  }
  return Number(sec) * 1e3 + Number(nsec) / 1e6;
}

/**
 * Attributes from a Stats. Its times are doubles of ms, good to about 0.25 µs: pass `times`
 * (from a bigint stat of the same entry) for the exact ns.
 */
export function attrOf(st: Stats, ino: number, nlink = st.nlink, times?: NsTimes): Attr {
  if (times === undefined) {
    return {
      mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
      blksize: st.blksize, blocks: st.blocks, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs,
    };
  }
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs,
    atimeNs: times.atimeNs, mtimeNs: times.mtimeNs, ctimeNs: times.ctimeNs,
  };
}

/** Attributes from a resolution's stat (exact times). */
export function attrOfEntry(st: EntryStat, ino: number, nlink = st.nlink): Attr {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks,
    atimeMs: msOf(st.atimeNs), mtimeMs: msOf(st.mtimeNs), ctimeMs: msOf(st.ctimeNs),
    atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs,
  };
}

/** Attributes from a bigint stat (exact times). */
export function attrOfNs(st: BigIntStats, ino: number, nlink = Number(st.nlink)): Attr {
  return {
    mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), nlink, ino,
    rdev: Number(st.rdev), blksize: Number(st.blksize), blocks: Number(st.blocks),
    atimeMs: msOf(st.atimeNs), mtimeMs: msOf(st.mtimeNs), ctimeMs: msOf(st.ctimeNs),
    atimeNs: st.atimeNs, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs,
  };
}
