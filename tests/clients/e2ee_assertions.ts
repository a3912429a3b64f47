/**
 * Assertions and flows of the end-to-end encryption tests with matrix-js-sdk's Rust crypto,
 * shared by the one-server test (js_sdk_crypto_test.ts) and the two-server one
 * (tests/federation/e2ee_two_servers_test.ts): a message sent and decrypted (or definitively
 * not), the server holding only ciphertext, the devices a crypto lists, a device bootstrapping
 * and reading back its own cross-signing identity, two users learning each other's identity,
 * verifying each other by interactive SAS and then trusting each other through cross-signing.
 */
import {
  CrossSigningKey,
  CryptoEvent,
  type ShowSasCallbacks,
  VerificationPhase,
  type VerificationRequest,
  type Verifier,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { assert, assertEquals } from "../assert.ts";
import { step, waitUntil } from "./matrix_helpers.ts";
import {
  type CryptoSession,
  passwordAuth,
  sendEncryptedText,
  waitForDecryptedText,
} from "./crypto_client.ts";

/** The megolm algorithm every encrypted room of these tests uses. */
export const MEGOLM = "m.megolm.v1.aes-sha2";

/** What a test step knows about a message it sent. */
export interface Sent {
  eventId: string;
  body: string;
  sender: string;
}

/** Send `body` from `from` into the encrypted room `roomId`; what was sent. */
export async function sendEncrypted(
  from: CryptoSession,
  roomId: string,
  body: string,
): Promise<Sent> {
  return { eventId: await sendEncryptedText(from, roomId, body), body, sender: from.userId };
}

/**
 * Assert the server stored `sent` as m.room.encrypted (megolm ciphertext, no plaintext body):
 * what the server hands out is what the clients encrypted, not a copy in the clear.
 */
export async function assertEncryptedOnServer(
  reader: CryptoSession,
  roomId: string,
  sent: Sent,
): Promise<string> {
  const raw = await step(
    `GET event ${sent.eventId}`,
    () => reader.client.fetchRoomEvent(roomId, sent.eventId),
  );
  assertEquals(
    raw.type,
    "m.room.encrypted",
    `event ${sent.eventId} is not encrypted on the server`,
  );
  const content = raw.content as Record<string, unknown>;
  assertEquals(content.algorithm, MEGOLM);
  assert(typeof content.ciphertext === "string" && content.ciphertext.length > 0, "no ciphertext");
  assert(typeof content.session_id === "string", "no megolm session_id");
  assert(!JSON.stringify(raw).includes(sent.body), "the plaintext body reached the server");
  return content.session_id;
}

/** Wait for `reader` to decrypt `sent` and check sender, body and that it arrived encrypted. */
export async function assertDecrypts(
  reader: CryptoSession,
  roomId: string,
  sent: Sent,
): Promise<void> {
  const message = await waitForDecryptedText(reader, roomId, sent.body, sent.eventId);
  assertEquals(message.sender, sent.sender);
  assertEquals(message.body, sent.body);
  assertEquals(message.wireType, "m.room.encrypted");
}

/** Wait until `reader` holds `eventId` and has definitively failed to decrypt it. */
export async function assertCannotDecrypt(
  reader: CryptoSession,
  roomId: string,
  eventId: string,
): Promise<void> {
  const event = await waitUntil(
    `${reader.userId} ${reader.deviceId} to receive ${eventId}`,
    () => reader.client.getRoom(roomId)?.findEventById(eventId),
  );
  await waitUntil(
    `${reader.deviceId}'s decryption attempt of ${eventId}`,
    () => !event.isBeingDecrypted() && (event.isDecryptionFailure() || !event.isEncrypted()),
  );
  assert(event.isEncrypted(), `${eventId} arrived unencrypted`);
  assert(
    event.isDecryptionFailure(),
    `${reader.deviceId} decrypted ${eventId} although it never received its key`,
  );
}

/** The IDs of the devices of `userId` that `viewer`'s crypto lists (from its own device store). */
export async function devicesSeen(viewer: CryptoSession, userId: string): Promise<string[]> {
  const devices = await viewer.crypto.getUserDeviceInfo([userId]);
  return [...devices.get(userId)?.keys() ?? []];
}

/**
 * Wait until `viewer`'s crypto lists `userId`'s device `deviceId` (learnt from
 * device_lists.changed in its sync, then /keys/query), or with `listed` false no longer lists it.
 */
export async function waitForDeviceSeen(
  viewer: CryptoSession,
  userId: string,
  deviceId: string,
  listed = true,
): Promise<void> {
  await waitUntil(
    `${viewer.userId}'s crypto to ${listed ? "list" : "drop"} ${userId}'s device ${deviceId}`,
    async () => (await devicesSeen(viewer, userId)).includes(deviceId) === listed,
    30_000,
    200,
  );
}

/**
 * A device logged in later: once `sender`'s crypto lists `later` (a new device of `earlier`'s
 * user), `later` cannot decrypt `before` (it never received that key), decrypts what `sender`
 * sends now, as `earlier` does, and what `later` sends decrypts for `sender` and `earlier`.
 * `send` sends and records a message as the test does.
 */
export async function assertLaterDeviceDecryptsWhatFollows(
  sender: CryptoSession,
  earlier: CryptoSession,
  later: CryptoSession,
  roomId: string,
  before: Sent,
  send: (from: CryptoSession, body: string) => Promise<Sent>,
): Promise<void> {
  await waitForDeviceSeen(sender, later.userId, later.deviceId);
  await assertCannotDecrypt(later, roomId, before.eventId);
  const toBoth = await send(sender, `${later.userId}, on both of your devices`);
  await assertDecrypts(later, roomId, toBoth);
  await assertDecrypts(earlier, roomId, toBoth);
  const fromLater = await send(later, `Written on ${later.userId}'s later device`);
  await assertDecrypts(sender, roomId, fromLater);
  await assertDecrypts(earlier, roomId, fromLater);
}

/** `userId`'s master key ID as the server has it now (a fresh /keys/query by `reader`). */
export async function serverMasterKey(
  reader: CryptoSession,
  userId: string,
): Promise<string | undefined> {
  const res = await reader.client.downloadKeysForUsers([userId]);
  return Object.values(res.master_keys?.[userId]?.keys ?? {})[0];
}

/**
 * Wait until a device has read back the cross-signing identity it uploaded: its crypto's master
 * key is the server's, and its own device counts as signed by its self-signing key. Both come
 * by /keys/query after its sync reports device_lists.changed for its own user.
 */
export async function waitForOwnIdentitySettled(side: CryptoSession): Promise<void> {
  await waitUntil(
    `${side.userId} ${side.deviceId} to read back its cross-signing identity`,
    async () => {
      const local = await side.crypto.getCrossSigningKeyId(CrossSigningKey.Master);
      const own = await side.crypto.getDeviceVerificationStatus(side.userId, side.deviceId);
      return local !== null && local === await serverMasterKey(side, side.userId) &&
        own?.crossSigningVerified;
    },
    30_000,
    200,
  );
}

/** `side` bootstraps cross-signing (password auth) and waits until it has read it back. */
export async function bootstrapCrossSigningSettled(side: CryptoSession): Promise<void> {
  await step(
    `${side.userId} bootstrapCrossSigning`,
    () => side.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(side) }),
  );
  await waitForOwnIdentitySettled(side);
}

