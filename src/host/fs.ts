// The only module that imports node:fs. Every call here either returns a value (absence of an
// entry is `undefined`, not an exception) or throws FsError. ENOTDIR, EACCES, ELOOP, EIO... are
// real errors and always propagate: a branch is never silently skipped.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Dirent, Stats, StatsFs } from 'node:fs';
import { Writable } from 'node:stream';
import { FsError, codeOfErrno, fromNodeError, hasCode } from '../errno.js';
import { fuseDevIfBuilt, type FuseDevAddon } from './addon.js';
import { copyRange } from './libc.js';
import { constants as osConstants } from 'node:os';
import { EntryStat, RAW_STAT_FIELDS } from '../entry-stat.js';
import type { RealPath } from '../path.js';
import { decodeName, hasEscapes, hostPath as hp, nameByteLength } from '../name-bytes.js';

export type { Dirent, Stats, StatsFs };

export const O = fs.constants;

// --- Paths longer than PATH_MAX -----------------------------------------------------------------
// A host path is a branch's root plus a path inside the mount, and the kernel hands the mount paths
// of any length (a user can cd ever deeper and mkdir relative names). A syscall refuses a path of
// PATH_MAX bytes or more with ENAMETOOLONG. Such a path is reached in pieces instead: the
// directories leading to it are opened with O_PATH, each piece (< PATH_MAX) looked up inside the
// previous one, and the call gets "/proc/self/fd/N/<rest>", a short path that the kernel resolves
// from that directory; the fd is closed when the call is over. Each call opens its own fd (never
// shared, so never closed under another call). Lookup semantics are those of the whole path: every
// piece follows symlinks as a path's inner components do, and the last component stays in <rest>
// (so O_NOFOLLOW, lstat and friends act on it, not on the magic link). Short paths, the common case,
// cost one length comparison.

/** Linux PATH_MAX: a path handed to one syscall must be shorter than this many bytes (NUL included). */
export const PATH_MAX = 4096;
/** A UTF-16 unit is at most 3 bytes on the host: a string shorter than this cannot reach PATH_MAX bytes. */
const MAYBE_LONG = Math.ceil(PATH_MAX / 3);
/** Bytes of one piece looked up at a time: leaves room for the "/proc/self/fd/N/" prefix. */
const PIECE_MAX = PATH_MAX - 96;
/** O_PATH (not in Node's constants): a reference to a file that no I/O goes through. */
export const O_PATH = 0o10000000;
/** O_ACCMODE (not in Node's constants either): the read/write bits of open flags. */
export const O_ACCMODE = 3;
const DIR_REF = O_PATH | fs.constants.O_DIRECTORY; // libuv adds O_CLOEXEC

/** Would the kernel refuse p as one path (ENAMETOOLONG)? For a short path: one comparison. */
export function isLongPath(p: string): boolean {
  return p.length >= MAYBE_LONG && nameByteLength(p) >= PATH_MAX;
}

/**
 * How a long path is walked: directory pieces, each under PIECE_MAX bytes, opened one inside the
 * previous (the first one as given: absolute or relative to the cwd), and the rest, at least the
 * last component, relative to the last of them. A component too long for a piece stays whole: the
 * kernel then answers ENAMETOOLONG for it, as it would for the whole path.
 */
export function splitLongPath(p: string): { dirs: string[]; rest: string } {
  const parts = p.split('/');
  if (parts.length === 1) return { dirs: [], rest: p }; // one relative component
  const size = parts.map((s) => nameByteLength(s));
  let i = parts.length - 1;
  let restSize = size[i]!;
  while (i > 1 && restSize + 1 + size[i - 1]! <= PIECE_MAX) restSize += 1 + size[--i]!;
  const dirs: string[] = [];
  let piece = parts[0]!;
  let pieceSize = size[0]!;
  for (let j = 1; j < i; j++) {
    if (pieceSize + 1 + size[j]! <= PIECE_MAX) {
      piece += `/${parts[j]!}`;
      pieceSize += 1 + size[j]!;
    } else {
      dirs.push(piece === '' ? '/' : piece);
      piece = parts[j]!;
      pieceSize = size[j]!;
    }
  }
  dirs.push(piece === '' ? '/' : piece);
  return { dirs, rest: parts.slice(i).join('/') };
}

/** A long path made short: `path` works in a syscall while `fd` (-1: none) stays open. */
export interface Reached {
  readonly path: string;
  readonly fd: number;
}

const procPath = (fd: number, rel: string): string => `/proc/self/fd/${fd}/${rel}`;

function openDirRef(p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.open(hp(p), DIR_REF, (err, fd) => (err ? reject(err) : resolve(fd)));
  });
}

