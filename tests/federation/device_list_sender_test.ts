/**
 * Outbound device lists over the in-process network: a local user's key upload, new device,
 * rename, deletions (one and several at once), cross-signing upload and signature upload each
 * reach the servers sharing a room with them as m.device_list_update / m.signing_key_update
 * EDUs whose prev_id chain a receiver can follow (each names the stream_id of the one before);
 * nothing goes to a server sharing no room, nothing for another server's users, nothing with
 * federation off. Also: updates whose queueing a crash cut off go with the next change, two
 * processes queue each update once, and the pure planning rules (forced resyncs).
 */
import assert from "node:assert/strict";
import type { Network, NetworkServer } from "./in_process_network.ts";
import {
  createRoom,
  edusSent,
  ok,
  type SentEdu,
  sharedPublicRoom,
  uploadDeviceKeys,
  withNetwork,
} from "./network_helpers.ts";
import { FAST_HASHING, loginUser, registerUser } from "../routes/client_harness.ts";
import { startTestServer } from "../routes/test_server.ts";
import { newCrossSigning, newDeviceKeys } from "../domain/e2ee/cross_signing_fixtures.ts";
import { publicRoom } from "../routes/sender_rooms.ts";
import { testServer } from "../domain/federation/remote_room_builder.ts";
import { appendRemoteJoin } from "./remote_joins.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import {
  DeviceListSender,
  MAX_DEVICE_EDUS,
  type PendingDeviceListUpdates,
  planDeviceListEdus,
} from "../../domain/federation/edus/device_list_sender.ts";
import { KvDeviceListOutbound } from "../../kv/device_list_outbound.ts";
import {
  commitWithDeviceListChanges,
  type DeviceListChanges,
  deviceListDeviceStreamId,
  deviceListStreamId,
  deviceListUpdatesAfter,
} from "../../kv/device_list_log.ts";
import { KvOutboxStore } from "../../kv/outbox_store.ts";
import { FEDERATION_STREAM } from "../../domain/federation/federation_transactions.ts";
import { e2eeKeys } from "../../kv/schema.ts";

const A = "a.test";
const B = "b.test";
const C = "c.test";
const V3 = "/_matrix/client/v3";
const PASSWORD = "correct horse";

/** Device-list and signing-key EDUs `origin` sent to `destination`. */
function keyEdus(net: Network, origin: string, destination: string): SentEdu[] {
  return edusSent(net, { origin, destination }).filter((e) =>
    e.type === "m.device_list_update" || e.type === "m.signing_key_update"
  );
}

/** A's outbox drained: one pass of its sender. */
async function flush(server: NetworkServer): Promise<void> {
  await server.deps.federationSender.runOnce();
}

/** A new device of `localpart` on `server`, logged in by password as `deviceId`. */
function login(server: NetworkServer, localpart: string, deviceId: string) {
  return loginUser(server, localpart, PASSWORD, deviceId);
}

/**
 * Alice on A with device keys uploaded, in a public room Bob on B joined, her first EDU sent:
 * where the tests of later changes start.
 */
async function aliceWithKeysBesideBob(net: Network) {
  const a = net.servers[A], b = net.servers[B];
  const alice = await registerUser(a, "alice", PASSWORD);
  const bob = await b.register("bob");
  await sharedPublicRoom(a, alice, b, bob);
  await uploadDeviceKeys(a, alice);
  await flush(a);
  return { a, b, alice, bob };
}

/** Commit a change of `userId`'s device `deviceId` to the log and nothing else (no EDU queued). */
async function commitDeviceChangeOnly(server: NetworkServer, userId: string, deviceId: string) {
  await commitWithDeviceListChanges(server.kv, (_op, changes) => {
    changes.add(userId, { deviceIds: [deviceId] });
    return Promise.resolve(true);
  });
}

