/**
 * The file system variants compared by the end-to-end benchmarks. Each one serves the merged
 * view of a layer stack (read-only, or writable with a fresh upper) at a directory, and knows
 * how to mount and unmount it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CmdResult } from './sys.js';
import { CMD_ENV, describe, findServerPid, isMounted, mountAt, run, sleepMs, unmountWith, waitPidExit, which } from './sys.js';

// layerfs-libfuse: layerfs served through fuse-native and libfuse (engine=libfuse), the engine
// before D28, to compare the two in one run.
// layerfs-daemon: layerfs mounted with -o daemon, every mount served by one `layerfs daemon`
// that the bench starts at its first mount and stops at the end (D36): from its second mount on,
// what a host daemon that has served earlier containers gives; its peak RSS is the daemon's
// whole life's.
export const VARIANT_NAMES = ['plain', 'kernel', 'fuse-overlayfs', 'unionfs-fuse', 'layerfs', 'layerfs-daemon', 'layerfs-libfuse'] as const;
export type VariantName = (typeof VARIANT_NAMES)[number];
export const FUSE_VARIANTS: readonly VariantName[] = ['fuse-overlayfs', 'unionfs-fuse', 'layerfs', 'layerfs-daemon', 'layerfs-libfuse'];

// A layerfs variant with mount options of its own, written `layerfs@spin_us=0` (several joined by
// `+`: `layerfs-daemon@spin_us=0+lower_ttl=5`): two settings compared in one run, interleaved,
// rather than in two runs a machine's drift apart.
const OPTION_KINDS: readonly VariantName[] = ['layerfs', 'layerfs-daemon', 'layerfs-libfuse'];
/** Options that make the variant what it is: set by the bench, never by a variant's name. */
const RESERVED_OPTIONS = new Set(['lowerdir', 'upperdir', 'workdir', 'daemon', 'engine']);

export interface VariantSpec {
  /** As given: a name of VARIANT_NAMES, or KIND@OPTIONS. */
  readonly id: string;
  readonly kind: VariantName;
  /** The variant's own mount options, in order. */
  readonly options: readonly string[];
}

/** What a variant id names; throws with the reason when it names nothing the bench can mount. */
export function parseVariant(id: string): VariantSpec {
  const at = id.indexOf('@');
  const kind = at < 0 ? id : id.slice(0, at);
  if (!(VARIANT_NAMES as readonly string[]).includes(kind)) {
    throw new Error(`unknown variant ${id}; known: ${VARIANT_NAMES.join(', ')}, or ${OPTION_KINDS.join('|')}@OPTION[+OPTION...]`);
  }
  if (at < 0) return { id, kind: kind as VariantName, options: [] };
  if (!OPTION_KINDS.includes(kind as VariantName)) throw new Error(`variant ${id}: only ${OPTION_KINDS.join(', ')} take options`);
  const options = id.slice(at + 1).split('+');
  for (const o of options) {
    if (!/^[a-z][a-z0-9_]*(=[^\s,+@]+)?$/.test(o)) throw new Error(`variant ${id}: "${o}" is not a mount option (NAME or NAME=VALUE)`);
    const name = o.split('=')[0] as string;
    if (RESERVED_OPTIONS.has(name)) throw new Error(`variant ${id}: ${name} is set by the bench, not by a variant`);
  }
  return { id, kind: kind as VariantName, options };
}

/** Tools each variant needs, with the Debian package that has them. */
export const VARIANT_TOOLS: Partial<Record<VariantName, ReadonlyArray<{ cmd: string; pkg: string }>>> = {
  'fuse-overlayfs': [{ cmd: 'fuse-overlayfs', pkg: 'fuse-overlayfs' }],
  'unionfs-fuse': [{ cmd: 'unionfs-fuse', pkg: 'unionfs-fuse' }],
};

export interface VariantConfig {
  /** Directory that holds one mount point per variant. */
  mountBase: string;
  /** Path of bin/layerfs.js. */
  layerfsBin: string;
  /** Extra mount options for layerfs (appended after lowerdir=..., comma-separated). */
  layerfsOpts: string;
}

