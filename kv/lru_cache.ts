/** A small least-recently-used cache for immutable records (events, state group deltas). */

/** Map-backed LRU: a Map iterates in insertion order, so re-inserting marks an entry recent. */
export class LruCache<K, V> {
  readonly #entries = new Map<K, V>();

  /** `capacity` bounds the number of entries kept. */
  constructor(readonly capacity: number) {}

  /** The cached value, marking it recently used. */
  get(key: K): V | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  /** Cache a value, evicting the least recently used entry when full. */
  set(key: K, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.capacity) {
      this.#entries.delete(this.#entries.keys().next().value as K);
    }
  }

  /** Drop everything (tests and replay use fresh caches instead). */
  clear(): void {
    this.#entries.clear();
  }
}
