/**
 * End-to-end encryption and EDUs between Tessera and a real Synapse 1.67, run by
 * scripts/run_synapse_interop.sh after synapse_interop.ts (`deno task test` does not run it).
 *
 * A Tessera user (erin) and a Synapse user (sam), each with a matrix-js-sdk client with Rust
 * crypto (tests/clients/crypto_client.ts) and a plain client-API device (the one registration
 * made, for /sync checks that must not race the SDK's own sync), share an encrypted DM made on
 * Tessera (and then a room made on Synapse) and decrypt each other's messages: that takes
 * `/keys/query` and `/keys/claim` over federation, device lists and olm-encrypted to-device room
 * keys, both ways. Then typing, read receipts, presence and to-device messages from each side
 * are seen in the other side's /sync, a new device on either side shows in the other side's
 * `device_lists.changed` and decrypts later messages, both users' cross-signing keys reach the
 * other server and client and the two verify each other by SAS, the Synapse user leaving and
 * rejoining shows in Tessera's `device_lists.left` and `changed` (with a device added while
 * away), and a device deleted on Synapse disappears from Tessera's view.
 *
 * Each test builds on the ones before it, in file order; a test whose prerequisite failed fails
 * saying so. Sanitizers are off: the SDK leaves timers behind after stopClient (its crypto
 * machine's tasks); the clients are stopped by the last test.
 */
import * as sdk from "matrix-js-sdk";
import { CrossSigningKey } from "matrix-js-sdk/lib/crypto-api/index.js";
import { assert, assertEquals } from "../assert.ts";
import {
  cryptoFailureReport,
  type CryptoSession,
  joinEncryptedRoom,
  openUploadedCryptoClient,
  waitForMember,
  waitForRoomEncrypted,
} from "../clients/crypto_client.ts";
import {
  assertDecrypts,
  assertEncryptedOnServer,
  assertLaterDeviceDecryptsWhatFollows,
  bootstrapCrossSigningSettled,
  MEGOLM,
  sendEncrypted,
  type Sent,
  verifyBySas,
  waitForDeviceSeen,
  waitForEachOthersIdentity,
  waitForMutualCrossSigningTrust,
} from "../clients/e2ee_assertions.ts";
import { step, waitUntil } from "../clients/matrix_helpers.ts";
import { decodeBase64 } from "../../domain/protocol/base64.ts";
import { verifyJsonSignature } from "../../domain/protocol/signing.ts";
import {
  CONVERGE_MS,
  deviceListsChanged,
  deviceListsLeft,
  enc,
  ephemeralOf,
  eventually,
  type Json,
  PASSWORD,
  presenceEvents,
  register,
  serverNameOf,
  SYNAPSE,
  TESSERA,
  toDeviceEvents,
  type User,
} from "./interop_helpers.ts";

const run = crypto.randomUUID().slice(0, 8);

/** Plain client-API users (their registration device). */
let erin: User | undefined;
let sam: User | undefined;
/** Rust-crypto devices: erin's and sam's first, then a second one on each side. */
let erinDev: CryptoSession | undefined;
let samDev: CryptoSession | undefined;
let samDev2: CryptoSession | undefined;
let erinDev2: CryptoSession | undefined;
let roomId: string | undefined;
/** The first message each side sent in the DM (new devices must not decrypt them). */
let firstFromErin: Sent | undefined;
let firstFromSam: Sent | undefined;

const failures: string[] = [];
const sessions: CryptoSession[] = [];

/** The value, or a failure saying which earlier step left it missing. */
function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`not run: an earlier test failed to provide ${what}`);
  return value;
}

/** An interop test; on failure its message carries the SDK clients' failed requests and logs. */
function interopTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      try {
        await fn();
      } catch (error) {
        const report = sessions.length ? `\n${cryptoFailureReport(sessions, 15)}` : "";
        throw new Error(`${(error as Error).message}${report}`, { cause: error });
      }
    },
  });
}

/** Log `user` in as a new Rust-crypto device on `base`, syncing, with its keys uploaded. */
function openDevice(base: string, user: User, name: string): Promise<CryptoSession> {
  return openUploadedCryptoClient(
    { baseUrl: base, user: user.userId, password: PASSWORD, deviceDisplayName: name, failures },
    sessions,
  );
}