/** What to serve. */
export interface MountSpec {
  /** Layer roots in the kernel's format (char 0:0 whiteouts, opaque xattr), bottom layer first. */
  lowers: readonly string[];
  /** The same layers in unionfs-fuse's format, bottom first; defaults to `lowers` (fine without whiteouts). */
  unionfsLowers?: readonly string[];
  /** The merged view flattened into a plain directory (what the plain variant serves read-only). */
  plain: string;
  /**
   * Writable mounts: an empty upper directory (unionfs-fuse: its RW branch; plain: a writable
   * copy of the merged view, which is then served itself) and an empty work directory on the
   * same file system.
   */
  upper?: string;
  work?: string;
}

export class Variant {
  /** The variant's id (VariantSpec.id): a key of every table, and its mount point's name. */
  readonly name: string;
  readonly kind: VariantName;
  /** Mount options of its own (KIND@OPTIONS). */
  readonly options: readonly string[];
  readonly fuse: boolean;
  readonly needsMount: boolean;
  /** Directory the workloads run on (for plain: set by mount()). */
  root: string;
  /** Server process of the current FUSE mount (found read-only in /proc). */
  pid: number | undefined;
  private readonly cfg: VariantConfig;
  /** layerfs-daemon: the daemon this bench started, and its private runtime directory. */
  private daemon: { child: ChildProcess; env: NodeJS.ProcessEnv; runtime: string } | undefined;

  constructor(id: string, cfg: VariantConfig) {
    const spec = parseVariant(id);
    this.name = spec.id;
    this.kind = spec.kind;
    this.options = spec.options;
    this.cfg = cfg;
    this.fuse = FUSE_VARIANTS.includes(this.kind);
    this.needsMount = this.kind !== 'plain';
    this.root = path.join(cfg.mountBase, this.name.replace(/[^A-Za-z0-9._=-]/g, '_'));
  }

  /** Why this variant cannot run on this machine, if it cannot. */
  unavailableReason(): string | undefined {
    switch (this.kind) {
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
      case 'unionfs-fuse':
        if (!fs.existsSync('/dev/fuse')) return '/dev/fuse missing';
        return which(this.kind) ? undefined : `${this.kind} not installed`;
      case 'layerfs':
      case 'layerfs-daemon':
      case 'layerfs-libfuse':
        if (!fs.existsSync('/dev/fuse')) return '/dev/fuse missing';
        return fs.existsSync(this.cfg.layerfsBin) ? undefined : `${this.cfg.layerfsBin} does not exist`;
    }
  }

  get mounted(): boolean {
    return this.needsMount && isMounted(this.root);
  }

