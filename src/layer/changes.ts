// `layerfs diff`: the changes an upper directory records, as `docker diff` prints them:
//   A /path  added: no lower shows the path;
//   C /path  changed: a lower shows it and it differs (type, mode, owner, mtime, size, device,
//            link target, or extended attributes other than the overlay's own), or it is a
//            directory holding changes, or an opaque directory (its lower contents are gone);
//   D /path  deleted: a whiteout of a path a lower shows, and, under an opaque directory, every
//            name a lower shows there that the upper does not have.
// With lowers (topmost first) every entry is judged against what the stacked lowers show.
// Without them nothing below is known, so the upper's own records decide: a whiteout is D; an
// opaque directory is C (the kernel and layerfs make one only over a deleted lower entry); an
// entry that carries a copy-up record (the kernel's trusted.overlay.origin or layerfs's
// trusted.overlay.layerfs.ino) is C, which makes the directories that are merely parents of
// changes, copied up for them, C; everything else is A.
// Output is sorted as a pre-order walk with names in byte order, so it is the same every run.
import type { BigIntStats } from 'node:fs';
import * as host from '../host/fs.js';
import type { RealPath } from '../path.js';
import { LowerView, type LowerEntry } from './lowers.js';
import { joinRel, treeCompare } from './names.js';
import { hasCopyUpRecord, layerXattrs, readUpperDir, type UpperNode } from './upper.js';

export type ChangeKind = 'A' | 'C' | 'D';

export interface Change {
  readonly kind: ChangeKind;
  /** Absolute inside the layer: '/etc/passwd'. */
  readonly path: string;
}

const S_IFMT = 0o170000n;
const S_IFDIR = 0o040000n;
const S_IFLNK = 0o120000n;

/** The changes recorded in `upper`, judged against `lowers` (topmost first) when given. */
export async function upperChanges(upper: string, lowers: readonly string[] = []): Promise<Change[]> {
  const root = host.realpathSync(upper) as RealPath;
  const view = lowers.length > 0 ? new LowerView(lowers.map((l) => host.realpathSync(l) as RealPath)) : undefined;
  const differ = new Differ(root, view);
  await differ.walkDir('', [], false);
  return [...differ.changes]
    .sort(([a], [b]) => treeCompare(a, b))
    .map(([rel, kind]) => ({ kind, path: `/${rel}` }));
}

/** The listing, one "K /path" line each, as `docker diff` prints it. */
export function formatChanges(changes: readonly Change[]): string {
  return changes.map((c) => `${c.kind} ${c.path}\n`).join('');
}

interface Walked {
  /** Anything at or below this directory was reported. */
  readonly changed: boolean;
  readonly opaque: boolean;
}

class Differ {
  readonly changes = new Map<string, ChangeKind>();

  constructor(
    readonly root: RealPath,
    readonly view: LowerView | undefined,
  ) {}

  /** Report the changes below directory rel (components comps); hidesLower: an ancestor is opaque. */
  async walkDir(rel: string, comps: readonly string[], hidesLower: boolean): Promise<Walked> {
    const dir = await readUpperDir(this.root, rel);
    const present = new Set(dir.children.map((c) => c.name));
    let changed = false;
    for (const w of dir.whiteouts) {
      if (present.has(w.name)) continue; // the upper's own entry is shown, and reported itself
      if (this.view !== undefined && (await this.view.lookup([...comps, w.name])) === undefined) continue;
      this.changes.set(w.rel, 'D');
      changed = true;
    }
    if (this.view !== undefined && (hidesLower || dir.opaque)) {
      const whitedOut = new Set(dir.whiteouts.map((w) => w.name));
      for (const name of await this.view.list(comps)) {
        if (present.has(name) || whitedOut.has(name)) continue;
        this.changes.set(joinRel(rel, name), 'D');
        changed = true;
      }
    }
    for (const c of dir.children) {
      if (await this.visit(c, [...comps, c.name], hidesLower || dir.opaque)) changed = true;
    }
    return { changed, opaque: dir.opaque };
  }

  /** Report one upper entry (and what is below it); true when anything was reported. */
  async visit(node: UpperNode, comps: readonly string[], hidesLower: boolean): Promise<boolean> {
    const isDir = (node.st.mode & S_IFMT) === S_IFDIR;
    const sub: Walked = isDir ? await this.walkDir(node.rel, comps, hidesLower) : { changed: false, opaque: false };
    const kind = this.view === undefined ? kindWithoutLowers(node, sub) : await this.kindAgainst(node, sub, await this.view.lookup(comps));
    if (kind !== undefined) this.changes.set(node.rel, kind);
    return kind !== undefined || sub.changed;
  }

  async kindAgainst(node: UpperNode, sub: Walked, lower: LowerEntry | undefined): Promise<ChangeKind | undefined> {
    if (lower === undefined) return 'A';
    const isDir = (node.st.mode & S_IFMT) === S_IFDIR;
    if (isDir !== lower.isDir) return 'C';
    if (isDir && (sub.opaque || sub.changed)) return 'C';
    return (await differs(node, lower.abs)) ? 'C' : undefined;
  }
}

function kindWithoutLowers(node: UpperNode, sub: Walked): ChangeKind {
  return sub.opaque || hasCopyUpRecord(node.abs) ? 'C' : 'A';
}

/**
 * Is an upper entry different from the lower one it stands over? Attributes only, as Docker
 * does: file contents are not read (a content change that kept size and mtime goes unseen).
 */
async function differs(node: UpperNode, lowerAbs: RealPath): Promise<boolean> {
  const a = node.st;
  const b = await host.lstatNs(lowerAbs);
  if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || !sameTime(a, b)) return true;
  const isDir = (a.mode & S_IFMT) === S_IFDIR;
  if (!isDir && (a.size !== b.size || a.rdev !== b.rdev)) return true;
  if ((a.mode & S_IFMT) === S_IFLNK && (await host.readlink(node.abs)) !== (await host.readlink(lowerAbs))) return true;
  return !sameXattrs(layerXattrs(node.abs), layerXattrs(lowerAbs));
}

/** Equal mtimes; a time without its nanoseconds (from a tar, say) equals one with them (Docker's rule). */
function sameTime(a: BigIntStats, b: BigIntStats): boolean {
  if (a.mtimeNs === b.mtimeNs) return true;
  const ns = 1_000_000_000n;
  return a.mtimeNs / ns === b.mtimeNs / ns && (a.mtimeNs % ns === 0n || b.mtimeNs % ns === 0n);
}

function sameXattrs(a: readonly [string, Buffer][], b: readonly [string, Buffer][]): boolean {
  return a.length === b.length && a.every(([n, v], i) => b[i]![0] === n && b[i]![1].equals(v));
}
