/**
 * End-to-end encryption across two real Tessera processes federating over HTTPS with a
 * throwaway CA (issue 11's tests), with matrix-js-sdk clients using its Rust crypto:
 *
 * 1. a user on A and a user on B share an encrypted room and decrypt each other's messages
 *    (keys queried and claimed across servers, room keys sent as to-device messages over
 *    federation);
 * 2. a device of B's user logged in later is listed by A's crypto (a device-list update from B)
 *    and decrypts the messages sent after it appeared, and A decrypts what it sends;
 * 3. both users bootstrap cross-signing, see each other's identity (signing-key updates), verify
 *    each other by interactive SAS in the room, and then each sees the other as verified through
 *    cross-signing, which needs the signer's server to keep and show its user's signature of a
 *    remote user's master key;
 * 4. a device deleted on A disappears from the crypto of B's user (a device-list update with
 *    `deleted`, then /keys/query through B);
 * 5. typing, read receipts (one threaded) and presence from A reach B's /sync, and back (plain
 *    HTTP clients: nothing of this is encrypted).
 *
 * Device-list gap handling (an update lost in transit, filled by B resyncing, B's clients told)
 * is tested over the in-process network, where a transaction can be made to vanish, in
 * device_list_cache_test.ts.
 *
 * One cluster serves everything (each process start costs a second or two). The EDU scenario
 * uses its own users and room, so it stands alone; the encryption steps are one story, and a
 * step whose prerequisite failed fails naming it rather than running on a broken state. Waiting
 * for convergence has a deadline; nothing asserts on timing.
 */
import * as sdk from "matrix-js-sdk";
import { assert, assertEquals } from "../assert.ts";
import { type FederationCluster, startServerProcesses } from "./server_processes.ts";
import type { FederationProcess } from "./server_processes.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import type { RequestOptions } from "../routes/test_server.ts";
import { step } from "../clients/matrix_helpers.ts";
import {
  createEncryptedRoom,
  cryptoFailureReport,
  type CryptoSession,
  joinEncryptedRoom,
  openUploadedCryptoClient,
  passwordAuth,
  waitForMember,
  waitForRoomEncrypted,
} from "../clients/crypto_client.ts";
import {
  assertDecrypts,
  assertEncryptedOnServer,
  assertLaterDeviceDecryptsWhatFollows,
  bootstrapCrossSigningSettled,
  devicesSeen,
  MEGOLM,
  sendEncrypted,
  type Sent,
  verifyBySas,
  waitForDeviceSeen,
  waitForEachOthersIdentity,
  waitForMutualCrossSigningTrust,
} from "../clients/e2ee_assertions.ts";

const PASSWORD = "correct horse battery staple";
const enc = encodeURIComponent;

/**
 * A fetch for the js-sdk clients that trusts the cluster's CA; `close` when done. A signature
 * upload answered 200 with per-key `failures` (how a server refuses one signature) is added to
 * `failures` too, since the SDK keeps that to itself.
 */
function caTrustingFetch(
  cluster: FederationCluster,
  failures: string[],
): { fetch: typeof fetch; close(): void } {
  const client = Deno.createHttpClient({ caCerts: [cluster.ca.caPem] });
  return {
    fetch: async (input, init) => {
      const res = await fetch(input, { ...init, client });
      const url = input instanceof Request ? input.url : String(input);
      if (res.ok && url.includes("/keys/signatures/upload")) {
        const refused = (await res.clone().json())?.failures ?? {};
        if (Object.keys(refused).length) {
          failures.push(`POST /keys/signatures/upload -> 200, failures ${JSON.stringify(refused)}`);
        }
      }
      return res;
    },
    close: () => client.close(),
  };
}

