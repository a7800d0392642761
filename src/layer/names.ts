// Names inside a layer: the order entries are written in, and the checks every name read from a
// tar passes before anything is done with it.
import { OCI_OPAQUE, OCI_PREFIX } from '../whiteout.js';
import { LayerError } from './errors.js';
import { encodeName } from '../name-bytes.js';

/** Compare by bytes (JS's own `<` compares UTF-16 units, which orders some characters differently). */
export function byteCompare(a: string, b: string): number {
  return Buffer.compare(encodeName(a), encodeName(b));
}

/** Items sorted by the bytes of their key, each key encoded once. */
export function sortByBytes<T>(items: readonly T[], key: (t: T) => string): T[] {
  return items
    .map((item) => ({ item, k: encodeName(key(item)) }))
    .sort((x, y) => Buffer.compare(x.k, y.k))
    .map((x) => x.item);
}

/**
 * Compare two relative paths so that a directory comes right before everything below it and
 * siblings are in byte order (a pre-order walk): '/' sorts before every byte of a name.
 */
export function treeCompare(a: string, b: string): number {
  return Buffer.compare(encodeName(a.replaceAll('/', '\0')), encodeName(b.replaceAll('/', '\0')));
}

/** 'a/b' + 'c' -> 'a/b/c'; the root is ''. */
export function joinRel(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** 'a/b/c' -> 'a/b'; 'a' -> ''. */
export function parentRel(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** Every proper ancestor of rel, nearest first, ending with the root ''. */
export function ancestorsOf(rel: string): string[] {
  const out: string[] = [];
  for (let p = rel; p !== '';) {
    p = parentRel(p);
    out.push(p);
  }
  return out;
}

/**
 * The components of a name read from a tar (an entry's name or a hard link's target). Leading
 * "./", empty components and "." are dropped, as every tar reader does; `[]` is the layer's root.
 * Refused, whatever follows in the tar: an absolute name (no producer of image layers writes one,
 * and where it meant the host's root it is an attack), any ".." component (even one that would
 * stay inside: a layer never needs it, and it would step back over a component that is never
 * checked), and NUL.
 */
export function entryComponents(name: string, entry: string, what = 'the name'): string[] {
  if (name.includes('\0')) throw new LayerError('unsafe', entry, `${what} contains a NUL byte`);
  if (name.startsWith('/')) throw new LayerError('unsafe', entry, `${what} is absolute; a layer's names are relative to its root`);
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new LayerError('unsafe', entry, `${what} has a ".." component, which could leave the target directory`);
  return parts;
}

/** What a base name means in a layer. */
export type MarkerKind =
  | { kind: 'none' }
  | { kind: 'opaque' }
  | { kind: 'whiteout'; target: string }
  /** aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): old Docker layers hold it; skipped, as Docker does. */
  | { kind: 'aufs-meta' };

const AUFS_META_PREFIX = `${OCI_PREFIX}${OCI_PREFIX}`;

/** Classify a base name; a whiteout that names nothing, ".", or ".." is refused. */
export function markerOf(base: string, entry: string): MarkerKind {
  if (!base.startsWith(OCI_PREFIX)) return { kind: 'none' };
  if (base === OCI_OPAQUE) return { kind: 'opaque' };
  if (base.startsWith(AUFS_META_PREFIX)) return { kind: 'aufs-meta' };
  const target = base.slice(OCI_PREFIX.length);
  if (target === '') throw new LayerError('invalid', entry, 'a bare ".wh." whiteout names nothing');
  if (target === '.' || target === '..') {
    throw new LayerError('unsafe', entry, `a whiteout of ${JSON.stringify(target)} would delete the directory that holds it or its parent`);
  }
  return { kind: 'whiteout', target };
}