/** Reach a long path through its directories (async: lookups may be slow, e.g. on a network fs). */
async function reach(p: string, syscall: string): Promise<Reached> {
  const { dirs, rest } = splitLongPath(p);
  let fd = -1;
  try {
    for (const piece of dirs) {
      const next = await openDirRef(fd < 0 ? piece : procPath(fd, piece));
      if (fd >= 0) fs.closeSync(fd); // an O_PATH fd: its close does no I/O
      fd = next;
    }
  } catch (e) {
    if (fd >= 0) fs.closeSync(fd);
    throw fromNodeError(e, syscall, p);
  }
  return fd < 0 ? { fd, path: rest } : { fd, path: procPath(fd, rest) };
}

/** reach(), synchronously (for the synchronous calls of libc.ts and start-up). */
export function reachSync(p: string, syscall: string): Reached {
  const { dirs, rest } = splitLongPath(p);
  let fd = -1;
  try {
    for (const piece of dirs) {
      const next = fs.openSync(hp(fd < 0 ? piece : procPath(fd, piece)), DIR_REF);
      if (fd >= 0) fs.closeSync(fd);
      fd = next;
    }
  } catch (e) {
    if (fd >= 0) fs.closeSync(fd);
    throw fromNodeError(e, syscall, p);
  }
  return fd < 0 ? { fd, path: rest } : { fd, path: procPath(fd, rest) };
}

export function release(r: Reached | undefined): void {
  if (r !== undefined && r.fd >= 0) fs.closeSync(r.fd);
}

/** An error of the call on the short paths, told with the caller's paths. */
function withOwnPaths(e: unknown, reached: readonly (Reached | undefined)[], given: readonly string[]): unknown {
  if (!(e instanceof FsError) || e.path === undefined) return e;
  const i = reached.findIndex((r) => r?.path === e.path);
  return i < 0 ? e : new FsError(e.code, e.syscall, given[i]);
}

/** Run fn on short paths for paths (any of them long), closing what was opened when fn is done. */
export async function viaShortPaths<T>(paths: readonly string[], syscall: string, fn: (short: string[]) => Promise<T>): Promise<T> {
  const reached: (Reached | undefined)[] = [];
  try {
    for (const p of paths) reached.push(isLongPath(p) ? await reach(p, syscall) : undefined);
    return await fn(paths.map((p, i) => reached[i]?.path ?? p));
  } catch (e) {
    throw withOwnPaths(e, reached, paths);
  } finally {
    for (const r of reached) release(r);
  }
}

/** viaShortPaths, synchronously. */
export function viaShortPathsSync<T>(paths: readonly string[], syscall: string, fn: (short: string[]) => T): T {
  const reached: (Reached | undefined)[] = [];
  try {
    for (const p of paths) reached.push(isLongPath(p) ? reachSync(p, syscall) : undefined);
    return fn(paths.map((p, i) => reached[i]?.path ?? p));
  } catch (e) {
    throw withOwnPaths(e, reached, paths);
  } finally {
    for (const r of reached) release(r);
  }
}

const via = <T>(p: RealPath, syscall: string, fn: (short: RealPath) => Promise<T>): Promise<T> =>
  viaShortPaths([p], syscall, ([q]) => fn(q as RealPath));
const via2 = <T>(a: RealPath, b: RealPath, syscall: string, fn: (a: RealPath, b: RealPath) => Promise<T>): Promise<T> =>
  viaShortPaths([a, b], syscall, ([qa, qb]) => fn(qa as RealPath, qb as RealPath));
const viaSync = <T>(p: string, syscall: string, fn: (short: string) => T): T =>
  viaShortPathsSync([p], syscall, ([q]) => fn(q!));

function absentOnEnoent(e: unknown): undefined {
  if (hasCode(e, 'ENOENT')) return undefined;
  throw e;
}

/**
 * realpath of a long path, component by component (realpath(3) and the /proc links stop at
 * PATH_MAX): every symlink met is replaced by its target, as the kernel would resolve it.
 */
function realpathLong(p: string): string {
  const todo = (p.startsWith('/') ? p : `${process.cwd()}/${p}`).split('/').reverse();
  let out = '';
  let links = 0;
  while (todo.length > 0) {
    const c = todo.pop()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      out = out.slice(0, out.lastIndexOf('/'));
      continue;
    }
    const next = `${out}/${c}`;
    if (!lstatSync(next as RealPath).isSymbolicLink()) {
      out = next;
      continue;
    }
    if (++links > 40) throw new FsError('ELOOP', 'realpath', p);
    const target = isLongPath(next) ? viaSync(next, 'readlink', readlinkNow) : readlinkNow(next);
    if (target.startsWith('/')) out = '';
    todo.push(...target.split('/').reverse());
  }
  return out === '' ? '/' : out;
}

