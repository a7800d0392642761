// The server's own threads: V8's helpers (its optimising compiler, its concurrent garbage
// collector) run at nice 19 (D65). They then take the CPU time that the program working through
// the mount and the main thread, which answers its requests, leave, and never hold either up:
// on a CPU where a helper runs, a woken program or main thread runs at once.
//
// Which threads are V8's: Node makes them when it starts, before any JavaScript runs; libuv's
// pool comes later (its first file operation: loading the entry module already makes one), with
// UV_THREADPOOL_SIZE threads. So of the threads other than the main one, all but the last made
// are V8's. The pool's keep the main thread's priority: they read and write files for requests.
// New threads inherit the priority of the thread that makes them, so those the main thread makes
// later keep its own.
import * as fs from 'node:fs';
import * as os from 'node:os';

/** The nice value of V8's threads, from LAYERFS_HELPER_NICE (0 leaves them alone); default 19. */
export function helperNice(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.LAYERFS_HELPER_NICE;
  if (v === undefined || v === '') return 19;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 19) throw new Error(`LAYERFS_HELPER_NICE must be an integer from 0 to 19 (got ${JSON.stringify(v)})`);
  return n;
}

/** libuv's pool size as libuv reads it (UV_THREADPOOL_SIZE, 1 to 1024, default 4). */
function poolSize(env: NodeJS.ProcessEnv): number {
  const n = Number.parseInt(env.UV_THREADPOOL_SIZE ?? '', 10);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

/**
 * Set V8's threads of this process to `nice` (see above); the threads set. Call once the entry
 * module is loaded. A thread that cannot be set (gone meanwhile) is skipped.
 */
export function lowerHelperThreads(nice: number, env: NodeJS.ProcessEnv = process.env): number[] {
  if (nice === 0) return [];
  const others = fs.readdirSync('/proc/self/task').map(Number).filter((t) => t !== process.pid).sort((a, b) => a - b);
  const helpers = others.slice(0, Math.max(0, others.length - poolSize(env)));
  const set: number[] = [];
  for (const tid of helpers) {
    try {
      os.setPriority(tid, nice);
      set.push(tid);
    } catch {
      // (Exited since the listing.)
    }
  }
  return set;
}
