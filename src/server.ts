// One serving process: build the union, mount it, record who serves it, and leave cleanly on
// SIGINT/SIGTERM or when the mount disappears (someone ran umount(8) directly).
import { release } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { toFuseOps, type Opening } from './fuse/adapter.js';
import { mountFuse, unmountPath } from './fuse/mount.js';
import { mountKernelFuse } from './fuse/kernel/mount.js';
import { DEFAULT_READAHEAD_KIB } from './fuse/kernel/readahead.js';
import type { KernelPolicy } from './fuse/kernel/session.js';
import { listenControl, type ControlServer } from './host/control.js';
import { isServing, readRecord, removeRecord, socketFor, startTicks, writeRecord } from './host/runtime.js';
import type { Log } from './log.js';
import { mountPoints } from './preflight.js';
import { clearWorkDir } from './copyup.js';
import { ensureDir } from './host/fs.js';
import type { RealPath } from './path.js';
import { OpCounters, mountStats } from './stats.js';
import { createUnion } from './union.js';
import { canWriteKernelWhiteouts } from './whiteout-writer.js';
import type { Engine, ServeConfig } from './serve-config.js';

export type { Engine, ServeConfig };

export interface Serving {
  /** Unmount (lazily when busy, so a stop always ends the mount) and release everything. */
  stop(): Promise<void>;
  /** Resolves when the mount has ended, whoever ended it. */
  readonly ended: Promise<void>;
}


/**
 * The engine of a mount: as asked (engine=), else the kernel engine where the kernel speaks FUSE
 * 7.28 or newer (Linux 4.20, the oldest protocol it answers: src/fuse/kernel/wire.ts), else
 * libfuse. `release` is os.release().
 */
export function engineFor(c: ServeConfig, kernelRelease: string = release()): Engine {
  if (c.engine !== undefined) return c.engine;
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  const [major, minor] = m === null ? [0, 0] : [Number(m[1]), Number(m[2])];
  return major > 4 || (major === 4 && minor >= 20) ? 'kernel' : 'libfuse';
}

/** How long the kernel keeps lookups and attributes of a read-only union (seconds). */
const READ_ONLY_CACHE_SECONDS = 3600;

/** A union that takes changes: an upper with its work dir, not served read-only. */
export function isWritable(c: ServeConfig): boolean {
  return c.upper !== undefined && c.work !== undefined && !c.readOnly;
}

/** libfuse options for a union: see native-notes/fuse-native.md for each choice. */
export function fuseOptionsFor(c: ServeConfig): string[] {
  // use_ino: st_ino and d_ino are layerfs's own (src/inode.ts), shared by hard links.
  // nonempty: see mountOptionsFor.
  const o = ['fsname=layerfs', 'subtype=layerfs', 'default_permissions', 'nonempty', 'use_ino'];
  if (c.allowOther) o.push('allow_other');
  const writable = isWritable(c);
  if (!writable) {
    // The kernel then refuses every change itself (EROFS, as on a read-only overlay) without a
    // round trip, and since nothing can change the files, their pages stay cached across opens.
    o.push('ro', 'kernel_cache');
    // Nothing in a read-only union changes (lowers are immutable by contract), so the kernel may
    // keep names, attributes and absences: most requests then never reach user space.
    // With lower_ttl, no longer than that, and file pages are dropped when a file's mtime or
    // size changed (auto_cache) instead of kept across opens.
    const keep = Math.min(READ_ONLY_CACHE_SECONDS, c.lowerTtl ?? READ_ONLY_CACHE_SECONDS);
    if (c.lowerTtl !== undefined) o[o.indexOf('kernel_cache')] = 'auto_cache';
    o.push(`entry_timeout=${keep}`, `attr_timeout=${keep}`, `negative_timeout=${keep}`);
  } else {
    // A change through one name can change what another name shows (a hard link's count; the
    // high-level libfuse API gives each name its own node) and fuse-native cannot tell the
    // kernel to forget cached attributes, so a writable union does not let the kernel keep
    // them (D15).
    o.push('attr_timeout=0');
    // libfuse keeps names for 1 s by default: no longer than lower_ttl.
    if (c.lowerTtl !== undefined && c.lowerTtl < 1) o.push(`entry_timeout=${c.lowerTtl}`);
    // No hard_remove: with it, libfuse 2's high-level API forgets the path of a file unlinked
    // while open, and the kernel (6.x) sends fstat(2) as a GETATTR without the file handle, so
    // fstat of such a file fails with ENOENT. Without it, libfuse renames the file to a hidden
    // name and keeps sending that name; layerfs turns that rename into the unlink the kernel's
    // overlayfs would do and answers for the hidden name itself (src/ops/open.ts, unlinkOpen).
  }
  return [...o, ...c.fuseOptions];
}

