/**
 * Remote server keys in KV (`servername_keyid_verifykey`), one record per (server, key ID) with
 * the document it came in, and one failure record per server (`servername_keyfetchfailure`).
 */
import type {
  KeyFetchFailure,
  ServerKeyStore,
  StoredServerKey,
} from "../domain/ports/server_key_store.ts";
import { contentionError } from "./commit_retry.ts";
import { getManyChunked } from "./get_many.ts";
import { serverKeyKeys } from "./schema.ts";

// Each record carries its document (capped by the key ring at 16 KiB): ten stay well inside a
// commit's 800 KiB, and each key is independent, so several commits are fine.
const KEYS_PER_COMMIT = 10;

/** The KV implementation of the server key port. */
export class KvServerKeyStore implements ServerKeyStore {
  /** Store keys in `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  async getKey(serverName: string, keyId: string): Promise<StoredServerKey | undefined> {
    const entry = await this.kv.get<StoredServerKey>(serverKeyKeys.verifyKey(serverName, keyId));
    return entry.value ?? undefined;
  }

  async listKeys(serverName: string, limit = 100): Promise<StoredServerKey[]> {
    const out: StoredServerKey[] = [];
    const iter = this.kv.list<StoredServerKey>(
      { prefix: serverKeyKeys.verifyKeyPrefix(serverName) },
      { limit },
    );
    for await (const entry of iter) out.push(entry.value);
    return out;
  }

  async putKeys(keys: readonly StoredServerKey[]): Promise<void> {
    for (let start = 0; start < keys.length; start += KEYS_PER_COMMIT) {
      await this.putBatch(keys.slice(start, start + KEYS_PER_COMMIT));
    }
    const servers = new Set(keys.map((key) => key.serverName));
    for (const server of servers) await this.kv.delete(serverKeyKeys.fetchFailure(server));
  }

  private async putBatch(keys: readonly StoredServerKey[]): Promise<void> {
    const kvKeys = keys.map((key) => serverKeyKeys.verifyKey(key.serverName, key.keyId));
    for (let attempt = 0; attempt < 16; attempt++) {
      const existing = await getManyChunked<StoredServerKey>(this.kv, kvKeys);
      const op = this.kv.atomic();
      let writes = 0;
      keys.forEach((key, i) => {
        op.check(existing[i]);
        const stored = existing[i].value;
        // A document fetched earlier never replaces one fetched later (a slow fetch landing
        // after a fresh one from another isolate).
        if (stored !== null && stored.fetchedTs > key.fetchedTs) return;
        op.set(kvKeys[i], key);
        writes++;
      });
      if (writes === 0) return;
      if ((await op.commit()).ok) return;
    }
    throw contentionError(`storing the keys of ${keys[0]?.serverName}`);
  }

  async getFetchFailure(serverName: string): Promise<KeyFetchFailure | undefined> {
    const entry = await this.kv.get<KeyFetchFailure>(serverKeyKeys.fetchFailure(serverName));
    return entry.value ?? undefined;
  }

  async recordFetchFailure(
    serverName: string,
    now: number,
    backoff: (failures: number) => number,
  ): Promise<KeyFetchFailure> {
    const key = serverKeyKeys.fetchFailure(serverName);
    for (let attempt = 0; attempt < 16; attempt++) {
      const entry = await this.kv.get<KeyFetchFailure>(key);
      const failures = (entry.value?.failures ?? 0) + 1;
      const next: KeyFetchFailure = { failures, retryAtTs: now + backoff(failures) };
      if ((await this.kv.atomic().check(entry).set(key, next).commit()).ok) return next;
    }
    throw contentionError(`recording a key fetch failure of ${serverName}`);
  }
}
