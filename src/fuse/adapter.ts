// UnionOps -> fuse-native handlers. Mechanical on purpose: brand the path, call the op, convert
// the reply. Every handler replies exactly once and never throws into fuse-native: an FsError
// becomes -errno, anything else is a bug, logged with its stack, and answered with -EIO.
import type { FuseOps, FuseStat, FuseStatfs } from 'fuse-native';
import type { StatsFs } from 'node:fs';
import { msOfTime, type Attr } from '../attr.js';
import { constants } from 'node:os';
import { performance } from 'node:perf_hooks';
import { FsError, toErrno } from '../errno.js';
import type { Log } from '../log.js';
import { baseName, vpath, type Name, type VPath } from '../path.js';
import type { Owner } from '../ops/place.js';
import type { UnionOps } from '../union.js';

type Reply<T> = { ok(v: T): void; err(errno: number): void };

function run<T>(log: Log, op: string, args: () => string, fn: () => Promise<T>, reply: Reply<T>): void {
  const t0 = performance.now();
  let p: Promise<T>;
  try {
    p = fn();
  } catch (e) {
    p = Promise.reject(e);
  }
  p.then(
    (v) => {
      const us = (performance.now() - t0) * 1000;
      log.stats?.record(op, us);
      if (log.tracing) log.trace(op, args(), 'ok', us);
      reply.ok(v);
    },
    (e: unknown) => {
      if (!(e instanceof FsError)) log.bug(op, e);
      const us = (performance.now() - t0) * 1000;
      const code = e instanceof FsError ? e.code : 'EIO';
      log.stats?.record(op, us, code);
      if (log.tracing) log.trace(op, args(), code, us);
      reply.err(-toErrno(e));
    },
  );
}

const done = (cb: (err: number) => void): Reply<unknown> => ({ ok: () => cb(0), err: cb });
const value = <T>(cb: (err: number, v?: T) => void): Reply<T> => ({ ok: (v) => cb(0, v), err: (n) => cb(n) });
const count = (cb: (n: number) => void): Reply<number> => ({ ok: cb, err: cb });

/** A stat reply; the patched fuse-native takes exact times as bigint ns (and prefers them to the ms). */
export type FuseStatNs = FuseStat & { atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint };

const nsOf = (sec: number, nsec: number): bigint => BigInt(sec) * 1_000_000_000n + BigInt(nsec);

export function toFuseStat(a: Attr, nlink = a.nlink): FuseStatNs {
  const x = a.exact;
  return {
    mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, dev: 0, nlink,
    ino: a.ino, rdev: a.rdev, blksize: a.blksize, blocks: a.blocks,
    atime: msOfTime(x.atimeSec, x.atimeNsec), mtime: msOfTime(x.mtimeSec, x.mtimeNsec), ctime: msOfTime(x.ctimeSec, x.ctimeNsec),
    atimeNs: nsOf(x.atimeSec, x.atimeNsec), mtimeNs: nsOf(x.mtimeSec, x.mtimeNsec), ctimeNs: nsOf(x.ctimeSec, x.ctimeNsec),
  };
}

/**
 * The name libfuse's high-level API gives a file that is unlinked (or renamed over) while open:
 * it renames it to this name through our rename, sends this name for fstat and the like, and
 * unlinks it after the last release (src/ops/open.ts, unlinkOpen).
 */
const FUSE_HIDDEN = /^\.fuse_hidden[0-9a-f]{16}$/;
const hiddenKey = (path: string): Name | undefined => {
  const name = baseName(path as VPath);
  return FUSE_HIDDEN.test(name) ? name : undefined;
};

/**
 * libfuse counts the hidden name as one of the file's links and takes one off the count of every
 * getattr reply for such a file: add it back, so that fstat shows the true count (0 when no
 * name is left, as the kernel's overlayfs shows).
 */
const forHidden = (a: Attr): FuseStatNs => toFuseStat(a, a.nlink + 1);

/** fuse-native handlers plus the ones its type declarations lack (path null: see nullPathOk). */
export type LayerfsFuseOps = FuseOps & {
  fgetattr(path: string | null, fh: number, cb: (err: number, st?: FuseStatNs) => void): void;
};

/** A stat that carries only what a readdir reply holds: libfuse makes d_type and d_ino of it. */
function direntStat(e: { type: number; ino: number }): FuseStat {
  return { mode: e.type, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino: e.ino, rdev: 0, blksize: 0, blocks: 0, atime: 0, mtime: 0, ctime: 0 };
}

