// What a resolution remembers of a branch entry: the fields of its lstat that layerfs shows or
// decides by, with exact (ns) times. Node's fs.Stats weighs about 740 bytes on the heap; this
// about 200, and a resolver keeps one per cached entry (issue 4: under 200 MB after a walk of
// 100k files). Built from a bigint lstat, so a lower entry's exact times need no second stat.
import { constants, type BigIntStats } from 'node:fs';

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } = constants;

export class EntryStat {
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;

  constructor(st: BigIntStats) {
    this.dev = Number(st.dev);
    this.ino = Number(st.ino);
    this.mode = Number(st.mode);
    this.nlink = Number(st.nlink);
    this.uid = Number(st.uid);
    this.gid = Number(st.gid);
    this.rdev = Number(st.rdev);
    this.size = Number(st.size);
    this.blksize = Number(st.blksize);
    this.blocks = Number(st.blocks);
    this.atimeNs = st.atimeNs;
    this.mtimeNs = st.mtimeNs;
    this.ctimeNs = st.ctimeNs;
  }

  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFCHR;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFBLK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === S_IFSOCK;
  }
}