/**
 * Send `body` encrypted from `from`; the sender's server holds it as megolm ciphertext only.
 */
async function sendSecret(from: CryptoSession, room: string, body: string): Promise<Sent> {
  const sent = await sendEncrypted(from, room, body);
  await assertEncryptedOnServer(from, room, sent);
  return sent;
}

/** `reader` decrypts `sent`, which its server (the other one) also holds only as ciphertext. */
async function assertCrossesEncrypted(
  reader: CryptoSession,
  room: string,
  sent: Sent,
): Promise<void> {
  await assertDecrypts(reader, room, sent);
  await assertEncryptedOnServer(reader, room, sent);
}

/** `/keys/query` by `asker` for `owner`: the device keys its server gives, or a failure. */
async function queriedDevices(asker: User, owner: string): Promise<Record<string, Json>> {
  const answer = await asker.ok("POST", "/keys/query", { device_keys: { [owner]: [] } });
  const failed = answer.failures as Json | undefined;
  if (failed && Object.keys(failed).length > 0) {
    throw new Error(
      `/keys/query for ${owner} on ${asker.base}: failures ${JSON.stringify(failed)}`,
    );
  }
  return ((answer.device_keys as Json | undefined)?.[owner] as Record<string, Json>) ?? {};
}

/**
 * `asker`'s server answers `/keys/query` for `owner` with `device`'s keys: its ed25519 key is
 * the one the device's crypto holds, and the keys carry the device's own valid signature.
 */
async function assertQueryGivesDevice(asker: User, device: CryptoSession): Promise<void> {
  const own = await device.crypto.getOwnDeviceKeys();
  const keyId = `ed25519:${device.deviceId}`;
  let last: Record<string, Json> = {};
  await eventually(
    `${asker.base} /keys/query lists ${device.userId} ${device.deviceId}`,
    async () => {
      last = await queriedDevices(asker, device.userId);
      return (last[device.deviceId]?.keys as Json | undefined)?.[keyId] === own.ed25519;
    },
  ).catch((error) => {
    throw new Error(`${(error as Error).message}; last answer: ${JSON.stringify(last)}`);
  });
  const keys = last[device.deviceId];
  assertEquals(keys.user_id, device.userId);
  assertEquals(keys.device_id, device.deviceId);
  assert(
    await verifyJsonSignature(keys, device.userId, keyId, decodeBase64(own.ed25519)),
    `the device keys ${asker.base} gave for ${device.deviceId} do not carry its valid signature`,
  );
}

/**
 * `/keys/claim` by `asker` for a signed_curve25519 one-time key of `device` on the other
 * server: one key, signed by the device.
 */
async function assertClaimGivesKey(asker: User, device: CryptoSession): Promise<void> {
  const answer = await asker.ok("POST", "/keys/claim", {
    one_time_keys: { [device.userId]: { [device.deviceId]: "signed_curve25519" } },
    timeout: 10_000,
  });
  const failed = answer.failures as Json | undefined;
  assertEquals(failed ?? {}, {}, `/keys/claim failures: ${JSON.stringify(failed)}`);
  const keys = (((answer.one_time_keys as Json | undefined)?.[device.userId] as Json | undefined)
    ?.[device.deviceId] as Record<string, Json> | undefined) ?? {};
  const ids = Object.keys(keys);
  assertEquals(ids.length, 1, `claimed keys: ${JSON.stringify(answer)}`);
  assert(ids[0].startsWith("signed_curve25519:"), ids[0]);
  const own = await device.crypto.getOwnDeviceKeys();
  assert(
    await verifyJsonSignature(
      keys[ids[0]],
      device.userId,
      `ed25519:${device.deviceId}`,
      decodeBase64(own.ed25519),
    ),
    `the one-time key ${asker.base} claimed is not signed by ${device.deviceId}`,
  );
}

/** Delete `deviceId` of `user` with the password stage of user-interactive auth. */
async function deleteDevice(user: User, deviceId: string): Promise<void> {
  const path = `/devices/${enc(deviceId)}`;
  const first = await user.call("DELETE", path, {});
  if (first.status === 200) return;
  assertEquals(first.status, 401, JSON.stringify(first.body));
  await user.ok("DELETE", path, {
    auth: {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: user.userId },
      password: PASSWORD,
      session: first.body.session,
    },
  });
}

