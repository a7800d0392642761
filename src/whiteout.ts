// Whiteout and opaque-dir formats, read in every branch (both may appear anywhere):
//   kernel overlayfs: whiteout = char device 0:0 named like the hidden entry;
//                     opaque dir = xattr trusted.overlay.opaque = "y";
//                     xattr whiteout (kernel >= 6.7) = zero-size regular file with xattr
//                     trusted.overlay.whiteout, in a dir marked trusted.overlay.opaque = "x".
//   OCI image layers: whiteout = file ".wh.NAME"; opaque dir = file ".wh..wh..opq" inside it.
// An OCI whiteout hides NAME only in lower branches, never NAME in its own branch: a branch may
// hold both "X" and ".wh.X", and then X is shown and nothing below it.

export const OCI_PREFIX = '.wh.';
export const OCI_OPAQUE = '.wh..wh..opq';
export const XATTR_PREFIX = 'trusted.overlay.';
export const XATTR_OPAQUE = 'trusted.overlay.opaque';
export const XATTR_WHITEOUT = 'trusted.overlay.whiteout';

/** Is this stat a kernel whiteout (char device 0:0)? */
export function isKernelWhiteout(st: { isCharacterDevice(): boolean; readonly rdev: number | bigint }): boolean {
  return st.isCharacterDevice() && Number(st.rdev) === 0;
}

/** For ".wh.NAME" the hidden NAME; undefined for other names, the opaque marker and a bare ".wh.". */
export function ociWhiteoutTarget(name: string): string | undefined {
  if (!name.startsWith(OCI_PREFIX) || name === OCI_OPAQUE || name.length === OCI_PREFIX.length) return undefined;
  return name.slice(OCI_PREFIX.length);
}

/** Names that are format markers and never shown in the merged view. */
export function isMarkerName(name: string): boolean {
  return name.startsWith(OCI_PREFIX);
}

const ESCAPED_PREFIX = 'trusted.overlay.overlay.';

/**
 * The name a branch's xattr shows under in the merged view, or undefined when it is the
 * overlay's own bookkeeping (hidden, as the kernel hides it). A nested overlay's xattrs are
 * stored escaped as "trusted.overlay.overlay.X" and shown as "trusted.overlay.X".
 */
export function shownXattrName(stored: string): string | undefined {
  if (!stored.startsWith(XATTR_PREFIX)) return stored;
  return stored.startsWith(ESCAPED_PREFIX) ? XATTR_PREFIX + stored.slice(ESCAPED_PREFIX.length) : undefined;
}

/** The name to read in the branch for a name asked through the mount (inverse of shownXattrName). */
export function storedXattrName(shown: string): string {
  return shown.startsWith(XATTR_PREFIX) ? ESCAPED_PREFIX + shown.slice(XATTR_PREFIX.length) : shown;
}
