/**
 * The storage port for other servers' signing keys: the key ring's cache (shared by every
 * isolate, so a key fetched by one is seen by all) and the documents the notary serves again.
 */
import type { JsonObject } from "../protocol/json.ts";

/** One public key of a remote server, as the newest document naming it described it. */
export interface StoredServerKey {
  readonly serverName: string;
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  /** The document's `valid_until_ts` (a current key; the 7-day cap is applied on reading). */
  readonly validUntilTs: number;
  /** Set for a key listed in `old_verify_keys`: valid for what was signed before it. */
  readonly expiredTs?: number;
  /** When we received the document (ms since the epoch). */
  readonly fetchedTs: number;
  /** The key document as its server signed it (other servers' signatures removed). */
  readonly document: JsonObject;
}

/** A run of failed key fetches from one server, kept so isolates back off together. */
export interface KeyFetchFailure {
  readonly failures: number;
  /** No new fetch before this (ms since the epoch). */
  readonly retryAtTs: number;
}

/** Storage of remote server keys. */
export interface ServerKeyStore {
  /** The cached key `keyId` of `serverName`, if any. */
  getKey(serverName: string, keyId: string): Promise<StoredServerKey | undefined>;
  /** Every cached key of `serverName` (at most `limit`, 100 by default). */
  listKeys(serverName: string, limit?: number): Promise<StoredServerKey[]>;
  /**
   * Store the keys of one verified document. Each key replaces the cached one unless that came
   * from a document fetched later; keys the document does not name stay as they were, so a
   * server that forgets a key cannot make us forget it. Clears the server's fetch failures.
   */
  putKeys(keys: readonly StoredServerKey[]): Promise<void>;
  /** The server's current run of failed fetches, if any. */
  getFetchFailure(serverName: string): Promise<KeyFetchFailure | undefined>;
  /** Record one more failed fetch; `backoff(failures)` says how long to wait after it. */
  recordFetchFailure(
    serverName: string,
    now: number,
    backoff: (failures: number) => number,
  ): Promise<KeyFetchFailure>;
}
