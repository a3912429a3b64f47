/** OAuthClientRegistry over an in-memory fake store: refusals store nothing, IDs never reused. */
import assert from "node:assert/strict";
import { OAuthClientRegistry } from "../../../domain/oauth/client_registry.ts";
import { OAuthError } from "../../../domain/oauth/oauth_errors.ts";
import type { OAuthClientStore } from "../../../domain/ports/oauth_client_store.ts";
import type { OAuthClient } from "../../../domain/oauth/oauth_types.ts";

/** A Map-backed store; `taken` makes the next N creates report the ID as taken. */
class MemoryClientStore implements OAuthClientStore {
  readonly clients = new Map<string, OAuthClient>();
  taken = 0;
  creates = 0;
  create(client: OAuthClient): Promise<boolean> {
    this.creates++;
    if (this.taken > 0) {
      this.taken--;
      return Promise.resolve(false);
    }
    if (this.clients.has(client.clientId)) return Promise.resolve(false);
    this.clients.set(client.clientId, client);
    return Promise.resolve(true);
  }
  get(clientId: string): Promise<OAuthClient | null> {
    return Promise.resolve(this.clients.get(clientId) ?? null);
  }
}

const BODY = { client_uri: "https://example.com/", redirect_uris: ["https://example.com/cb"] };

Deno.test("register validates, stores and returns the client with a fresh ID", async () => {
  const store = new MemoryClientStore();
  const registry = new OAuthClientRegistry(store, () => 42);
  const client = await registry.register(BODY);
  assert.equal(client.createdAt, 42);
  assert.deepEqual(await registry.get(client.clientId), client);
  const other = await registry.register(BODY);
  assert.notEqual(other.clientId, client.clientId);
});

Deno.test("a refused registration throws OAuthError 400 and stores nothing", async () => {
  const store = new MemoryClientStore();
  const registry = new OAuthClientRegistry(store);
  await assert.rejects(
    () => registry.register({ ...BODY, redirect_uris: ["https://evil.example/cb"] }),
    (error) =>
      error instanceof OAuthError && error.error === "invalid_redirect_uri" &&
      error.status === 400,
  );
  await assert.rejects(
    () => registry.register({ ...BODY, client_uri: "http://example.com/" }),
    (error) => error instanceof OAuthError && error.error === "invalid_client_metadata",
  );
  assert.equal(store.creates, 0);
});

Deno.test("a taken ID is never overwritten: a new one is drawn", async () => {
  const store = new MemoryClientStore();
  store.taken = 2;
  const client = await new OAuthClientRegistry(store).register(BODY);
  assert.equal(store.creates, 3);
  assert.equal(store.clients.get(client.clientId), client);
  // A store that keeps refusing ends in a server error, not a replaced client.
  store.taken = 3;
  await assert.rejects(
    () => new OAuthClientRegistry(store).register(BODY),
    (error) => error instanceof OAuthError && error.error === "server_error",
  );
});

Deno.test("get answers null for malformed IDs without asking the store", async () => {
  let asked = 0;
  const store: OAuthClientStore = {
    create: () => Promise.resolve(true),
    get: () => {
      asked++;
      return Promise.resolve(null);
    },
  };
  const registry = new OAuthClientRegistry(store);
  for (const id of ["", "a b", "x".repeat(65), "../x", "é"]) {
    assert.equal(await registry.get(id), null);
  }
  assert.equal(asked, 0);
  assert.equal(await registry.get("abc_DEF-123"), null);
  assert.equal(asked, 1);
});