/** The user IDs typing in `room` in one /sync response, if it has an m.typing event. */
function typingIn(sync: Json, room: string): string[] | undefined {
  const typing = ephemeralOf(sync, room).find((e) => e.type === "m.typing");
  return (typing?.content as Json | undefined)?.user_ids as string[] | undefined;
}

/** Whether one /sync response has `reader`'s public read receipt on `eventId` in `room`. */
function hasReadReceipt(sync: Json, room: string, eventId: string, reader: string): boolean {
  return ephemeralOf(sync, room).some((e) => {
    if (e.type !== "m.receipt") return false;
    const read = ((e.content as Json)[eventId] as Json | undefined)?.["m.read"] as
      | Json
      | undefined;
    return read !== undefined && reader in read;
  });
}

interopTest(
  "E2EE: a Tessera and a Synapse user log in with Rust crypto and upload keys",
  async () => {
    erin = await register(TESSERA, `erin-${run}`);
    sam = await register(SYNAPSE, `sam-${run}`);
    assert(erin.userId.endsWith(`:${serverNameOf(TESSERA)}`));
    assert(sam.userId.endsWith(`:${serverNameOf(SYNAPSE)}`));
    const e = erin, s = sam;
    [erinDev, samDev] = await Promise.all([
      openDevice(TESSERA, e, "erin's first device"),
      openDevice(SYNAPSE, s, "sam's first device"),
    ]);
  },
);

interopTest(
  "E2EE: an encrypted DM made on Tessera invites the Synapse user, who joins",
  async () => {
    const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
    // Room version 10, the newest Synapse 1.67 knows. The Synapse user is invited in the
    // createRoom request itself, as Element starts a DM with a user of another server.
    const { room_id: room } = await step(
      "createRoom (encrypted, version 10, inviting sam)",
      () =>
        e.client.createRoom({
          preset: sdk.Preset.PrivateChat,
          room_version: "10",
          name: `Interop secrets ${run}`,
          invite: [s.userId],
          is_direct: true,
          initial_state: [{
            type: sdk.EventType.RoomEncryption,
            state_key: "",
            content: { algorithm: MEGOLM },
          }],
        }),
    );
    await waitForRoomEncrypted(e, room);
    // The invite reaches Synapse as a DM invite (is_direct kept on the countersigned event).
    const invite = await waitUntil(
      `${s.userId} to see the invite to ${room}`,
      () => {
        const r = s.client.getRoom(room);
        return r?.getMyMembership() === sdk.KnownMembership.Invite
          ? r.getMember(s.userId)?.events.member
          : undefined;
      },
      CONVERGE_MS,
    );
    assertEquals(invite.getSender(), e.userId);
    assertEquals(invite.getContent().is_direct, true);
    await joinEncryptedRoom(s, room);
    await waitForMember(e, room, s.userId);
    await waitForMember(s, room, e.userId);
    for (const side of [e, s]) {
      const encryption = side.client.getRoom(room)?.currentState.getStateEvents(
        sdk.EventType.RoomEncryption,
        "",
      );
      assertEquals(encryption?.getContent().algorithm, MEGOLM);
    }
    roomId = room;
  },
);

interopTest(
  "E2EE: /keys/query over federation both ways gives the other side's signed device keys",
  async () => {
    const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
    await assertQueryGivesDevice(need(erin, "erin"), s);
    await assertQueryGivesDevice(need(sam, "sam"), e);
  },
);

interopTest(
  "E2EE: /keys/claim over federation both ways gives a one-time key signed by the device",
  async () => {
    const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
    await assertClaimGivesKey(need(erin, "erin"), s);
    await assertClaimGivesKey(need(sam, "sam"), e);
  },
);

interopTest("E2EE: the Tessera user's message decrypts on the Synapse user's device", async () => {
  const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
  const room = need(roomId, "the encrypted room");
  const body = `from Tessera, secret ${run}`;
  const sent = await sendSecret(e, room, body);
  await assertCrossesEncrypted(s, room, sent);
  firstFromErin = sent;
});

