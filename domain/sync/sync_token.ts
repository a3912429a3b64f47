/**
 * The sync token's shape, as the event store issues it (`s` + a 20-hex-digit KV versionstamp,
 * kv/stream_tokens.ts). Sync needs it to reject a malformed `since` before any work, and to
 * bound a left room's timeline at its leave event's commit.
 */
import { invalidParam } from "../errors.ts";

const SYNC_TOKEN = /^s[0-9a-f]{20}$/;

/** Reject a malformed `since` with 400 M_INVALID_PARAM. */
export function checkSyncToken(token: string): void {
  if (!SYNC_TOKEN.test(token)) throw invalidParam("Invalid since token");
}

/** The token of a commit versionstamp (what `syncBarrier` would have returned for it). */
export function syncTokenAt(versionstamp: string): string {
  return `s${versionstamp}`;
}

/** The commit versionstamp a token stands for (the inverse of `syncTokenAt`). */
export function syncTokenVersionstamp(token: string): string {
  return token.slice(1);
}

/** Whether an entry's commit versionstamp falls after a token (fixed width: compare as text). */
export function isAfter(versionstamp: string, token: string): boolean {
  return versionstamp > token.slice(1);
}
