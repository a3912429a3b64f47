/**
 * Storage port for failed password attempts per account: one small leaky bucket per user ID,
 * shared by every process over the database, so guessing is limited per account however many
 * isolates an attacker spreads requests over.
 */

/** A leaky bucket: `level` failures, draining at the rule's rate since `updatedAt` (ms). */
export interface FailureBucket {
  level: number;
  updatedAt: number;
}

/** Where the buckets live. */
export interface PasswordFailureStore {
  /**
   * Replace the bucket of `userId` with `update(current)` in one optimistic commit (`update`
   * may run again after a lost race, and may throw to write nothing). A null result deletes the
   * bucket. The stored bucket may be dropped `ttlMs` after the write: by then it has drained.
   */
  updateBucket(
    userId: string,
    update: (current: FailureBucket | null) => FailureBucket | null,
    ttlMs: number,
  ): Promise<void>;
}
