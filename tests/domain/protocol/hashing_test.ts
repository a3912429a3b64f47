import assert from "node:assert/strict";
import { decodeBase64, encodeBase64Unpadded } from "../../../domain/protocol/base64.ts";
import { canonicalJsonBytes } from "../../../domain/protocol/canonical_json.ts";
import { MatrixError } from "../../../domain/errors.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";
import {
  addContentHash,
  checkContentHash,
  computeContentHash,
  computeReferenceHash,
} from "../../../domain/protocol/hashing.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();

function version(n: number): RoomVersion {
  const v = roomVersion(String(n));
  assert.ok(v);
  return v;
}

// WebCrypto's SHA-256 as an implementation independent of the module's @noble/hashes.
async function webSha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
}

Deno.test("content hashes of the spec's signed events match their vectors", () => {
  assert.equal(vectors.signed_events.length, 2);
  for (const { input, signed } of vectors.signed_events) {
    const expected = (signed.hashes as { sha256: string }).sha256;
    assert.equal(computeContentHash(input), expected);
    assert.equal(computeContentHash(signed), expected, "unsigned/signatures/hashes are excluded");
    assert.ok(checkContentHash(signed));
    assert.ok(checkContentHash(signed, version(1)));
  }
});

Deno.test("addContentHash returns a hashed copy and leaves the input alone", () => {
  const input = vectors.signed_events[0].input;
  const before = structuredClone(input);
  const hashed = addContentHash(input);
  assert.deepEqual(input, before);
  assert.deepEqual(hashed.hashes, vectors.signed_events[0].signed.hashes);
  assert.ok(checkContentHash(hashed));
});

Deno.test("checkContentHash rejects tampering, absence and garbage; accepts padded base64", () => {
  const signed = vectors.signed_events[1].signed;
  const sha = (signed.hashes as { sha256: string }).sha256;
  assert.equal(checkContentHash({ ...signed, content: { body: "changed" } }), false);
  assert.equal(checkContentHash({ ...signed, extra: 1 }), false);
  assert.equal(checkContentHash({ ...signed, hashes: {} }), false);
  assert.equal(checkContentHash({ ...signed, hashes: { sha256: "%%" } }), false);
  assert.equal(checkContentHash({ ...signed, hashes: undefined }), false);
  assert.ok(checkContentHash({ ...signed, hashes: { sha256: sha + "=" } }));
  // Adding unsigned data after the fact does not disturb it.
  assert.ok(checkContentHash({ ...signed, unsigned: { age: 5 } }));
});

Deno.test("strict canonical JSON applies to hashing from room v6", () => {
  const pdu = { ...vectors.signed_events[0].input, content: { ratio: 0.5 } };
  const old = computeContentHash(pdu, version(5));
  assert.match(old, /^[A-Za-z0-9+/]{43}$/);
  assert.throws(() => computeContentHash(pdu, version(6)), (err: unknown) => {
    assert.ok(err instanceof MatrixError);
    assert.equal(err.errcode, "M_BAD_JSON");
    return true;
  });
  const hashed = addContentHash(pdu, version(5));
  assert.ok(checkContentHash(hashed, version(5)));
  assert.equal(checkContentHash(hashed, version(6)), false);
  assert.equal(checkContentHash(hashed), false, "strict by default");
});

Deno.test("reference hash = sha256 of the redacted event without signatures and unsigned", async () => {
  for (const { signed, redacted_for_signing } of vectors.signed_events) {
    const expected = await webSha256(canonicalJsonBytes(redacted_for_signing));
    for (const v of [1, 3, 4, 9, 10]) {
      assert.deepEqual(computeReferenceHash(signed as unknown as Pdu, version(v)), expected);
    }
    // v11 redaction drops the top-level origin these vectors carry, so the hash differs.
    const { origin: _o, ...v11Form } = redacted_for_signing;
    const v11 = computeReferenceHash(signed as unknown as Pdu, version(11));
    assert.deepEqual(v11, await webSha256(canonicalJsonBytes(v11Form)));
    assert.notDeepEqual(v11, expected);
  }
});

Deno.test("reference hash ignores signatures, unsigned and redactable content, not hashes", () => {
  const base = vectors.signed_events[1].signed as unknown as Pdu;
  const v4 = version(4);
  const ref = encodeBase64Unpadded(computeReferenceHash(base, v4));
  const variants: Pdu[] = [
    { ...base, signatures: {} },
    { ...base, unsigned: { age: 99 } },
    { ...base, age_ts: 5 },
    // Content is covered only through the content hash, so a stale hash means the same ID.
    { ...base, content: { body: "other" } },
  ];
  for (const v of variants) assert.equal(encodeBase64Unpadded(computeReferenceHash(v, v4)), ref);
  const rehashed = addContentHash({ ...base, content: { body: "other" } });
  assert.notEqual(encodeBase64Unpadded(computeReferenceHash(rehashed, v4)), ref);
  assert.equal(decodeBase64(ref).length, 32);
});
