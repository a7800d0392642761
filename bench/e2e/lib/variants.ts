/**
 * The file system variants compared by the end-to-end benchmarks. Each one exposes a
 * directory tree (the merged view of the same layers) and knows how to mount/unmount it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CmdResult } from './sys.js';
import { describe, findServerPid, isMounted, mountAt, run, unmountWith, waitPidExit, which } from './sys.js';

export const VARIANT_NAMES = ['plain', 'kernel', 'fuse-overlayfs', 'layerfs'] as const;
export type VariantName = (typeof VARIANT_NAMES)[number];

export interface VariantContext {
  /** Layer roots, bottom layer first. */
  layerRoots: readonly string[];
  /** Flattened copy of the merged view. */
  plainDir: string;
  /** Directory that holds one mount point per variant. */
  mountBase: string;
  /** Path of bin/layerfs.js. */
  layerfsBin: string;
  /** Extra mount options for layerfs (appended after lowerdir=..., comma-separated). */
  layerfsOpts: string;
}

export class Variant {
  readonly name: VariantName;
  readonly fuse: boolean;
  readonly needsMount: boolean;
  /** Directory the workloads run on. */
  readonly root: string;
  /** Server process of the current FUSE mount (found read-only in /proc). */
  pid: number | undefined;
  private readonly ctx: VariantContext;
  private readonly lowerdir: string;

  constructor(name: VariantName, ctx: VariantContext) {
    this.name = name;
    this.ctx = ctx;
    this.fuse = name === 'fuse-overlayfs' || name === 'layerfs';
    this.needsMount = name !== 'plain';
    this.root = name === 'plain' ? ctx.plainDir : path.join(ctx.mountBase, name);
    // overlayfs order: leftmost lowerdir is the topmost layer.
    this.lowerdir = [...ctx.layerRoots].reverse().join(':');
  }

  /** Why this variant cannot run on this machine, if it cannot. */
  unavailableReason(): string | undefined {
    switch (this.name) {
      case 'plain':
        return undefined;
      case 'kernel': {
        const fsList = fs.readFileSync('/proc/filesystems', 'utf8');
        if (!/\boverlay\b/.test(fsList)) {
          run('modprobe', ['overlay']);
          if (!/\boverlay\b/.test(fs.readFileSync('/proc/filesystems', 'utf8'))) return 'kernel overlayfs not available';
        }
        return undefined;
      }
      case 'fuse-overlayfs':
        if (!fs.existsSync('/dev/fuse')) return '/dev/fuse missing';
        return which('fuse-overlayfs') ? undefined : 'fuse-overlayfs not installed';
      case 'layerfs':
        if (!fs.existsSync('/dev/fuse')) return '/dev/fuse missing';
        return fs.existsSync(this.ctx.layerfsBin) ? undefined : `${this.ctx.layerfsBin} does not exist yet`;
    }
  }

  get mounted(): boolean {
    return this.needsMount && isMounted(this.root);
  }

  /** Mounts the variant read-only; returns the mount time in ms. Throws with a one-line reason. */
  mount(): number {
    if (!this.needsMount) return 0;
    if (this.mounted) throw new Error(`${this.root} is already mounted`);
    fs.mkdirSync(this.root, { recursive: true });
    const t0 = process.hrtime.bigint();
    let r: CmdResult;
    switch (this.name) {
      case 'kernel':
        r = run('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${this.lowerdir}`, this.root]);
        break;
      case 'fuse-overlayfs':
        // Without upperdir fuse-overlayfs serves the lowerdirs read-only (writes fail with EROFS).
        r = run('fuse-overlayfs', ['-o', `lowerdir=${this.lowerdir}`, this.root]);
        break;
      case 'layerfs': {
        const extra = this.ctx.layerfsOpts ? `,${this.ctx.layerfsOpts}` : '';
        r = run(process.execPath, [this.ctx.layerfsBin, 'mount', '-o', `lowerdir=${this.lowerdir}${extra}`, this.root], 120_000);
        break;
      }
      default:
        throw new Error(`cannot mount ${this.name}`);
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (!r.ok) {
      if (this.mounted) this.unmount();
      throw new Error(`mount failed: ${describe(r)}`);
    }
    const m = mountAt(this.root);
    if (!m) throw new Error('mount command succeeded but nothing is mounted there');
    return ms;
  }

  /** Looks up (read-only) the FUSE server pid of the current mount; returns a problem, if any. */
  async locateServer(): Promise<string | undefined> {
    this.pid = undefined;
    if (!this.fuse || !this.mounted) return undefined;
    const r = await findServerPid(this.root);
    if (r.pid !== undefined) this.pid = r.pid;
    return r.problem;
  }

  /** Unmounts (the proper way to stop a FUSE server) and waits for the server to exit. */
  unmount(): string[] {
    if (!this.needsMount) return [];
    const problems: string[] = [];
    if (isMounted(this.root)) {
      let primary: string[] | undefined;
      if (this.name === 'kernel') primary = ['umount', this.root];
      else if (this.name === 'fuse-overlayfs') primary = which('fusermount3') ? ['fusermount3', '-u', this.root] : ['umount', this.root];
      else if (this.name === 'layerfs') primary = [process.execPath, this.ctx.layerfsBin, 'umount', this.root];
      problems.push(...unmountWith(this.root, primary));
    }
    if (this.pid !== undefined) {
      if (!waitPidExit(this.pid, 15_000)) problems.push(`${this.name} server pid ${this.pid} still running 15 s after unmount`);
      this.pid = undefined;
    }
    return problems;
  }
}