export async function lstatOrUndefined(p: RealPath): Promise<Stats | undefined> {
  if (isLongPath(p)) return via(p, 'lstat', lstatOrUndefined).catch(absentOnEnoent);
  return onThread('lstat', p, () => fs.lstatSync(hp(p), { throwIfNoEntry: false }));
}

/** lstat with nanosecond times (BigInt fields), for copying timestamps exactly. */
export async function lstatNs(p: RealPath): Promise<fs.BigIntStats> {
  if (isLongPath(p)) return via(p, 'lstat', lstatNs);
  return onThread('lstat', p, () => fs.lstatSync(hp(p), { bigint: true }));
}

/** lstat on the calling thread (D21): for a caller that needs the answer before it goes on. */
export function lstatNow(p: RealPath): Stats {
  try {
    return isLongPath(p) ? viaSync(p, 'lstat', (q) => fs.lstatSync(hp(q))) : fs.lstatSync(hp(p));
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

export async function lstat(p: RealPath): Promise<Stats> {
  if (isLongPath(p)) return via(p, 'lstat', lstat);
  try {
    return await fsp.lstat(hp(p));
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

/** A directory entry: its name (name-bytes.ts) and its d_type. */
export interface NamedDirent {
  readonly name: string;
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
}

const named = (ds: readonly Dirent<Buffer>[]): NamedDirent[] =>
  ds.map((d) => ({ name: decodeName(d.name), isDirectory: () => d.isDirectory(), isFile: () => d.isFile(), isSymbolicLink: () => d.isSymbolicLink() }));

/** Directory entries with their d_type. */
export async function readdirTyped(p: RealPath): Promise<NamedDirent[]> {
  if (isLongPath(p)) return via(p, 'readdir', readdirTyped);
  try {
    return named(await fsp.readdir(hp(p), { withFileTypes: true, encoding: 'buffer' }));
  } catch (e) {
    throw fromNodeError(e, 'readdir', p);
  }
}

export async function readlink(p: RealPath): Promise<string> {
  if (isLongPath(p)) return via(p, 'readlink', readlink);
  return onThread('readlink', p, () => readlinkNow(p));
}

/** A symlink's target, its bytes kept (name-bytes.ts). */
function readlinkNow(p: string): string {
  return decodeName(fs.readlinkSync(hp(p), { encoding: 'buffer' }));
}

/**
 * open(2) of what is known to be a regular file, or O_CREAT|O_EXCL of a new one, on the calling
 * thread: only the open of a FIFO or a device can wait (for a peer, for hardware), which is why
 * `open` goes through libuv's pool (D21, D29).
 */
export function openFile(p: RealPath, flags: number, mode = 0o666): Promise<number> {
  if (isLongPath(p)) return via(p, 'open', (q) => openFile(q, flags, mode));
  return onThread('open', p, () => openSyncNoFollow(p, flags, mode));
}

/** openFile for a caller that goes on synchronously (a short path only: see isLongPath). */
export function openFileNow(p: RealPath, flags: number, mode = 0o666): number {
  try {
    return openSyncNoFollow(p, flags, mode);
  } catch (e) {
    throw fromNodeError(e, 'open', p);
  }
}

/**
 * The flag for opens that read a lower branch (D40): reading a layer through the union must leave
 * it as it is, atime included, as the kernel's overlayfs opens its real files. The kernel refuses
 * it (EPERM) to a caller who neither owns the file nor has CAP_FOWNER; such an open is made again
 * without it, as overlayfs's is.
 */
export const READ_LOWER = O.O_NOATIME;

function openSyncNoFollow(p: string, flags: number, mode: number): number {
  try {
    return fs.openSync(hp(p), flags | O.O_NOFOLLOW, mode);
  } catch (e) {
    if ((flags & O.O_NOATIME) === 0 || (e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    return fs.openSync(hp(p), (flags & ~O.O_NOATIME) | O.O_NOFOLLOW, mode);
  }
}

/**
 * open(2) that never follows a symlink in the last component: layers are untrusted, and a link
 * inside a branch must not open a host file. Earlier components are known directories of the
 * branch (resolution checked them), so O_NOFOLLOW on the last one is enough.
 */
export function open(p: RealPath, flags: number, mode = 0o666): Promise<number> {
  if (isLongPath(p)) return via(p, 'open', (q) => open(q, flags, mode));
  return new Promise((resolve, reject) => {
    fs.open(hp(p), flags | O.O_NOFOLLOW, mode, (err, fd) => {
      if (err === null) resolve(fd);
      else if ((flags & O.O_NOATIME) !== 0 && err.code === 'EPERM') open(p, flags & ~O.O_NOATIME, mode).then(resolve, reject);
      else reject(fromNodeError(err, 'open', p));
    });
  });
}

/**
 * Read up to len bytes at pos into buf. What the page cache holds is read on the calling thread
 * (preadv2 RWF_NOWAIT, through layerfs's addon): a trip through libuv's pool and back costs
 * several times a cached read, and a cold `cat` of small files is one read each. Only what must
 * come from the disk goes to the pool, where waiting for it holds no other request up.
 */
export function read(fd: number, buf: Buffer, asked: number, pos: number, known?: KnownFile): Promise<number> {
  // A file that cannot change ends where its size says: the kernel was told that size, and
  // trims every read to it. A read that reaches it needs no second call to find the end.
  const len = known === undefined ? asked : Math.max(0, Math.min(asked, known.size - pos));
  let got = 0;
  const cached = len <= CACHED_READ_MAX ? readCached() : undefined;
  if (cached !== undefined) {
    while (got < len) {
      const n = cached(fd, buf.subarray(got, len), pos + got, known?.dev ?? -1);
      if (n === 0) return Promise.resolve(got); // the end of the file
      if (n < 0) break; // not in the cache (or the filesystem cannot tell): the rest from the pool
      got += n;
    }
  }
  if (got === len) return Promise.resolve(got);
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, got, len - got, pos + got, (err, n) => {
      if (err) reject(fromNodeError(err, 'read'));
      else resolve(got + n);
    });
  });
}

/**
 * What a reader knows of a file that cannot change (a lower file, D26): its size, so that a read
 * that reached it needs no second call to find the end; and its st_dev, so that the addon can
 * remember a filesystem whose files are memory (tmpfs) and read them without asking first.
 */
export interface KnownFile {
  readonly size: number;
  readonly dev: number;
}

/**
 * The largest read made on the calling thread. The kernel reads a large file ahead in several
 * large READs at once (up to 1 MiB each): those are copied side by side on the pool's threads,
 * where one thread would copy them one after the other. A small file's READ is its size, rounded
 * up to pages.
 */
export const CACHED_READ_MAX = 64 * 1024;

/** The addon's cached read; undefined where the addon cannot load (every read then uses the pool). */
const readCached = (): FuseDevAddon['readCached'] | undefined => fuseDevIfBuilt()?.readCached;

export function close(fd: number): Promise<void> {
  return onThread('close', undefined, () => fs.closeSync(fd));
}

export async function statfs(p: RealPath): Promise<StatsFs> {
  if (isLongPath(p)) return via(p, 'statfs', statfs);
  try {
    return await fsp.statfs(hp(p));
  } catch (e) {
    throw fromNodeError(e, 'statfs', p);
  }
}

/** Synchronous lstat for start-up (not on any request path). */
/**
 * lstat on the calling thread, undefined when nothing is there. For the lookup path: on local
 * filesystems the syscall takes a few µs, where the round trip through libuv's pool that an
 * async lstat makes costs 40-150 µs (bench:micro); and an absent entry makes no Error.
 */
export function lstatSyncOrUndefined(p: RealPath): Stats | undefined {
  if (isLongPath(p)) {
    try {
      return viaSync(p, 'lstat', (q) => lstatSyncOrUndefined(q as RealPath));
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return undefined;
      throw e;
    }
  }
  try {
    return fs.lstatSync(hp(p), { throwIfNoEntry: false });
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

/** Filled by the addon's lstat, read at once into an EntryStat. */
const rawStat = new Float64Array(RAW_STAT_FIELDS);

/**
 * The resolver's stat of an entry, on the calling thread: the addon's lstat where it is built
 * (D43: about half of Node's cost, and no BigInt for the exact times), else Node's bigint lstat.
 */
export function lstatEntryOrUndefined(p: RealPath): EntryStat | undefined {
  // The addon takes a path as text: one with escaped bytes goes through Node's lstat (bytes).
  const dev = isLongPath(p) || hasEscapes(p) ? undefined : fuseDevIfBuilt();
  if (dev === undefined) {
    const st = lstatNsSyncOrUndefined(p);
    return st === undefined ? undefined : EntryStat.of(st);
  }
  const errno = dev.lstat(p, rawStat);
  if (errno === 0) return EntryStat.fromRaw(rawStat);
  const code = codeOfErrno(errno);
  if (code === 'ENOENT') return undefined;
  throw new FsError(code, 'lstat', p);
}

/** lstatEntryOrUndefined, for an entry that must be there (ENOENT otherwise). */
export function lstatEntry(p: RealPath): EntryStat {
  const st = lstatEntryOrUndefined(p);
  if (st === undefined) throw new FsError('ENOENT', 'lstat', p);
  return st;
}

/** An open file's stat as an EntryStat, on the calling thread (the addon's fstat, else Node's). */
export function fstatEntry(fd: number): EntryStat {
  const dev = fuseDevIfBuilt();
  if (dev === undefined) {
    try {
      return EntryStat.of(fs.fstatSync(fd, { bigint: true }));
    } catch (e) {
      throw fromNodeError(e, 'fstat', `fd ${fd}`);
    }
  }
  const errno = dev.fstat(fd, rawStat);
  if (errno !== 0) throw new FsError(codeOfErrno(errno), 'fstat', `fd ${fd}`);
  return EntryStat.fromRaw(rawStat);
}

/** lstatSyncOrUndefined with exact (bigint) fields: the resolver's stat of an entry. */
export function lstatNsSyncOrUndefined(p: RealPath): fs.BigIntStats | undefined {
  if (isLongPath(p)) {
    try {
      return viaSync(p, 'lstat', (q) => lstatNsSyncOrUndefined(q as RealPath));
    } catch (e) {
      if (hasCode(e, 'ENOENT')) return undefined;
      throw e;
    }
  }
  try {
    return fs.lstatSync(hp(p), { bigint: true, throwIfNoEntry: false });
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

export function lstatSync(p: RealPath): Stats {
  if (isLongPath(p)) return viaSync(p, 'lstat', (q) => lstatSync(q as RealPath));
  try {
    return fs.lstatSync(hp(p));
  } catch (e) {
    throw fromNodeError(e, 'lstat', p);
  }
}

/** Synchronous stat for start-up checks (not on any request path). */
export function statSyncOrUndefined(p: string): Stats | undefined {
  if (isLongPath(p)) {
    try {
      return viaSync(p, 'stat', statSyncOrUndefined);
    } catch (e) {
      return absentOnEnoent(e);
    }
  }
  try {
    return fs.statSync(hp(p));
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw fromNodeError(e, 'stat', p);
  }
}

export function realpathSync(p: string): string {
  if (isLongPath(p)) {
    try {
      return realpathLong(p);
    } catch (e) {
      throw fromNodeError(e, 'realpath', p);
    }
  }
  try {
    return decodeName(fs.realpathSync(hp(p), { encoding: 'buffer' }));
  } catch (e) {
    throw fromNodeError(e, 'realpath', p);
  }
}

export function readFileSyncOrUndefined(p: string): string | undefined {
  if (isLongPath(p)) {
    try {
      return viaSync(p, 'read', readFileSyncOrUndefined);
    } catch (e) {
      return absentOnEnoent(e);
    }
  }
  try {
    return fs.readFileSync(hp(p), 'utf8');
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return undefined;
    throw fromNodeError(e, 'read', p);
  }
}

/** Can this process open p for reading and writing? (Used to check /dev/fuse up front.) */
export function canOpenReadWrite(p: string): FsError | undefined {
  if (isLongPath(p)) {
    try {
      const err = viaSync(p, 'open', canOpenReadWrite);
      return err === undefined ? undefined : new FsError(err.code, err.syscall, p);
    } catch (e) {
      return fromNodeError(e, 'open', p);
    }
  }
  try {
    fs.closeSync(fs.openSync(hp(p), 'r+'));
    return undefined;
  } catch (e) {
    return fromNodeError(e, 'open', p);
  }
}

/**
 * A metadata syscall made on the calling (main) thread, its outcome as a promise. Measured
 * (DECISIONS D21): such a call takes 2-20 µs on a local filesystem, where the round trip through
 * libuv's pool that Node's async fs makes costs 40-150 µs, and far more on a loaded machine;
 * a create through the mount makes six to ten of them. Calls that can block for long stay on
 * the pool: open (a FIFO's open waits for its peer), read, write, fsync and copies.
 */
function onThread<T>(syscall: string, p: string | undefined, fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(fromNodeError(e, syscall, p));
  }
}

// --- Writing (the upper and work dirs only; lowers are never passed here) -------------------

async function wrap<T>(syscall: string, p: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromNodeError(e, syscall, p);
  }
}

export const mkdir = (p: RealPath, mode: number): Promise<void> =>
  isLongPath(p) ? via(p, 'mkdir', (q) => mkdir(q, mode)) : onThread('mkdir', p, () => void fs.mkdirSync(hp(p), { mode }));
export const rename = (from: RealPath, to: RealPath): Promise<void> =>
  isLongPath(from) || isLongPath(to) ? via2(from, to, 'rename', rename) : onThread('rename', to, () => fs.renameSync(hp(from), hp(to)));
export const unlink = (p: RealPath): Promise<void> => (isLongPath(p) ? via(p, 'unlink', unlink) : onThread('unlink', p, () => fs.unlinkSync(hp(p))));
export const rmdir = (p: RealPath): Promise<void> => (isLongPath(p) ? via(p, 'rmdir', rmdir) : onThread('rmdir', p, () => fs.rmdirSync(hp(p))));
export const link = (existing: RealPath, p: RealPath): Promise<void> =>
  isLongPath(existing) || isLongPath(p) ? via2(existing, p, 'link', link) : onThread('link', p, () => fs.linkSync(hp(existing), hp(p)));
/** The target is stored as it is, never looked up: only p can be long. */
export const symlink = (target: string, p: RealPath): Promise<void> =>
  isLongPath(p) ? via(p, 'symlink', (q) => symlink(target, q)) : onThread('symlink', p, () => fs.symlinkSync(hp(target), hp(p)));
export const lchown = (p: RealPath, uid: number, gid: number): Promise<void> =>
  isLongPath(p) ? via(p, 'lchown', (q) => lchown(q, uid, gid)) : onThread('lchown', p, () => fs.lchownSync(hp(p), uid, gid));
export const chmod = (p: RealPath, mode: number): Promise<void> =>
  isLongPath(p) ? via(p, 'chmod', (q) => chmod(q, mode)) : onThread('chmod', p, () => fs.chmodSync(hp(p), mode));

/**
 * rm -rf. Node's rm builds the paths of the entries below p itself, and they may be too long
 * even where p is not: then what is left is removed entry by entry, each through the long-path
 * calls above.
 */
export async function rmTree(p: RealPath): Promise<void> {
  if (!isLongPath(p) && rmFlatOnThread(p)) return;
  try {
    if (isLongPath(p)) await via(p, 'rm', (q) => fsp.rm(hp(q), { recursive: true, force: true }));
    else await fsp.rm(hp(p), { recursive: true, force: true });
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return; // from the walk to a long p: nothing to remove, as rm -f
    if (!hasCode(e, 'ENAMETOOLONG')) throw fromNodeError(e, 'rm', p);
    await rmDeep(p);
  }
}

/** The most entries a directory may hold for rmTree to remove it on the calling thread. */
const RM_ON_THREAD = 4096;

/**
 * rm -rf, on the calling thread (D21), of what the union removes most often: a directory that
 * holds no directory (an emptied one's whiteouts, kept out of sight in the upper), or no
 * directory at all. Node's rm walks on libuv's pool, a round trip per entry: an emptied
 * directory of 100 whiteouts took 3 ms to remove that way. False, with nothing or only some
 * files removed: p holds a directory or more than RM_ON_THREAD entries, for the pool's walk.
 */
function rmFlatOnThread(p: RealPath): boolean {
  // lstat first: a symlink to a directory is removed, never listed through.
  let st: Stats | undefined;
  try {
    st = fs.lstatSync(hp(p), { throwIfNoEntry: false });
  } catch {
    return false; // the walk reports it
  }
  if (st === undefined) return true;
  if (!st.isDirectory()) {
    try {
      fs.unlinkSync(hp(p));
    } catch (e) {
      if (!hasCode(e, 'ENOENT')) throw fromNodeError(e, 'unlink', p);
    }
    return true;
  }
  let entries: NamedDirent[];
  try {
    entries = named(fs.readdirSync(hp(p), { withFileTypes: true, encoding: 'buffer' }));
  } catch {
    return false; // the walk reports it
  }
  if (entries.length > RM_ON_THREAD || entries.some((d) => d.isDirectory())) return false;
  for (const d of entries) {
    const q = `${p}/${d.name}`;
    if (isLongPath(q)) return false;
    try {
      fs.unlinkSync(hp(q));
    } catch (e) {
      if (!hasCode(e, 'ENOENT')) throw fromNodeError(e, 'unlink', q);
    }
  }
  try {
    fs.rmdirSync(hp(p));
  } catch (e) {
    if (hasCode(e, 'ENOENT')) return true;
    if (hasCode(e, 'ENOTEMPTY')) return false; // an entry came meanwhile
    throw fromNodeError(e, 'rmdir', p);
  }
  return true;
}

async function rmDeep(p: RealPath): Promise<void> {
  const st = await lstatOrUndefined(p);
  if (st === undefined) return;
  if (!st.isDirectory()) return unlink(p).catch(absentOnEnoent);
  const names = await readdirTyped(p).then((ds) => ds.map((d) => d.name), absentOnEnoent);
  for (const name of names ?? []) await rmDeep(`${p}/${name}` as RealPath);
  return rmdir(p).catch(absentOnEnoent);
}

/**
 * Writes, and copies of files, up to this size are made on the calling thread. On a local
 * filesystem they land in the page cache: copying 128 KiB costs less than one round trip through
 * libuv's pool (D29). Larger ones go to the pool, so that one of them does not hold up every
 * other request.
 */
export const SMALL_WRITE = 128 * 1024;

/**
 * Copy a lower file's data into a new file `to` (mode 0600: the caller gives it its own) inside
 * the kernel: copy_file_range, a reflink where the filesystem can, or sendfile between
 * filesystems that cannot copy to each other. The source is opened with READ_LOWER, which
 * libuv's copyfile (by path) cannot do. Up to SMALL_WRITE on the calling thread; a larger file
 * in libuv's pool, through layerfs's addon, where waiting for the disk holds no other request
 * up (without the addon, by libuv's copyfile, which leaves the source's atime to the host).
 * `size`: the file's size as its lstat said (no more than `limit`); the copy goes on to the
 * source's end, or to `limit` bytes (a copy-up for a caller that cuts the file there). `stop[0]`
 * set while a copy in the pool runs: it ends within 64 MiB, nothing of it kept, and this fails
 * with EINTR (a copy-up whose callers were all killed: copyup.ts).
 */
export async function copyFileData(from: RealPath, to: RealPath, size = Infinity, stop?: Int32Array, limit = Infinity): Promise<void> {
  if (isLongPath(from) || isLongPath(to)) return via2(from, to, 'copy_file_range', (f, t) => copyFileData(f, t, size, stop, limit));
  const inPool = size > SMALL_WRITE ? copyInPool() : undefined;
  const length = Math.min(limit, Number.MAX_SAFE_INTEGER);
  if (size > SMALL_WRITE && inPool === undefined && limit === Infinity) {
    const flags = fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE;
    return wrap('copy_file_range', to, () => fsp.copyFile(hp(from), hp(to), flags));
  }
  // O_NONBLOCK: were the source a FIFO now (a lower changed underneath), the open must not wait.
  const src = await openFile(from, O.O_RDONLY | O.O_NONBLOCK | READ_LOWER);
  try {
    const dst = await openFile(to, O.O_WRONLY | O.O_CREAT | O.O_EXCL, 0o600);
    try {
      if (inPool === undefined) {
        copyRange(src, dst, length);
      } else {
        const n = await new Promise<number>((resolve) => inPool(src, dst, length, resolve, stop));
        if (n === -ECANCELED) throw new FsError('EINTR', 'copy_file_range', to);
        if (n < 0) throw new FsError(codeOfErrno(-n), 'copy_file_range', to);
      }
    } catch (e) {
      // Nothing half-copied stays behind (the caller's clean-up knows only what it made).
      await close(dst).catch(() => {});
      await unlink(to).catch(() => {});
      throw e;
    }
    await close(dst);
  } finally {
    await close(src);
  }
}

const { ECANCELED } = osConstants.errno;

/** The addon's copy in libuv's pool; undefined where the addon cannot load. */
const copyInPool = (): FuseDevAddon['copyRange'] | undefined => fuseDevIfBuilt()?.copyRange;

export function write(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  if (len <= SMALL_WRITE) return onThread('write', undefined, () => fs.writeSync(fd, buf, 0, len, pos));
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, 0, len, pos, (err, n) => {
      if (err) reject(fromNodeError(err, 'write'));
      else resolve(n);
    });
  });
}

/**
 * fallocate(2), in libuv's pool (the addon: Node has none). ENOSYS where the addon is not built,
 * which the kernel takes as "never again" for the mount, as from a server without the call.
 */
export function fallocate(fd: number, mode: number, offset: number, length: number): Promise<void> {
  const dev = fuseDevIfBuilt();
  if (dev === undefined) return Promise.reject(new FsError('ENOSYS', 'fallocate'));
  return new Promise((resolve, reject) =>
    dev.fallocate(fd, mode, offset, length, (r) => (r < 0 ? reject(new FsError(codeOfErrno(-r), 'fallocate', `fd ${fd}`)) : resolve())));
}

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** lseek(2) with SEEK_DATA or SEEK_HOLE: where the next data or hole starts (ENXIO: none). */
export function seekExtent(fd: number, offset: number, whence: typeof SEEK_DATA | typeof SEEK_HOLE): number {
  const dev = fuseDevIfBuilt();
  if (dev === undefined) throw new FsError('ENOSYS', 'lseek');
  const r = dev.lseek(fd, offset, whence);
  if (r < 0) throw new FsError(codeOfErrno(-r), 'lseek', `fd ${fd}`);
  return r;
}

export const truncate = (p: RealPath, size: number): Promise<void> =>
  isLongPath(p) ? via(p, 'truncate', (q) => truncate(q, size)) : onThread('truncate', p, () => fs.truncateSync(hp(p), size));
export function ftruncate(fd: number, size: number): Promise<void> {
  return onThread('ftruncate', undefined, () => fs.ftruncateSync(fd, size));
}

export function fsync(fd: number, datasync: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err: NodeJS.ErrnoException | null): void => (err ? reject(fromNodeError(err, 'fsync')) : resolve());
    if (datasync) fs.fdatasync(fd, done);
    else fs.fsync(fd, done);
  });
}