const U32 = 0xffff_ffff;
const { ENODATA } = constants.errno;

/**
 * fuse-native carries statfs counts as uint32: scale the block size up until they fit (both
 * f_bsize and f_frsize, since some programs multiply one and others the other by f_blocks).
 */
export function toFuseStatfs(s: StatsFs): FuseStatfs {
  let frsize = s.bsize;
  let { blocks, bfree, bavail } = s;
  while (blocks > U32) {
    frsize *= 2;
    blocks = Math.floor(blocks / 2);
    bfree = Math.floor(bfree / 2);
    bavail = Math.floor(bavail / 2);
  }
  const files = Math.min(s.files, U32);
  const ffree = Math.min(s.ffree, U32);
  return { bsize: frsize, frsize, blocks, bfree, bavail, files, ffree, favail: ffree, fsid: 0, flag: 0, namemax: 255 };
}

/** The caller of the request being handled (fuse-native's patched context()). */
export type CallerOf = () => { uid: number; gid: number } | null;

/**
 * How files are opened. 'kernel': the union answers OPEN and FLUSH with ENOSYS, and the kernel
 * then opens files itself and sends reads by path (a read-only union, D26). 'union': every open
 * goes through the union and reads come with its handle.
 */
export type Opening = 'union' | 'kernel';

