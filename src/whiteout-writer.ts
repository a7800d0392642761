// Writing whiteouts and opaque markers into the upper, in the format the mount was asked for:
//   overlay (default): what the kernel's overlayfs writes, so the upper mounts under the kernel:
//                      char device 0:0 with mode 0 (the kernel's WHITEOUT_MODE), and
//                      trusted.overlay.opaque = "y";
//   oci:               ".wh.NAME" and ".wh..wh..opq" empty files (mode 0600), for building OCI
//                      layers, or where mknod is not allowed.
// Removing a whiteout removes it in both formats: either may be there (an upper written by
// another tool, or by layerfs with the other format).
import { constants } from 'node:fs';
import type { Branch } from './branch.js';
import { FsError, hasCode } from './errno.js';
import * as host from './host/fs.js';
import { mknod, removeXattr, renameExchange, setTimesNs, setXattr } from './host/libc.js';
import { NAME_MAX, childOf, type Name, type RealPath, type VPath } from './path.js';
import { OCI_OPAQUE, OCI_PREFIX, XATTR_OPAQUE, isKernelWhiteout } from './whiteout.js';
import { nameByteLength } from './name-bytes.js';

export type WhiteoutFormat = 'overlay' | 'oci';

const WHITEOUT_MODE = constants.S_IFCHR | 0;
const MARKER_MODE = 0o600;

async function createEmpty(p: RealPath): Promise<void> {
  const fd = await host.open(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, MARKER_MODE);
  await host.close(fd);
}

async function removeIfPresent(p: RealPath): Promise<void> {
  try {
    await host.unlink(p);
  } catch (e) {
    if (!hasCode(e, 'ENOENT')) throw e;
  }
}

export class WhiteoutWriter {
  /** Whiteouts written and directories marked opaque, for stats. */
  readonly counts = { whiteouts: 0, opaques: 0 };

  constructor(readonly format: WhiteoutFormat) {}

  /** Record in the upper that `name` in `dir` is deleted (the upper's dir must exist). */
  async add(upper: Branch, dir: VPath, name: Name): Promise<void> {
    this.counts.whiteouts++;
    if (this.format === 'overlay') {
      const p = upper.real(childOf(dir, name));
      try {
        mknod(p, WHITEOUT_MODE, 0);
      } catch (e) {
        const st = hasCode(e, 'EEXIST') ? await host.lstatOrUndefined(p) : undefined;
        if (st === undefined || !isKernelWhiteout(st)) throw e; // an existing whiteout is fine
      }
      return;
    }
    if (nameByteLength(name) + OCI_PREFIX.length > NAME_MAX) throw new FsError('ENAMETOOLONG', 'whiteout', childOf(dir, name));
    try {
      await createEmpty(upper.real(childOf(dir, `${OCI_PREFIX}${name}` as Name)));
    } catch (e) {
      if (!hasCode(e, 'EEXIST')) throw e;
    }
  }

  /**
   * Replace what the upper holds at `name` (a file, or an emptied directory) by a whiteout,
   * atomically for the kernel format: the whiteout is made in the work dir and swapped in, so
   * the lower entry can never show through in between. `scratch` is a free work-dir path.
   */
  async replace(upper: Branch, dir: VPath, name: Name, scratch: RealPath): Promise<void> {
    const p = upper.real(childOf(dir, name));
    if (this.format === 'overlay') {
      this.counts.whiteouts++;
      mknod(scratch, WHITEOUT_MODE, 0);
      renameExchange(scratch, p);
      await host.rmTree(scratch);
      return;
    }
    await this.add(upper, dir, name); // first: a crash then leaves the entry, never the lower one
    await host.rmTree(p);
  }

  /** Remove any whiteout of `name` in `dir` of the upper, in either format. */
  async remove(upper: Branch, dir: VPath, name: Name): Promise<void> {
    const p = upper.real(childOf(dir, name));
    const st = await host.lstatOrUndefined(p);
    if (st !== undefined && isKernelWhiteout(st)) await host.unlink(p);
    if (nameByteLength(name) + OCI_PREFIX.length <= NAME_MAX) {
      await removeIfPresent(upper.real(childOf(dir, `${OCI_PREFIX}${name}` as Name)));
    }
  }

  /** Mark a directory opaque (an upper one, or one being built in the work dir). */
  async makeOpaque(real: RealPath): Promise<void> {
    this.counts.opaques++;
    if (this.format === 'overlay') {
      setXattr(real, XATTR_OPAQUE, Buffer.from('y'));
      return;
    }
    // The marker is an entry of the directory: making it changes the directory's mtime, where
    // the kernel's format (an xattr) changes its ctime only. Its times are put back, so that a
    // directory renamed over a whiteout keeps its mtime in both formats.
    const times = host.lstatEntry(real);
    try {
      await createEmpty(`${real}/${OCI_OPAQUE}` as RealPath);
    } catch (e) {
      if (!hasCode(e, 'EEXIST')) throw e;
      return;
    }
    setTimesNs(real, times.atimeNs, times.mtimeNs);
  }

  /** Clear a directory's opaque marker, in either format. */
  async clearOpaque(real: RealPath): Promise<void> {
    try {
      removeXattr(real, XATTR_OPAQUE);
    } catch (e) {
      if (!hasCode(e, 'ENODATA') && !hasCode(e, 'ENOTSUP')) throw e;
    }
    await removeIfPresent(`${real}/${OCI_OPAQUE}` as RealPath);
  }
}

/**
 * Can the work dir's filesystem hold kernel whiteouts? (mknod of a char device needs
 * CAP_MKNOD, which a rootless or restricted container lacks.) Probed once at mount.
 */
export async function canWriteKernelWhiteouts(workdir: RealPath): Promise<boolean> {
  const probe = `${workdir}/.layerfs-whiteout-probe-${process.pid}` as RealPath;
  try {
    mknod(probe, WHITEOUT_MODE, 0);
  } catch (e) {
    if (hasCode(e, 'EPERM') || hasCode(e, 'ENOTSUP') || hasCode(e, 'EOPNOTSUPP')) return false;
    throw e;
  }
  await host.unlink(probe);
  return true;
}