/** mkdir -p for layerfs's own directories (the work dir). */
export async function ensureDir(p: RealPath): Promise<void> {
  if (!isLongPath(p)) return wrap('mkdir', p, () => fsp.mkdir(hp(p), { recursive: true, mode: 0o700 }).then(() => undefined));
  // Node's recursive mkdir creates what is missing below the directories walked to; those
  // directories themselves are made first, from the parent up, where they are missing.
  try {
    return await via(p, 'mkdir', ensureDir);
  } catch (e) {
    if (!hasCode(e, 'ENOENT')) throw e;
  }
  await ensureDir(p.slice(0, p.lastIndexOf('/')) as RealPath);
  return via(p, 'mkdir', ensureDir);
}

/** fstat with nanosecond times: the attributes of an open file, whether or not a name still leads to it. */
export function fstatNs(fd: number): Promise<fs.BigIntStats> {
  return onThread('fstat', undefined, () => fs.fstatSync(fd, { bigint: true }));
}

/** fstatNs for a caller that goes on synchronously. */
export function fstatNsNow(fd: number): fs.BigIntStats {
  return now('fstat', () => fs.fstatSync(fd, { bigint: true }));
}

export function fchownNow(fd: number, uid: number, gid: number): void {
  now('fchown', () => fs.fchownSync(fd, uid, gid));
}