/**
 * Wait until each of `a` and `b` holds the other's current master key (the one the server
 * answers now: device_lists.changed in its sync, then /keys/query), and check that neither
 * counts the other as verified yet.
 */
export async function waitForEachOthersIdentity(
  a: CryptoSession,
  b: CryptoSession,
): Promise<void> {
  for (const [me, other] of [[a, b], [b, a]]) {
    await waitUntil(
      `${me.userId} to hold ${other.userId}'s current master key`,
      async () => {
        const known = await me.crypto.getUserCrossSigningKeys(other.userId);
        const id = Object.values(known?.master_key?.keys ?? {})[0];
        return id !== undefined && id === await serverMasterKey(me, other.userId);
      },
      30_000,
      200,
    );
    const before = await me.crypto.getUserVerificationStatus(other.userId);
    assert(!before.isCrossSigningVerified(), "verified before any verification");
  }
}

/**
 * After a verification: wait until each side's server shows, on the other's master key, the
 * signature by its own user-signing key (a fresh /keys/query), and each side then trusts the
 * other through cross-signing.
 */
export async function waitForMutualCrossSigningTrust(
  a: CryptoSession,
  b: CryptoSession,
): Promise<void> {
  for (const [me, other] of [[a, b], [b, a]]) {
    const userSigningKeyId = await me.crypto.getCrossSigningKeyId(CrossSigningKey.UserSigning);
    assert(userSigningKeyId, `${me.userId} has no user-signing key`);
    await waitUntil(
      `${me.userId}'s server to show its signature of ${other.userId}'s master key`,
      async () => {
        const res = await me.client.downloadKeysForUsers([other.userId]);
        // The SDK's type for a cross-signing key leaves out its signatures.
        const master = res.master_keys?.[other.userId] as
          | { signatures?: Record<string, Record<string, string>> }
          | undefined;
        return master?.signatures?.[me.userId]?.[`ed25519:${userSigningKeyId}`];
      },
      30_000,
      200,
    );
    await waitUntil(
      `${me.userId} to trust ${other.userId} through cross-signing`,
      async () =>
        (await me.crypto.getUserVerificationStatus(other.userId)).isCrossSigningVerified(),
    );
  }
}

