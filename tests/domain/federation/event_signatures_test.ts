/** Which servers must sign a received event, per room version, checked through a key ring. */
import assert from "node:assert/strict";
import { decodeBase64 } from "../../../domain/protocol/base64.ts";
import { signEvent } from "../../../domain/protocol/event_signing.ts";
import {
  requiredSigners,
  verifyEventSignatures,
} from "../../../domain/federation/event_signatures.ts";
import type { KeyRing } from "../../../domain/federation/key_ring.ts";
import { addContentHash } from "../../../domain/protocol/hashing.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { type SigningKey, signingKeyFromSeed } from "../../../domain/protocol/signing.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();
const specKey = vectors.signing_key;

function version(n: number): RoomVersion {
  const v = roomVersion(String(n));
  assert.ok(v);
  return v;
}

/** A key ring over fixed keys, each valid up to `validUntil`, recording what it was asked. */
class FixedKeyRing implements KeyRing {
  readonly asked: { serverName: string; keyId: string; atTs: number }[] = [];
  constructor(
    private readonly keys: Record<string, Record<string, Uint8Array>>,
    private readonly validUntil = Number.MAX_SAFE_INTEGER,
  ) {}
  verifyKey(serverName: string, keyId: string, atTs: number) {
    this.asked.push({ serverName, keyId, atTs });
    const key = this.keys[serverName]?.[keyId];
    return Promise.resolve(key !== undefined && atTs <= this.validUntil ? key : undefined);
  }
}

const seed = (byte: number) => new Uint8Array(32).fill(byte);
const keyA = await signingKeyFromSeed(seed(1), "ed25519:a");
const keyB = await signingKeyFromSeed(seed(2), "ed25519:b");
const keyC = await signingKeyFromSeed(seed(3), "ed25519:c");
const ring = new FixedKeyRing({
  "a.test": { "ed25519:a": keyA.publicKey },
  "b.test": { "ed25519:b": keyB.publicKey },
  "c.test": { "ed25519:c": keyC.publicKey },
});

async function signedBy(
  pdu: JsonObject,
  v: RoomVersion,
  signers: [string, SigningKey][],
): Promise<JsonObject> {
  let event = addContentHash(pdu, v) as unknown as JsonObject & { type: string; content: object };
  for (const [server, key] of signers) event = await signEvent(event, v, server, key);
  return event;
}

function event(fields: JsonObject): JsonObject {
  return {
    room_id: "!r:a.test",
    sender: "@alice:a.test",
    origin_server_ts: 1_000_000,
    type: "m.room.message",
    content: { body: "hi" },
    prev_events: [],
    auth_events: [],
    depth: 5,
    ...fields,
  };
}

Deno.test("the spec's signed events verify through the key ring under v3-v10, not under v11+", async () => {
  const specRing = new FixedKeyRing({
    [specKey.server_name]: { [specKey.key_id]: decodeBase64(specKey.public_key_base64) },
  });
  const [hashed, withEventId] = vectors.signed_events;
  for (let v = 3; v <= 12; v++) {
    const result = await verifyEventSignatures(hashed.signed, version(v), specRing);
    assert.equal(result.ok, v <= 10, `v${v}`);
  }
  // The second vector carries a server-chosen event ID, as room versions 1 and 2 need.
  for (const v of [1, 2]) {
    assert.deepEqual(await verifyEventSignatures(withEventId.signed, version(v), specRing), {
      ok: true,
    });
    // Without an event ID a v1 event names no second signer; it is malformed.
    assert.equal((await verifyEventSignatures(hashed.signed, version(v), specRing)).ok, false);
  }
});

Deno.test("the sender's server must sign; another server's signature does not stand in", async () => {
  const v = version(10);
  const good = await signedBy(event({}), v, [["a.test", keyA]]);
  assert.deepEqual(await verifyEventSignatures(good, v, ring), { ok: true });
  const byOther = await signedBy(event({}), v, [["b.test", keyB]]);
  const result = await verifyEventSignatures(byOther, v, ring);
  assert.deepEqual(result, { ok: false, reason: "not signed by a.test" });
  // Changing a signed field after signing breaks the signature.
  const tampered = { ...good, origin_server_ts: 1_000_001 };
  assert.equal((await verifyEventSignatures(tampered, v, ring)).ok, false);
  // Content outside the redacted form is covered by the hash, not the signature.
  const newContent = { ...good, content: { body: "changed" } };
  assert.equal((await verifyEventSignatures(newContent, v, ring)).ok, true);
});