/**
 * Kernel mount options of the 'kernel' engine (the rest of fuseOptionsFor is carried per reply).
 * nonempty: libfuse 2 refuses a mountpoint that holds files, and says why only on the server's
 * stderr (a background mount's log); the kernel's overlayfs, and fuse-overlayfs on libfuse 3,
 * mount over them, and so does layerfs (fusermount3 takes the option too).
 */
export function mountOptionsFor(c: ServeConfig): string[] {
  const o = ['fsname=layerfs', 'subtype=layerfs', 'default_permissions', 'nonempty'];
  if (c.allowOther) o.push('allow_other');
  if (!isWritable(c)) o.push('ro');
  return [...o, ...c.fuseOptions];
}

/**
 * Largest READ and WRITE request of the 'kernel' engine (the INIT reply's max_pages follows it):
 * 255 pages, 1020 KiB, 255 times libfuse 2's 4 KiB. Not 256: a READ answered through a pipe
 * (D56) takes a slot of it for the header and one per page, and a pipe holds 256 slots unless its
 * owner has CAP_SYS_RESOURCE.
 */
const KERNEL_MAX_WRITE = 255 * 4096;

/** What the kernel may keep, per reply, with the 'kernel' engine: the choices of fuseOptionsFor. */
export function kernelPolicyFor(c: ServeConfig, kernelRelease: string = release()): KernelPolicy {
  const kernelOpens = openingFor(c, kernelRelease) === 'kernel';
  if (!isWritable(c)) {
    const keep = Math.min(READ_ONLY_CACHE_SECONDS, c.lowerTtl ?? READ_ONLY_CACHE_SECONDS);
    return {
      entrySec: keep, attrSecFile: keep, attrSecDir: keep, attrSecLinked: keep, negativeSec: keep,
      // With lower_ttl, pages are dropped at every open instead of kept (libfuse's auto_cache
      // kept them while mtime and size stayed the same).
      keepCache: c.lowerTtl === undefined, cacheDirs: kernelOpens, cacheSymlinks: c.lowerTtl === undefined,
      // ACLs cannot change here: the kernel may enforce and keep them (with lower_ttl they could
      // change underneath, and the kernel would go on enforcing what it kept).
      posixAcl: c.lowerTtl === undefined && c.acl !== false,
      kernelOpens, maxWrite: KERNEL_MAX_WRITE, writable: false,
    };
  }
  // Names, absences and files' attributes are kept as in a read-only union (D73): each changes
  // only through a request the kernel sees (it then drops or updates what it kept; where one
  // request changes another node, layerfs tells the kernel: D29), or underneath in a branch
  // (what lower_ttl bounds). Before, 1 s: a stat storm a few seconds after the last was cold.
  const names = Math.min(READ_ONLY_CACHE_SECONDS, c.lowerTtl ?? READ_ONLY_CACHE_SECONDS);
  return {
    // Files: kept as long as names (D29), but not an upper file with more than one name (D58).
    // Directories too: what a copy-up changes of them, the kernel is told to forget (D74).
    entrySec: names, attrSecFile: names, attrSecDir: names, attrSecLinked: 0, negativeSec: names,
    // Lower files' pages are kept across opens (D70), as in a read-only union, but not with
    // lower_ttl (a lower file could change underneath) and not an upper file's (two names of
    // one upper file are two nodes, and a write through one leaves the other's pages as they were).
    keepCache: false, keepLowerPages: c.lowerTtl === undefined, cacheDirs: false, cacheSymlinks: false, kernelOpens: false, maxWrite: KERNEL_MAX_WRITE,
    // The kernel enforces and keeps ACLs here too: every change of one goes through a request it
    // sees (SETXATTR, or a chmod that changes the mask), and what new entries inherit is
    // layerfs's to give (ops/place.ts). Not with lower_ttl, as above.
    posixAcl: c.lowerTtl === undefined && c.acl !== false,
    writable: true,
    passthrough: c.passthrough !== false,
  };
}

