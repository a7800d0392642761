// Waiting on another process from a test: whether a pid lives, and polling for a condition.

/** Does a process with this pid exist (signal 0 checks without sending anything)? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
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
