// Environment checks and scratch space for the mount tests (integration and differential suites).
//
// Mount tests need: root, a usable /dev/fuse, and the kernel's overlayfs (the oracle). On a developer
// machine without them the tests pass with a log line (ava has no runtime skip); under CI=true a
// missing capability is a loud failure, because a CI run that silently tested nothing is worse than red.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ExecutionContext, TestFn } from 'ava';

let exitOnSignalsInstalled = false;

/**
 * Make a termination signal end the process through process.exit, so that the 'exit' hooks that
 * detach mounts run: ava ends a test file's worker that passed its timeout with SIGTERM (and a
 * Ctrl-C reaches it as SIGINT), and a signal's default action runs no hook, which left the
 * kernel overlays and scratch tmpfs of the file mounted.
 */
export function exitOnSignals(): void {
  if (exitOnSignalsInstalled) return;
  exitOnSignalsInstalled = true;
  for (const [sig, n] of [['SIGTERM', 15], ['SIGINT', 2], ['SIGHUP', 1]] as const) {
    process.once(sig, () => {
      process.stderr.write(`[test helpers] ${sig}: detaching this file's mounts\n`);
      killIfExitHangs(5);
      process.exit(128 + n);
    });
  }
}

/**
 * process.exit runs the 'exit' hooks, then waits for libuv's pool threads: one blocked for good
 * (an open of a FIFO that no writer will open, a request a hung mount never answers) keeps the
 * process alive after its hooks ran. A detached watchdog kills it after `seconds` if it is still
 * this very process (same pid and start time, so a reused pid is never hit).
 */
function killIfExitHangs(seconds: number): void {
  const pid = process.pid;
  let start: string | undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]; // field 22, starttime
  } catch {
    return;
  }
  if (start === undefined || !/^\d+$/.test(start)) return;
  const same = `[ "$(sed 's/.*) //' /proc/${pid}/stat 2>/dev/null | cut -d' ' -f20)" = ${start} ]`;
  spawn('sh', ['-c', `sleep ${seconds}; ${same} && kill -9 ${pid}`], { detached: true, stdio: 'ignore' }).unref();
}

export function isCI(): boolean {
  const v = process.env['CI'];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

export interface MountCapability {
  ok: boolean;
  /** Why mounting is not possible (empty when ok). */
  reasons: string[];
}

let capabilityCache: MountCapability | undefined;

/** Can this process mount FUSE file systems and kernel overlays? Computed once per process. */
export function mountCapability(): MountCapability {
  if (capabilityCache !== undefined) return capabilityCache;
  const reasons: string[] = [];
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    reasons.push(`not running as root (uid ${process.getuid()})`);
  }
  try {
    const fd = fs.openSync('/dev/fuse', fs.constants.O_RDWR);
    fs.closeSync(fd);
  } catch (e) {
    reasons.push(`/dev/fuse is not openable (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    const fss = fs.readFileSync('/proc/filesystems', 'utf8');
    if (!/\boverlay$/m.test(fss)) {
      // The module may be loadable on demand; try once, quietly.
      spawnSync('modprobe', ['overlay'], { stdio: 'ignore' });
      const again = fs.readFileSync('/proc/filesystems', 'utf8');
      if (!/\boverlay$/m.test(again)) reasons.push('overlay is not listed in /proc/filesystems');
    }
  } catch (e) {
    reasons.push(`cannot read /proc/filesystems (${String(e)})`);
  }
  capabilityCache = { ok: reasons.length === 0, reasons };
  return capabilityCache;
}

/**
 * Call first in every mount test: `if (!requireMountCapable(t)) return;`.
 * Returns true when the test can go on. Otherwise, under CI it fails the test with the reasons;
 * elsewhere it logs them and lets the test pass (a "skip" that ava cannot express at runtime).
 */
export function requireMountCapable(t: ExecutionContext): boolean {
  const cap = mountCapability();
  if (cap.ok) return true;
  const msg = `mount tests need root, /dev/fuse and kernel overlayfs: ${cap.reasons.join('; ')}`;
  if (isCI()) {
    t.fail(`CI=true but this machine cannot run mount tests: ${msg}`);
  } else {
    t.log(`SKIPPED (not CI): ${msg}`);
    t.pass();
  }
  return false;
}

export interface Scratch {
  /** The scratch root (a private tmpfs when possible); created on first use. */
  root(): Promise<string>;
  /** A fresh, empty subdirectory of the root with a name derived from `name`. */
  dir(name: string): Promise<string>;
  /** True when the root is a tmpfs we mounted (false: a plain mkdtemp fallback). */
  isTmpfs(): boolean;
}

let dirCounter = 0;

/**
 * Per-test-file scratch space: a tmpfs mounted on a fresh directory under os.tmpdir(), unmounted and
 * removed by an `after.always` hook registered on `test`. tmpfs is used because it is fast, takes
 * trusted.* and user.* xattrs and char-device whiteouts, stores sparse files sparsely, and its cleanup
 * is one umount however many files a test made. When mounting fails outside CI, falls back to a
 * plain mkdtemp directory (removed recursively at the end); under CI the failure is an error.
 *
 * Call at module level: `const scratchSpace = scratch(test);`.
 */
export function scratch(test: TestFn, opts: { size?: string } = {}): Scratch {
  let rootPromise: Promise<string> | undefined;
  let base: string | undefined;
  let mounted = false;

  async function makeRoot(): Promise<string> {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'layerfs-test-'));
    const mountOpts = ['mode=0755'];
    if (opts.size !== undefined) mountOpts.push(`size=${opts.size}`);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', mountOpts.join(','), 'layerfs-scratch', base], {
      encoding: 'utf8',
    });
    if (r.status === 0) {
      mounted = true;
    } else {
      const why = `mounting a tmpfs on ${base} failed: ${(r.stderr || r.error?.message || '').trim()}`;
      if (isCI()) throw new Error(why);
      // Fallback: keep the mkdtemp directory.
      process.stderr.write(`[scratch] ${why}; using a plain directory\n`);
    }
    return base;
  }

  // Last resort if the test process ends without running hooks (an uncaught exception, a signal:
  // exitOnSignals): detach lazily, then remove the directory it was mounted on.
  exitOnSignals();
  process.on('exit', () => {
    if (base === undefined || !mounted) return;
    spawnSync('umount', ['-l', base], { stdio: 'ignore', timeout: 10_000 });
    try { fs.rmdirSync(base); } catch { /* busy or not empty: left for the next boot's /tmp */ }
  });

  test.after.always('scratch cleanup', () => {
    if (base === undefined) return;
    if (mounted) {
      let r = spawnSync('umount', [base], { encoding: 'utf8' });
      if (r.status !== 0) {
        // Something is still mounted below (a test's mount helper failed to clean up) or busy:
        // detach lazily so that no mount outlives the test file.
        r = spawnSync('umount', ['-l', base], { encoding: 'utf8' });
      }
      mounted = r.status !== 0;
    }
    try {
      fs.rmSync(base, { recursive: true, force: true });
    } catch {
      // A lazily detached tmpfs may leave the directory busy for a moment; nothing else to do.
    }
  });

  const self: Scratch = {
    root() {
      rootPromise ??= makeRoot();
      return rootPromise;
    },
    async dir(name: string) {
      const root = await self.root();
      const safe = name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
      const d = path.join(root, `${String(++dirCounter).padStart(3, '0')}-${safe}`);
      fs.mkdirSync(d, { recursive: true });
      return d;
    },
    isTmpfs() {
      return mounted;
    },
  };
  return self;
}