/**
 * Does this kernel open a file by itself once OPEN was answered with ENOSYS (fuse_do_open's
 * `no_open`)? Taken as Linux 5.1 and later (protocol 7.29, which added the same for directories);
 * a kernel without it would take ENOSYS as a failed open.
 * `release` is os.release(), e.g. "6.1.0-18-amd64".
 */
export function kernelOpensWithoutAsking(release: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (m === null) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 1);
}

/**
 * Who opens files (D26): in a union where nothing can change a file (read-only, lowers
 * immutable: no lower_ttl), the kernel, without asking; it then keeps file pages across opens
 * and layerfs sees only the reads of what it has not cached. Elsewhere layerfs opens every file.
 */
export function openingFor(c: ServeConfig, kernelRelease: string = release()): Opening {
  return !isWritable(c) && c.lowerTtl === undefined && kernelOpensWithoutAsking(kernelRelease) ? 'kernel' : 'union';
}

/**
 * Seconds the kernel may keep a directory's attributes in a writable union served by libfuse
 * (D25), where files get none (D15): a directory changes only through requests the kernel sees
 * (and after which it forgets what it kept), or through a copy-up below it, which can change its
 * ctime and size for that long. Libfuse's default for names, 1 s, and no longer than lower_ttl.
 * A read-only union keeps everything for an hour anyway, and so does the kernel engine, which
 * tells the kernel of copy-ups (D74).
 */
export function dirAttrTimeoutFor(c: ServeConfig): number | undefined {
  return isWritable(c) ? Math.min(1, c.lowerTtl ?? 1) : undefined;
}

/**
 * Prepare the work dir of a writable union: layerfs builds its copies in WORKDIR/work, the
 * subdirectory the kernel's overlayfs uses (so either can mount the pair), and clears what an
 * interrupted copy-up left there. The default whiteout format needs mknod: if it is refused,
 * the mount fails and says so (DECISIONS D13).
 */
async function prepareWork(c: ServeConfig, log: Log): Promise<string> {
  const work = `${c.work}/work`;
  await ensureDir(work as RealPath);
  const cleared = await clearWorkDir(work as RealPath);
  if (cleared > 0) log.info(`cleared ${cleared} leftover(s) of interrupted copy-ups in ${work}`);
  if ((c.whiteout ?? 'overlay') === 'overlay' && !(await canWriteKernelWhiteouts(work as RealPath))) {
    throw new Error(`cannot create whiteouts (char device 0:0) in ${c.work}: mknod is not allowed here; mount with -o whiteout=oci`);
  }
  return work;
}

/**
 * How far V8 lets the heap grow past what the last full collection kept (D30). Its default grows
 * it up to fourfold while allocation is fast, which a walk of a large image is: after `ls -lR`
 * of 105k files the server held 250 MB, though only ~85 MB of it was live. At 1.3x it holds
 * ~167 MB, and interleaved runs of find and ls -lR showed no consistent slowdown.
 */
const HEAP_GROWING_PERCENT = 30;

/**
 * Serve one mount from this process. `daemon`: this process is the host daemon (D36), which
 * serves other mounts too and lives on after this one.
 */
