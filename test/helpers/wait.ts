// Waiting on another process from a test: whether a pid lives, and polling for a condition.
import * as fs from 'node:fs';

/**
 * Is a process with this pid running (signal 0 checks without sending anything)? One that has
 * exited is not, though until its parent reaps it (a zombie) it still takes signals: a server
 * whose starter has left belongs to init, which may reap it late.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false; // gone meanwhile
  }
}

/** Poll cond every 50 ms for up to ms; its last answer. */
export async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}
