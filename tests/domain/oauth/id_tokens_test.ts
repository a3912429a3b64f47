/**
 * IdTokenSigner (domain/oauth/id_tokens.ts): ES256 ID tokens with the issuer, subject, audience,
 * nonce, auth_time and a one-hour lifetime, verifiable with the published key set (public half
 * only, kid = the key's thumbprint); the key is read from its store once, and a failed read is
 * retried rather than remembered.
 */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { IdTokenSigner } from "../../../domain/oauth/id_tokens.ts";
import { loadConfig } from "../../../domain/config.ts";
import { oauthIssuer } from "../../../domain/oauth/oauth_paths.ts";
import type { SigningKeyStore } from "../../../domain/ports/oauth_grant_store.ts";

const config = loadConfig({
  TESSERA_SERVER_NAME: "example.org",
  TESSERA_PUBLIC_BASEURL: "https://matrix.example.org",
}, { dev: true });

/** A key store in memory that counts its reads and can be made to fail. */
class MemoryKeyStore implements SigningKeyStore {
  key?: JsonWebKey;
  reads = 0;
  failNext = false;
  async getOrCreate(create: () => Promise<JsonWebKey>): Promise<JsonWebKey> {
    this.reads++;
    if (this.failNext) {
      this.failNext = false;
      throw new Error("storage unavailable");
    }
    this.key ??= await create();
    return this.key;
  }
}

Deno.test("ID tokens carry the claims and verify against the key set", async () => {
  const now = Date.UTC(2026, 0, 1);
  const store = new MemoryKeyStore();
  const signer = new IdTokenSigner(store, config, () => now);
  const token = await signer.sign({
    sub: "@alice:example.org",
    aud: "client-1",
    nonce: "abc",
    authTime: now - 30_000,
  });
  const jwks = await signer.jwks();
  assertEquals(jwks.keys.length, 1);
  const [key] = jwks.keys;
  assertEquals(key.d, undefined, "no private part");
  assertEquals([key.kty, key.crv, key.alg, key.use], ["EC", "P-256", "ES256", "sig"]);
  assertEquals(decodeProtectedHeader(token).kid, key.kid);

  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: "https://matrix.example.org/",
    audience: "client-1",
    currentDate: new Date(now),
  });
  assertEquals(oauthIssuer(config), "https://matrix.example.org/");
  assertEquals(payload.sub, "@alice:example.org");
  assertEquals(payload.nonce, "abc");
  assertEquals(payload.iat, now / 1000);
  assertEquals(payload.exp, now / 1000 + 3600);
  assertEquals(payload.auth_time, now / 1000 - 30);
  await assertRejects(() =>
    jwtVerify(token, createLocalJWKSet(jwks), { currentDate: new Date(now + 3601_000) })
  );
  assertEquals(store.reads, 1, "the key is read once and kept");
});

Deno.test("a signer over the same stored key signs tokens the other's key set verifies", async () => {
  const store = new MemoryKeyStore();
  const a = new IdTokenSigner(store, config);
  const b = new IdTokenSigner(store, config);
  const token = await a.sign({ sub: "@bob:example.org", aud: "c", authTime: Date.now() });
  const { payload } = await jwtVerify(token, createLocalJWKSet(await b.jwks()));
  assertEquals(payload.nonce, undefined);
  assertEquals(payload.sub, "@bob:example.org");
});

Deno.test("a failed key read is retried by the next caller", async () => {
  const store = new MemoryKeyStore();
  store.failNext = true;
  const signer = new IdTokenSigner(store, config);
  await assertRejects(() => signer.jwks());
  const jwks = await signer.jwks();
  assert(typeof jwks.keys[0].kid === "string");
  assertEquals(store.reads, 2);
});
