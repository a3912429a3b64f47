/**
 * OpenID tokens in KV (`openidtokenhash_user`): one record per token hash, written with KV's
 * `expireIn` so expired tokens are dropped without a sweep (reads still check the expiry, since
 * KV deletes expired keys only eventually).
 */
import type { OpenIdTokenRecord, OpenIdTokenStore } from "../domain/ports/openid_token_store.ts";
import { accountKeys } from "./schema.ts";

/** The KV implementation of the OpenIdTokenStore port. */
export class KvOpenIdTokenStore implements OpenIdTokenStore {
  /** Over an open KV database; `now` is the clock expiries are measured against. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See OpenIdTokenStore.put. */
  async put(hash: string, record: OpenIdTokenRecord): Promise<void> {
    const expireIn = Math.max(1, record.expiresAt - this.now());
    await this.kv.set(accountKeys.openIdToken(hash), record, { expireIn });
  }

  /** See OpenIdTokenStore.get. */
  async get(hash: string): Promise<OpenIdTokenRecord | null> {
    return (await this.kv.get<OpenIdTokenRecord>(accountKeys.openIdToken(hash))).value;
  }
}
