/**
 * The per-account limit on failed password attempts, for login and every user-interactive auth
 * stage that takes m.login.password. An attempt takes a slot before the password is checked and
 * gives it back only when the password was right: concurrent guesses cannot overrun the limit,
 * and a right password after the limit is refused like any other until the bucket drains
 * (otherwise guessing would simply go on until the right guess). The bucket is in KV, not in
 * memory: each isolate on Deno Deploy has its own memory, and an in-memory count would multiply
 * an attacker's allowance by the number of isolates.
 */
import { MatrixError } from "../errors.ts";
import type { RateLimitRule } from "../rate_limiter.ts";
import type { FailureBucket, PasswordFailureStore } from "../ports/password_failure_store.ts";

/**
 * Synapse's defaults for `rc_login.failed_attempts` (and `rc_login.account`): 3 failures at
 * once, then one more every 1 / 0.17 s, about 5.9 s.
 */
export const DEFAULT_PASSWORD_FAILURE_RULE: Readonly<RateLimitRule> = Object.freeze({
  burst: 3,
  perSecond: 0.17,
});

/** Construction options of PasswordFailureLimiter. */
export interface PasswordFailureLimiterOptions {
  rule?: Readonly<RateLimitRule>;
  now?: () => number;
}

/** Failed password attempts per account, over a PasswordFailureStore. */
export class PasswordFailureLimiter {
  private readonly rule: Readonly<RateLimitRule>;
  private readonly now: () => number;

  /** Build over `store`; the rule defaults to Synapse's. */
  constructor(
    private readonly store: PasswordFailureStore,
    options: PasswordFailureLimiterOptions = {},
  ) {
    this.rule = options.rule ?? DEFAULT_PASSWORD_FAILURE_RULE;
    this.now = options.now ?? Date.now;
  }

  /**
   * Take a slot for one attempt on `userId`'s password, or throw 429 M_LIMIT_EXCEEDED with
   * `retry_after_ms` when the account's recent failures fill the bucket.
   */
  async reserve(userId: string): Promise<void> {
    await this.store.updateBucket(userId, (current) => {
      const now = this.now();
      const level = this.drained(current, now);
      if (level + 1 > this.rule.burst) {
        const retryAfterMs = Math.max(
          1,
          Math.ceil(((level + 1 - this.rule.burst) / this.rule.perSecond) * 1000),
        );
        throw new MatrixError("M_LIMIT_EXCEEDED", 429, "Too many failed password attempts", {
          retry_after_ms: retryAfterMs,
        });
      }
      return { level: level + 1, updatedAt: now };
    }, this.ttlMs());
  }

  /** Give back the slot of an attempt whose password was right. */
  async release(userId: string): Promise<void> {
    await this.store.updateBucket(userId, (current) => {
      const now = this.now();
      const level = this.drained(current, now) - 1;
      return level <= 0 ? null : { level, updatedAt: now };
    }, this.ttlMs());
  }

  private drained(bucket: FailureBucket | null, now: number): number {
    if (!bucket) return 0;
    const elapsed = Math.max(0, now - bucket.updatedAt) / 1000;
    return Math.max(0, bucket.level - elapsed * this.rule.perSecond);
  }

  /** A full bucket drains in burst / rate seconds; keep it a little longer than that. */
  private ttlMs(): number {
    return Math.ceil(((this.rule.burst + 1) / this.rule.perSecond) * 1000);
  }
}
