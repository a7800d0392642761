// The kernel names files by node id; layerfs's union works by path. This table is the bridge:
// one node per name the kernel has looked up (as libfuse's high-level API keeps them), with the
// kernel's lookup count, so that a node lives exactly as long as the kernel may still name it.
//
// A node removed or renamed over while the kernel still holds it becomes nameless: requests for
// it that need a path get ENOENT, and those that carry a file handle go by the handle.
import { ROOT, childOf, components, type Name, type VPath } from '../../path.js';

export interface Node {
  readonly id: number;
  parent: Node | undefined;
  name: string;
  /** How many lookups the kernel has not yet forgotten. */
  lookups: number;
  children: Map<string, Node> | undefined;
  /** Handles open on this node (for requests on a nameless node that carry none); made on first open. */
  handles: Set<number> | undefined;
  /** Every xattr name the entry shows, where they can never change (D20); else undefined. */
  xattrs: readonly string[] | undefined;
  /**
   * A regular file made through this node (CREATE), with no xattr set through it since and no
   * second name: it has no security.capability (session.ts, CAPABILITY).
   */
  noCapability: boolean;
}

export const ROOT_ID = 1;

export class NodeTable {
  readonly root: Node = { id: ROOT_ID, parent: undefined, name: '', lookups: 1, children: undefined, handles: undefined, xattrs: undefined, noCapability: false };
  private readonly byId = new Map<number, Node>([[ROOT_ID, this.root]]);
  private next = ROOT_ID + 1;

  get(id: number): Node | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }

  /** The path of a node, or null when it (or a directory above it) has no name any more. */
  path(n: Node): VPath | null {
    if (n === this.root) return ROOT;
    const names: string[] = [];
    for (let at: Node | undefined = n; at !== this.root; at = at.parent) {
      if (at === undefined) return null;
      names.push(at.name);
    }
    let p: VPath = ROOT;
    for (let i = names.length - 1; i >= 0; i--) p = childOf(p, names[i] as Name);
    return p;
  }

  /** The node the kernel holds for path p, if any. */
  find(p: VPath): Node | undefined {
    let n: Node | undefined = this.root;
    for (const name of components(p)) {
      n = n.children?.get(name);
      if (n === undefined) return undefined;
    }
    return n;
  }

  /** A successful lookup of `name` in `parent`: the node the kernel is given (counted once more). */
  lookedUp(parent: Node, name: string): Node {
    let n = parent.children?.get(name);
    if (n === undefined) {
      n = { id: this.next++, parent, name, lookups: 0, children: undefined, handles: undefined, xattrs: undefined, noCapability: false };
      (parent.children ??= new Map()).set(name, n);
      this.byId.set(n.id, n);
    }
    n.lookups++;
    return n;
  }

  /** The kernel dropped `count` of its lookups of node `id`. */
  forget(id: number, count: number): void {
    const n = this.byId.get(id);
    if (n === undefined || n === this.root) return;
    n.lookups -= count;
    if (n.lookups > 0) return;
    this.byId.delete(id);
    // A directory forgotten before its children (not what the kernel does) stays in the tree for them.
    if (n.children !== undefined && n.children.size > 0) return;
    this.detach(n);
  }

  /** `name` in `parent` is gone (unlink, rmdir): its node, if any, has no name from now on. */
  removed(parent: Node, name: string): void {
    const n = parent.children?.get(name);
    if (n !== undefined) this.detach(n);
  }

  /** A rename: whatever was at the destination loses its name; the source node moves there. */
  renamed(from: Node, fromName: string, to: Node, toName: string): void {
    const n = from.children?.get(fromName);
    this.removed(to, toName);
    if (n === undefined) return;
    from.children?.delete(fromName);
    n.parent = to;
    n.name = toName;
    (to.children ??= new Map()).set(toName, n);
  }

  /** The entries at from/fromName and to/toName swapped places (RENAME_EXCHANGE): so do their nodes. */
  exchanged(from: Node, fromName: string, to: Node, toName: string): void {
    const a = from.children?.get(fromName);
    const b = to.children?.get(toName);
    if (a !== undefined) from.children?.delete(fromName);
    if (b !== undefined) to.children?.delete(toName);
    if (a !== undefined) {
      a.parent = to;
      a.name = toName;
      (to.children ??= new Map()).set(toName, a);
    }
    if (b !== undefined) {
      b.parent = from;
      b.name = fromName;
      (from.children ??= new Map()).set(fromName, b);
    }
  }

  private detach(n: Node): void {
    const p = n.parent;
    if (p?.children?.get(n.name) === n) {
      p.children.delete(n.name);
      // A forgotten parent kept only for its children goes with the last of them.
      if (p.children.size === 0 && p !== this.root && !this.byId.has(p.id)) this.detach(p);
    }
    n.parent = undefined;
  }
}