/** Check the device EDUs in `edus` form one chain: each prev_id names the stream_id before it. */
function assertChain(edus: SentEdu[]): void {
  const devices = edus.filter((e) => e.type === "m.device_list_update");
  devices.forEach((e, i) => {
    if (i === 0) return;
    const before = devices[i - 1].content.stream_id as number;
    assert.deepEqual(e.content.prev_id, [before], `EDU ${i} follows ${before}`);
    assert.ok((e.content.stream_id as number) > before, `EDU ${i} has a newer stream_id`);
  });
}

Deno.test("device lists out: every kind of change reaches the servers sharing a room, chained", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B], c = net.servers[C];
    const alice = await registerUser(a, "alice", PASSWORD);
    const dave = await registerUser(a, "dave", PASSWORD); // shares no room with another server
    const bob = await b.register("bob");
    await c.register("carol");
    await sharedPublicRoom(a, alice, b, bob);
    // dave's room is A's alone.
    await createRoom(a, dave, { preset: "public_chat" });

    // Key upload: alice's first EDU, carrying the keys (her login before the room was shared
    // is folded in: one EDU per device, at its latest position).
    const keys = await uploadDeviceKeys(a, alice);
    await flush(a);
    let sent = keyEdus(net, A, B);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].type, "m.device_list_update");
    assert.deepEqual(sent[0].content, {
      user_id: alice.userId,
      device_id: alice.deviceId,
      stream_id: await deviceListStreamId(a.kv, alice.userId),
      prev_id: [],
      keys,
    });

    // A new device (a login), then its rename: no keys yet, no name over federation.
    const { deviceId: phone, accessToken: phoneToken } = await login(a, "alice", "PHONE");
    await flush(a);
    await ok(a, alice, "PUT", `${V3}/devices/${phone}`, { display_name: "Alice's phone" });
    await flush(a);
    sent = keyEdus(net, A, B);
    assert.equal(sent.length, 3);
    for (const e of sent.slice(1)) {
      assert.deepEqual(Object.keys(e.content).sort(), [
        "device_id",
        "prev_id",
        "stream_id",
        "user_id",
      ]);
      assert.equal(e.content.device_id, phone);
    }
    assertChain(sent);

    // Cross-signing keys: an m.signing_key_update, no device-list update.
    const cross = await newCrossSigning(alice.userId);
    await ok(a, alice, "POST", `${V3}/keys/device_signing/upload`, {
      master_key: cross.upload.master,
      self_signing_key: cross.upload.self_signing,
      user_signing_key: cross.upload.user_signing,
    });
    await flush(a);
    sent = keyEdus(net, A, B);
    assert.equal(sent.length, 4);
    assert.deepEqual(sent[3], {
      origin: A,
      destination: B,
      type: "m.signing_key_update",
      content: {
        user_id: alice.userId,
        master_key: cross.upload.master,
        self_signing_key: cross.upload.self_signing,
      },
    });

    // Her self-signing key signs her device: the device's EDU carries the signature, and its
    // prev_id is the last device EDU's stream_id (the cross-signing position never went out).
    const { signatures: _own, ...unsignedKeys } = keys;
    const signed = await cross.selfSigning.sign(unsignedKeys, alice.userId);
    const upload = await ok(a, alice, "POST", `${V3}/keys/signatures/upload`, {
      [alice.userId]: { [alice.deviceId]: signed },
    });
    assert.deepEqual(upload.failures, {});
    await flush(a);
    sent = keyEdus(net, A, B);
    assert.equal(sent.length, 5);
    const signedEdu = sent[4].content;
    assert.equal(signedEdu.device_id, alice.deviceId);
    assert.deepEqual(signedEdu.prev_id, [sent[2].content.stream_id]);
    assert.equal(signedEdu.stream_id, (sent[2].content.stream_id as number) + 2);
    const sigs = (signedEdu.keys as JsonObject).signatures as Record<string, JsonObject>;
    assert.deepEqual(
      Object.keys(sigs[alice.userId]).sort(),
      [
        `ed25519:${alice.deviceId}`,
        `ed25519:${cross.selfSigning.publicKey}`,
      ].sort(),
    );

    // A deletion (logout), then two devices deleted at once: one EDU each, chained.
    const before = keyEdus(net, A, B).length;
    const out = await a.request("POST", `${V3}/logout`, { token: phoneToken, body: {} });
    assert.equal(out.status, 200);
    await flush(a);
    sent = keyEdus(net, A, B);
    assert.deepEqual(sent.slice(before).map((e) => [e.content.device_id, e.content.deleted]), [
      [phone, true],
    ]);
    await login(a, "alice", "TABLET");
    await login(a, "alice", "LAPTOP");
    await flush(a);
    const beforeMany = keyEdus(net, A, B).length;
    await ok(a, alice, "POST", `${V3}/delete_devices`, {
      devices: ["TABLET", "LAPTOP"],
      auth: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "alice" },
        password: PASSWORD,
      },
    });
    await flush(a);
    sent = keyEdus(net, A, B);
    const many = sent.slice(beforeMany);
    assert.deepEqual(many.map((e) => [e.content.device_id, e.content.deleted]).sort(), [
      ["LAPTOP", true],
      ["TABLET", true],
    ]);
    assertChain(sent);
    assert.equal(sent.at(-1)!.content.stream_id, await deviceListStreamId(a.kv, alice.userId));

    // dave's changes go nowhere; carol's server shares no room with anyone on A.
    await uploadDeviceKeys(a, dave);
    await login(a, "dave", "DAVE2");
    await flush(a);
    // Bob's changes are B's to send: A (told of them by B) sends nothing about him.
    await uploadDeviceKeys(b, bob);
    await flush(b);
    await flush(a);
    assert.deepEqual(keyEdus(net, A, C), []);
    const fromA = edusSent(net, { origin: A }).filter((e) =>
      e.type.includes("device_list") ||
      e.type.includes("signing_key")
    );
    assert.ok(fromA.every((e) => e.content.user_id === alice.userId && e.destination === B));
    const fromB = keyEdus(net, B, A);
    assert.ok(fromB.some((e) => e.content.user_id === bob.userId));

    // Tessera's own receiver followed the whole chain: one resync (the first EDU's empty
    // prev_id), every later update applied, and B's view of alice's keys is A's.
    const resyncs = net.log.filter((r) => r.origin === B && r.path.includes("/user/devices/"));
    assert.equal(resyncs.length, 1);
    const onB = await ok(b, bob, "POST", `${V3}/keys/query`, {
      device_keys: { [alice.userId]: [] },
    });
    const onA = await a.deps.serverKeyQueries.userDevices(alice.userId);
    const strip = (keys: Record<string, JsonObject>) =>
      Object.fromEntries(Object.entries(keys).map(([id, { unsigned: _u, ...k }]) => [id, k]));
    assert.deepEqual(
      strip(onB.device_keys[alice.userId]),
      Object.fromEntries(onA.devices.map((d) => [d.device_id, d.keys])),
    );
    assert.deepEqual(onB.master_keys[alice.userId], onA.master_key);
    assert.deepEqual(onB.self_signing_keys[alice.userId], onA.self_signing_key);
  }, [A, B, C]);
});

