/**
 * OAuth 2.0 clients in KV (`oauthclientid_client`): one record per client, written once with a
 * check that the ID is free, never changed afterwards (so every process reads the same client).
 */
import type { OAuthClientStore } from "../domain/ports/oauth_client_store.ts";
import type { OAuthClient } from "../domain/oauth/oauth_types.ts";
import { oauthKeys } from "./schema.ts";

/** The KV implementation of the OAuthClientStore port. */
export class KvOAuthClientStore implements OAuthClientStore {
  /** Over an open KV database. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See OAuthClientStore.create. */
  async create(client: OAuthClient): Promise<boolean> {
    const key = oauthKeys.client(client.clientId);
    const result = await this.kv.atomic().check({ key, versionstamp: null }).set(key, client)
      .commit();
    return result.ok;
  }

  /** See OAuthClientStore.get. */
  async get(clientId: string): Promise<OAuthClient | null> {
    return (await this.kv.get<OAuthClient>(oauthKeys.client(clientId))).value;
  }
}
