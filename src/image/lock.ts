// Exclusive locks between layerfs processes sharing a store: flock(2) on a lock file.
//
// Why flock and not a lock file made with O_EXCL: the kernel releases a flock when its holder
// dies, however it dies, so a crash never leaves a lock behind, and no process ever has to decide
// that another one is dead and break its lock (a pid check races with pid reuse and with a second
// process breaking the same lock). Lock files are never deleted: unlinking one while another
// process has it open and is about to lock it would give two holders of "the same" lock.
// Waiting polls with LOCK_NB (a blocking flock would hold one of libuv's threads for as long).
import * as io from '../host/store-io.js';

export interface Lock {
  release(): void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Take the lock at path, waiting as long as another process holds it. */
export async function acquireLock(path: string, onWait?: () => void): Promise<Lock> {
  const l = io.openLockFile(path);
  try {
    let delay = 10;
    let told = false;
    while (!io.tryFlock(l)) {
      if (!told) {
        onWait?.();
        told = true;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 200);
    }
  } catch (e) {
    io.closeLockFile(l);
    throw e;
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      io.closeLockFile(l);
    },
  };
}

/** Run fn holding the lock. */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const l = await acquireLock(path);
  try {
    return await fn();
  } finally {
    l.release();
  }
}