/** A client call that must answer 200; its body. */
async function ok(
  server: FederationProcess,
  user: RegisteredUser,
  method: string,
  path: string,
  body?: unknown,
) {
  const options: RequestOptions = { token: user.accessToken };
  if (body !== undefined) options.body = body;
  const res = await server.request(method, path, options);
  assertEquals(res.status, 200, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** One user's /sync on one server, followed from token to token. */
class SyncFollower {
  private since: string | undefined;
  constructor(readonly server: FederationProcess, readonly user: RegisteredUser) {}

  /** Take the current position (an initial sync), so later waits see only what comes after. */
  async start(): Promise<void> {
    const body = await ok(this.server, this.user, "GET", "/_matrix/client/v3/sync?timeout=0");
    this.since = body.next_batch;
  }

  /**
   * Long-poll from the current position until `found` returns something for a response; that
   * value. Fails after `timeoutMs` naming `what`.
   */
  // deno-lint-ignore no-explicit-any
  async until<T>(what: string, found: (response: any) => T | undefined, timeoutMs = 30_000) {
    if (this.since === undefined) await this.start();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const wait = Math.max(0, Math.min(5_000, deadline - Date.now()));
      const response = await ok(
        this.server,
        this.user,
        "GET",
        `/_matrix/client/v3/sync?since=${enc(this.since!)}&timeout=${wait}`,
      );
      this.since = response.next_batch;
      const value = found(response);
      if (value !== undefined) return value;
    }
    throw new Error(`${this.user.userId}'s /sync never showed ${what} within ${timeoutMs} ms`);
  }
}

/** A room's ephemeral events of `type` in a sync response. */
// deno-lint-ignore no-explicit-any
function ephemeral(response: any, roomId: string, type: string): any[] {
  const events = response.rooms?.join?.[roomId]?.ephemeral?.events ?? [];
  // deno-lint-ignore no-explicit-any
  return events.filter((e: any) => e.type === type);
}

/** The m.presence event about `userId` in a sync response, if any. */
// deno-lint-ignore no-explicit-any
function presenceOf(response: any, userId: string): any {
  const events = response.presence?.events ?? [];
  // deno-lint-ignore no-explicit-any
  return events.find((e: any) => e.type === "m.presence" && e.sender === userId);
}

/** The event ID of the message `body` once `follower` syncs it in `roomId`. */
function messageSynced(follower: SyncFollower, roomId: string, body: string): Promise<string> {
  return follower.until(`"${body}" in ${roomId}`, (response) => {
    const events = response.rooms?.join?.[roomId]?.timeline?.events ?? [];
    // deno-lint-ignore no-explicit-any
    return events.find((e: any) => e.type === "m.room.message" && e.content?.body === body)
      ?.event_id;
  });
}

/**
 * Typing, receipts and presence both ways between `a` and `b`, for two users of their own in a
 * public room on A.
 */
async function ephemeralBothWays(
  t: Deno.TestContext,
  a: FederationProcess,
  b: FederationProcess,
): Promise<void> {
  const carol = await a.register("carol");
  const dave = await b.register("dave");
  const room = await ok(a, carol, "POST", "/_matrix/client/v3/createRoom", {
    preset: "public_chat",
    name: "Ephemeral",
  });
  const roomId: string = room.room_id;
  await ok(b, dave, "POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${enc(a.serverName)}`, {});
  const onA = new SyncFollower(a, carol);
  const onB = new SyncFollower(b, dave);
  await onA.start();
  await onB.start();

  const typing = (server: FederationProcess, user: RegisteredUser, on: boolean) =>
    ok(
      server,
      user,
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(user.userId)}`,
      on ? { typing: true, timeout: 30_000 } : { typing: false },
    );
  const typingUsers = (response: unknown) =>
    ephemeral(response, roomId, "m.typing").at(-1)?.content?.user_ids as string[] | undefined;

  const steps: [string, () => Promise<void>][] = [
    ["typing on A reaches B's /sync, and stops there", async () => {
      await typing(a, carol, true);
      await onB.until("carol typing", (r) => typingUsers(r)?.includes(carol.userId) || undefined);
      await typing(a, carol, false);
      await onB.until(
        "carol no longer typing",
        (r) => typingUsers(r) && !typingUsers(r)!.includes(carol.userId) ? true : undefined,
      );
    }],
    ["typing on B reaches A's /sync", async () => {
      await typing(b, dave, true);
      await onA.until("dave typing", (r) => typingUsers(r)?.includes(dave.userId) || undefined);
      await typing(b, dave, false);
      await onA.until(
        "dave no longer typing",
        (r) => typingUsers(r) && !typingUsers(r)!.includes(dave.userId) ? true : undefined,
      );
    }],
    ["a read receipt on B reaches A's /sync, and a threaded one on A reaches B's", async () => {
      const fromCarol = "read me on B";
      const sent = await ok(
        a,
        carol,
        "PUT",
        `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
        { msgtype: "m.text", body: fromCarol },
      );
      assertEquals(await messageSynced(onB, roomId, fromCarol), sent.event_id);
      await ok(
        b,
        dave,
        "POST",
        `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(sent.event_id)}`,
        {},
      );
      const daveReceipt = await onA.until("dave's receipt", (r) => {
        for (const e of ephemeral(r, roomId, "m.receipt")) {
          const receipt = e.content?.[sent.event_id]?.["m.read"]?.[dave.userId];
          if (receipt) return receipt;
        }
      });
      assert(typeof daveReceipt.ts === "number", JSON.stringify(daveReceipt));

      const fromDave = "read me on A";
      const daves = await ok(
        b,
        dave,
        "PUT",
        `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
        { msgtype: "m.text", body: fromDave },
      );
      assertEquals(await messageSynced(onA, roomId, fromDave), daves.event_id);
      await ok(
        a,
        carol,
        "POST",
        `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(daves.event_id)}`,
        { thread_id: "main" },
      );
      const carolReceipt = await onB.until("carol's receipt", (r) => {
        for (const e of ephemeral(r, roomId, "m.receipt")) {
          const receipt = e.content?.[daves.event_id]?.["m.read"]?.[carol.userId];
          if (receipt) return receipt;
        }
      });
      assertEquals(carolReceipt.thread_id, "main", JSON.stringify(carolReceipt));
    }],
    ["presence set on A reaches B's /sync, and B's reaches A's", async () => {
      await ok(a, carol, "PUT", `/_matrix/client/v3/presence/${enc(carol.userId)}/status`, {
        presence: "online",
        status_msg: "on server A",
      });
      const carolOnB = await onB.until("carol's presence", (r) => {
        const event = presenceOf(r, carol.userId);
        return event?.content?.status_msg === "on server A" ? event : undefined;
      });
      assertEquals(carolOnB.content.presence, "online");

      await ok(b, dave, "PUT", `/_matrix/client/v3/presence/${enc(dave.userId)}/status`, {
        presence: "unavailable",
        status_msg: "on server B",
      });
      const daveOnA = await onA.until("dave's presence", (r) => {
        const event = presenceOf(r, dave.userId);
        return event?.content?.status_msg === "on server B" ? event : undefined;
      });
      assertEquals(daveOnA.content.presence, "unavailable");
      // Also through GET /presence on the other server.
      const read = await ok(
        b,
        dave,
        "GET",
        `/_matrix/client/v3/presence/${enc(carol.userId)}/status`,
      );
      assertEquals([read.presence, read.status_msg], ["online", "on server A"]);
    }],
  ];
  // Each part stands alone: one failing does not hide the others.
  const failed: string[] = [];
  for (const [name, fn] of steps) {
    if (!await t.step(name, fn)) failed.push(name);
  }
  if (failed.length) throw new Error(`failed: ${failed.join("; ")}`);
}

Deno.test({
  name:
    "two processes, js-sdk Rust crypto: encrypted room across servers, a later device, cross-signing verification, a deleted device; typing, receipts and presence both ways",
  // The SDK leaves timers behind after stopClient (verification and request timeouts, the
  // crypto machine's tasks), which Deno's sanitizers count as leaks; the processes and the
  // clients are stopped explicitly below.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = await startServerProcesses(2);
    const [a, b] = cluster.servers;
    const failures: string[] = [];
    const caFetch = caTrustingFetch(cluster, failures);
    const sessions: CryptoSession[] = [];
    let failed = true;
    try {
      const ephemeralOk = await t.step(
        "5. typing, read receipts and presence from A reach B's /sync and back",
        (t) => ephemeralBothWays(t, a, b),
      );

      const open = (server: FederationProcess, user: string, deviceDisplayName: string) =>
        openUploadedCryptoClient({
          baseUrl: server.baseUrl,
          user,
          password: PASSWORD,
          deviceDisplayName,
          failures,
          fetch: caFetch.fetch,
        }, sessions);
      let alice!: CryptoSession;
      let bob!: CryptoSession;
      let bob2!: CryptoSession;
      let roomId!: string;
      const sent: Sent[] = [];
      const send = async (from: CryptoSession, body: string) => {
        const message = await sendEncrypted(from, roomId, body);
        sent.push(message);
        return message;
      };

      const steps: {
        name: string;
        needs: string[];
        fn: () => Promise<void>;
      }[] = [];
      steps.push({
        name: "0. alice on A and bob on B log in with Rust crypto and upload device keys",
        needs: [],
        fn: async () => {
          await a.register("alice", PASSWORD);
          await b.register("bob", PASSWORD);
          [alice, bob] = await Promise.all([
            open(a, "alice", "alice's first device"),
            open(b, "bob", "bob's first device"),
          ]);
        },
      });
      steps.push({
        name: "1. alice (A) and bob (B) share an encrypted room and decrypt each other",
        needs: ["0"],
        fn: async () => {
          // createRoom's `invite` takes local users only, so the invite follows it.
          roomId = await createEncryptedRoom(alice, [], "Secrets across servers");
          await step("alice invites bob", () => alice.client.invite(roomId, bob.userId));
          await joinEncryptedRoom(bob, roomId);
          await waitForMember(alice, roomId, bob.userId);
          const encryption = bob.client.getRoom(roomId)?.currentState.getStateEvents(
            sdk.EventType.RoomEncryption,
            "",
          );
          assertEquals(encryption?.getContent().algorithm, MEGOLM);
          const fromAlice = await send(alice, "Hello Bob on B, this is secret");
          await assertDecrypts(bob, roomId, fromAlice);
          const fromBob = await send(bob, "Hello Alice on A, secret too");
          await assertDecrypts(alice, roomId, fromBob);
          // Both servers hold only ciphertext.
          await assertEncryptedOnServer(bob, roomId, fromAlice);
          await assertEncryptedOnServer(alice, roomId, fromBob);
          // Each found the other's device through /keys/query on its own server.
          assert((await devicesSeen(alice, bob.userId)).includes(bob.deviceId));
          assert((await devicesSeen(bob, alice.userId)).includes(alice.deviceId));
        },
      });
      steps.push({
        name: "2. bob's new device on B gets the keys of messages sent after it appeared",
        needs: ["1"],
        fn: async () => {
          bob2 = await open(b, "bob", "bob's second device");
          await waitForRoomEncrypted(bob2, roomId);
          // Alice learns of it by device_lists.changed in her sync on A (B's device-list update
          // to A), then /keys/query through A; only then does her next room key go to it.
          await assertLaterDeviceDecryptsWhatFollows(alice, bob, bob2, roomId, sent[0], send);
        },
      });
      steps.push({
        name: "3. cross-signing: alice verifies bob across the servers and sees him verified",
        needs: ["1"],
        fn: async () => {
          for (const side of [alice, bob]) await bootstrapCrossSigningSettled(side);
          // Each learns of the other's identity through a signing-key update from the other
          // server (device_lists.changed in its sync, then /keys/query through its server).
          await waitForEachOthersIdentity(alice, bob);

          await verifyBySas(alice, bob, roomId);

          // Each side signed the other's master key with its user-signing key and uploaded the
          // signature to its own server, which shows it (to its own user only) on the remote
          // user's master key; the Rust crypto trusts the other user once it reads it back.
          await waitForMutualCrossSigningTrust(alice, bob);
          const bobDevice = await alice.crypto.getDeviceVerificationStatus(
            bob.userId,
            bob.deviceId,
          );
          assert(bobDevice?.crossSigningVerified, "alice does not trust bob's cross-signed device");
        },
      });
      steps.push({
        name: "4. a device of alice deleted on A disappears from bob's view on B",
        needs: ["1"],
        fn: async () => {
          const alice2 = await open(a, "alice", "alice's short-lived device");
          await waitForDeviceSeen(bob, alice.userId, alice2.deviceId);
          alice2.stop();
          await step(
            "alice deletes the device",
            () =>
              passwordAuth(alice)((auth) =>
                alice.client.deleteDevice(alice2.deviceId, auth ?? undefined)
              ),
          );
          await waitForDeviceSeen(bob, alice.userId, alice2.deviceId, false);
          // Her remaining device is still there, and B's own answer agrees.
          assert((await devicesSeen(bob, alice.userId)).includes(alice.deviceId));
          const res = await bob.client.downloadKeysForUsers([alice.userId]);
          assertEquals(Object.keys(res.device_keys?.[alice.userId] ?? {}), [alice.deviceId]);
        },
      });

      const passed = new Set<string>();
      const notPassed: string[] = [];
      if (!ephemeralOk) notPassed.push("5");
      for (const { name, needs, fn } of steps) {
        const number = name.split(".")[0];
        const missing = needs.filter((n) => !passed.has(n));
        const ok = await t.step(name, async () => {
          if (missing.length) {
            throw new Error(`not run: step ${missing.join(", ")} failed before it`);
          }
          try {
            await fn();
          } catch (error) {
            console.error(`step "${name}" failed:\n${cryptoFailureReport(sessions)}`);
            throw error;
          }
        });
        if (ok) passed.add(number);
        else notPassed.push(number);
      }
      if (notPassed.length) throw new Error(`steps that failed: ${notPassed.join(", ")}`);
      failed = false;
    } finally {
      for (const session of sessions) session.stop();
      if (failed) {
        console.error("failed requests:\n  " + failures.join("\n  "));
        for (const s of cluster.servers) {
          console.error(
            `--- ${s.serverName} (tail)\n${s.output().split("\n").slice(-60).join("\n")}`,
          );
        }
      }
      caFetch.close();
      await cluster.stop();
    }
  },
});
