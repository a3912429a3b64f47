import assert from "node:assert/strict";
import { encodeBase64Unpadded } from "../../../domain/protocol/base64.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { signingKeyFromSeed, signJson } from "../../../domain/protocol/signing.ts";
import type { ThirdPartyInviteVerifier } from "../../../domain/protocol/auth_rules.ts";
import { thirdPartyInvitePublicKeys } from "../../../domain/protocol/third_party_invite_auth.ts";
import {
  ALICE,
  assertAllowed,
  assertRejected,
  BOB,
  CAROL,
  standardRoom,
  type TestRoom,
} from "../auth_room_fixture.ts";

const TOKEN = "abc123";

async function identityKey(fill: number) {
  return await signingKeyFromSeed(new Uint8Array(32).fill(fill), "ed25519:0");
}

/** A room where ALICE has issued a third-party invite whose keys come from `publicKeys`. */
function roomWithInvite(v: string, content: JsonObject): TestRoom {
  const room = standardRoom(v, { members: [CAROL] });
  room.sendState(ALICE, "m.room.third_party_invite", { display_name: "b…", ...content }, TOKEN);
  return room;
}

async function signedFor(mxid: string, fill = 1, token = TOKEN): Promise<JsonObject> {
  return await signJson({ mxid, token }, "id.test", await identityKey(fill)) as JsonObject;
}

function redeem(room: TestRoom, sender: string, target: string, signed: unknown) {
  return room.member(sender, target, "invite", {
    third_party_invite: { display_name: "b…", signed } as JsonObject,
  });
}

Deno.test("third-party invite: a valid signature is accepted, an invalid one rejected", async () => {
  for (const v of ["1", "6", "11", "12"]) {
    const key = await identityKey(1);
    const room = roomWithInvite(v, { public_key: encodeBase64Unpadded(key.publicKey) });
    assertAllowed(room.check(redeem(room, ALICE, BOB, await signedFor(BOB))), `v${v}`);
    // Signed by a key the invite event does not list.
    assertRejected(
      room.check(redeem(room, ALICE, BOB, await signedFor(BOB, 2))),
      "no signature in third_party_invite.signed matches the invite's public keys",
    );
    // A valid signature over different content no longer verifies.
    const tampered = { ...await signedFor(BOB), token: TOKEN, extra: "x" };
    assertRejected(
      room.check(redeem(room, ALICE, BOB, tampered)),
      "no signature in third_party_invite.signed matches the invite's public keys",
    );
  }
});

Deno.test("third-party invite: keys listed in public_keys count too", async () => {
  const key = await identityKey(3);
  const room = roomWithInvite("10", {
    public_key: encodeBase64Unpadded((await identityKey(4)).publicKey),
    public_keys: [{ public_key: encodeBase64Unpadded(key.publicKey), key_validity_url: "x" }],
  });
  assert.equal(
    thirdPartyInvitePublicKeys(room.state.get(`m.room.third_party_invite\u0000${TOKEN}`)!.content)
      .length,
    2,
  );
  assertAllowed(room.check(redeem(room, ALICE, BOB, await signedFor(BOB, 3))));
});

Deno.test("third-party invite: structural rejections", async () => {
  const key = await identityKey(1);
  const room = roomWithInvite("11", { public_key: encodeBase64Unpadded(key.publicKey) });
  const good = await signedFor(BOB);
  const cases: [unknown, string][] = [
    [undefined, "third_party_invite has no signed object"],
    [{ mxid: BOB }, "third_party_invite.signed lacks mxid or token"],
    [await signedFor(CAROL), "third_party_invite mxid does not match the state_key"],
    [await signedFor(BOB, 1, "other"), "no m.room.third_party_invite event matches the token"],
  ];
  for (const [signed, reason] of cases) {
    assertRejected(room.check(redeem(room, ALICE, BOB, signed)), reason);
  }
  // Only the sender of the m.room.third_party_invite event may redeem it.
  assertRejected(
    room.check(redeem(room, CAROL, BOB, good)),
    "sender did not send the matching m.room.third_party_invite event",
  );
  room.force(room.member(ALICE, BOB, "ban"));
  assertRejected(room.check(redeem(room, ALICE, BOB, good)), "target user is banned from the room");
});

Deno.test("third-party invite: the verifier can be injected", () => {
  const room = roomWithInvite("11", { public_key: "identity-key" });
  const calls: string[] = [];
  const verifier: ThirdPartyInviteVerifier = (_signed, server, keyId, publicKey) => {
    calls.push(`${server} ${keyId} ${publicKey}`);
    return publicKey === "identity-key";
  };
  const signed = {
    mxid: BOB,
    token: TOKEN,
    signatures: { "id.test": { "curve25519:0": "zzz", "ed25519:0": "sig" } },
  };
  assertAllowed(
    room.check(redeem(room, ALICE, BOB, signed), { verifyThirdPartyInviteSignature: verifier }),
  );
  // Only ed25519 signatures are tried.
  assert.deepEqual(calls, ["id.test ed25519:0 identity-key"]);
  const never: ThirdPartyInviteVerifier = () => false;
  assertRejected(
    room.check(redeem(room, ALICE, BOB, signed), { verifyThirdPartyInviteSignature: never }),
    "no signature in third_party_invite.signed matches the invite's public keys",
  );
});
