/**
 * Process, mount and /proc helpers for the end-to-end benchmarks (Linux only, run as root).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

/** Environment for every benchmark command: fixed locale so sorting/formatting costs are equal. */
export const CMD_ENV: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };

export interface CmdResult {
  ok: boolean;
  status: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}

/** Runs a program synchronously (no shell). Never throws. */
export function run(file: string, args: readonly string[], timeoutMs = 120_000, env: NodeJS.ProcessEnv = CMD_ENV): CmdResult {
  const r = spawnSync(file, args, { encoding: 'utf8', env, timeout: timeoutMs, killSignal: 'SIGKILL' });
  const res: CmdResult = { ok: r.status === 0 && !r.error, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (r.error) res.error = r.error.message;
  return res;
}

export function describe(r: CmdResult): string {
  const msg = (r.stderr.trim() || r.error || r.stdout.trim() || `exit status ${String(r.status)}`).split('\n');
  return msg.slice(0, 3).join(' | ');
}

export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function which(cmd: string): string | undefined {
  const r = run('/bin/sh', ['-c', `command -v ${cmd}`]);
  return r.ok ? r.stdout.trim() : undefined;
}

/** Children started by runTimed that are still running (killed on SIGINT). */
export const liveChildren = new Set<ChildProcess>();

/**
 * Kills a workload shell started by runTimed together with the commands it started: each one
 * leads its own process group, so a timeout or Ctrl-C does not leave an `ls -lR` running on a
 * mount that is about to be unmounted.
 */
export function killWorkload(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

export interface TimedResult {
  ms: number;
  ok: boolean;
  status: number | null;
  signal: string | null;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs `sh -c "{ <cmd>; } > /dev/null"` and measures wall time from spawn to exit with
 * process.hrtime. Asynchronous so that SIGINT handlers can run meanwhile.
 */
export function runTimed(cmd: string, timeoutMs: number): Promise<TimedResult> {
  return new Promise((resolve) => {
    let stderr = '';
    let timedOut = false;
    let endNs = 0n;
    const t0 = process.hrtime.bigint();
    const child = spawn('/bin/sh', ['-c', `{ ${cmd}\n} > /dev/null`], { stdio: ['ignore', 'ignore', 'pipe'], env: CMD_ENV, detached: true });
    liveChildren.add(child);
    const timer = setTimeout(() => {
      timedOut = true;
      killWorkload(child);
    }, timeoutMs);
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString('utf8');
    });
    child.on('exit', () => {
      endNs = process.hrtime.bigint();
    });
    child.on('error', (err) => {
      stderr += String(err);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      if (endNs === 0n) endNs = process.hrtime.bigint();
      resolve({
        ms: Number(endNs - t0) / 1e6,
        ok: status === 0 && !timedOut,
        status,
        signal,
        stderr: stderr.trim().slice(0, 2000),
        timedOut,
      });
    });
  });
}

/** Drops the page cache, dentries and inodes. Returns an error message on failure. */
export function dropCaches(): string | undefined {
  const r = run('/bin/sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
  return r.ok ? undefined : describe(r);
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount entry (from /proc/self/mountinfo) whose mount point is exactly `target`, if any. */
export function mountAt(target: string): { fstype: string; source: string; options: string } | undefined {
  let found: { fstype: string; source: string; options: string } | undefined;
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const parts = line.split(' ');
    if (parts.length < 10 || unescapeMountField(parts[4] as string) !== target) continue;
    const sep = parts.indexOf('-', 6);
    found = { fstype: parts[sep + 1] ?? '', source: parts[sep + 2] ?? '', options: `${parts[5] ?? ''},${parts[sep + 3] ?? ''}` };
  }
  return found; // last one wins: it is the visible mount when stacked
}

export function isMounted(target: string): boolean {
  return mountAt(target) !== undefined;
}

export function pidAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (after the ")" closing the comm) is the state; Z = zombie, X = dead.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Waits (polling) until `pid` has exited; returns false on timeout. */
export function waitPidExit(pid: number, timeoutMs: number): boolean {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (!pidAlive(pid)) return true;
    sleepMs(25);
  }
  return !pidAlive(pid);
}

function holdsDevFuse(pid: number): boolean {
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === '/dev/fuse') return true;
      } catch {
        /* fd closed meanwhile */
      }
    }
  } catch {
    /* process gone or not readable */
  }
  return false;
}

/**
 * Finds the FUSE server process for a mount point, read-only: `pgrep -f MOUNTPOINT`, keeping the
 * match that holds /dev/fuse open. pgrep runs as a child with a timeout because reading another
 * process's /proc/PID/cmdline can block indefinitely (e.g. a foreign FUSE server stuck while
 * exiting); on timeout we give up (and leave that pgrep alone) rather than hang the benchmark.
 */
