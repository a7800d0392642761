// A cache bounded by entries and by estimated bytes (lru-cache), which also keeps the last value
// too large for its byte bound, one at a time (D45). lru-cache refuses a value larger than the
// bound outright; for a lower directory's listing that made every lookup in a directory of 99k
// names read all of it again (~190 ms a lookup), once its listing outgrew the bound.
import { CountedLRU } from './counted-lru.js';

export interface ByteCacheOptions<V> {
  /** Most values kept. */
  readonly max: number;
  /** Bound of the values' estimated bytes together. */
  readonly maxBytes: number;
  readonly sizeOf: (v: V) => number;
  /** Forget a value after this many ms; undefined: keep it until evicted. */
  readonly ttlMs?: number | undefined;
}

export class ByteCache<V extends object> {
  readonly #lru: CountedLRU<string, V>;
  readonly #maxBytes: number;
  readonly #sizeOf: (v: V) => number;
  readonly #ttlMs: number | undefined;
  #big: { readonly key: string; readonly value: V; readonly bytes: number; readonly at: number } | undefined;

  constructor(o: ByteCacheOptions<V>) {
    // lru-cache treats a ttl of 0 as none: "keep nothing" is 1 ms.
    this.#ttlMs = o.ttlMs === undefined ? undefined : Math.max(1, o.ttlMs);
    this.#lru = new CountedLRU<string, V>(o.max, { maxSize: o.maxBytes, ...(this.#ttlMs === undefined ? {} : { ttl: this.#ttlMs }) });
    this.#maxBytes = o.maxBytes;
    this.#sizeOf = o.sizeOf;
  }

  /** The value of key, counted as used. */
  get(key: string): V | undefined {
    return this.#lru.get(key) ?? this.#bigOf(key);
  }

  /** The value of key, not counted as used. */
  peek(key: string): V | undefined {
    return this.#lru.peek(key) ?? this.#bigOf(key);
  }

  set(key: string, value: V): void {
    const bytes = this.#sizeOf(value);
    if (bytes > this.#maxBytes) {
      // Kept beside the bound, in place of the last one: memory grows by the largest value
      // in use, not by every large one met.
      this.#big = { key, value, bytes, at: performance.now() };
      this.#lru.delete(key);
      return;
    }
    if (this.#big?.key === key) this.#big = undefined;
    this.#lru.set(key, value, { size: bytes });
  }

  get size(): number {
    return this.#lru.size + (this.#big === undefined ? 0 : 1);
  }

  /** Estimated bytes kept, the oversized value included. */
  get bytes(): number {
    return this.#lru.calculatedSize + (this.#big?.bytes ?? 0);
  }

  #bigOf(key: string): V | undefined {
    const b = this.#big;
    if (b === undefined || b.key !== key) return undefined;
    if (this.#ttlMs !== undefined && performance.now() - b.at >= this.#ttlMs) {
      this.#big = undefined;
      return undefined;
    }
    return b.value;
  }
}
