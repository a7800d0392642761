// The attributes layerfs shows for an entry: a branch's Stats with the union's own inode number
// and, for a merged directory, link count 1.
import type { Stats } from 'node:fs';

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
}

export function attrOf(st: Stats, ino: number, nlink = st.nlink): Attr {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink, ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs,
  };
}