Deno.test("device lists out: a resync right after a cross-signing change costs no second one", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await registerUser(a, "alice", PASSWORD);
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat" });
    const join = `${V3}/join/${encodeURIComponent(roomId)}?server_name=${A}`;
    await ok(b, bob, "POST", join, {});
    await uploadDeviceKeys(a, alice);
    await flush(a);
    const cross = await newCrossSigning(alice.userId);
    await ok(a, alice, "POST", `${V3}/keys/device_signing/upload`, {
      master_key: cross.upload.master,
      self_signing_key: cross.upload.self_signing,
    });
    await flush(a);
    // B forgets alice (no shared room), rejoins and resyncs now: after the cross-signing
    // change, before her next device change.
    await ok(b, bob, "POST", `${V3}/rooms/${encodeURIComponent(roomId)}/leave`, {});
    await ok(b, bob, "POST", join, {});
    await ok(b, bob, "POST", `${V3}/keys/query`, { device_keys: { [alice.userId]: [] } });
    const resyncs = () =>
      net.log.filter((r) => r.origin === B && r.path.includes("/user/devices/")).length;
    const before = resyncs();
    // /user/devices named the last device position, which the next EDU's prev_id names.
    const { deviceId } = await login(a, "alice", "NEXT");
    await flush(a);
    const last = keyEdus(net, A, B).at(-1)!;
    assert.equal(last.content.device_id, deviceId);
    assert.equal(resyncs(), before);
  });
});