export function fchmodNow(fd: number, mode: number): void {
  now('fchmod', () => fs.fchmodSync(fd, mode));
}

export function closeNow(fd: number): void {
  now('close', () => fs.closeSync(fd));
}

function now<T>(syscall: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNodeError(e, syscall);
  }
}

// --- Streams and fd calls for layer tars (src/layer/) ---------------------------------------

/**
 * A stream of an open file's bytes from `start` to `end` inclusive (Node's convention), closing
 * the fd when done. The file is opened by the caller (open() above: O_NOFOLLOW, long paths).
 */
export function fdReadStream(fd: number, start: number, end: number): import('node:stream').Readable {
  return fs.createReadStream('', { fd, start, end, autoClose: true, highWaterMark: 1 << 20 });
}

/**
 * A writable stream onto an open fd that never closes it, even when destroyed (Node's WriteStream
 * closes its fd on destroy whatever autoClose says): the caller fsyncs and closes it, once.
 */
export function fdWriteStream(fd: number): import('node:stream').Writable {
  let pos = 0;
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, done) {
      writeAll(fd, chunk, pos).then(() => {
        pos += chunk.length;
        done();
      }, done);
    },
  });
}

/** A stream of a file's bytes (the layer given to `layerfs apply`). */
export function fileReadStream(p: string): import('node:stream').Readable {
  return fs.createReadStream(hp(p), { highWaterMark: 1 << 20 });
}

export function fchown(fd: number, uid: number, gid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fchown(fd, uid, gid, (err) => (err ? reject(fromNodeError(err, 'fchown')) : resolve()));
  });
}

export function fchmod(fd: number, mode: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fchmod(fd, mode, (err) => (err ? reject(fromNodeError(err, 'fchmod')) : resolve()));
  });
}

/** Write all of buf at pos (write(2) may write less than asked). */
export async function writeAll(fd: number, buf: Buffer, pos: number): Promise<void> {
  for (let off = 0; off < buf.length;) {
    const n = await new Promise<number>((resolve, reject) => {
      fs.write(fd, buf, off, buf.length - off, pos + off, (err, written) => (err ? reject(fromNodeError(err, 'write')) : resolve(written)));
    });
    off += n;
  }
}
