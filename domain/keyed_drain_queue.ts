/**
 * Per-key FIFO queues, each drained by one loop at a time. Appends and local sends use it to
 * serialise work per room in process while folding whatever is waiting into one batch.
 */

/** A queued item and the promise it settles. */
export interface Queued<T, R> {
  item: T;
  resolve(result: R): void;
  reject(error: unknown): void;
}

/**
 * One drain step: settle some items at the front of `queue` and remove them. If it throws, every
 * item still queued for that key is rejected with the error.
 */
export type DrainStep<T, R> = (key: string, queue: Queued<T, R>[]) => Promise<void>;

/** Queues per key, with at most one drain loop per key. */
export class KeyedDrainQueue<T, R> {
  readonly #queues = new Map<string, Queued<T, R>[]>();

  /** `step` is called repeatedly while the key's queue is not empty. */
  constructor(private readonly step: DrainStep<T, R>) {}

  /** Queue `item` under `key`; resolves or rejects when a drain step settles it. */
  enqueue(key: string, item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      const queued = { item, resolve, reject };
      const queue = this.#queues.get(key);
      if (queue) {
        queue.push(queued);
        return;
      }
      this.#queues.set(key, [queued]);
      this.#drain(key);
    });
  }

  async #drain(key: string): Promise<void> {
    const queue = this.#queues.get(key)!;
    try {
      while (queue.length > 0) await this.step(key, queue);
    } catch (error) {
      for (const queued of queue.splice(0)) queued.reject(error);
    } finally {
      this.#queues.delete(key);
    }
  }
}
