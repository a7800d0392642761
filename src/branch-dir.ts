// What one branch holds in one directory: its visible entries, the names it whites out, and
// whether it is opaque. Lower branches are immutable by contract, so a lower directory is read
// once and then answers every lookup in it from memory (no probe per name and branch); the upper
// changes under us, so it is probed directly each time.
import { constants } from 'node:fs';
import type { Branch } from './branch.js';
import type { EntryStat } from './entry-stat.js';
import * as host from './host/fs.js';
import { DT, fdGetXattr, getXattr, readDirents } from './host/libc.js';
import { NAME_MAX, childOf, type Name, type RealPath, type VPath } from './path.js';
import {
  OCI_OPAQUE, OCI_PREFIX, XATTR_OPAQUE, XATTR_WHITEOUT, isKernelWhiteout, ociWhiteoutTarget,
} from './whiteout.js';
import { nameByteLength } from './name-bytes.js';

export type EntryKind = 'dir' | 'nondir';

/** File type bits (st_mode & S_IFMT) of an entry, as its directory entry tells them (DT_x << 12). */
export type FileType = number;

const { S_IFDIR, S_IFMT } = constants;

/**
 * A visible entry of a branch directory: its file type and inode number on the branch, in one
 * number (ino * 16 + DT_x) where the inode number is below 2^49, so exact in a double. A listing
 * keeps one per name, and as an object each weighed ~40 bytes more: 4 MB on an image of 100k
 * files (issue 4's 200 MB). A larger inode number keeps an object.
 */
export type DirEntry = number | { readonly type: FileType; readonly ino: number };

const PACKED_INO_LIMIT = 2 ** 49;

export function dirEntry(type: FileType, ino: number): DirEntry {
  return ino < PACKED_INO_LIMIT ? ino * 16 + (type >>> 12) : { type, ino };
}

export function entryType(e: DirEntry): FileType {
  return typeof e === 'number' ? (e % 16) << 12 : e.type;
}

export function entryIno(e: DirEntry): number {
  return typeof e === 'number' ? Math.floor(e / 16) : e.ino;
}

/** One branch's view of one directory. */
export interface BranchDir {
  /** The device of the directory (and so of its entries' inode numbers). */
  readonly dev: number;
  /** Visible entries, markers excluded. */
  readonly entries: ReadonlyMap<string, DirEntry>;
  /** Names this branch whites out for the branches below it. */
  readonly whiteouts: ReadonlySet<string>;
  /** Hides every entry of the branches below. */
  readonly opaque: boolean;
}

/** The outcome of looking one name up in one branch directory. */
export type Probe =
  | { readonly kind: 'absent' }
  | { readonly kind: 'whiteout' }
  | {
    readonly kind: EntryKind;
    readonly hidesBelow: boolean;
    /** The entry's lstat, where the probe took one (probeOnDisk): a resolution needs no second. */
    readonly stat?: EntryStat;
  };

const ABSENT: Probe = { kind: 'absent' };
const WHITEOUT: Probe = { kind: 'whiteout' };

/** Reads the opaque marker of a directory in either format. */
export async function isOpaqueDir(real: RealPath): Promise<boolean> {
  if (opaqueXattr(real) === 'y') return true;
  return (await host.lstatOrUndefined(`${real}/${OCI_OPAQUE}` as RealPath)) !== undefined;
}

function opaqueXattr(real: RealPath): string | undefined {
  return getXattr(real, XATTR_OPAQUE)?.toString('latin1');
}

const NO_WHITEOUTS: ReadonlySet<string> = new Set();

