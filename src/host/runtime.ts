// Runtime state of running mounts: one small JSON file per mountpoint naming the serving
// process, so that `layerfs umount` can stop exactly the process that serves that mount (never a
// process found by a name pattern).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCode } from '../errno.js';

export interface MountRecord {
  readonly pid: number;
  /** The process's start time in clock ticks (/proc/PID/stat field 22): tells a reused pid apart. */
  readonly startTicks: string;
  readonly mountpoint: string;
  /**
   * Served by the host daemon (D36), with other mounts: `layerfs umount` unmounts it and waits
   * for the daemon to let it go, and never signals the process.
   */
  readonly daemon?: true;
}

/** The fields of /proc/PID/stat from the state on (field 3), or undefined when there is no such process. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Start time of a process, or undefined when it does not exist. */
export function startTicks(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

export function stateDir(): string {
  if (process.env.LAYERFS_RUNTIME_DIR) return process.env.LAYERFS_RUNTIME_DIR;
  if (process.getuid?.() === 0) return '/run/layerfs';
  return join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `layerfs-${process.getuid?.() ?? 'user'}`);
}

/**
 * The record's file: the mountpoint, encoded, where that makes a legal name; a long mountpoint
 * (the kernel takes up to PATH_MAX) is named by a hash of it instead, with a readable start.
 */
function fileFor(mountpoint: string): string {
  const name = encodeURIComponent(mountpoint);
  if (Buffer.byteLength(name) + '.json.tmp'.length <= 255) return join(stateDir(), `${name}.json`);
  const digest = createHash('sha256').update(mountpoint).digest('hex');
  return join(stateDir(), `${name.slice(0, 120)}~${digest}.json`);
}

/**
 * The control socket of the server of a mount (src/host/control.ts), beside its record. Named by
 * a hash: a unix socket's path must fit in 108 bytes, whatever the mountpoint.
 */
export function socketFor(mountpoint: string): string {
  return join(stateDir(), `${hashName(mountpoint)}.sock`);
}

/**
 * The stderr of a server `layerfs mount` leaves running (it has no terminal): what it says, a
 * request unanswered for a minute or a bug, lands here, beside the control socket. Made anew
 * at each mount; `layerfs umount` removes it when it is empty.
 */
export function logFor(mountpoint: string): string {
  return join(stateDir(), `${hashName(mountpoint)}.log`);
}

/** A mountpoint's files that need a short name: 32 hex digits of its SHA-256. */
function hashName(mountpoint: string): string {
  return createHash('sha256').update(mountpoint).digest('hex').slice(0, 32);
}

/** Where `layerfs daemon` takes mount requests (D36). */
export function daemonSocket(): string {
  return join(stateDir(), 'daemon.sock');
}

export function writeRecord(r: MountRecord): void {
  fs.mkdirSync(stateDir(), { recursive: true, mode: 0o700 });
  const f = fileFor(r.mountpoint);
  fs.writeFileSync(`${f}.tmp`, JSON.stringify(r));
  fs.renameSync(`${f}.tmp`, f);
}

export function readRecord(mountpoint: string): MountRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(fileFor(mountpoint), 'utf8')) as MountRecord;
  } catch (e) {
    if (hasCode(e, 'ENOENT') || e instanceof SyntaxError) return undefined;
    throw e;
  }
}

/** Remove the record, but only if it still names this pid (a newer mount may have replaced it). */
export function removeRecord(mountpoint: string, pid: number): void {
  const r = readRecord(mountpoint);
  if (r !== undefined && r.pid !== pid) return;
  fs.rmSync(fileFor(mountpoint), { force: true });
  fs.rmSync(socketFor(mountpoint), { force: true }); // left behind when the server was killed
}

/** Is the recorded process still the one that wrote the record (not a reused pid)? */
export function isServing(r: MountRecord): boolean {
  return startTicks(r.pid) === r.startTicks;
}

/**
 * Is the process still running? One that has exited is not, though until its parent reaps it (a
 * zombie) it still takes signals: a server started by `layerfs mount` belongs to init once that
 * command has left, and an init may reap late (here: 1.5 s), or, a container's shell, never.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return hasCode(e, 'EPERM');
  }
  return statFields(pid)?.[0] !== 'Z';
}
