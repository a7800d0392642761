// Shared helper of the unit tests (not a test file itself): builds real branch directories in a
// temp dir, in both whiteout formats. Char 0:0 whiteouts and trusted.* xattrs need root; they are
// made with the project's own mknod / setXattr (src/host/xattr.ts).
import * as fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { mknod, setXattr } from '../../src/host/libc.js';
import type { RealPath } from '../../src/path.js';

export type Xattrs = Record<string, string | Buffer>;

/** One entry of a branch. A plain string is a regular file with that content. */
export type Node =
  | string
  | { readonly type: 'file'; readonly content?: string | Buffer; readonly xattrs?: Xattrs }
  | { readonly type: 'dir'; readonly xattrs?: Xattrs }
  | { readonly type: 'symlink'; readonly target: string }
  /** Kernel-format whiteout: char device 0:0. */
  | { readonly type: 'whiteout' }
  /** Xattr whiteout: zero-size regular file with trusted.overlay.whiteout. */
  | { readonly type: 'xwhiteout' }
  /** A character device that is not a whiteout. */
  | { readonly type: 'chardev'; readonly major: number; readonly minor: number }
  | { readonly type: 'fifo' }
  /** Another name of the file at `target` (a path of the same branch, made first). */
  | { readonly type: 'hardlink'; readonly target: string };

/** A branch: vpath without leading slash ("a/b") -> entry. Missing parents are created as dirs. */
export type Spec = Record<string, Node>;

export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export const dir = (xattrs?: Xattrs): Node => (xattrs === undefined ? { type: 'dir' } : { type: 'dir', xattrs });
/** A dir marked opaque in the kernel format ("y"), or marked "x" (holds xattr whiteouts). */
export const xattrOpaque = (value: 'y' | 'x' = 'y'): Node => dir({ 'trusted.overlay.opaque': value });
export const symlink = (target: string): Node => ({ type: 'symlink', target });
export const whiteout: Node = { type: 'whiteout' };
export const xwhiteout: Node = { type: 'xwhiteout' };
export const fifo: Node = { type: 'fifo' };
export const hardlink = (target: string): Node => ({ type: 'hardlink', target });
export const chardev = (major: number, minor: number): Node => ({ type: 'chardev', major, minor });
export const file = (content: string | Buffer, xattrs?: Xattrs): Node =>
  xattrs === undefined ? { type: 'file', content } : { type: 'file', content, xattrs };

function setAll(p: string, xattrs: Xattrs | undefined): void {
  for (const [k, v] of Object.entries(xattrs ?? {})) setXattr(p as RealPath, k, Buffer.isBuffer(v) ? v : Buffer.from(v));
}

/** Write one branch under `root` (which is created). */
export function writeBranch(root: string, spec: Spec): void {
  fs.mkdirSync(root, { recursive: true });
  // Parents before children, hard links after what they name; directory xattrs are set after all
  // entries exist.
  const isLink = (k: string): number => (typeof spec[k] === 'object' && (spec[k] as { type: string }).type === 'hardlink' ? 1 : 0);
  const keys = Object.keys(spec).sort((a, b) => isLink(a) - isLink(b) || a.split('/').length - b.split('/').length);
  const dirXattrs: Array<[string, Xattrs]> = [];
  for (const key of keys) {
    const node = spec[key]!;
    const p = path.join(root, key);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (typeof node === 'string') {
      fs.writeFileSync(p, node);
      continue;
    }
    switch (node.type) {
      case 'file':
        fs.writeFileSync(p, node.content ?? '');
        setAll(p, node.xattrs);
        break;
      case 'dir':
        fs.mkdirSync(p, { recursive: true });
        if (node.xattrs !== undefined) dirXattrs.push([p, node.xattrs]);
        break;
      case 'symlink':
        fs.symlinkSync(node.target, p);
        break;
      case 'whiteout':
        mknod(p as RealPath, S_IFCHR | 0o644, 0);
        break;
      case 'xwhiteout':
        fs.writeFileSync(p, '');
        setXattr(p as RealPath, 'trusted.overlay.whiteout', Buffer.from('y'));
        break;
      case 'chardev':
        // makedev for small numbers (major < 4096, minor < 256).
        mknod(p as RealPath, S_IFCHR | 0o644, (node.major << 8) | node.minor);
        break;
      case 'fifo':
        mknod(p as RealPath, S_IFIFO | 0o644, 0);
        break;
      case 'hardlink':
        fs.linkSync(path.join(root, node.target), p);
        break;
    }
  }
  for (const [p, x] of dirXattrs) setAll(p, x);
}

export interface Scratch {
  readonly root: string;
  /** A fresh, empty directory under the scratch root. */
  dir(label: string): string;
  /** Write branches (top-most first) into a fresh directory; returns their roots. */
  branches(...specs: Spec[]): string[];
  cleanup(): Promise<void>;
}

/** One temp dir per test file; remove it with `test.after.always(s.cleanup)`. */
export async function makeScratch(label: string): Promise<Scratch> {
  const root = await mkdtemp(path.join(tmpdir(), `layerfs-unit-${label}-`));
  let n = 0;
  const fresh = (l: string): string => {
    const d = path.join(root, `${n++}-${l}`);
    fs.mkdirSync(d);
    return d;
  };
  return {
    root,
    dir: fresh,
    branches(...specs) {
      const set = fresh('set');
      return specs.map((spec, i) => {
        const b = path.join(set, `L${i}`);
        writeBranch(b, spec);
        return b;
      });
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}
