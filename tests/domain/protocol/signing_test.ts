import assert from "node:assert/strict";
import * as ed from "@noble/ed25519";
import { decodeBase64, encodeBase64Unpadded } from "../../../domain/protocol/base64.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import {
  generateSigningSeed,
  signingKeyFromSeed,
  signJson,
  verifyEd25519,
  verifyEd25519Sync,
  verifyJsonSignature,
  verifyJsonSignatureSync,
} from "../../../domain/protocol/signing.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();
const { server_name, key_id, seed_base64 } = vectors.signing_key;
const seed = decodeBase64(seed_base64);
const key = await signingKeyFromSeed(seed, key_id);

Deno.test("the public key derived from the spec seed matches the fixture", () => {
  assert.equal(encodeBase64Unpadded(key.publicKey), vectors.signing_key.public_key_base64);
  assert.equal(key.publicKey.toHex(), vectors.signing_key.public_key_hex);
  assert.equal(key.keyId, "ed25519:1");
});

Deno.test("signJson reproduces the spec's signed JSON vectors byte for byte", async () => {
  assert.equal(vectors.signed_json.length, 2);
  for (const { input, signed } of vectors.signed_json) {
    const ours = await signJson(input, server_name, key);
    assert.deepEqual(ours, signed);
    assert.ok(await verifyJsonSignature(signed, server_name, key_id, key.publicKey));
    assert.ok(verifyJsonSignatureSync(signed, server_name, key_id, key.publicKey));
  }
});

Deno.test("signJson keeps unsigned and other signatures and does not mutate its input", async () => {
  const input: JsonObject = {
    b: 2,
    unsigned: { age_ts: 5 },
    signatures: { "other.example": { "ed25519:x": "c2ln" }, domain: { "ed25519:old": "b2xk" } },
  };
  const before = structuredClone(input);
  const out = await signJson(input, server_name, key);
  assert.deepEqual(input, before);
  assert.deepEqual(out.unsigned, { age_ts: 5 });
  const sigs = out.signatures as Record<string, Record<string, string>>;
  assert.equal(sigs["other.example"]["ed25519:x"], "c2ln");
  assert.equal(sigs.domain["ed25519:old"], "b2xk");
  // unsigned and the other signatures are not covered: the same signature as for {b: 2}.
  const bare = await signJson({ b: 2 }, server_name, key);
  assert.equal(sigs.domain["ed25519:1"], bare.signatures.domain["ed25519:1"]);
  assert.ok(await verifyJsonSignature(out, server_name, key_id, key.publicKey));
});

Deno.test("tampered objects, wrong keys and absent signatures fail verification", async () => {
  const signed = vectors.signed_json[1].signed;
  const tampered = { ...signed, two: "Three" };
  assert.equal(await verifyJsonSignature(tampered, server_name, key_id, key.publicKey), false);
  assert.equal(verifyJsonSignatureSync(tampered, server_name, key_id, key.publicKey), false);
  // Adding unsigned data is allowed: it is outside the signature.
  const annotated = { ...signed, unsigned: { age: 1 } };
  assert.ok(await verifyJsonSignature(annotated, server_name, key_id, key.publicKey));
  const other = await signingKeyFromSeed(generateSigningSeed(), "ed25519:2");
  assert.equal(await verifyJsonSignature(signed, server_name, key_id, other.publicKey), false);
  assert.equal(await verifyJsonSignature(signed, "elsewhere", key_id, key.publicKey), false);
  assert.equal(await verifyJsonSignature(signed, server_name, "ed25519:9", key.publicKey), false);
  assert.equal(await verifyJsonSignature({ one: 1 }, server_name, key_id, key.publicKey), false);
  const garbled = { ...signed, signatures: { domain: { "ed25519:1": "!!" } } };
  assert.equal(await verifyJsonSignature(garbled, server_name, key_id, key.publicKey), false);
  const withFloat = { ...signed, f: 0.5 };
  assert.equal(await verifyJsonSignature(withFloat, server_name, key_id, key.publicKey), false);
});

Deno.test("the spec's illustrative Signing Details object does not verify with the test key", async () => {
  const { object } = vectors.other_examples.signing_details;
  assert.equal(vectors.other_examples.signing_details.verifies_with_test_key, false);
  assert.equal(await verifyJsonSignature(object, "example.org", key_id, key.publicKey), false);
});

Deno.test("WebCrypto and @noble/ed25519 agree in both directions", async () => {
  for (let i = 0; i < 20; i++) {
    const s = generateSigningSeed();
    const k = await signingKeyFromSeed(s, "ed25519:a_1");
    assert.deepEqual(k.publicKey, ed.getPublicKey(s));
    const message = crypto.getRandomValues(new Uint8Array(i * 13));
    const webSig = await k.sign(message);
    const nobleSig = ed.sign(message, s);
    // Ed25519 is deterministic: both implementations produce the same bytes.
    assert.deepEqual(webSig, nobleSig);
    assert.ok(ed.verify(webSig, message, k.publicKey));
    assert.ok(await verifyEd25519(k.publicKey, message, nobleSig));
    assert.ok(verifyEd25519Sync(k.publicKey, message, webSig));
    const flipped = new Uint8Array(webSig);
    flipped[i % 64] ^= 1;
    assert.equal(await verifyEd25519(k.publicKey, message, flipped), false);
    assert.equal(verifyEd25519Sync(k.publicKey, message, flipped), false);
    assert.equal(ed.verify(flipped, message, k.publicKey), false);
  }
});

Deno.test("malformed keys and signatures verify as false rather than throwing", async () => {
  const message = new Uint8Array([1, 2, 3]);
  const sig = await key.sign(message);
  assert.equal(await verifyEd25519(key.publicKey.slice(0, 31), message, sig), false);
  assert.equal(await verifyEd25519(key.publicKey, message, sig.slice(0, 63)), false);
  assert.equal(verifyEd25519Sync(key.publicKey.slice(0, 31), message, sig), false);
  assert.equal(verifyEd25519Sync(key.publicKey, message, sig.slice(0, 63)), false);
  const notAPoint = new Uint8Array(32).fill(0xff);
  assert.equal(await verifyEd25519(notAPoint, message, sig), false);
  assert.equal(verifyEd25519Sync(notAPoint, message, sig), false);
  // A rejected key must not poison the verify-key cache for the good key.
  assert.ok(await verifyEd25519(key.publicKey, message, sig));
});

Deno.test("bad seeds and key IDs are refused", async () => {
  await assert.rejects(() => signingKeyFromSeed(new Uint8Array(31), "ed25519:1"), RangeError);
  await assert.rejects(() => signingKeyFromSeed(seed, "curve25519:1"), RangeError);
  await assert.rejects(() => signingKeyFromSeed(seed, "ed25519:a-b"), RangeError);
  assert.equal(generateSigningSeed().length, 32);
  assert.notDeepEqual(generateSigningSeed(), generateSigningSeed());
});
