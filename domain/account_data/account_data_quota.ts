/**
 * Caps on a user's account data. Every new login's first sync carries all of it: 500 types made
 * each first sync 88 MB. Neither Synapse nor conduwuit caps it (only each object's size); here
 * a user keeps at most MAX_ACCOUNT_DATA_TYPES global types and MAX_ACCOUNT_DATA_BYTES in all.
 * Read markers (`m.fully_read`) are exempt: the server writes them, one small object per room,
 * and refusing one would break reading. The usage record is updated in the same commit as the
 * entry it counts (kv/account_data_store.ts), so concurrent writes cannot slip past the caps.
 */
import { tooLarge } from "../errors.ts";

/**
 * Global account data types per user. Element keeps about 40 (settings, secret storage, cross
 * signing, widgets, breadcrumbs); five times that leaves room for other clients and bots.
 */
export const MAX_ACCOUNT_DATA_TYPES = 200;

/**
 * Bytes of account data per user, global and per room (tags included). `m.direct` of a user
 * with thousands of DMs is the largest real object, a few hundred KB.
 */
export const MAX_ACCOUNT_DATA_BYTES = 2 * 1024 * 1024;

/** What an entry costs beyond its content: its type and the envelope sync wraps it in. */
const ENTRY_OVERHEAD_BYTES = 64;

const utf8 = new TextEncoder();

/** What the caps count of one user's account data. */
export interface AccountDataUsage {
  /** Global types holding data. */
  types: number;
  /** Bytes of every counted entry, global and per room. */
  bytes: number;
}

/** Whether entries of `type` count toward the caps. */
export function countsTowardAccountDataQuota(type: string): boolean {
  return type !== "m.fully_read";
}

/** The bytes an entry counts for, from its stored content's byte length. */
export function accountDataEntryBytes(type: string, contentBytes: number): number {
  return contentBytes + utf8.encode(type).byteLength + ENTRY_OVERHEAD_BYTES;
}

/**
 * Usage after replacing an entry whose stored content was `oldBytes` long (null: none) with one
 * of `newBytes`. Records written before the caps existed were never counted, so totals never go
 * below zero.
 */
export function usageAfter(
  usage: AccountDataUsage,
  change: { roomId: string | null; type: string; oldBytes: number | null; newBytes: number },
): AccountDataUsage {
  if (!countsTowardAccountDataQuota(change.type)) return usage;
  const old = change.oldBytes === null ? 0 : accountDataEntryBytes(change.type, change.oldBytes);
  const added = change.oldBytes === null && change.roomId === null ? 1 : 0;
  return {
    types: usage.types + added,
    bytes: Math.max(0, usage.bytes - old + accountDataEntryBytes(change.type, change.newBytes)),
  };
}

/** Refuse (413 M_TOO_LARGE) a write that takes usage over a cap; shrinking always passes. */
export function checkAccountDataQuota(before: AccountDataUsage, after: AccountDataUsage): void {
  if (after.types > before.types && after.types > MAX_ACCOUNT_DATA_TYPES) {
    throw tooLarge(
      `You have ${before.types} account data types, the most allowed is ` +
        `${MAX_ACCOUNT_DATA_TYPES}; reuse one of them`,
    );
  }
  if (after.bytes > before.bytes && after.bytes > MAX_ACCOUNT_DATA_BYTES) {
    throw tooLarge(
      `Your account data would exceed ${MAX_ACCOUNT_DATA_BYTES} bytes; shrink some of it first`,
    );
  }
}