interopTest("E2EE: the Synapse user's message decrypts on the Tessera user's device", async () => {
  const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
  const room = need(roomId, "the encrypted room");
  const body = `from Synapse, secret ${run}`;
  const sent = await sendSecret(s, room, body);
  await assertCrossesEncrypted(e, room, sent);
  firstFromSam = sent;
});

interopTest(
  "E2EE: in an encrypted room made on Synapse, the Tessera user joins, messages decrypt both ways, the Tessera user leaves",
  async () => {
    const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
    const { room_id: room } = await step(
      "createRoom on Synapse (encrypted, inviting erin)",
      () =>
        s.client.createRoom({
          preset: sdk.Preset.PrivateChat,
          room_version: "10",
          name: `Interop secrets on Synapse ${run}`,
          invite: [e.userId],
          initial_state: [{
            type: sdk.EventType.RoomEncryption,
            state_key: "",
            content: { algorithm: MEGOLM },
          }],
        }),
    );
    await waitForRoomEncrypted(s, room);
    await joinEncryptedRoom(e, room);
    await waitForMember(s, room, e.userId);
    const fromSynapse = await sendSecret(s, room, `Synapse room, from Synapse ${run}`);
    await assertCrossesEncrypted(e, room, fromSynapse);
    const fromTessera = await sendSecret(e, room, `Synapse room, from Tessera ${run}`);
    await assertCrossesEncrypted(s, room, fromTessera);
    // The Tessera user leaves again, so the DM stays the one room the two share (the leave and
    // rejoin test below counts on it).
    await need(erin, "erin").ok("POST", `/rooms/${enc(room)}/leave`, {});
    await eventually(
      `Synapse sees ${e.userId} left ${room}`,
      async () => await need(sam, "sam").membershipOf(room, e.userId) === "leave",
    );
  },
);

for (const [from, to] of [["Tessera", "Synapse"], ["Synapse", "Tessera"]] as const) {
  const pick = () => {
    const [writer, reader] = from === "Tessera" ? [erin, sam] : [sam, erin];
    return [need(writer, `the ${from} user`), need(reader, `the ${to} user`)] as const;
  };

  interopTest(`typing on ${from} (start, then stop) shows in ${to}'s /sync`, async () => {
    const [writer, reader] = pick();
    const room = need(roomId, "the encrypted room");
    const cursor = await reader.syncCursor();
    const typingPath = `/rooms/${enc(room)}/typing/${enc(writer.userId)}`;
    await writer.ok("PUT", typingPath, { typing: true, timeout: 30_000 });
    await cursor.until(
      `${writer.userId} typing in ${room}`,
      (sync) => typingIn(sync, room)?.includes(writer.userId) ? true : undefined,
    );
    await writer.ok("PUT", typingPath, { typing: false });
    await cursor.until(`${writer.userId} no longer typing in ${room}`, (sync) => {
      const typing = typingIn(sync, room);
      return typing !== undefined && !typing.includes(writer.userId) ? true : undefined;
    });
  });

  interopTest(`a read receipt on ${from} shows in ${to}'s /sync`, async () => {
    const [writer, reader] = pick();
    const room = need(roomId, "the encrypted room");
    // The newest event the writer's server has; the reader's server has it too by now (the
    // messages above crossed), and it must be an event the reader's server knows to show it.
    const page = await writer.ok("GET", `/rooms/${enc(room)}/messages?dir=b&limit=1`);
    const eventId = ((page.chunk as Json[])[0]?.event_id) as string;
    assert(eventId, `no event in ${room} on ${from}`);
    const cursor = await reader.syncCursor();
    await writer.ok("POST", `/rooms/${enc(room)}/receipt/m.read/${enc(eventId)}`, {});
    await cursor.until(
      `${writer.userId}'s m.read receipt on ${eventId}`,
      (sync) => hasReadReceipt(sync, room, eventId, writer.userId) ? true : undefined,
    );
  });

  interopTest(`presence set on ${from} shows in ${to}'s /sync`, async () => {
    const [writer, reader] = pick();
    need(roomId, "the encrypted room (presence goes to servers sharing a room)");
    const cursor = await reader.syncCursor();
    const statusMsg = `interop status ${crypto.randomUUID()}`;
    await writer.ok("PUT", `/presence/${enc(writer.userId)}/status`, {
      presence: "online",
      status_msg: statusMsg,
    });
    const event = await cursor.until(
      `${writer.userId}'s presence with status "${statusMsg}"`,
      (sync) =>
        presenceEvents(sync).find((e) =>
          e.sender === writer.userId && (e.content as Json).status_msg === statusMsg
        ),
    );
    assertEquals((event.content as Json).presence, "online");
  });

  interopTest(
    `to-device messages from ${from} (to one device, then to all) reach a ${to} device's /sync`,
    async () => {
      const [writer, reader] = pick();
      const cursor = await reader.syncCursor();
      const type = "org.tessera.interop.ping";
      // Addressed to the reader's device by ID, then to all the reader's devices ("*").
      for (const device of [reader.deviceId, "*"]) {
        const nonce = crypto.randomUUID();
        await writer.ok("PUT", `/sendToDevice/${type}/${crypto.randomUUID()}`, {
          messages: { [reader.userId]: { [device]: { nonce } } },
        });
        const event = await cursor.until(
          `the to-device ${type} for device ${device} from ${writer.userId}`,
          (sync) =>
            toDeviceEvents(sync).find((e) =>
              e.type === type && (e.content as Json).nonce === nonce
            ),
        );
        assertEquals(event.sender, writer.userId);
      }
    },
  );
}

