// What a resolution remembers of a branch entry: the fields of its lstat that layerfs shows or
// decides by, with exact (ns) times. Node's fs.Stats weighs about 740 bytes on the heap; this
// 152 (a heap snapshot after a walk of 105k files, D44), and a resolver keeps one per cached
// entry (issue 4: under 200 MB after that walk). Built from the addon's lstat or a bigint one
// (exact times either way), so a lower entry's exact times need no second stat.
import { constants, type BigIntStats } from 'node:fs';

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK } = constants;

/** How many numbers the addon's lstat fills (native/fuse-dev: dev, ino, ..., the ctime ns). */
export const RAW_STAT_FIELDS = 16;

const NS = 1_000_000_000n;

/** Exact times as whole seconds and nanoseconds (numbers: no BigInt to make or divide). */
export interface ExactTimes {
  readonly atimeSec: number;
  readonly atimeNsec: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly ctimeSec: number;
  readonly ctimeNsec: number;
}

/** ns since the epoch as [seconds, nanoseconds 0..999999999] (floored, as struct timespec). */
export function splitNs(ns: bigint): [number, number] {
  let sec = ns / NS;
  let nsec = ns - sec * NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  return [Number(sec), Number(nsec)];
}

export class EntryStat implements ExactTimes {
  // Times as numbers (D43): a lookup's reply is then written with no BigInt made; the bigint
  // getters below serve the few callers (copy-up) that set times.
  private constructor(
    readonly dev: number,
    readonly ino: number,
    readonly mode: number,
    readonly nlink: number,
    readonly uid: number,
    readonly gid: number,
    readonly rdev: number,
    readonly size: number,
    readonly blksize: number,
    readonly blocks: number,
    readonly atimeSec: number,
    readonly atimeNsec: number,
    readonly mtimeSec: number,
    readonly mtimeNsec: number,
    readonly ctimeSec: number,
    readonly ctimeNsec: number,
  ) {}

  /** From a bigint lstat. */
  static of(st: BigIntStats): EntryStat {
    const [as, an] = splitNs(st.atimeNs);
    const [ms, mn] = splitNs(st.mtimeNs);
    const [cs, cn] = splitNs(st.ctimeNs);
    return new EntryStat(
      Number(st.dev), Number(st.ino), Number(st.mode), Number(st.nlink), Number(st.uid), Number(st.gid), Number(st.rdev),
      Number(st.size), Number(st.blksize), Number(st.blocks), as, an, ms, mn, cs, cn,
    );
  }

  /** From the addon's lstat (RAW_STAT_FIELDS numbers, in its order). */
  static fromRaw(f: Float64Array): EntryStat {
    return new EntryStat(f[0]!, f[1]!, f[2]!, f[3]!, f[4]!, f[5]!, f[6]!, f[7]!, f[8]!, f[9]!, f[10]!, f[11]!, f[12]!, f[13]!, f[14]!, f[15]!);
  }

  get atimeNs(): bigint {
    return BigInt(this.atimeSec) * NS + BigInt(this.atimeNsec);
  }
  get mtimeNs(): bigint {
    return BigInt(this.mtimeSec) * NS + BigInt(this.mtimeNsec);
  }
  get ctimeNs(): bigint {
    return BigInt(this.ctimeSec) * NS + BigInt(this.ctimeNsec);
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