Deno.test("device lists out: an update whose queueing was cut off goes with the next change", async () => {
  await withNetwork(async (net) => {
    const { a, alice } = await aliceWithKeysBesideBob(net);
    // A device-list change committed, then the process died before queueing its EDU.
    await commitDeviceChangeOnly(a, alice.userId, "LOST");
    await flush(a);
    assert.equal(keyEdus(net, A, B).length, 1);
    // The next change queues both, in order, chained.
    await login(a, "alice", "NEXT");
    await flush(a);
    const sent = keyEdus(net, A, B);
    assert.deepEqual(sent.map((e) => e.content.device_id), [alice.deviceId, "LOST", "NEXT"]);
    assert.equal(sent[1].content.deleted, true); // LOST is no device of hers
    assertChain(sent);
  });
});

Deno.test("device lists out: two processes queue each update once, in order", async () => {
  await withNetwork(async (net) => {
    const { a, alice } = await aliceWithKeysBesideBob(net);
    for (const deviceId of ["ONE", "TWO", "THREE"]) {
      await commitDeviceChangeOnly(a, alice.userId, deviceId);
    }
    // Two senders over the same KV (two processes), each told of the change at once.
    const senderLike = () =>
      new DeviceListSender({
        outbound: new KvDeviceListOutbound(a.kv),
        store: a.deps.eventStore,
        federation: a.deps.federationSender,
        keysForServers: (query) => a.deps.serverKeyQueries.query(query),
        devicesOf: (userId) => a.deps.accounts.listDevices(userId),
        serverName: A,
        enabled: true,
      });
    await Promise.all([
      senderLike().changed([alice.userId]),
      senderLike().changed([alice.userId]),
      senderLike().changed([alice.userId]),
    ]);
    await flush(a);
    const sent = keyEdus(net, A, B);
    assert.deepEqual(sent.map((e) => e.content.device_id), [
      alice.deviceId,
      "ONE",
      "TWO",
      "THREE",
    ]);
    assertChain(sent);
  });
});

Deno.test("device lists out: TESSERA_FEDERATION=off queues nothing", async () => {
  const server = await startTestServer(
    { TESSERA_SERVER_NAME: A, TESSERA_FEDERATION: "off", TESSERA_REGISTRATION: "open" },
    FAST_HASHING,
  );
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoom(
      { deps: server.deps } as unknown as Parameters<typeof publicRoom>[0],
      alice.userId,
    );
    await appendRemoteJoin(server.deps.eventStore, roomId, "@bob:b.test", await testServer(B, 2));
    const { keys } = await newDeviceKeys(alice.userId, alice.deviceId);
    const res = await server.request("POST", `${V3}/keys/upload`, {
      token: alice.accessToken,
      body: { device_keys: keys },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await new KvOutboxStore(server.kv, FEDERATION_STREAM).pending(10), []);
    assert.equal((await server.kv.get(e2eeKeys.deviceListSent(alice.userId))).value, null);
  } finally {
    server.close();
  }
});

Deno.test("device lists out: the log gives each device of an update its own position", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const user = "@alice:a.test";
    const commit = (change: Parameters<DeviceListChanges["add"]>[1]) =>
      commitWithDeviceListChanges(kv, (_op, changes) => {
        changes.add(user, change);
        return Promise.resolve(true);
      });
    assert.equal(await deviceListDeviceStreamId(kv, user), 0);
    await commit({ deviceIds: ["X"] });
    await commit({ deleted: ["Y", "Z"] });
    await commit({ crossSigning: true });
    const updates = await deviceListUpdatesAfter(kv, user);
    assert.deepEqual(updates.map((u) => [u.streamId, u.prevIds, u.deviceIds]), [
      [1, [], ["X"]],
      [3, [1], ["Y", "Z"]],
      [4, [3], []],
    ]);
    assert.equal(await deviceListStreamId(kv, user), 4);
    // What /user/devices reports: the last device position, which the next EDU follows.
    assert.equal(await deviceListDeviceStreamId(kv, user), 3);
  } finally {
    kv.close();
  }
});

