/**
 * Claiming one-time keys: each key is handed out exactly once, however many claims race.
 *
 * The guard is KV's optimistic check: a claim reads the first entry of the device's claim queue
 * (oldest upload first) and commits its deletion under a check on that entry's versionstamp, so
 * of two claims (in any process) reading the same entry only one commit succeeds; the other
 * takes the next entry. Inside one process the claims of one (user, device, algorithm) are
 * queued and whatever is waiting is served by one commit that deletes that many keys, so
 * concurrent claims cost one disk sync between them instead of a chain of failed checks.
 */
import { commitOrConflict, contentionBackoff, contentionError } from "./commit_retry.ts";
import type { JsonValue } from "../domain/protocol/json.ts";
import type { ClaimedKey } from "../domain/ports/device_key_store.ts";
import { KeyedDrainQueue, type Queued } from "../domain/keyed_drain_queue.ts";
import { MAX_KEY_ID_LENGTH } from "../domain/e2ee/key_upload_validation.ts";
import { estimateKeyBytes, KV_LIMITS } from "./commit_budget.ts";
import { e2eeKeys } from "./schema.ts";

/** A device's fallback key as stored: one per algorithm. */
export interface FallbackKeyRecord {
  keyId: string;
  key: JsonValue;
  /** Set by the first claim that hands it out; an upload of a new fallback key clears it. */
  used: boolean;
}

/** One claim: whose key of which algorithm. */
interface ClaimTarget {
  userId: string;
  deviceId: string;
  algorithm: string;
}

/**
 * Claims served by one commit at most; each checks a queue entry and deletes it and its index
 * entry (KV allows 100 checks, and 80 KiB of keys, which long IDs may reach first).
 */
const MAX_CLAIMS_PER_COMMIT = 64;

/** Queue entries read per listing when claiming one key at a time after a conflict. */
const LIST_BATCH = 8;

/** Rounds of re-reading before a claim gives up under relentless contention. */
const MAX_ROUNDS = 64;

/**
 * How long a claimed key's ID is remembered. A client whose upload response was lost sends the
 * same keys again; without the memory, a key a claim took meanwhile would be stored and handed
 * out a second time. Clients retry within minutes; a week leaves a wide margin.
 */
export const CLAIMED_KEY_ID_MEMORY_MS = 7 * 24 * 60 * 60 * 1000;

/** Claims over one KV database, batched per (user, device, algorithm) in this process. */
export class OneTimeKeyClaims {
  readonly #queue: KeyedDrainQueue<ClaimTarget, ClaimedKey | null>;

  /** Claim from `kv`. */
  constructor(private readonly kv: Deno.Kv) {
    this.#queue = new KeyedDrainQueue((_key, waiting) => this.#serve(waiting));
  }

  /** The device's oldest one-time key of `algorithm`, else its fallback key, else null. */
  claim(userId: string, deviceId: string, algorithm: string): Promise<ClaimedKey | null> {
    const key = JSON.stringify([userId, deviceId, algorithm]);
    return this.#queue.enqueue(key, { userId, deviceId, algorithm });
  }