Deno.test("a signature that fails under a known key fails the event even beside a good one", async () => {
  const v = version(10);
  const good = await signedBy(event({}), v, [["a.test", keyA]]);
  const signatures = good.signatures as Record<string, Record<string, string>>;
  const second = await signingKeyFromSeed(seed(9), "ed25519:a2");
  const withBad = {
    ...good,
    signatures: {
      "a.test": { ...signatures["a.test"], "ed25519:a2": signatures["a.test"]["ed25519:a"] },
    },
  };
  const ringWithA2 = new FixedKeyRing({
    "a.test": { "ed25519:a": keyA.publicKey, "ed25519:a2": second.publicKey },
  });
  assert.equal((await verifyEventSignatures(withBad, v, ringWithA2)).ok, false);
  // An unknown key's signature is skipped: the known one carries the event.
  assert.equal((await verifyEventSignatures(withBad, v, ring)).ok, true);
  // Only unknown keys: nothing verified.
  const onlyUnknown = { ...good, signatures: { "a.test": { "ed25519:zz": "AAAA" } } };
  assert.equal((await verifyEventSignatures(onlyUnknown, v, ring)).ok, false);
});

Deno.test("room versions 1 and 2: the event ID's server must sign too", async () => {
  for (const n of [1, 2]) {
    const v = version(n);
    const join = event({
      event_id: "$join:b.test",
      type: "m.room.member",
      state_key: "@alice:a.test",
      content: { membership: "join" },
    });
    const both = await signedBy(join, v, [["a.test", keyA], ["b.test", keyB]]);
    assert.deepEqual(await verifyEventSignatures(both, v, ring), { ok: true });
    const senderOnly = await signedBy(join, v, [["a.test", keyA]]);
    assert.deepEqual(await verifyEventSignatures(senderOnly, v, ring), {
      ok: false,
      reason: "not signed by b.test",
    });
    assert.deepEqual(requiredSigners(join, v), { ok: true, servers: ["a.test", "b.test"] });
  }
  // From v3 the event ID is a hash and names no server.
  assert.deepEqual(requiredSigners(event({}), version(3)), { ok: true, servers: ["a.test"] });
});

Deno.test("restricted joins (v8+): the authorising user's server must sign", async () => {
  const join = event({
    type: "m.room.member",
    state_key: "@alice:a.test",
    content: { membership: "join", join_authorised_via_users_server: "@carol:c.test" },
  });
  for (const n of [8, 9, 10, 11, 12]) {
    const v = version(n);
    assert.deepEqual(requiredSigners(join, v), { ok: true, servers: ["a.test", "c.test"] });
    const senderOnly = await signedBy(join, v, [["a.test", keyA]]);
    assert.equal((await verifyEventSignatures(senderOnly, v, ring)).ok, false, `v${n}`);
    const both = await signedBy(join, v, [["a.test", keyA], ["c.test", keyC]]);
    assert.deepEqual(await verifyEventSignatures(both, v, ring), { ok: true }, `v${n}`);
  }
  // Before v8 the field means nothing.
  assert.deepEqual(requiredSigners(join, version(7)), { ok: true, servers: ["a.test"] });
  // A leave carrying the field needs no authoriser.
  const leave = {
    ...join,
    content: { membership: "leave", join_authorised_via_users_server: "@carol:c.test" },
  };
  assert.deepEqual(requiredSigners(leave, version(10)), { ok: true, servers: ["a.test"] });
  const badField = {
    ...join,
    content: { membership: "join", join_authorised_via_users_server: 5 },
  };
  assert.equal(requiredSigners(badField, version(10)).ok, false);
});

Deno.test("an invite from a third-party invite need not be signed by the sender's server", () => {
  const v = version(10);
  const invite = event({
    type: "m.room.member",
    state_key: "@bob:b.test",
    content: {
      membership: "invite",
      third_party_invite: { display_name: "bob", signed: { mxid: "@bob:b.test", token: "t" } },
    },
  });
  assert.deepEqual(requiredSigners(invite, v), { ok: true, servers: [] });
  const plainInvite = { ...invite, content: { membership: "invite" } };
  assert.deepEqual(requiredSigners(plainInvite, v), { ok: true, servers: ["a.test"] });
});

Deno.test("key validity: enforced at origin_server_ts from v5, any published key before", async () => {
  const expiring = new FixedKeyRing({ "a.test": { "ed25519:a": keyA.publicKey } }, 999_999);
  for (let n = 1; n <= 12; n++) {
    const v = version(n);
    const pdu = await signedBy(
      event(n <= 2 ? { event_id: "$e:a.test" } : {}),
      v,
      [["a.test", keyA]],
    );
    expiring.asked.length = 0;
    const result = await verifyEventSignatures(pdu, v, expiring);
    assert.equal(result.ok, n <= 4, `v${n}`);
    assert.equal(expiring.asked[0].atTs, n <= 4 ? 0 : 1_000_000, `v${n}`);
  }
  const noTs = await signedBy({ ...event({}), origin_server_ts: "soon" }, version(10), [[
    "a.test",
    keyA,
  ]]);
  assert.deepEqual(await verifyEventSignatures(noTs, version(10), ring), {
    ok: false,
    reason: "the event has no origin_server_ts",
  });
});

Deno.test("a malformed sender is refused before any key is looked up", async () => {
  const counting = new FixedKeyRing({});
  const result = await verifyEventSignatures(event({ sender: "alice" }), version(10), counting);
  assert.deepEqual(result, { ok: false, reason: "the event has no valid sender" });
  assert.equal(counting.asked.length, 0);
});
