/**
 * matrix-js-sdk with its Rust crypto against the real server process (issue 4): two users in an
 * encrypted room exchange and decrypt messages, a second device added later decrypts new
 * messages, both users bootstrap cross-signing and verify each other by interactive SAS, and a
 * fresh device restores old keys from the server-side key backup through secret storage, and a
 * dehydrated device (MSC3814) is the only device of alice's that receives bob's next room key,
 * which a fresh device of alice then gets by rehydrating it with the key from secret storage.
 *
 * One server and one story: each step builds on the previous one, so a failed step stops the
 * story and the test fails naming the steps that did not run.
 */
import * as sdk from "matrix-js-sdk";
import { CrossSigningKey, CryptoEvent } from "matrix-js-sdk/lib/crypto-api/index.js";
import { assert, assertEquals } from "../assert.ts";
import { startServerProcess } from "./server_process.ts";
import { registerUser, step, waitUntil } from "./matrix_helpers.ts";
import {
  createEncryptedRoom,
  cryptoFailureReport,
  type CryptoSession,
  joinEncryptedRoom,
  openUploadedCryptoClient,
  passwordAuth,
  waitForMember,
  waitForRoomEncrypted,
} from "./crypto_client.ts";
import {
  assertCannotDecrypt,
  assertDecrypts,
  assertEncryptedOnServer,
  assertLaterDeviceDecryptsWhatFollows,
  bootstrapCrossSigningSettled,
  MEGOLM,
  sendEncrypted,
  type Sent,
  serverMasterKey,
  verifyBySas,
  waitForEachOthersIdentity,
  waitForMutualCrossSigningTrust,
  waitForOwnIdentitySettled,
} from "./e2ee_assertions.ts";

const PASSWORD = "correct horse battery staple";

/**
 * The megolm sessions the server's key backup holds for `roomId` in `version`, read as the
 * account's owner with GET /room_keys/keys.
 */
async function backedUpSessions(
  session: CryptoSession,
  version: string,
  roomId: string,
): Promise<string[]> {
  const res = await session.client.http.authedRequest<
    { rooms?: Record<string, { sessions?: Record<string, unknown> }> }
  >(sdk.Method.Get, "/room_keys/keys", { version });
  return Object.keys(res.rooms?.[roomId]?.sessions ?? {});
}

/** A raw request to the MSC3814 endpoints as `session`'s device: status and parsed body. */
async function msc3814(
  session: CryptoSession,
  method: string,
  path: string,
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any }> {
  const res = await fetch(
    `${session.client.baseUrl}/_matrix/client/unstable/org.matrix.msc3814.v1${path}`,
    { method, headers: { authorization: `Bearer ${session.client.getAccessToken()}` } },
  );
  return { status: res.status, body: await res.json() };
}

/** The dehydration events a client emits, in order, e.g. `completed` or `error: <message>`. */
function recordDehydrationEvents(session: CryptoSession): string[] {
  const seen: string[] = [];
  const { client } = session;
  client.on(CryptoEvent.DehydratedDeviceUploaded, () => seen.push("uploaded"));
  client.on(CryptoEvent.RehydrationStarted, () => seen.push("started"));
  client.on(
    CryptoEvent.RehydrationProgress,
    (roomKeys, toDevice) => seen.push(`progress ${roomKeys} room keys of ${toDevice} events`),
  );
  client.on(CryptoEvent.RehydrationCompleted, () => seen.push("completed"));
  client.on(CryptoEvent.RehydrationError, (message) => seen.push(`error: ${message}`));
  return seen;
}