interopTest(
  "a new Synapse device shows in the Tessera user's device_lists.changed and client",
  async () => {
    const reader = need(erin, "erin"), owner = need(sam, "sam"), e = need(erinDev, "erin's device");
    const cursor = await reader.syncCursor();
    samDev2 = await openDevice(SYNAPSE, owner, "sam's second device");
    const added = samDev2;
    await cursor.until(
      `${owner.userId} in device_lists.changed`,
      (sync) => deviceListsChanged(sync).includes(owner.userId) ? true : undefined,
    );
    await assertQueryGivesDevice(reader, added);
    await waitForDeviceSeen(e, owner.userId, added.deviceId);
  },
);

interopTest(
  "the new Synapse device decrypts later Tessera messages (not earlier ones), and its own decrypt on Tessera",
  async () => {
    const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
    const s2 = need(samDev2, "sam's second device");
    const room = need(roomId, "the encrypted room");
    await waitForRoomEncrypted(s2, room);
    const before = need(firstFromErin, "erin's first message");
    await assertLaterDeviceDecryptsWhatFollows(
      e,
      s,
      s2,
      room,
      before,
      (from, body) => sendSecret(from, room, body),
    );
  },
);

interopTest(
  "a new Tessera device shows in the Synapse user's device_lists.changed and client, and decrypts what follows",
  async () => {
    const reader = need(sam, "sam"), owner = need(erin, "erin");
    const s = need(samDev, "sam's device"), e = need(erinDev, "erin's device");
    const room = need(roomId, "the encrypted room");
    const before = need(firstFromSam, "sam's first message");
    const cursor = await reader.syncCursor();
    erinDev2 = await openDevice(TESSERA, owner, "erin's second device");
    const added = erinDev2;
    await cursor.until(
      `${owner.userId} in device_lists.changed`,
      (sync) => deviceListsChanged(sync).includes(owner.userId) ? true : undefined,
    );
    await assertQueryGivesDevice(reader, added);
    await waitForRoomEncrypted(added, room);
    await assertLaterDeviceDecryptsWhatFollows(
      s,
      e,
      added,
      room,
      before,
      (from, body) => sendSecret(from, room, body),
    );
  },
);

