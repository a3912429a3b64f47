import assert from "node:assert/strict";
import { decodeBase64 } from "../../../domain/protocol/base64.ts";
import {
  signEvent,
  verifyEventSignature,
  verifyEventSignatureSync,
} from "../../../domain/protocol/event_signing.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";
import { addContentHash, checkContentHash } from "../../../domain/protocol/hashing.ts";
import { redactEvent } from "../../../domain/protocol/redaction.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { signingKeyFromSeed } from "../../../domain/protocol/signing.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();
const { server_name, key_id, seed_base64 } = vectors.signing_key;
const key = await signingKeyFromSeed(decodeBase64(seed_base64), key_id);

function version(n: number): RoomVersion {
  const v = roomVersion(String(n));
  assert.ok(v);
  return v;
}

Deno.test("hashing then signing the spec's events reproduces their signed vectors", async () => {
  for (const { input, signed } of vectors.signed_events) {
    for (const v of [1, 2, 10]) {
      const hashed = addContentHash(input as unknown as Pdu, version(v));
      const ours = await signEvent(hashed, version(v), server_name, key);
      assert.deepEqual(ours, signed, `v${v}`);
    }
  }
});

Deno.test("the spec's signed events verify under v1-10 redaction and not under v11+", async () => {
  for (const vector of vectors.signed_events) {
    const signed = vector.signed as unknown as Pdu;
    assert.equal(vector.signature_verified_v1_v10_redaction, true);
    assert.equal(vector.signature_verified_v11_redaction, false);
    for (let v = 1; v <= 12; v++) {
      const want = v <= 10;
      const rv = version(v);
      assert.equal(
        await verifyEventSignature(signed, rv, server_name, key_id, key.publicKey),
        want,
      );
      assert.equal(verifyEventSignatureSync(signed, rv, server_name, key_id, key.publicKey), want);
    }
  }
});

Deno.test("a redacted event still verifies; tampered content fails only the content hash", async () => {
  const signed = vectors.signed_events[1].signed as unknown as Pdu;
  const v1 = version(1);
  const redacted = redactEvent(signed, v1);
  assert.ok(await verifyEventSignature(redacted, v1, server_name, key_id, key.publicKey));
  assert.equal(checkContentHash(redacted, v1), false, "redaction changes the content");
  const tampered = { ...signed, content: { body: "forged" } };
  assert.ok(await verifyEventSignature(tampered, v1, server_name, key_id, key.publicKey));
  assert.equal(checkContentHash(tampered, v1), false);
  const forgedSender = { ...signed, sender: "@mallory:domain" };
  assert.equal(
    await verifyEventSignature(forgedSender, v1, server_name, key_id, key.publicKey),
    false,
  );
});

Deno.test("signEvent keeps other servers' signatures", async () => {
  const v4 = version(4);
  const hashed = addContentHash({
    ...(vectors.signed_events[0].input as unknown as Pdu),
    signatures: { "other.hs": { "ed25519:z": "c2ln" } },
  });
  const signed = await signEvent(hashed, v4, server_name, key);
  assert.equal(signed.signatures["other.hs"]["ed25519:z"], "c2ln");
  assert.ok(await verifyEventSignature(signed, v4, server_name, key_id, key.publicKey));
});
