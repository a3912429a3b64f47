/** KvOAuthClientStore: written once under its ID, never overwritten. */
import assert from "node:assert/strict";
import { KvOAuthClientStore } from "../../kv/oauth_client_store.ts";
import type { OAuthClient } from "../../domain/oauth/oauth_types.ts";

const CLIENT: OAuthClient = {
  clientId: "client1",
  applicationType: "web",
  clientUri: "https://example.com/",
  redirectUris: ["https://example.com/cb"],
  grantTypes: ["authorization_code"],
  responseTypes: ["code"],
  tokenEndpointAuthMethod: "none",
  createdAt: 1,
};

Deno.test("KvOAuthClientStore: create once, read back, never replace", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new KvOAuthClientStore(kv);
  assert.equal(await store.get("client1"), null);
  assert.equal(await store.create(CLIENT), true);
  assert.deepEqual(await store.get("client1"), CLIENT);
  // A second client under the same ID (a collision, or a replay of a write) changes nothing.
  const rival = { ...CLIENT, redirectUris: ["https://evil.example/cb"] };
  assert.equal(await store.create(rival), false);
  assert.deepEqual(await store.get("client1"), CLIENT);
});
