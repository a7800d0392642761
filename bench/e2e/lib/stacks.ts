/**
 * Layer stacks for the "lookup cost against the number of layers" workload: for each layer
 * count L, L layers that all hold the same directories (so every directory is merged through
 * all L), a few files of their own in each directory, and the looked-up files in the BOTTOM
 * layer only, so that resolving one of them misses in the L-1 layers above first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface LayerStack {
  layers: number;
  /** Layer roots, bottom layer first. */
  roots: string[];
  /** The merged view, flattened into a plain directory. */
  flat: string;
}

export interface Stacks {
  stacks: LayerStack[];
  /** Relative paths of the looked-up files (all in the bottom layer), sorted. */
  paths: string[];
  dirs: number;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/**
 * Writes one stack per entry of `counts` under `base/<L>/<NN>` (NN = 00 for the bottom layer)
 * plus its flattened view under `base/<L>/flat`.
 */
export function writeLayerStacks(base: string, counts: readonly number[], nPaths: number): Stacks {
  const nDirs = Math.max(4, Math.round(Math.sqrt(nPaths)));
  const dirNames = Array.from({ length: nDirs }, (_, i) => `d${pad(i, 3)}`);
  const paths = Array.from({ length: nPaths }, (_, i) => `${dirNames[i % nDirs] as string}/f${pad(i, 5)}.conf`).sort();
  const stacks: LayerStack[] = [];
  for (const L of counts) {
    const dir = path.join(base, String(L));
    const roots = Array.from({ length: L }, (_, i) => path.join(dir, pad(i, 2)));
    const flat = path.join(dir, 'flat');
    for (const root of [...roots, flat]) {
      for (const d of dirNames) fs.mkdirSync(path.join(root, d), { recursive: true, mode: 0o755 });
    }
    for (const p of paths) {
      const body = `${p}\n`;
      fs.writeFileSync(path.join(roots[0] as string, p), body, { mode: 0o644 });
      fs.writeFileSync(path.join(flat, p), body, { mode: 0o644 });
    }
    for (let i = 1; i < L; i++) {
      for (const d of dirNames) {
        const rel = `${d}/u${pad(i, 2)}`;
        fs.writeFileSync(path.join(roots[i] as string, rel), `${rel}\n`, { mode: 0o644 });
        fs.writeFileSync(path.join(flat, rel), `${rel}\n`, { mode: 0o644 });
      }
    }
    stacks.push({ layers: L, roots, flat });
  }
  return { stacks, paths, dirs: nDirs };
}
