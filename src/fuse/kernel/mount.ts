// Mount a union with the "kernel" engine (D28): layerfs speaks the FUSE protocol itself.
import type { Log } from '../../log.js';
import type { VPath } from '../../path.js';
import type { UnionOps } from '../../union.js';
import { unmountPath, type Mounted } from '../mount.js';
import { SPIN_MICROS, backingFiles, mountConnection, readConnection, spliceReads, writeReply } from './device.js';
import { setReadahead } from './readahead.js';
import { IN_FLIGHT_SHOWN } from '../../stats.js';
import { KernelSession, type KernelPolicy } from './session.js';

/** Room for a request's header and arguments besides the data of the largest WRITE. */
const HEADER_ROOM = 4096;

/**
 * A request unanswered this long is named in the log, once: its caller waits in the kernel,
 * unkillable (only a copy-up is cut short, for a killed caller: session.ts, interrupt()). Long
 * enough for the copy-up of a large file; the check runs every tenth of it.
 */
const OVERDUE_SECONDS = 60;

export function mountKernelFuse(
  mountpoint: string,
  ops: UnionOps,
  o: {
    readonly options: readonly string[]; readonly policy: KernelPolicy; readonly log: Log; readonly onExit: () => void;
    /** union.tellFixedXattrNames: where xattr names that never change come from (D20). */
    readonly fixedXattrNames?: (to: (p: VPath, names: readonly string[]) => void) => boolean;
    /** union.tellCopiedUp: where copy-ups are told from (D74). */
    readonly copiedUp?: (to: (p: VPath, dir: boolean) => void) => void;
    /** How long to read on after a burst of requests (D32); undefined: SPIN_MICROS. */
    readonly spinMicros?: number | undefined;
    /**
     * Readahead to set once INIT is answered (D38), in KiB; `quiet`: a failure is not logged.
     * Undefined: the kernel's.
     */
    readonly readahead?: { readonly kib: number; readonly quiet: boolean } | undefined;
  },
): Mounted {
  const fd = mountConnection(mountpoint, o.options);
  const ra = o.readahead;
  // Large READs of lower files (D56).
  const splice = spliceReads(fd);
  const session = new KernelSession(ops, o.policy, o.log, (reply) => {
    const err = writeReply(fd, reply);
    if (err !== undefined) o.log.bug('reply', new Error(`writing a reply to /dev/fuse failed: ${err}`));
  }, ra === undefined ? undefined : () => {
    const problem = setReadahead(mountpoint, ra.kib);
    if (problem !== undefined && !ra.quiet) o.log.info(`readahead stays the kernel's default: ${problem}`);
  }, o.policy.passthrough === true ? backingFiles(fd) : undefined, splice);
  o.fixedXattrNames?.(session.knowXattrs);
  o.copiedUp?.(session.copiedUp);
  readConnection(fd, o.policy.maxWrite + HEADER_ROOM, (b, len) => {
    try {
      session.request(b, len);
    } catch (e) {
      // A request layerfs could not even decode: say so and answer nothing (the kernel waits).
      o.log.bug('request', e);
    }
  }, (errno) => {
    clearInterval(watch);
    if (errno !== 19 /* ENODEV: unmounted */) o.log.info(`the FUSE connection of ${mountpoint} ended with errno ${errno}`);
    o.onExit();
  }, { micros: o.spinMicros ?? SPIN_MICROS, pending: session.pending });
  const watch = setInterval(() => {
    for (const r of session.overdue(OVERDUE_SECONDS)) {
      o.log.info(`${mountpoint}: ${r.op} of ${r.path} has had no answer for ${r.seconds.toFixed(0)} s`);
    }
  }, OVERDUE_SECONDS * 100);
  watch.unref();
  return {
    mountpoint,
    unmount: () => unmountPath(mountpoint),
    inFlight: () => ({ count: session.pendingCount, oldest: session.inFlight(IN_FLIGHT_SHOWN) }),
    passthrough: () => session.passthroughStats(),
    spliced: () => ({ ...session.spliced }),
  };
}
