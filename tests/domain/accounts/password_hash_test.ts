import { assert, assertEquals } from "../../assert.ts";
import { DEFAULT_SCRYPT_PARAMS, PasswordHasher } from "../../../domain/accounts/password_hash.ts";
import { newToken, tokenHash } from "../../../domain/accounts/tokens.ts";

Deno.test("password hashes: verify, reject wrong and malformed, salted, parameters recorded", async () => {
  const hasher = new PasswordHasher({ logN: 8, r: 8, p: 1 });
  const a = await hasher.hash("correct horse");
  const b = await hasher.hash("correct horse");
  assert(a !== b, "salted");
  assert(a.startsWith("scrypt$8$8$1$"));
  assert(await hasher.verify("correct horse", a));
  assertEquals(await hasher.verify("correct horsf", a), false);
  assertEquals(await hasher.verify("x", "plain"), false);
  assertEquals(await hasher.verify("x", "scrypt$40$8$1$AAAA$AAAA"), false);
  // A hash made with other parameters still verifies: they travel with the hash.
  assert(await new PasswordHasher({ logN: 9, r: 8, p: 1 }).verify("correct horse", a));
  assertEquals(DEFAULT_SCRYPT_PARAMS, { logN: 15, r: 8, p: 1 });
});

Deno.test("tokens: prefixed, 32 random bytes, stored as SHA-256", () => {
  const token = newToken("access");
  assert(/^tsr_at_[A-Za-z0-9_-]{43}$/.test(token));
  assert(newToken("access") !== token);
  assertEquals(tokenHash(token), tokenHash(token));
  assertEquals(tokenHash(token).length, 43);
  // Known vector: SHA-256("abc") in unpadded base64url.
  assertEquals(tokenHash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
});