export async function serve(c: ServeConfig, log: Log, o: { readonly daemon?: boolean } = {}): Promise<Serving> {
  // Read by V8 at every full collection, so setting it here, before the first, is in time.
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  const work = isWritable(c) ? await prepareWork(c, log) : undefined;
  const union = createUnion({ lowers: c.lowers, upper: c.upper, work, whiteout: c.whiteout ?? 'overlay', lowerTtl: c.lowerTtl });
  let onExit = (): void => {};
  const ops = new OpCounters();
  const opLog: Log = { ...log, stats: ops };
  const opening = openingFor(c);
  const dirAttrTimeout = dirAttrTimeoutFor(c);
  const mounted = engineFor(c) === 'kernel'
    ? mountKernelFuse(c.mountpoint, union.ops, {
      options: mountOptionsFor(c), policy: kernelPolicyFor(c), log: opLog, onExit: () => onExit(), spinMicros: c.spinMicros,
      // Only root may write sysfs, and not where /sys is read-only (a container): the default is
      // tried as root and its failure left unsaid; what readahead= asks is always tried and told.
      readahead: c.readaheadKiB !== undefined ? { kib: c.readaheadKiB, quiet: false }
        : process.geteuid?.() === 0 ? { kib: DEFAULT_READAHEAD_KIB, quiet: true } : undefined,
      fixedXattrNames: (to) => union.tellFixedXattrNames(to),
      copiedUp: (to) => union.tellCopiedUp(to),
    })
    : await mountFuse(c.mountpoint, (caller, xattrKnown) => {
      union.tellFixedXattrNames(xattrKnown); // (a no-op unless no xattr can change: D20)
      return toFuseOps(union.ops, opLog, caller, opening);
    }, {
      options: fuseOptionsFor(c),
      // Reads without a handle must carry their path.
      nullPathOk: opening === 'union',
      // Where files are never changed, directories are not either: listings may stay cached (D27).
      cacheDirs: opening === 'kernel',
      ...(dirAttrTimeout === undefined ? {} : { attrTimeoutDir: dirAttrTimeout }),
      onExit: () => onExit(),
    });
  writeRecord({ pid: process.pid, startTicks: startTicks(process.pid) ?? '', mountpoint: c.mountpoint, ...(o.daemon === true ? { daemon: true as const } : {}) });
  const started = Date.now();
  let control: ControlServer | undefined;
  try {
    control = await listenControl(socketFor(c.mountpoint), (req) => {
      if ((req as { request?: unknown } | null)?.request !== 'stats') return { error: 'unknown request' };
      return mountStats(union, ops, c.mountpoint, (Date.now() - started) / 1000, mounted.inFlight?.(), mounted.passthrough?.(), mounted.spliced?.());
    });
  } catch (e) {
    // Stats are a window onto the mount, not part of it: serve without them.
    log.info(`no stats for ${c.mountpoint}: cannot listen on ${socketFor(c.mountpoint)} (${(e as Error).message})`);
  }

  let endedResolve!: () => void;
  const ended = new Promise<void>((r) => (endedResolve = r));
  let stopping: Promise<void> | undefined;
  const finish = async (): Promise<void> => {
    await control?.close();
    await union.close();
    const r = readRecord(c.mountpoint);
    if (r === undefined || r.pid === process.pid || !isServing(r)) removeRecord(c.mountpoint, process.pid);
    endedResolve();
  };
  // The session ends on our own unmount and on anyone else's (umount(8), fusermount -u).
  onExit = () => void stop();

  function stop(): Promise<void> {
    stopping ??= (async () => {
      if (mountPoints().has(c.mountpoint)) {
        try {
          await mounted.unmount();
        } catch (e) {
          log.info(`unmount of ${c.mountpoint} failed (${(e as Error).message}); detaching it lazily`);
          await unmountPath(c.mountpoint, { lazy: true }).catch((e2: Error) => log.info(`lazy unmount failed: ${e2.message}`));
        }
      }
      await finish();
    })();
    return stopping;
  }
  return { stop, ended };
}