export function toFuseOps(u: UnionOps, log: Log, caller: CallerOf = () => null, opening: Opening = 'union'): LayerfsFuseOps {
  const p = (s: string): VPath => vpath(s);
  // Read synchronously, at the start of the handler: valid only while it runs.
  const owner = (): Owner => {
    const c = caller();
    return c === null ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } : { uid: c.uid, gid: c.gid };
  };
  return {
    getattr: (path, cb) => run(log, 'getattr', () => path, async () => {
      const key = hiddenKey(path);
      const hidden = key === undefined ? undefined : await u.unlinkedAttr(key);
      return hidden !== undefined ? forHidden(hidden) : toFuseStat(await u.getattr(p(path)));
    }, value(cb)),
    // With nullPathOk, libfuse passes null as the path of a file that has no name any more.
    fgetattr: (path, fh, cb) => run(log, 'fgetattr', () => `${path}, ${fh}`, async () => {
      const { attr, unlinked } = await u.fgetattr(fh, path === null ? null : p(path));
      return unlinked ? forHidden(attr) : toFuseStat(attr);
    }, value(cb)),
    access: (path, mode, cb) => run(log, 'access', () => `${path}, ${mode}`, () => u.access(p(path), mode), done(cb)),
    statfs: (path, cb) => run(log, 'statfs', () => path, async () => toFuseStatfs(await u.statfs(p(path))), value(cb)),
    readlink: (path, cb) => run(log, 'readlink', () => path, () => u.readlink(p(path)), value(cb)),
    // (A directory opened and then removed has no path; the kernel answers getdents on it itself.)
    readdir: (path, cb) => run(log, 'readdir', () => path, () => (path === null ? Promise.reject(new FsError('ENOENT', 'readdir')) : u.readdir(p(path))), {
      ok: (entries) => cb(0, entries.map((e) => e.name), entries.map(direntStat)),
      err: (n) => cb(n),
    }),
    // The kernel asks once per connection (or a few times at once, before the first answer).
    open: opening === 'kernel'
      ? (path, flags, cb) => run(log, 'open', () => `${path}, 0x${flags.toString(16)}`, () => Promise.reject(new FsError('ENOSYS', 'open')), value(cb))
      : (path, flags, cb) => run(log, 'open', () => `${path}, 0x${flags.toString(16)}`, () => u.open(p(path), flags).then((o) => o.fh), value(cb)),
    read: opening === 'kernel'
      ? (path, fh, buf, len, pos, cb) => run(log, 'read', () => `${path}, ${fh}, ${len}, ${pos}`, () => u.readByPath(p(path), buf, len, pos), count(cb))
      : (path, fh, buf, len, pos, cb) => run(log, 'read', () => `${path}, ${fh}, ${len}, ${pos}`, () => u.read(fh, buf, len, pos), count(cb)),
    // libfuse unlinks the hidden name of an unlinked file after its last release, unless it has
    // no path for it any more (path null).
    release: (path, fh, cb) => run(log, 'release', () => `${path}, ${fh}`, () => (path === null ? u.release(fh, true) : u.release(fh)), done(cb)),
    getxattr: (path, name, _pos, cb) => run(log, 'getxattr', () => `${path}, ${name}`, () => u.getxattr(p(path), name), {
      ok: (v) => (v === undefined ? cb(-ENODATA) : cb(0, v)),
      err: (n) => cb(n),
    }),
    listxattr: (path, cb) => run(log, 'listxattr', () => path, () => u.listxattr(p(path)), value(cb)),
    create: (path, mode, cb, flags) => {
      const o = owner();
      run(log, 'create', () => `${path}, 0${mode.toString(8)}`, () => u.create(p(path), mode, flags ?? 0, o).then((c) => c.fh), value(cb));
    },
    write: (path, fh, buf, len, pos, cb) =>
      run(log, 'write', () => `${path}, ${fh}, ${len}, ${pos}`, () => u.write(fh, buf, len, pos), count(cb)),
    truncate: (path, size, cb) => run(log, 'truncate', () => `${path}, ${size}`, () => u.truncate(p(path), size), done(cb)),
    ftruncate: (path, fh, size, cb) => run(log, 'ftruncate', () => `${path}, ${fh}, ${size}`, () => u.ftruncate(fh, size), done(cb)),
    flush: opening === 'kernel'
      ? (path, fh, cb) => run(log, 'flush', () => `${path}, ${fh}`, () => Promise.reject(new FsError('ENOSYS', 'flush')), done(cb))
      : (path, fh, cb) => run(log, 'flush', () => `${path}, ${fh}`, () => u.flush(fh), done(cb)),
    fsync: (path, datasync, fh, cb) => run(log, 'fsync', () => `${path}, ${fh}`, () => u.fsync(fh, datasync !== 0), done(cb)),
    fsyncdir: (path, datasync, _fh, cb) => run(log, 'fsyncdir', () => path, () => u.fsyncdir(p(path), datasync !== 0), done(cb)),
    utimens: (path, _a, _m, cb, atimeNs, mtimeNs) =>
      run(log, 'utimens', () => path, () => u.utimens(p(path), atimeNs ?? 'now', mtimeNs ?? 'now'), done(cb)),
    chown: (path, uid, gid, cb) => run(log, 'chown', () => `${path}, ${uid}, ${gid}`, () => u.chown(p(path), uid, gid), done(cb)),
    chmod: (path, mode, cb) => run(log, 'chmod', () => `${path}, 0${mode.toString(8)}`, () => u.chmod(p(path), mode), done(cb)),
    mknod: (path, mode, dev, cb) => {
      const o = owner();
      run(log, 'mknod', () => `${path}, 0${mode.toString(8)}`, () => u.mknod(p(path), mode, dev, o), done(cb));
    },
    unlink: (path, cb) => run(log, 'unlink', () => path, async () => {
      const key = hiddenKey(path);
      if (key === undefined || !(await u.forgetUnlinked(key))) await u.unlink(p(path));
    }, done(cb)),
    rename: (src, dest, cb) => run(log, 'rename', () => `${src}, ${dest}`, async () => {
      const key = hiddenKey(dest);
      if (key === undefined || !(await u.unlinkOpen(p(src), key))) await u.rename(p(src), p(dest));
    }, done(cb)),
    link: (src, dest, cb) => run(log, 'link', () => `${src}, ${dest}`, () => u.link(p(src), p(dest)), done(cb)),
    symlink: (target, path, cb) => {
      const o = owner();
      run(log, 'symlink', () => `${target}, ${path}`, () => u.symlink(target, p(path), o), done(cb));
    },
    mkdir: (path, mode, cb) => {
      const o = owner();
      run(log, 'mkdir', () => `${path}, 0${mode.toString(8)}`, () => u.mkdir(p(path), mode, o), done(cb));
    },
    rmdir: (path, cb) => run(log, 'rmdir', () => path, () => u.rmdir(p(path)), done(cb)),
    setxattr: (path, name, v, _pos, flags, cb) =>
      run(log, 'setxattr', () => `${path}, ${name}`, () => u.setxattr(p(path), name, v, flags), done(cb)),
    removexattr: (path, name, cb) => run(log, 'removexattr', () => `${path}, ${name}`, () => u.removexattr(p(path), name), done(cb)),
  };
}