Deno.test("device lists out: planning (positions, skipped positions, forced resyncs)", () => {
  const update = (streamId: number, prev: number, deviceIds: string[], crossSigning = false) => ({
    streamId,
    prevIds: prev === 0 ? [] : [prev],
    deviceIds,
    crossSigning,
  });
  const plan = (p: PendingDeviceListUpdates) => planDeviceListEdus(p);

  assert.equal(plan({ mark: null, version: null, updates: [] }), null);
  // Several devices of one update on their own positions; a device changed twice goes once,
  // at its latest; a cross-signing position is skipped by the chain.
  assert.deepEqual(
    plan({
      mark: { streamId: 3, eduStreamId: 2 },
      version: "v",
      updates: [update(5, 3, ["X", "Y"]), update(6, 5, [], true), update(7, 6, ["X"])],
    }),
    {
      devices: [{ deviceId: "Y", streamId: 5 }, { deviceId: "X", streamId: 7 }],
      firstPrevIds: [2],
      signingKeys: true,
      mark: { streamId: 7, eduStreamId: 7 },
    },
  );
  // Updates missing before the first read (a backlog past the read limit): empty prev_id.
  assert.deepEqual(
    plan({ mark: { streamId: 3, eduStreamId: 3 }, version: "v", updates: [update(9, 8, ["X"])] })
      ?.firstPrevIds,
    [],
  );
  // ... and when only cross-signing updates follow the gap, the next device EDU carries it.
  assert.deepEqual(
    plan({ mark: { streamId: 3, eduStreamId: 3 }, version: "v", updates: [update(9, 8, [], true)] })
      ?.mark,
    { streamId: 9, eduStreamId: 0 },
  );
  // A log from before devices took a position each: one EDU for the update, resync.
  assert.deepEqual(
    plan({
      mark: { streamId: 1, eduStreamId: 1 },
      version: "v",
      updates: [update(2, 1, ["X", "Y"])],
    }),
    {
      devices: [{ deviceId: "Y", streamId: 2 }],
      firstPrevIds: [],
      signingKeys: false,
      mark: { streamId: 2, eduStreamId: 2 },
    },
  );
  // More devices than one pass sends: the latest go, the first with an empty prev_id.
  const ids = Array.from({ length: MAX_DEVICE_EDUS + 5 }, (_, i) => `D${i}`);
  const big = plan({ mark: null, version: null, updates: [update(ids.length, 0, ids)] })!;
  assert.equal(big.devices.length, MAX_DEVICE_EDUS);
  assert.equal(big.devices[0].deviceId, "D5");
  assert.deepEqual(big.firstPrevIds, []);
});

Deno.test("device lists out: other servers' users and federation off read nothing", async () => {
  let reads = 0;
  const sender = (enabled: boolean) =>
    new DeviceListSender({
      outbound: {
        pending: () => {
          reads++;
          return Promise.resolve({ mark: null, version: null, updates: [] });
        },
        queue: () => Promise.reject(new Error("nothing to queue")),
      },
      store: {
        roomsOfUser: () => {
          reads++;
          return Promise.resolve([]);
        },
        serversInRoom: () => Promise.resolve(new Map()),
      },
      federation: { eduMutations: () => [], wake: () => {} },
      keysForServers: () => Promise.reject(new Error("no keys read")),
      devicesOf: () => Promise.reject(new Error("no devices read")),
      serverName: A,
      enabled,
    });
  await sender(true).changed(["@bob:b.test", "@carol:c.test"]);
  await sender(false).changed(["@alice:a.test"]);
  assert.equal(reads, 0);
});