/** Read a whole branch directory into a BranchDir; `lower`: of a lower branch (readDirents). */
export async function readBranchDir(real: RealPath, o: { readonly lower: boolean }): Promise<BranchDir> {
  // The device and the opaque mark through the fd the listing is read with: one walk of the
  // path instead of three (and the addon's fstat, no Stats object). On this thread, as
  // readDirents: a round trip through libuv's pool per directory cost a cold walk more than
  // the directory's whole listing.
  let dev = 0;
  let marker: string | undefined;
  const dirents = readDirents(real, {
    lower: o.lower,
    withFd: (fd) => {
      dev = host.fstatEntry(fd).dev;
      marker = fdGetXattr(fd, XATTR_OPAQUE)?.toString('latin1');
    },
  });
  const entries = new Map<string, DirEntry>();
  const whiteouts = new Set<string>();
  let opaque = marker === 'y';
  for (const d of dirents) {
    const name = d.name;
    if (name === OCI_OPAQUE) {
      opaque = true;
      continue;
    }
    const target = ociWhiteoutTarget(name);
    if (target !== undefined) {
      whiteouts.add(target);
      continue;
    }
    if (name.startsWith(OCI_PREFIX)) continue; // a bare ".wh." is invalid in OCI: never shown
    if (d.dtype === DT.CHR || (marker === 'x' && d.dtype === DT.REG) || d.dtype === DT.UNKNOWN) {
      // Only these need a stat: a char device may be a whiteout, a file in an "x" dir may be an
      // xattr whiteout, and some filesystems report no d_type at all.
      const p = `${real}/${name}` as RealPath;
      const st = await host.lstatOrUndefined(p);
      if (st === undefined) continue;
      if (isKernelWhiteout(st) || (marker === 'x' && isXattrWhiteout(p, st))) whiteouts.add(name);
      else entries.set(name, dirEntry(st.mode & S_IFMT, st.ino));
    } else {
      entries.set(name, dirEntry(d.dtype << 12, d.ino));
    }
  }
  // Most directories hold no whiteout: one shared empty set spares each listing ~150 bytes.
  return { dev, entries, whiteouts: whiteouts.size === 0 ? NO_WHITEOUTS : whiteouts, opaque };
}

/**
 * A zero-size regular file carrying trusted.overlay.whiteout is a whiteout on lookup in any
 * branch (the kernel's rule); readdir hides it only where its dir is marked opaque="x", which
 * is what spares the kernel, and layerfs, a stat of every file while listing.
 */
export function isXattrWhiteout(p: RealPath, st: { isFile(): boolean; readonly size: number | bigint }): boolean {
  return st.isFile() && Number(st.size) === 0 && getXattr(p, XATTR_WHITEOUT) !== undefined;
}

/** Look name up in an already-read branch directory. */
export function probeIn(dir: BranchDir, name: Name): Probe {
  const e = dir.entries.get(name);
  if (e !== undefined) return { kind: entryType(e) === S_IFDIR ? 'dir' : 'nondir', hidesBelow: dir.whiteouts.has(name) };
  return dir.whiteouts.has(name) ? WHITEOUT : ABSENT;
}

/**
 * Look name up in a branch directory directly on disk, for a branch that may change (the upper).
 * Same answers as probeIn(readBranchDir(...)) without reading the whole directory.
 */
export function probeOnDisk(branch: Branch, dir: VPath, name: Name, below = true): Probe {
  const real = branch.real(childOf(dir, name));
  // On the calling thread: two lstats of a local filesystem cost less than one round trip
  // through libuv's pool (host.lstatEntryOrUndefined).
  const st = host.lstatEntryOrUndefined(real);
  // A ".wh." marker only hides what the branches below have: where they have nothing of this
  // name (`below` false: a new name, most of what a build or an untar makes), it is not looked
  // for (D29). One for a name of more than NAME_MAX - 4 bytes cannot exist; asking would be
  // ENAMETOOLONG for a name that is perfectly valid itself.
  const markerName = `${OCI_PREFIX}${name}`;
  const whiteoutFile = !below || nameByteLength(markerName) > NAME_MAX
    ? undefined
    : host.lstatEntryOrUndefined(branch.real(childOf(dir, markerName as Name)));
  if (st === undefined) return whiteoutFile ? WHITEOUT : ABSENT;
  if (isKernelWhiteout(st)) return WHITEOUT;
  if (isXattrWhiteout(real, st)) return WHITEOUT;
  return { kind: st.isDirectory() ? 'dir' : 'nondir', hidesBelow: whiteoutFile !== undefined, stat: st };
}
