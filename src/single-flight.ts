// Concurrent requests for the same key share one load: FUSE sends parallel lookups of one path
// (several threads), and each must not cost its own round of syscalls.
export class SingleFlight<K, V> {
  readonly #pending = new Map<K, Promise<V>>();

  run(key: K, load: () => Promise<V>): Promise<V> {
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    const p = load().finally(() => this.#pending.delete(key));
    this.#pending.set(key, p);
    return p;
  }

  /**
   * As run, for a load that may finish at once: its value is then returned as it is, with no
   * promise made (a promise answers only in a later microtask). Concurrent callers share a load
   * that has to wait.
   */
  runNow(key: K, load: () => V | Promise<V>): V | Promise<V> {
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    const v = load();
    if (!(v instanceof Promise)) return v;
    const p = v.finally(() => this.#pending.delete(key));
    this.#pending.set(key, p);
    return p;
  }
}