interopTest(
  "cross-signing: each user's master and self-signing keys reach the other server and client",
  async () => {
    const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
    for (const side of [e, s]) await bootstrapCrossSigningSettled(side);
    for (const [me, other] of [[e, s], [s, e]]) {
      const master = await other.crypto.getCrossSigningKeyId(CrossSigningKey.Master);
      const selfSigning = await other.crypto.getCrossSigningKeyId(CrossSigningKey.SelfSigning);
      assert(master && selfSigning, `${other.userId} has no cross-signing keys`);
      // The other server's keys as this side's server gives them (over federation or from its
      // cache, which the m.signing_key_update must have refreshed).
      await waitUntil(
        `${me.userId}'s server to give ${other.userId}'s master and self-signing keys`,
        async () => {
          const res = await me.client.downloadKeysForUsers([other.userId]);
          return Object.values(res.master_keys?.[other.userId]?.keys ?? {})[0] === master &&
            Object.values(res.self_signing_keys?.[other.userId]?.keys ?? {})[0] === selfSigning;
        },
        CONVERGE_MS,
        200,
      );
      // The other's device counts as signed by its owner's self-signing key here too.
      await waitUntil(
        `${me.userId} to see ${other.deviceId} signed by ${other.userId}'s self-signing key`,
        async () =>
          (await me.crypto.getDeviceVerificationStatus(other.userId, other.deviceId))
            ?.signedByOwner,
        CONVERGE_MS,
        200,
      );
    }
    // Each client holds the other's master key (the one its server gives) and trusts it not yet.
    await waitForEachOthersIdentity(e, s);
  },
);

interopTest("cross-signing: a Tessera and a Synapse user verify each other by SAS", async () => {
  const e = need(erinDev, "erin's device"), s = need(samDev, "sam's device");
  const room = need(roomId, "the encrypted room");
  need(await e.crypto.getCrossSigningKeyId(CrossSigningKey.Master) ?? undefined, "erin's keys");
  need(await s.crypto.getCrossSigningKeyId(CrossSigningKey.Master) ?? undefined, "sam's keys");
  await verifyBySas(e, s, room);
  // Each side's user-signing signature of the other's master key is on its own server, and
  // each trusts the other's user and first device through cross-signing.
  await waitForMutualCrossSigningTrust(e, s);
  for (const [me, other] of [[e, s], [s, e]]) {
    const device = await me.crypto.getDeviceVerificationStatus(other.userId, other.deviceId);
    assert(device?.crossSigningVerified, `${me.userId} does not trust ${other.deviceId}`);
  }
});

interopTest(
  "the Synapse user leaves and rejoins: Tessera lists them in device_lists.left, then changed, with a device added meanwhile",
  async () => {
    const reader = need(erin, "erin"), owner = need(sam, "sam"), e = need(erinDev, "erin's device");
    const room = need(roomId, "the encrypted room");
    const cursor = await reader.syncCursor();
    await owner.ok("POST", `/rooms/${enc(room)}/leave`, {});
    await cursor.until(
      `${owner.userId} in device_lists.left`,
      (sync) => deviceListsLeft(sync).includes(owner.userId) ? true : undefined,
    );
    // A device added while no room is shared: Synapse tells no one, so Tessera must not answer
    // from what it kept of sam's devices once they share a room again.
    const meanwhile = await openDevice(SYNAPSE, owner, "sam's device added while away");
    await reader.ok("POST", `/rooms/${enc(room)}/invite`, { user_id: owner.userId });
    await eventually(
      `${owner.userId} rejoins ${room}`,
      async () => (await owner.call("POST", `/rooms/${enc(room)}/join`, {})).status === 200,
    );
    await cursor.until(
      `${owner.userId} in device_lists.changed after the rejoin`,
      (sync) => deviceListsChanged(sync).includes(owner.userId) ? true : undefined,
    );
    await assertQueryGivesDevice(reader, meanwhile);
    await waitForDeviceSeen(e, owner.userId, meanwhile.deviceId);
  },
);

interopTest("a device deleted on Synapse leaves the Tessera user's view", async () => {
  try {
    const reader = need(erin, "erin"), owner = need(sam, "sam");
    const e = need(erinDev, "erin's device"), gone = need(samDev2, "sam's second device");
    const cursor = await reader.syncCursor();
    gone.stop();
    await deleteDevice(owner, gone.deviceId);
    await cursor.until(
      `${owner.userId} in device_lists.changed after the deletion`,
      (sync) => deviceListsChanged(sync).includes(owner.userId) ? true : undefined,
    );
    await eventually(
      `Tessera's /keys/query no longer lists ${gone.deviceId}`,
      async () => !(gone.deviceId in await queriedDevices(reader, owner.userId)),
    );
    await waitForDeviceSeen(e, owner.userId, gone.deviceId, false);
  } finally {
    for (const session of sessions) session.stop();
  }
});