  /** Mounts the variant; returns the mount time in ms. Throws with a one-line reason. */
  mount(spec: MountSpec): number {
    const writable = spec.upper !== undefined;
    if (!this.needsMount) {
      this.root = spec.upper ?? spec.plain;
      return 0;
    }
    if (this.mounted) throw new Error(`${this.root} is already mounted`);
    if (writable && spec.work === undefined && this.kind !== 'unionfs-fuse') throw new Error('a writable mount needs a work directory');
    fs.mkdirSync(this.root, { recursive: true });
    let lowers = spec.lowers;
    if (this.kind === 'kernel' && !writable && lowers.length === 1) {
      // The kernel refuses a read-only overlay of one layer ("at least 2 lowerdir are needed
      // while upperdir nonexistent"): put an empty layer below it.
      const empty = path.join(this.cfg.mountBase, '.empty-layer');
      fs.mkdirSync(empty, { recursive: true, mode: 0o755 });
      lowers = [empty, ...lowers];
    }
    // overlayfs order: the leftmost lowerdir is the topmost layer.
    const lowerdir = [...lowers].reverse().join(':');
    const rw = writable ? `,upperdir=${spec.upper ?? ''},workdir=${spec.work ?? ''}` : '';
    const t0 = process.hrtime.bigint();
    let r: CmdResult;
    switch (this.kind) {
      case 'kernel':
        r = run('mount', ['-t', 'overlay', 'overlay', '-o', writable ? `lowerdir=${lowerdir}${rw}` : `ro,lowerdir=${lowerdir}`, this.root]);
        break;
      case 'fuse-overlayfs':
        // Without upperdir fuse-overlayfs serves the lowerdirs read-only (writes fail with EROFS).
        r = run('fuse-overlayfs', ['-o', `lowerdir=${lowerdir}${rw}`, this.root]);
        break;
      case 'unionfs-fuse': {
        // Leftmost branch = topmost. `cow` is needed for copy-up AND for hide markers to count;
        // hide_meta_files keeps the branches' .unionfs-fuse directories out of listings.
        const branches = [...(spec.unionfsLowers ?? spec.lowers)].reverse().map((b) => `${b}=RO`);
        if (writable) branches.unshift(`${spec.upper ?? ''}=RW`);
        r = run('unionfs-fuse', ['-o', 'cow,hide_meta_files', branches.join(':'), this.root]);
        break;
      }
      case 'layerfs':
      case 'layerfs-daemon':
      case 'layerfs-libfuse': {
        const extra = (this.cfg.layerfsOpts ? `,${this.cfg.layerfsOpts}` : '') + this.options.map((o) => `,${o}`).join('') +
          (this.kind === 'layerfs-libfuse' ? ',engine=libfuse' : this.kind === 'layerfs-daemon' ? ',daemon' : '');
        const env = this.kind === 'layerfs-daemon' ? this.startDaemon().env : undefined;
        r = run(process.execPath, [this.cfg.layerfsBin, 'mount', '-o', `lowerdir=${lowerdir}${rw}${extra}`, this.root], 120_000, env);
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
    if (!mountAt(this.root)) throw new Error('mount command succeeded but nothing is mounted there');
    return ms;
  }

  /** The daemon of layerfs-daemon, started at the first mount (the same one serves every later mount). */
  private startDaemon(): { env: NodeJS.ProcessEnv } {
    if (this.daemon !== undefined && this.daemon.child.exitCode === null && this.daemon.child.signalCode === null) return this.daemon;
    // A runtime directory of its own (a short path: a unix socket's must fit in 108 bytes), so
    // that it meets no daemon of the host's.
    const runtime = fs.mkdtempSync('/tmp/lfbench-');
    const env = { ...CMD_ENV, LAYERFS_RUNTIME_DIR: runtime };
    const child = spawn(process.execPath, [this.cfg.layerfsBin, 'daemon'], { env, stdio: 'ignore' });
    this.daemon = { child, env, runtime };
    const socket = path.join(runtime, 'daemon.sock');
    const end = Date.now() + 20_000;
    while (!fs.existsSync(socket) && Date.now() < end) sleepMs(25);
    if (!fs.existsSync(socket)) throw new Error('layerfs daemon did not start within 20 s');
    return this.daemon;
  }

  /** Stops what the variant keeps between mounts (layerfs-daemon's daemon). */
  close(): string[] {
    const d = this.daemon;
    this.daemon = undefined;
    if (d?.child.pid === undefined) return [];
    const problems: string[] = [];
    d.child.kill('SIGTERM');
    if (!waitPidExit(d.child.pid, 15_000)) {
      problems.push(`layerfs daemon pid ${d.child.pid} still running 15 s after SIGTERM; killed`);
      d.child.kill('SIGKILL');
    }
    fs.rmSync(d.runtime, { recursive: true, force: true });
    return problems;
  }

  /** Looks up (read-only) the FUSE server pid of the current mount; returns a problem, if any. */
  async locateServer(): Promise<string | undefined> {
    this.pid = undefined;
    if (!this.fuse || !this.mounted) return undefined;
    if (this.kind === 'layerfs-daemon') {
      this.pid = this.daemon?.child.pid;
      return this.pid === undefined ? 'no daemon' : undefined;
    }
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
      if (this.kind === 'kernel') primary = ['umount', this.root];
      else if (this.kind === 'layerfs' || this.kind === 'layerfs-libfuse') primary = [process.execPath, this.cfg.layerfsBin, 'umount', this.root];
      else if (this.kind === 'layerfs-daemon') primary = ['env', `LAYERFS_RUNTIME_DIR=${this.daemon?.runtime ?? ''}`, process.execPath, this.cfg.layerfsBin, 'umount', this.root];
      else primary = which('fusermount3') ? ['fusermount3', '-u', this.root] : ['umount', this.root];
      problems.push(...unmountWith(this.root, primary));
    }
    // The daemon lives on after each of its mounts.
    if (this.kind === 'layerfs-daemon') this.pid = undefined;
    if (this.pid !== undefined) {
      if (!waitPidExit(this.pid, 15_000)) problems.push(`${this.name} server pid ${this.pid} still running 15 s after unmount`);
      this.pid = undefined;
    }
    return problems;
  }
}