/**
 * Interactive SAS verification between two users' devices over an in-room (DM-style) request:
 * `initiator` asks, `responder` accepts, the initiator starts m.sas.v1, both see the same seven
 * emoji and confirm. Afterwards each side signs the other's master key with its user-signing
 * key and uploads the signature.
 */
export async function verifyBySas(
  initiator: CryptoSession,
  responder: CryptoSession,
  roomId: string,
): Promise<void> {
  const incoming = new Promise<VerificationRequest>((resolve) => {
    const onRequest = (request: VerificationRequest) => {
      if (request.otherUserId !== initiator.userId) return;
      responder.client.off(CryptoEvent.VerificationRequestReceived, onRequest);
      resolve(request);
    };
    responder.client.on(CryptoEvent.VerificationRequestReceived, onRequest);
  });
  const ours = await step(
    "requestVerificationDM",
    () => initiator.crypto.requestVerificationDM(responder.userId, roomId),
  );
  let theirs: VerificationRequest | undefined;
  incoming.then((request) => theirs = request);
  await waitUntil(`${responder.userId} to receive the verification request`, () => theirs);
  await step("accept the verification request", () => theirs!.accept());
  await waitUntil(
    "the request to become ready on the initiator's side",
    () => ours.phase === VerificationPhase.Ready,
  );
  const initiatorVerifier = await step("start SAS", () => ours.startVerification("m.sas.v1"));
  // Read the verifier, not the phase: the SDK's phase getter throws in the moment between the
  // crypto machine seeing m.key.verification.start and the SDK creating the verifier for it.
  const responderVerifier = await waitUntil("the responder's SAS verifier", () => theirs!.verifier);

  // verify() resolves when the whole exchange is done; keep the outcome to report it below.
  const outcomes: (string | null)[] = [null, null];
  const run = (verifier: Verifier, index: number) =>
    verifier.verify().then(
      () => outcomes[index] = "done",
      (error) => outcomes[index] = `failed: ${error?.message ?? error}`,
    );
  run(initiatorVerifier, 0);
  run(responderVerifier, 1);
  const shown = (verifier: Verifier) =>
    waitUntil("the SAS to be shown", () => verifier.getShowSasCallbacks() ?? undefined);
  const [initiatorSas, responderSas]: ShowSasCallbacks[] = await Promise.all([
    shown(initiatorVerifier),
    shown(responderVerifier),
  ]);
  const emoji = (sas: ShowSasCallbacks) => (sas.sas.emoji ?? []).map(([, name]) => name);
  assertEquals(emoji(initiatorSas).length, 7, "SAS offers no emoji");
  assertEquals(emoji(initiatorSas), emoji(responderSas), "the two sides show different emoji");
  await step(
    "confirm the SAS on both sides",
    () => Promise.all([initiatorSas.confirm(), responderSas.confirm()]),
  );
  await waitUntil("both verifiers to finish", () => outcomes.every((o) => o !== null), 60_000);
  assertEquals(outcomes, ["done", "done"], "SAS verification did not complete");
  // Both verifiers exist now, so reading the phase is safe.
  await waitUntil(
    "both requests to be done",
    () => ours.phase === VerificationPhase.Done && theirs!.phase === VerificationPhase.Done,
  );
}