  /** Serve the claims waiting at the front of one target's queue. */
  async #serve(waiting: Queued<ClaimTarget, ClaimedKey | null>[]): Promise<void> {
    const target = waiting[0].item;
    const batch = waiting.slice(0, claimsPerCommit(target));
    const entries = await this.#listQueue(target, batch.length);
    if (entries.length > 0) {
      const op = this.kv.atomic();
      for (const entry of entries) this.#stageTake(op, target, entry);
      if ((await commitOrConflict(op)).ok) {
        waiting.splice(0, entries.length);
        entries.forEach((entry, i) => batch[i].resolve(claimedFrom(target, entry)));
        return;
      }
      // Another process took one of these keys first: serve the first claim one key at a time,
      // then batch again.
      const claimed = await this.#claimOne(target);
      waiting.shift()!.resolve(claimed);
      return;
    }
    const claimed = await this.#claimOne(target);
    if (claimed === null || claimed.fallback) {
      // Nothing left but the fallback key (or nothing at all): every waiting claim gets the same.
      waiting.splice(0, batch.length);
      for (const queued of batch) queued.resolve(claimed);
      return;
    }
    // A one-time key was uploaded meanwhile: it goes to the first claim alone.
    waiting.shift()!.resolve(claimed);
  }

  /**
   * One claim without batching: take the first queue entry whose guarded delete commits; with
   * none left, hand out the fallback key and mark it used.
   */
  async #claimOne(target: ClaimTarget): Promise<ClaimedKey | null> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      // Rivals that keep colliding (other processes) spread out after the first rounds.
      if (round >= 2) await contentionBackoff(round);
      const entries = await this.#listQueue(target, LIST_BATCH);
      for (const entry of entries) {
        const op = this.kv.atomic();
        this.#stageTake(op, target, entry);
        if ((await commitOrConflict(op)).ok) return claimedFrom(target, entry);
      }
      if (entries.length > 0) continue;
      const fallback = await this.kv.get<FallbackKeyRecord>(
        e2eeKeys.fallbackKey(target.userId, target.deviceId, target.algorithm),
      );
      if (fallback.value === null) return null;
      if (!fallback.value.used) {
        // Checked, so a fallback key uploaded meanwhile is not marked used by mistake.
        const marked = await commitOrConflict(
          this.kv.atomic().check(fallback)
            .set(fallback.key, { ...fallback.value, used: true } satisfies FallbackKeyRecord),
        );
        if (!marked.ok) continue;
      }
      return {
        algorithm: target.algorithm,
        keyId: fallback.value.keyId,
        key: fallback.value.key,
        fallback: true,
      };
    }
    throw contentionError("claiming a one-time key");
  }

  async #listQueue(target: ClaimTarget, limit: number): Promise<Deno.KvEntry<JsonValue>[]> {
    const prefix = e2eeKeys.oneTimeKeyQueuePrefix(target.userId, target.deviceId, target.algorithm);
    const entries: Deno.KvEntry<JsonValue>[] = [];
    for await (const entry of this.kv.list<JsonValue>({ prefix }, { limit })) entries.push(entry);
    return entries;
  }

  /**
   * Delete a queue entry, guarded by the entry's versionstamp, and mark its index entry claimed
   * (expiring), so a re-upload of the same key ID is recognised as already handed out.
   */
  #stageTake(op: Deno.AtomicOperation, target: ClaimTarget, entry: Deno.KvEntry<JsonValue>) {
    const keyId = queueKeyId(entry.key);
    const seq = entry.key[entry.key.length - 2] as number;
    op.check(entry).delete(entry.key).set(
      e2eeKeys.oneTimeKey(target.userId, target.deviceId, target.algorithm, keyId),
      { seq, claimed: true },
      { expireIn: CLAIMED_KEY_ID_MEMORY_MS },
    ).sum(
      e2eeKeys.oneTimeKeyCount(target.userId, target.deviceId, target.algorithm, "claimed"),
      1n,
    );
  }
}

/** How many claims of `target` one commit can serve within KV's key-size limit. */
function claimsPerCommit(target: ClaimTarget): number {
  const { userId, deviceId, algorithm } = target;
  // Key IDs are bounded at upload; size both keys of a claim with the longest one.
  const longestKeyId = "x".repeat(MAX_KEY_ID_LENGTH);
  const perClaim = 2 *
      estimateKeyBytes(e2eeKeys.oneTimeKeyQueue(userId, deviceId, algorithm, 0, longestKeyId)) +
    estimateKeyBytes(e2eeKeys.oneTimeKey(userId, deviceId, algorithm, longestKeyId));
  return Math.max(1, Math.min(MAX_CLAIMS_PER_COMMIT, Math.floor(KV_LIMITS.keyBytes / perClaim)));
}

/** The key ID of a claim queue key (its last part). */
export function queueKeyId(key: Deno.KvKey): string {
  return key[key.length - 1] as string;
}

function claimedFrom(target: ClaimTarget, entry: Deno.KvEntry<JsonValue>): ClaimedKey {
  return {
    algorithm: target.algorithm,
    keyId: queueKeyId(entry.key),
    key: entry.value,
    fallback: false,
  };
}
