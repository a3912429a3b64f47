/**
 * The notary side of "Querying keys through another server": answer `/_matrix/key/v2/query`
 * with each server's key documents as that server signed them, from our cache or fetched
 * directly when the cache does not meet the asker's `minimum_valid_until_ts`, each countersigned
 * by us. When the server cannot be reached we answer with what we hold, even expired (the
 * asker decides what it can use), and a key the server later forgets stays served.
 */
import { canonicalJson } from "../protocol/canonical_json.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { ServerKeyStore, StoredServerKey } from "../ports/server_key_store.ts";
import { type ServerKeyring, signedServerKeys } from "../protocol/server_keys.ts";
import { signJson } from "../protocol/signing.ts";

/** Servers one query may name, and key IDs per server: each can cost an outbound fetch. */
export const MAX_NOTARY_SERVERS = 50;
/** Key IDs one query may name for one server. */
export const MAX_NOTARY_KEY_IDS = 20;

/**
 * What is asked about one server: key ID -> minimum_valid_until_ts (undefined: "now"); an
 * empty map asks for all of its keys.
 */
export type NotaryCriteria = ReadonlyMap<string, number | undefined>;

/** What the notary needs. */
export interface KeyNotaryDeps {
  own: ServerKeyring;
  store: ServerKeyStore;
  /** Fetch a server's own document into the store (the key ring's deduplicated fetcher). */
  fetchDirect(serverName: string): Promise<void>;
  now?: () => number;
}

/** Answers key queries about other servers (and about us). */
export class KeyNotary {
  private readonly now: () => number;

  /** Build over `deps`. */
  constructor(private readonly deps: KeyNotaryDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * The `server_keys` of a query's answer; servers we know nothing about are left out.
   * `minimumForAllKeys` is the minimum_valid_until_ts of a query naming no key IDs (now when
   * absent).
   */
  async query(
    servers: ReadonlyMap<string, NotaryCriteria>,
    minimumForAllKeys?: number,
  ): Promise<JsonObject[]> {
    const answers = await Promise.all(
      [...servers].map(([serverName, criteria]) =>
        this.documentsFor(serverName, criteria, minimumForAllKeys)
      ),
    );
    return answers.flat();
  }

  private async documentsFor(
    serverName: string,
    criteria: NotaryCriteria,
    minimumForAllKeys: number | undefined,
  ): Promise<JsonObject[]> {
    const now = this.now();
    if (serverName === this.deps.own.serverName) {
      return [await signedServerKeys(this.deps.own, now)];
    }
    let keys = await this.deps.store.listKeys(serverName);
    if (needsFetch(keys, criteria, minimumForAllKeys ?? now, now)) {
      await this.deps.fetchDirect(serverName);
      keys = await this.deps.store.listKeys(serverName);
    }
    const wanted = criteria.size === 0 ? keys : keys.filter((key) => criteria.has(key.keyId));
    // One document often lists several keys; serve each once.
    const documents = new Map<string, JsonObject>();
    for (const key of wanted) documents.set(canonicalJson(key.document), key.document);
    return await Promise.all(
      [...documents.values()].map((document) =>
        signJson(document, this.deps.own.serverName, this.deps.own.current)
      ),
    );
  }
}

/**
 * Whether the cache falls short of the query: a named key missing or in a document valid for
 * less long than asked; with no key named, no document valid as long as asked.
 */
function needsFetch(
  keys: readonly StoredServerKey[],
  criteria: NotaryCriteria,
  minimumForAllKeys: number,
  now: number,
): boolean {
  if (criteria.size === 0) return !keys.some((key) => key.validUntilTs >= minimumForAllKeys);
  return [...criteria].some(([keyId, minimum]) => {
    const key = keys.find((k) => k.keyId === keyId);
    return key === undefined || key.validUntilTs < (minimum ?? now);
  });
}
