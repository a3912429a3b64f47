/** TESSERA_OLD_SIGNING_KEYS and TESSERA_TRUSTED_KEY_SERVERS: accepted shapes and clear refusals. */
import assert from "node:assert/strict";
import { encodeBase64Unpadded } from "../../../domain/protocol/base64.ts";
import { ConfigError, loadConfig } from "../../../domain/config.ts";
import {
  parseOldSigningKeys,
  parseTrustedKeyServers,
} from "../../../domain/federation/key_config.ts";

const key = encodeBase64Unpadded(new Uint8Array(32).fill(5));

Deno.test("old signing keys: the old_verify_keys shape, public keys only", () => {
  const raw = JSON.stringify({
    "ed25519:old_1": { key, expired_ts: 1_700_000_000_000 },
    "ed25519:old_2": { key, expired_ts: 0 },
  });
  assert.deepEqual(parseOldSigningKeys(raw), {
    value: [
      {
        keyId: "ed25519:old_1",
        publicKey: new Uint8Array(32).fill(5),
        expiredTs: 1_700_000_000_000,
      },
      { keyId: "ed25519:old_2", publicKey: new Uint8Array(32).fill(5), expiredTs: 0 },
    ],
  });
  const config = loadConfig({ TESSERA_OLD_SIGNING_KEYS: raw }, { dev: true });
  assert.equal(config.oldSigningKeys?.length, 2);
  assert.equal(loadConfig({}, { dev: true }).oldSigningKeys, undefined);
});

Deno.test("old signing keys: malformed values are refused with the variable named", () => {
  const bad = [
    "not json",
    "[]",
    JSON.stringify({ "ed25519:x": { key } }),
    JSON.stringify({ "ed25519:x": { key, expired_ts: -1 } }),
    JSON.stringify({ "ed25519:x": { key, expired_ts: 1.5 } }),
    JSON.stringify({ "ed25519:x": { key, expired_ts: 1, seed: "secret" } }),
    JSON.stringify({ "curve25519:x": { key, expired_ts: 1 } }),
    JSON.stringify({ "ed25519:bad-id": { key, expired_ts: 1 } }),
    JSON.stringify({ "ed25519:x": { key: "AAAA", expired_ts: 1 } }),
  ];
  for (const raw of bad) {
    assert.ok("problem" in parseOldSigningKeys(raw), raw);
    assert.throws(
      () => loadConfig({ TESSERA_OLD_SIGNING_KEYS: raw }, { dev: true }),
      (e) => e instanceof ConfigError && e.variable === "TESSERA_OLD_SIGNING_KEYS",
      raw,
    );
  }
});

Deno.test("trusted key servers: names, optionally with pinned keys", () => {
  assert.deepEqual(parseTrustedKeyServers("matrix.org"), { value: [{ serverName: "matrix.org" }] });
  assert.deepEqual(
    parseTrustedKeyServers(`matrix.org ed25519:auto=${key}, notary.example:8448`),
    {
      value: [
        { serverName: "matrix.org", verifyKeys: { "ed25519:auto": new Uint8Array(32).fill(5) } },
        { serverName: "notary.example:8448" },
      ],
    },
  );
  const config = loadConfig({ TESSERA_TRUSTED_KEY_SERVERS: "matrix.org" }, { dev: true });
  assert.deepEqual(config.trustedKeyServers, [{ serverName: "matrix.org" }]);
  assert.equal(loadConfig({}, { dev: true }).trustedKeyServers, undefined);
  for (
    const raw of [
      "not a server!",
      "matrix.org,matrix.org",
      "matrix.org ed25519:auto",
      "matrix.org ed25519:auto=AAAA",
      `matrix.org rsa:x=${key}`,
      ",",
    ]
  ) {
    assert.ok("problem" in parseTrustedKeyServers(raw), raw);
  }
});
