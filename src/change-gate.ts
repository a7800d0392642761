// Changes through the mount run side by side; a change that must see a whole subtree hold still
// (moving a directory that lower branches have, which copies the subtree, D16) runs alone.
// A readers-writer lock in which the "readers" are ordinary changes: reads of the merged view
// never wait. An exclusive section waits for the changes under way to finish and holds back new
// ones until it ends; exclusive sections queue behind each other.
export class ChangeGate {
  #active = 0;
  /** Settles when the current exclusive section ends. */
  #exclusive: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#exclusive !== undefined) await this.#exclusive;
    this.#active++;
    try {
      return await fn();
    } finally {
      if (--this.#active === 0) this.#drained?.();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#exclusive !== undefined) await this.#exclusive;
    let end!: () => void;
    this.#exclusive = new Promise<void>((r) => (end = r));
    try {
      if (this.#active > 0) await new Promise<void>((r) => (this.#drained = r));
      this.#drained = undefined;
      return await fn();
    } finally {
      this.#exclusive = undefined;
      end();
    }
  }
}
