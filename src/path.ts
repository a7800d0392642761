// Path spaces. A VPath is a path inside the mount ("/", "/a/b"); a RealPath is a host path on one
// branch. Both are strings, and mixing them up is the easiest bug to write in a union filesystem,
// so they are branded and made only through the constructors below (and Branch.real()).

declare const brand: unique symbol;
type Brand<T, B> = T & { readonly [brand]: B };

/** Absolute, normalised path inside the mount: "/" or "/a/b" (no trailing slash, no "." or ".."). */
export type VPath = Brand<string, 'VPath'>;
/** Absolute host path on one branch. */
export type RealPath = Brand<string, 'RealPath'>;
/** One path component: not empty, no "/", no NUL, not "." or "..". */
export type Name = Brand<string, 'Name'>;

export const ROOT = '/' as VPath;

/** Linux NAME_MAX, in bytes of the name's encoding. */
export const NAME_MAX = 255;

export function isName(s: string): s is Name {
  return s.length > 0 && s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\0');
}

/**
 * Brand a path handed over by FUSE. The kernel already resolved "." and ".." and never sends a
 * trailing slash, so this only checks the shape instead of normalising.
 */
export function vpath(p: string): VPath {
  if (p === '/') return ROOT;
  if (!p.startsWith('/') || p.endsWith('/') || p.includes('//') || p.includes('\0')) {
    throw new TypeError(`not a mount path: ${JSON.stringify(p)}`);
  }
  for (const part of p.slice(1).split('/')) {
    if (!isName(part)) throw new TypeError(`not a mount path: ${JSON.stringify(p)}`);
  }
  return p as VPath;
}

export function parentOf(p: VPath): VPath {
  const i = p.lastIndexOf('/');
  return (i <= 0 ? ROOT : p.slice(0, i)) as VPath;
}

export function baseName(p: VPath): Name {
  return p.slice(p.lastIndexOf('/') + 1) as Name;
}

export function childOf(dir: VPath, name: Name): VPath {
  return (dir === ROOT ? `/${name}` : `${dir}/${name}`) as VPath;
}

/** The components of p, outermost first ("/" has none). */
export function components(p: VPath): Name[] {
  return p === ROOT ? [] : (p.slice(1).split('/') as Name[]);
}
