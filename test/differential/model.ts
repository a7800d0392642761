// A simple, independent model of the merged view of a read-only layer set, computed from the
// resolved layer specs (what buildLayers wrote). It exists to check the TEST INFRASTRUCTURE: the
// differential suite compares the kernel's mount with it first, so that a wrong builder, snapshot,
// mount helper or a misunderstood case shows up as "kernel vs model" rather than being blamed on
// layerfs. It is not a second implementation of layerfs: layerfs is compared with the kernel only.
//
// Rules (overlayfs, read-only, no redirects/metacopy): apply layers bottom-up; an entry replaces
// whatever the lower layers had at its path (with the subtree), except that a directory over a
// directory merges unless it is opaque (the topmost directory's attributes win); a whiteout removes
// the path and its subtree.

import { createHash } from 'node:crypto';
import type { BuiltLayers, ResolvedEntry, XattrValue } from '../helpers/layers.js';
import type { SnapNode, Snapshot } from '../helpers/tree.js';

function hexOf(v: XattrValue): string {
  return `0x${(typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('hex')}`;
}

function visibleXattrs(x: Record<string, XattrValue>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(x)) {
    if (k.startsWith('trusted.overlay.')) continue; // overlayfs' own namespace is never shown
    out[k] = hexOf(v);
  }
  return out;
}

export interface ModelOptions {
  xattrs: boolean;
  content: boolean;
  maxHashBytes?: number;
}

export function modelSnapshot(built: BuiltLayers, opts: ModelOptions): Snapshot {
  const max = opts.maxHashBytes ?? 64 * 1024 * 1024;
  const m = new Map<string, SnapNode>();
  const removeSubtree = (v: string) => {
    // Every node's parent is in the model, so no node means no subtree; only dirs have children.
    const cur = m.get(v);
    if (cur === undefined) return;
    m.delete(v);
    if (cur.type !== 'dir') return;
    const pre = v === '/' ? '/' : `${v}/`;
    for (const k of [...m.keys()]) if (k.startsWith(pre)) m.delete(k);
  };

  for (let li = built.layers.length - 1; li >= 0; li--) {
    const layer = built.layers[li];
    if (layer === undefined) continue;
    // Hard-link groups: inode key = the first file's path; nlink = group size.
    const groupOf = new Map<string, string>();
    const groupSize = new Map<string, number>();
    for (const e of layer.entries) {
      if (e.type === 'file') { groupOf.set(e.path, e.path); groupSize.set(e.path, 1); }
      if (e.type === 'hardlink') {
        const g = groupOf.get(e.target) ?? e.target;
        groupOf.set(e.path, g);
        groupSize.set(g, (groupSize.get(g) ?? 1) + 1);
      }
    }
    const fileByPath = new Map<string, ResolvedEntry>();
    for (const e of layer.entries) if (e.type === 'file') fileByPath.set(e.path, e);

    const fileNode = (f: Extract<ResolvedEntry, { type: 'file' }>, nlink: number): SnapNode => {
      const n: SnapNode = { type: 'file', mode: f.mode, uid: f.uid, gid: f.gid, size: f.size, mtimeMs: f.mtime, nlink };
      if (opts.content) {
        if (f.size > max) n.sha256 = `skipped:size>${max}`;
        else {
          const b = Buffer.alloc(f.size);
          f.content.copy(b, 0, 0, Math.min(f.content.length, f.size));
          for (const w of f.writes) w.data.copy(b, w.offset);
          n.sha256 = createHash('sha256').update(b).digest('hex');
        }
      }
      if (opts.xattrs) n.xattrs = visibleXattrs(f.xattrs);
      return n;
    };

    for (const e of layer.entries) {
      const v = e.path === '' ? '/' : `/${e.path}`;
      switch (e.type) {
        case 'whiteout':
          removeSubtree(v);
          break;
        case 'dir': {
          const cur = m.get(v);
          const node: SnapNode = { type: 'dir', mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtime };
          if (opts.xattrs) node.xattrs = visibleXattrs(e.xattrs);
          if (!(cur !== undefined && cur.type === 'dir' && !e.opaque) && v !== '/') removeSubtree(v);
          m.set(v, node);
          break;
        }
        case 'file': {
          removeSubtree(v);
          m.set(v, fileNode(e, groupSize.get(e.path) ?? 1));
          break;
        }
        case 'hardlink': {
          removeSubtree(v);
          const g = groupOf.get(e.path) ?? e.target;
          const f = fileByPath.get(g);
          if (f === undefined || f.type !== 'file') throw new Error(`model: hard link ${e.path} to unknown ${g}`);
          m.set(v, fileNode(f, groupSize.get(g) ?? 1));
          break;
        }
        case 'symlink': {
          removeSubtree(v);
          m.set(v, {
            type: 'symlink', mode: 0o777, uid: e.uid, gid: e.gid, size: Buffer.byteLength(e.target), target: e.target,
            mtimeMs: e.mtime, nlink: 1, ...(opts.xattrs ? { xattrs: {} } : {}),
          });
          break;
        }
        case 'fifo': {
          removeSubtree(v);
          m.set(v, { type: 'fifo', mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtime, nlink: 1, ...(opts.xattrs ? { xattrs: {} } : {}) });
          break;
        }
        case 'chardev': {
          removeSubtree(v);
          m.set(v, {
            type: 'chardev', mode: e.mode, uid: e.uid, gid: e.gid, rdev: `${e.major}:${e.minor}`, mtimeMs: e.mtime, nlink: 1,
            ...(opts.xattrs ? { xattrs: {} } : {}),
          });
          break;
        }
      }
    }
  }
  const nodes = new Map([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { root: '(model)', nodes, problems: [] };
}
