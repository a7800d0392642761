// Reading an upper directory as a changeset: which of its entries are changes, which are
// deletions (whiteouts, in any of the formats layerfs reads: char 0:0, ".wh.NAME", a zero-size
// file with trusted.overlay.whiteout in a dir marked opaque="x"), and whether it hides what is
// below (trusted.overlay.opaque=y or ".wh..wh..opq"). Shared by `diff` and `commit`.
import type { BigIntStats } from 'node:fs';
import * as host from '../host/fs.js';
import { getXattr, listXattr } from '../host/libc.js';
import { XATTR_ORIGIN_INO } from '../origin.js';
import type { RealPath } from '../path.js';
import { OCI_OPAQUE, XATTR_OPAQUE, XATTR_PREFIX, XATTR_WHITEOUT, ociWhiteoutTarget } from '../whiteout.js';
import { joinRel, sortByBytes } from './names.js';

/** One entry of an upper directory. */
export interface UpperNode {
  /** The name it stands for (for a whiteout: the name it deletes). */
  readonly name: string;
  /** That name's path from the upper's root ('a/b'). */
  readonly rel: string;
  /** Where it is on disk (for a ".wh.X" whiteout: the marker file). */
  readonly abs: RealPath;
  readonly st: BigIntStats;
}

export interface UpperDir {
  readonly opaque: boolean;
  /** The ".wh..wh..opq" file when the directory is opaque by it (its owner goes into the layer). */
  readonly opaqueMarker: UpperNode | undefined;
  /** Deletions, by the name they delete, in byte order. */
  readonly whiteouts: readonly UpperNode[];
  /** Everything else (the changes themselves), in byte order. */
  readonly children: readonly UpperNode[];
}

const S_IFMT = 0o170000n;
const S_IFCHR = 0o020000n;
const S_IFREG = 0o100000n;

export function isKernelWhiteoutNs(st: BigIntStats): boolean {
  return (st.mode & S_IFMT) === S_IFCHR && st.rdev === 0n;
}

/** The overlay's value of trusted.overlay.opaque: "y" opaque, "x" holds xattr whiteouts. */
function opaqueValue(abs: RealPath): string | undefined {
  return getXattr(abs, XATTR_OPAQUE)?.toString('latin1');
}

/** Read one directory of an upper (rel '' is the root). */
export async function readUpperDir(root: RealPath, rel: string): Promise<UpperDir> {
  const dirAbs = (rel === '' ? root : `${root}/${rel}`) as RealPath;
  const marker = opaqueValue(dirAbs);
  let opaque = marker === 'y';
  let opaqueMarker: UpperNode | undefined;
  const whiteouts = new Map<string, UpperNode>();
  const children: UpperNode[] = [];
  for (const d of await host.readdirTyped(dirAbs)) {
    const abs = `${dirAbs}/${d.name}` as RealPath;
    const st = await host.lstatNs(abs);
    if (d.name === OCI_OPAQUE) {
      opaque = true;
      opaqueMarker = { name: d.name, rel: joinRel(rel, d.name), abs, st };
      continue;
    }
    const target = ociWhiteoutTarget(d.name);
    if (target !== undefined) {
      if (!whiteouts.has(target)) whiteouts.set(target, { name: target, rel: joinRel(rel, target), abs, st });
      continue;
    }
    if (d.name.startsWith('.wh.')) continue; // a bare ".wh." or aufs bookkeeping: never shown, never exported
    const node = { name: d.name, rel: joinRel(rel, d.name), abs, st };
    if (isKernelWhiteoutNs(st) || (marker === 'x' && isXattrWhiteoutNs(abs, st))) whiteouts.set(d.name, node);
    else children.push(node);
  }
  return {
    opaque,
    opaqueMarker,
    whiteouts: sortByBytes([...whiteouts.values()], (n) => n.name),
    children: sortByBytes(children, (n) => n.name),
  };
}

function isXattrWhiteoutNs(abs: RealPath, st: BigIntStats): boolean {
  return (st.mode & S_IFMT) === S_IFREG && st.size === 0n && getXattr(abs, XATTR_WHITEOUT) !== undefined;
}

/**
 * Is this extended attribute content that belongs in a layer? Not the overlay's bookkeeping
 * (trusted.overlay.*: opaque, origin, impure, redirect, layerfs's own ino record, and a user's
 * escaped trusted.overlay.overlay.* too, which only has a meaning inside one overlay), and not
 * security.selinux, a label of the host's policy that Docker and containerd leave out as well.
 */
export function isLayerXattr(name: string): boolean {
  return !name.startsWith(XATTR_PREFIX) && name !== 'security.selinux';
}

/** The extended attributes that go into a layer, by name in byte order. */
export function layerXattrs(abs: RealPath): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  for (const name of listXattr(abs)) {
    if (!isLayerXattr(name)) continue;
    const v = getXattr(abs, name);
    if (v !== undefined) out.push([name, v]);
  }
  return sortByBytes(out, ([n]) => n);
}

/**
 * Was this upper entry copied up (so a lower had it)? The kernel records trusted.overlay.origin
 * on a copy-up, layerfs its trusted.overlay.layerfs.ino. Only `diff` without lowers asks.
 */
export function hasCopyUpRecord(abs: RealPath): boolean {
  return getXattr(abs, XATTR_ORIGIN_INO) !== undefined || getXattr(abs, 'trusted.overlay.origin') !== undefined;
}