export function findServerPid(mountpoint: string, timeoutMs = 10_000): Promise<{ pid?: number; problem?: string }> {
  return new Promise((resolve) => {
    const pattern = mountpoint.replace(/[.[\]{}()*+?^$|\\]/g, '\\$&');
    const child = spawn('pgrep', ['-f', '--', pattern], { stdio: ['ignore', 'pipe', 'ignore'], env: CMD_ENV });
    let out = '';
    let done = false;
    const finish = (r: { pid?: number; problem?: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.stdout?.removeAllListeners('data');
      child.stdout?.destroy();
      child.unref();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ problem: `pgrep -f ${mountpoint} did not answer within ${timeoutMs} ms` }), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.on('error', (err) => finish({ problem: `pgrep: ${err.message}` }));
    child.on('close', () => {
      const pids = out.split(/\s+/).filter(Boolean).map(Number).filter((p) => p !== process.pid && Number.isInteger(p));
      const servers = pids.filter(holdsDevFuse);
      const pid = servers[0] ?? (pids.length === 1 ? pids[0] : undefined);
      if (pid === undefined) finish({ problem: `no server process found for ${mountpoint} (pgrep: ${pids.join(' ') || 'none'})` });
      else finish({ pid });
    });
  });
}

export interface MemInfo {
  hwmKiB: number;
  rssKiB: number;
}

/** VmHWM (peak RSS) and VmRSS of a process, from /proc/PID/status. */
export function readMem(pid: number): MemInfo | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    if (!hwm || !rss) return undefined;
    return { hwmKiB: Number(hwm[1]), rssKiB: Number(rss[1]) };
  } catch {
    return undefined;
  }
}

let clkTck: number | undefined;

/** Clock ticks per second of the times in /proc/PID/stat (getconf CLK_TCK; 100 on Linux). */
export function clockTicks(): number {
  if (clkTck === undefined) {
    const r = run('getconf', ['CLK_TCK']);
    const n = Number(r.stdout.trim());
    clkTck = r.ok && Number.isInteger(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

/**
 * CPU time (user + system, all threads) a process has used so far, in ms, from fields 14 and 15
 * of /proc/PID/stat. The resolution is one clock tick (10 ms).
 */
export function readCpuMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" closing comm start at field 3 (state); utime and stime are 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
    return ((utime + stime) * 1000) / clockTicks();
  } catch {
    return undefined;
  }
}

/**
 * Installs the Debian packages of missing tools with apt-get (one attempt per run).
 * Returns a message per package that is still missing afterwards.
 */
export function ensureDebianTools(tools: ReadonlyArray<{ cmd: string; pkg: string }>, log: (msg: string) => void): string[] {
  const missing = tools.filter((t) => !which(t.cmd));
  if (missing.length === 0) return [];
  const pkgs = [...new Set(missing.map((t) => t.pkg))];
  if (!which('apt-get')) return missing.map((t) => `${t.cmd} missing and apt-get not available (install ${t.pkg})`);
  log(`installing ${pkgs.join(' ')} with apt-get`);
  const apt = (args: string[]): CmdResult => run('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', ...args], 600_000);
  let r = apt(['install', '-y', '--no-install-recommends', ...pkgs]);
  if (!r.ok) {
    apt(['update']);
    r = apt(['install', '-y', '--no-install-recommends', ...pkgs]);
  }
  const still = missing.filter((t) => !which(t.cmd));
  return still.map((t) => `${t.cmd} missing (apt-get install ${t.pkg}: ${r.ok ? 'installed but not found' : describe(r)})`);
}

/**
 * Unmounts `target` with the given primary command, retrying while busy, then falls back to
 * `umount` and finally a lazy `umount -l`. Returns a list of problems (empty if clean).
 */
export function unmountWith(target: string, primary: readonly string[] | undefined): string[] {
  const problems: string[] = [];
  const attempts: Array<readonly string[]> = [];
  if (primary) attempts.push(primary);
  attempts.push(['umount', target]);
  for (const cmd of attempts) {
    for (let i = 0; i < 5 && isMounted(target); i++) {
      const r = run(cmd[0] as string, cmd.slice(1), 60_000);
      if (r.ok && !isMounted(target)) break;
      if (!r.ok && i === 4) problems.push(`${cmd.join(' ')}: ${describe(r)}`);
      sleepMs(200);
    }
    if (!isMounted(target)) return problems;
  }
  if (isMounted(target)) {
    const r = run('umount', ['-l', target]);
    problems.push(r.ok ? `lazily unmounted ${target}` : `umount -l ${target}: ${describe(r)}`);
  }
  return problems;
}

/**
 * The kernel's CPU latency QoS (Documentation/power/pm_qos_interface.rst): while a request is
 * held open on this device, no CPU picks an idle state that takes longer than the requested
 * microseconds to leave; at 0 idle CPUs poll instead of halting. The request ends with the fd.
 */
export const CPU_LATENCY_DEV = '/dev/cpu_dma_latency';

/** Holds a CPU latency request of `us` microseconds; returns the fd to close to end it. */
export function holdCpuLatency(us: number, dev = CPU_LATENCY_DEV): number {
  const fd = fs.openSync(dev, 'w');
  try {
    const value = Buffer.alloc(4);
    if (os.endianness() === 'LE') value.writeInt32LE(us);
    else value.writeInt32BE(us);
    fs.writeSync(fd, value);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/** The limit in force: the smallest request held by anyone, or the kernel's default (2000 s). */
export function readCpuLatency(dev = CPU_LATENCY_DEV): number {
  const value = Buffer.alloc(4);
  const fd = fs.openSync(dev, 'r');
  try {
    if (fs.readSync(fd, value, 0, 4, null) !== 4) throw new Error(`${dev}: short read`);
  } finally {
    fs.closeSync(fd);
  }
  return os.endianness() === 'LE' ? value.readInt32LE() : value.readInt32BE();
}