Deno.test({
  name:
    "js-sdk Rust crypto: encrypted room, second device, cross-signing + SAS, key backup, dehydrated device",
  // The SDK leaves timers behind after stopClient (about 170 in this test: verification and
  // request timeouts, backup-loop sleeps, the crypto machine's tasks), which Deno's sanitizers
  // count as leaks; the server and the clients are stopped explicitly below.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const server = await startServerProcess();
    const failures: string[] = [];
    const sessions: CryptoSession[] = [];
    const open = (user: string, deviceDisplayName: string) =>
      openUploadedCryptoClient(
        { baseUrl: server.baseUrl, user, password: PASSWORD, deviceDisplayName, failures },
        sessions,
      );

    const steps: [string, () => Promise<void>][] = [];
    let alice!: CryptoSession;
    let bob!: CryptoSession;
    let bob2!: CryptoSession;
    let alice2!: CryptoSession;
    let roomId!: string;
    const sent: Sent[] = [];
    const send = async (from: CryptoSession, body: string) => {
      const message = await sendEncrypted(from, roomId, body);
      sent.push(message);
      return message;
    };

    steps.push(["two users log in with Rust crypto and upload device keys", async () => {
      await registerUser(server.baseUrl, "alice", PASSWORD);
      await registerUser(server.baseUrl, "bob", PASSWORD);
      [alice, bob] = await Promise.all([
        open("alice", "alice's first device"),
        open("bob", "bob's first device"),
      ]);
      assert(/^Rust SDK/.test(alice.crypto.getVersion()), alice.crypto.getVersion());
    }]);

    steps.push([
      "dehydrated devices (MSC3814): 404 M_NOT_FOUND before any, so supported",
      async () => {
        const res = await msc3814(alice, "GET", "/dehydrated_device");
        assertEquals([res.status, res.body.errcode], [404, "M_NOT_FOUND"]);
        assertEquals(await alice.crypto.isDehydrationSupported(), true);
      },
    ]);

    steps.push(["1. alice creates an encrypted room and bob joins it", async () => {
      roomId = await createEncryptedRoom(alice, [bob.userId], "Secrets");
      await joinEncryptedRoom(bob, roomId);
      await waitForMember(alice, roomId, bob.userId);
      for (const side of [alice, bob]) {
        const encryption = side.client.getRoom(roomId)?.currentState.getStateEvents(
          sdk.EventType.RoomEncryption,
          "",
        );
        assertEquals(encryption?.getContent().algorithm, MEGOLM);
      }
    }]);

    steps.push(["2. each sends, the other decrypts; the server holds only ciphertext", async () => {
      const fromAlice = await send(alice, "Hello Bob, this is secret");
      await assertDecrypts(bob, roomId, fromAlice);
      const fromBob = await send(bob, "Hello Alice, secret too");
      await assertDecrypts(alice, roomId, fromBob);
      const sessionIds = new Set<string>();
      for (const message of [fromAlice, fromBob]) {
        sessionIds.add(await assertEncryptedOnServer(bob, roomId, message));
      }
      assertEquals(sessionIds.size, 2, "alice and bob must use their own megolm sessions");
      // Each sender also reads its own message back decrypted.
      await assertDecrypts(alice, roomId, fromAlice);
      await assertDecrypts(bob, roomId, fromBob);
    }]);

    steps.push(["3. bob's second device, logged in later, decrypts new messages", async () => {
      bob2 = await open("bob", "bob's second device");
      await waitForRoomEncrypted(bob2, roomId);
      // Alice learns of the new device through device_lists.changed in her sync, then
      // /keys/query; only then will her next room key be shared with it. It never received the
      // keys of the earlier messages.
      await assertLaterDeviceDecryptsWhatFollows(alice, bob, bob2, roomId, sent[0], send);
    }]);

    steps.push([
      "4. cross-signing bootstraps for both users; they verify each other by SAS",
      async () => {
        for (const side of [alice, bob]) {
          await bootstrapCrossSigningSettled(side);
          const status = await side.crypto.getCrossSigningStatus();
          assert(status.publicKeysOnDevice, `${side.userId} has no public cross-signing keys`);
          assert(
            Object.values(status.privateKeysCachedLocally).every(Boolean),
            `${side.userId} lost private cross-signing keys: ${JSON.stringify(status)}`,
          );
        }

        // Replacing existing cross-signing keys must pass user-interactive auth: the SDK's first
        // attempt without auth is refused with 401 and the password stage completes it. (Only
        // once the first identity has settled: a /keys/query answer still carrying the old
        // master key would make the crypto machine drop the new private keys.)
        const firstMaster = await serverMasterKey(alice, alice.userId);
        const attempts: string[] = [];
        const auth = passwordAuth(alice);
        await step("alice resets her cross-signing keys", () =>
          alice.crypto.bootstrapCrossSigning({
            setupNewCrossSigning: true,
            authUploadDeviceSigningKeys: (makeRequest) =>
              auth((authDict) => {
                attempts.push(authDict && "type" in authDict ? authDict.type : "no auth");
                return makeRequest(authDict);
              }),
          }));
        assertEquals(attempts, ["no auth", "m.login.password"]);
        await waitForOwnIdentitySettled(alice);
        assert(firstMaster !== await serverMasterKey(alice, alice.userId), "master key unchanged");
        assert(await alice.crypto.isCrossSigningReady(), "alice's cross-signing not ready");

        // Each learns of the other's (latest) identity through device_lists in sync.
        await waitForEachOthersIdentity(alice, bob);

        await verifyBySas(alice, bob, roomId);

        // The user-signing signatures reached the server: a fresh /keys/query shows each master
        // key signed by the other user's user-signing key, and each side trusts the other.
        await waitForMutualCrossSigningTrust(alice, bob);
        // Bob's first device is now trusted by alice through bob's self-signing key.
        const bobDevice = await alice.crypto.getDeviceVerificationStatus(bob.userId, bob.deviceId);
        assert(bobDevice?.crossSigningVerified, "alice does not trust bob's cross-signed device");
      },
    ]);

    steps.push(["5. key backup: created, filled, restored by a fresh device", async () => {
      const oldMessages = [...sent];
      const sessionIds = new Set<string>();
      for (const message of oldMessages) {
        sessionIds.add(await assertEncryptedOnServer(alice, roomId, message));
      }

      // Secret storage (recovery key) holding the cross-signing keys and a new backup's key.
      await step(
        "bootstrapSecretStorage with a new key backup",
        () =>
          alice.crypto.bootstrapSecretStorage({
            createSecretStorageKey: () => alice.crypto.createRecoveryKeyFromPassphrase(),
            setupNewKeyBackup: true,
          }),
      );
      assert(await alice.crypto.isSecretStorageReady(), "secret storage not ready");
      const version = await waitUntil(
        "alice's backup to be active",
        () => alice.crypto.getActiveSessionBackupVersion(),
      );
      const info = await alice.crypto.getKeyBackupInfo();
      assertEquals(info?.version, version);
      assertEquals(info?.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2");
      assert((await alice.crypto.isKeyBackupTrusted(info!)).trusted, "backup not trusted");
      await waitUntil(
        `every megolm session of the room in backup ${version}`,
        async () => {
          const stored = new Set(await backedUpSessions(alice, version, roomId));
          return [...sessionIds].every((id) => stored.has(id));
        },
        60_000,
        250,
      );

      // A fresh device of alice: no room keys from anyone, so the old messages stay locked...
      alice2 = await open("alice", "alice's restored device");
      await waitForRoomEncrypted(alice2, roomId);
      for (const message of oldMessages) await assertCannotDecrypt(alice2, roomId, message.eventId);
      // ...until it is given the recovery key, reads the backup key from secret storage and
      // restores the backup.
      for (const [keyId, key] of alice.secretStorageKeys) alice2.secretStorageKeys.set(keyId, key);
      await step(
        "loadSessionBackupPrivateKeyFromSecretStorage",
        () => alice2.crypto.loadSessionBackupPrivateKeyFromSecretStorage(),
      );
      const restored = await step("restoreKeyBackup", () => alice2.crypto.restoreKeyBackup());
      assert(
        restored.imported >= sessionIds.size,
        `restored ${restored.imported} of ${restored.total} keys, expected ${sessionIds.size}`,
      );
      for (const message of oldMessages) await assertDecrypts(alice2, roomId, message);
    }]);

    steps.push([
      "6. dehydrated device: only it gets bob's new room key; a fresh device rehydrates it",
      async () => {
        // alice's first device has cross-signing and secret storage (recovery key): it makes a
        // dehydration key, stores it in secret storage, and uploads a dehydrated device.
        const aliceEvents = recordDehydrationEvents(alice);
        await step("alice startDehydration", () => alice.crypto.startDehydration());
        assertEquals(aliceEvents, ["uploaded"]);
        const dehydrated = await msc3814(alice, "GET", "/dehydrated_device");
        assertEquals(dehydrated.status, 200);
        const dehydratedId: string = dehydrated.body.device_id;
        assertEquals(dehydrated.body.device_data.algorithm, "org.matrix.msc3814.v2");
        // Its keys are public, marked dehydrated and signed by alice's self-signing key.
        const query = await alice.client.downloadKeysForUsers([alice.userId]);
        const keys = query.device_keys?.[alice.userId]?.[dehydratedId] as
          | { dehydrated?: boolean; keys: Record<string, string>; signatures?: object }
          | undefined;
        assert(keys?.dehydrated === true, `dehydrated device keys: ${JSON.stringify(keys)}`);
        const selfSigning = await alice.crypto.getCrossSigningKeyId(CrossSigningKey.SelfSigning);
        assert(
          JSON.stringify(keys.signatures).includes(`ed25519:${selfSigning}`),
          "the dehydrated device is not cross-signed",
        );
        const dehydratedCurve = keys.keys[`curve25519:${dehydratedId}`];

        // No running client of alice's may receive bob's next room key: stop them all. (Their
        // devices still exist; messages to them wait unread in their inboxes.)
        alice.stop();
        alice2.stop();
        // bob learns of the new device through device_lists in his sync, then /keys/query.
        await waitUntil(
          "bob's crypto to list alice's dehydrated device",
          async () => {
            const devices = await bob.crypto.getUserDeviceInfo([alice.userId]);
            return devices.get(alice.userId)?.get(dehydratedId)?.dehydrated;
          },
          30_000,
          200,
        );
        const forDehydrated = await send(bob, "Only your dehydrated device hears this");

        // The room key went to the dehydrated device's inbox as an olm message for its key.
        const fresh = await open("alice", "alice's rehydrating device");
        const inbox = await waitUntil(
          "bob's olm message in the dehydrated device's inbox",
          async () => {
            const res = await msc3814(
              fresh,
              "GET",
              `/dehydrated_device/${encodeURIComponent(dehydratedId)}/events`,
            );
            assertEquals(res.status, 200);
            const events = res.body.events as {
              type: string;
              sender: string;
              content: { algorithm?: string; ciphertext?: Record<string, unknown> };
            }[];
            return events.some((e) =>
                e.type === "m.room.encrypted" && e.sender === bob.userId &&
                e.content.algorithm === "m.olm.v1.curve25519-aes-sha2" &&
                dehydratedCurve in (e.content.ciphertext ?? {})
              )
              ? events
              : undefined;
          },
          30_000,
          200,
        );
        assert(inbox.length >= 1);

        // A fresh device of alice's cannot read the message: no device of hers that runs got
        // the key, and it is not in the key backup...
        await waitForRoomEncrypted(fresh, roomId);
        await assertCannotDecrypt(fresh, roomId, forDehydrated.eventId);
        // ...until, given the recovery key, it imports the cross-signing keys from secret
        // storage and starts dehydration, which first rehydrates the dehydrated device.
        for (const [keyId, key] of alice.secretStorageKeys) fresh.secretStorageKeys.set(keyId, key);
        await step(
          "the fresh device bootstraps cross-signing from secret storage",
          () =>
            fresh.crypto.bootstrapCrossSigning({
              authUploadDeviceSigningKeys: passwordAuth(fresh),
            }),
        );
        const freshEvents = recordDehydrationEvents(fresh);
        await step("the fresh device's startDehydration", () => fresh.crypto.startDehydration());
        assertEquals(freshEvents[0], "started");
        assert(
          freshEvents.includes("completed") && !freshEvents.some((e) => e.startsWith("error")),
          `rehydration: ${freshEvents.join(", ")}`,
        );
        assert(
          freshEvents.some((e) => /^progress [1-9]\d* room keys/.test(e)),
          `no room key came out of the dehydrated device: ${freshEvents.join(", ")}`,
        );
        await assertDecrypts(fresh, roomId, forDehydrated);

        // Starting dehydration also replaced the dehydrated device with a new one, and the old
        // one's inbox went with it.
        const replaced = await msc3814(fresh, "GET", "/dehydrated_device");
        assert(replaced.body.device_id !== dehydratedId, "the dehydrated device was not replaced");
        const old = await msc3814(
          fresh,
          "GET",
          `/dehydrated_device/${encodeURIComponent(dehydratedId)}/events`,
        );
        assertEquals([old.status, old.body.errcode], [403, "M_FORBIDDEN"]);
      },
    ]);

    let failed = true;
    const notRun: string[] = [];
    try {
      let ok = true;
      for (const [name, fn] of steps) {
        if (!ok) {
          notRun.push(name);
          continue;
        }
        ok = await t.step(name, async () => {
          try {
            await fn();
          } catch (error) {
            console.error(`step "${name}" failed:\n${cryptoFailureReport(sessions)}`);
            throw error;
          }
        });
      }
      if (notRun.length) {
        throw new Error(`not run because an earlier step failed:\n  ${notRun.join("\n  ")}`);
      }
      failed = false;
    } finally {
      for (const session of sessions) session.stop();
      if (failed) {
        console.error("failed requests:\n  " + failures.join("\n  "));
        console.error(
          "server output (tail):\n" + server.output().split("\n").slice(-80).join("\n"),
        );
      }
      await server.stop();
    }
  },
});
