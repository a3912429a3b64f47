/**
 * Failed password attempts per account on Deno KV: one bucket per user ID, read and rewritten in
 * an optimistic commit so that concurrent attempts from any process are all counted.
 */
import { commitOrConflict, contentionBackoff, contentionError } from "./commit_retry.ts";
import { accountKeys } from "./schema.ts";
import type {
  FailureBucket,
  PasswordFailureStore,
} from "../domain/ports/password_failure_store.ts";

/** Attempts on one account's bucket rarely collide; a guessing burst may, briefly. */
const MAX_ATTEMPTS = 20;

/** The PasswordFailureStore port over one KV database. */
export class KvPasswordFailureStore implements PasswordFailureStore {
  /** Store buckets in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See PasswordFailureStore.updateBucket. */
  async updateBucket(
    userId: string,
    update: (current: FailureBucket | null) => FailureBucket | null,
    ttlMs: number,
  ): Promise<void> {
    const key = accountKeys.passwordFailures(userId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<FailureBucket>(key);
      const next = update(entry.value);
      if (next === null && entry.value === null) return;
      const op = this.kv.atomic().check(entry);
      if (next === null) op.delete(key);
      else op.set(key, next, { expireIn: ttlMs });
      if ((await commitOrConflict(op)).ok) return;
      await contentionBackoff(attempt);
    }
    throw contentionError("counting password attempts");
  }
}
