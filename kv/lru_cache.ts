/**
 * A small least-recently-used cache for immutable records (events, state group deltas,
 * materialised states), bounded by entry count and by an estimated weight in bytes, since one
 * record may be tiny or 64 KiB.
 */

/** Bounds of a cache. */
export interface LruLimits<V> {
  /** Most entries kept. */
  capacity: number;
  /** Most total weight kept; an entry heavier than this is not cached at all. */
  maxWeight?: number;
  /** Estimated weight (bytes) of a value. */
  weigh?: (value: V) => number;
}

/** Map-backed LRU: a Map iterates in insertion order, so re-inserting marks an entry recent. */
export class LruCache<K, V> {
  readonly #entries = new Map<K, { value: V; weight: number }>();
  #weight = 0;

  /** A cache within `limits`. */
  constructor(readonly limits: LruLimits<V>) {}

  /** The cached value, marking it recently used. */
  get(key: K): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  /** Cache a value, evicting the least recently used entries while over a bound. */
  set(key: K, value: V): void {
    const weight = this.limits.weigh?.(value) ?? 0;
    const maxWeight = this.limits.maxWeight ?? Infinity;
    this.delete(key);
    if (weight > maxWeight) return;
    this.#entries.set(key, { value, weight });
    this.#weight += weight;
    while (this.#entries.size > this.limits.capacity || this.#weight > maxWeight) {
      this.delete(this.#entries.keys().next().value as K);
    }
  }

  /** Forget one entry. */
  delete(key: K): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#weight -= entry.weight;
  }

  /** Entries cached now. */
  get size(): number {
    return this.#entries.size;
  }
}
