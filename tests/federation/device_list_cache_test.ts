/**
 * Inbound device lists and the remote device-list cache over the in-process network: updates
 * applied in order (one transaction's several, a redelivered one seen), a gap or an empty
 * prev_id resynced through GET /user/devices, an update A's sender lost in transit resynced on
 * the next, /keys/query answered from the cache (asking A only when nothing is cached, or for
 * users sharing no room), the cache dropped when B stops sharing a room with A's user so a
 * rejoin resyncs, B's clients told in device_lists.changed (and left), A's cache kept answering
 * while A is down, signing-key updates, and updates about users of other servers or sharing
 * no room dropped.
 */
import assert from "node:assert/strict";
import type { Network, NetworkServer } from "./in_process_network.ts";
import {
  joinThrough,
  ok,
  sendEdus,
  sharedPublicRoom,
  uploadDeviceKeys,
  withNetwork,
} from "./network_helpers.ts";
import { loginUser, type RegisteredUser, registerUser } from "../routes/client_harness.ts";
import { newCrossSigning, newDeviceKeys } from "../domain/e2ee/cross_signing_fixtures.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { KvRemoteDeviceStore } from "../../kv/remote_device_store.ts";
import { MAX_RESYNCS_PER_QUERY } from "../../domain/e2ee/cached_remote_key_querier.ts";

const A = "a.test";
const B = "b.test";
const C = "c.test";
const V3 = "/_matrix/client/v3";
const PASSWORD = "correct horse";
const enc = encodeURIComponent;

/** A device-list update EDU. */
function update(content: JsonObject) {
  return { edu_type: "m.device_list_update", content };
}

/** Requests B made to A's GET /user/devices for `userId`. */
function resyncsOf(net: Network, userId: string): number {
  return net.log.filter((r) =>
    r.origin === B && r.path === `/_matrix/federation/v1/user/devices/${enc(userId)}`
  ).length;
}

/** Requests B made to `server`'s POST /user/keys/query. */
function keyQueriesTo(net: Network, server: string): number {
  return net.log.filter((r) =>
    r.origin === B && r.destination === server &&
    r.path === "/_matrix/federation/v1/user/keys/query"
  ).length;
}

/** Bob's /keys/query for `userId` on B. */
async function queryOnB(b: NetworkServer, bob: RegisteredUser, userId: string) {
  return await ok(b, bob, "POST", `${V3}/keys/query`, { device_keys: { [userId]: [] } });
}

/** The device IDs, sorted, that a /keys/query answer lists for `userId`. */
// deno-lint-ignore no-explicit-any
function deviceIdsIn(answer: any, userId: string): string[] {
  return Object.keys(answer.device_keys[userId] ?? {}).sort();
}

/** A sync by `user`; its device_lists and next_batch. */
async function syncLists(server: NetworkServer, user: RegisteredUser, since?: string) {
  const query = since === undefined ? "timeout=0" : `timeout=0&since=${enc(since)}`;
  const body = await ok(server, user, "GET", `${V3}/sync?${query}`);
  const lists = (body.device_lists ?? {}) as { changed?: string[]; left?: string[] };
  return {
    changed: lists.changed ?? [],
    left: lists.left ?? [],
    nextBatch: body.next_batch as string,
  };
}

/** Alice on A creates a public room; bob on B joins it; its room ID. */
async function sharedRoom(
  net: Network,
  alice: RegisteredUser,
  bob: RegisteredUser,
): Promise<string> {
  return await sharedPublicRoom(net.servers[A], alice, net.servers[B], bob);
}

/** Intercept B's GET /user/devices for `userId` with `answer()` (the rest is delivered). */
function answerDevices(net: Network, userId: string, answer: () => JsonObject): void {
  net.intercept((r) =>
    r.origin === B && r.path === `/_matrix/federation/v1/user/devices/${enc(userId)}`
      ? { status: 200, body: answer() }
      : "deliver"
  );
}

Deno.test("device lists in: updates applied in order, seen ones skipped, gaps and empty prev_ids resynced, B's clients told", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    await sharedRoom(net, alice, bob);
    const k1 = (await newDeviceKeys(alice.userId, "D1")).keys;
    const k2 = (await newDeviceKeys(alice.userId, "D2")).keys;
    const k3 = (await newDeviceKeys(alice.userId, "D3")).keys;
    let served: JsonObject = {
      user_id: alice.userId,
      stream_id: 1,
      devices: [{ device_id: "D1", keys: k1, device_display_name: "one" }],
    };
    answerDevices(net, alice.userId, () => served);
    const s0 = await syncLists(b, bob);

    // A first update (no prev_id): B knows nothing yet and resyncs.
    await sendEdus(net, A, B, [update({
      user_id: alice.userId,
      device_id: "D1",
      stream_id: 1,
      prev_id: [],
      keys: k1,
    })]);
    assert.equal(resyncsOf(net, alice.userId), 1);
    let answer = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(deviceIdsIn(answer, alice.userId), ["D1"]);
    assert.equal(answer.device_keys[alice.userId].D1.unsigned.device_display_name, "one");
    assert.equal(
      answer.device_keys[alice.userId].D1.keys["ed25519:D1"],
      (k1.keys as JsonObject)["ed25519:D1"],
    );
    assert.equal(keyQueriesTo(net, A), 0, "answered from the cache");
    const s1 = await syncLists(b, bob, s0.nextBatch);
    assert.deepEqual(s1.changed, [alice.userId]);

    // Two updates in one transaction, the second following the first: both applied, no resync.
    await sendEdus(net, A, B, [
      update({
        user_id: alice.userId,
        device_id: "D2",
        stream_id: 2,
        prev_id: [1],
        keys: k2,
        device_display_name: "two",
      }),
      update({ user_id: alice.userId, device_id: "D1", stream_id: 3, prev_id: [2], deleted: true }),
    ]);
    assert.equal(resyncsOf(net, alice.userId), 1);
    answer = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(deviceIdsIn(answer, alice.userId), ["D2"]);
    assert.equal(answer.device_keys[alice.userId].D2.unsigned.device_display_name, "two");
    const s2 = await syncLists(b, bob, s1.nextBatch);
    assert.deepEqual(s2.changed, [alice.userId]);

    // A redelivered update is seen: nothing changes, nothing is logged.
    await sendEdus(net, A, B, [update({
      user_id: alice.userId,
      device_id: "D2",
      stream_id: 2,
      prev_id: [1],
      keys: k2,
      device_display_name: "renamed late",
    })]);
    answer = await queryOnB(b, bob, alice.userId);
    assert.equal(answer.device_keys[alice.userId].D2.unsigned.device_display_name, "two");
    const s3 = await syncLists(b, bob, s2.nextBatch);
    assert.deepEqual(s3.changed, []);

    // A gap (stream 4 never came): the whole list is fetched again.
    served = {
      user_id: alice.userId,
      stream_id: 5,
      devices: [
        { device_id: "D2", keys: k2, device_display_name: "two" },
        { device_id: "D3", keys: k3 },
      ],
    };
    await sendEdus(net, A, B, [update({
      user_id: alice.userId,
      device_id: "D3",
      stream_id: 5,
      prev_id: [4],
      keys: k3,
    })]);
    assert.equal(resyncsOf(net, alice.userId), 2);
    answer = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(deviceIdsIn(answer, alice.userId), ["D2", "D3"]);
    const s4 = await syncLists(b, bob, s3.nextBatch);
    assert.deepEqual(s4.changed, [alice.userId]);

    // An empty prev_id for a user already tracked: resynced too.
    await sendEdus(net, A, B, [update({
      user_id: alice.userId,
      device_id: "D3",
      stream_id: 6,
      prev_id: [],
    })]);
    assert.equal(resyncsOf(net, alice.userId), 3);
    assert.equal(keyQueriesTo(net, A), 0);
  });
});

Deno.test("device lists in: an update A's sender lost in transit is resynced on the next one; B's clients told", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await registerUser(a, "alice", PASSWORD);
    const bob = await b.register("bob");
    await sharedRoom(net, alice, bob);
    const flushA = () => a.deps.federationSender.runOnce();
    await uploadDeviceKeys(a, alice);
    await flushA();
    const first = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(deviceIdsIn(first, alice.userId), [alice.deviceId]);
    const resyncsBefore = resyncsOf(net, alice.userId);

    // A second device logs in; the transaction carrying its update is lost (A believes it
    // delivered: B answered 200 without seeing it).
    let lost = 0;
    net.intercept((r) => {
      const edus = (r.body as { edus?: { edu_type: string }[] } | null)?.edus ?? [];
      if (
        r.origin === A && r.path.startsWith("/_matrix/federation/v1/send/") &&
        edus.some((e) => e.edu_type === "m.device_list_update")
      ) {
        lost++;
        return { status: 200, body: { pdus: {} } };
      }
      return "deliver";
    });
    const second = await loginUser(a, "alice", PASSWORD, "SECOND");
    await flushA();
    assert.equal(lost, 1);
    net.intercept(undefined);
    // B still has the old list: it has not heard of SECOND.
    const stale = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(deviceIdsIn(stale, alice.userId), [alice.deviceId]);

    // SECOND uploads keys: this update's prev_id names the lost one, so B resyncs, and Bob's
    // client hears of it.
    const beforeResync = await syncLists(b, bob);
    await uploadDeviceKeys(a, second);
    await flushA();
    assert.equal(resyncsOf(net, alice.userId), resyncsBefore + 1);
    const fresh = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(deviceIdsIn(fresh, alice.userId), [alice.deviceId, "SECOND"].sort());
    const afterResync = await syncLists(b, bob, beforeResync.nextBatch);
    assert.deepEqual(afterResync.changed, [alice.userId]);
  });
});

Deno.test("device lists in: B leaving the last shared room drops the cache; a rejoin resyncs; B's clients see left", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await registerUser(a, "alice", PASSWORD);
    const bob = await b.register("bob");
    const roomId = await sharedRoom(net, alice, bob);
    const flushA = () => a.deps.federationSender.runOnce();
    await uploadDeviceKeys(a, alice);
    await flushA();
    await queryOnB(b, bob, alice.userId);
    const store = new KvRemoteDeviceStore(b.kv);
    assert.ok((await store.get([alice.userId])).has(alice.userId), "cached while sharing");
    const beforeLeave = await syncLists(b, bob);

    await ok(b, bob, "POST", `${V3}/rooms/${enc(roomId)}/leave`, {});
    assert.equal((await store.get([alice.userId])).size, 0, "dropped once nothing is shared");
    const afterLeave = await syncLists(b, bob, beforeLeave.nextBatch);
    assert.deepEqual(afterLeave.left, [alice.userId]);

    // Alice adds a device while B shares no room with her: nothing reaches B.
    const second = await loginUser(a, "alice", PASSWORD, "SECOND");
    await uploadDeviceKeys(a, second);
    await flushA();
    // Not sharing: B asks A directly and caches nothing.
    const queriesBefore = keyQueriesTo(net, A);
    const direct = await queryOnB(b, bob, alice.userId);
    assert.equal(keyQueriesTo(net, A), queriesBefore + 1);
    assert.deepEqual(deviceIdsIn(direct, alice.userId), [alice.deviceId, "SECOND"].sort());
    assert.equal((await store.get([alice.userId])).size, 0);

    const resyncsBefore = resyncsOf(net, alice.userId);
    await joinThrough(b, bob, roomId, A);
    const rejoined = await queryOnB(b, bob, alice.userId);
    assert.equal(resyncsOf(net, alice.userId), resyncsBefore + 1, "a rejoin resyncs");
    assert.deepEqual(deviceIdsIn(rejoined, alice.userId), [alice.deviceId, "SECOND"].sort());
  });
});

Deno.test("device lists in: the cache answers while A is down; no cache and A down is a failure", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const amy = await a.register("amy");
    const bob = await b.register("bob");
    const roomId = await sharedRoom(net, alice, bob);
    await ok(a, amy, "POST", `${V3}/join/${enc(roomId)}`, {});
    await uploadDeviceKeys(a, alice);
    const up = await queryOnB(b, bob, alice.userId);
    net.setReachable(A, false);
    const down = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(down.failures, {});
    assert.deepEqual(down.device_keys, up.device_keys);
    // Amy shares the room but was never fetched: A is down, so A is reported failed.
    const none = await queryOnB(b, bob, amy.userId);
    assert.ok(A in none.failures, JSON.stringify(none));
    assert.equal(none.device_keys[amy.userId], undefined);
  });
});

Deno.test("signing keys in: a master/self-signing update replaces the cached keys and tells B's clients", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    await sharedRoom(net, alice, bob);
    await queryOnB(b, bob, alice.userId); // cached (no devices with keys yet)
    const s0 = await syncLists(b, bob);
    const cs = await newCrossSigning(alice.userId);
    await sendEdus(net, A, B, [{
      edu_type: "m.signing_key_update",
      content: {
        user_id: alice.userId,
        master_key: cs.upload.master,
        self_signing_key: cs.upload.self_signing,
      },
    }]);
    const answer = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(answer.master_keys[alice.userId], cs.upload.master);
    assert.deepEqual(answer.self_signing_keys[alice.userId], cs.upload.self_signing);
    assert.deepEqual((await syncLists(b, bob, s0.nextBatch)).changed, [alice.userId]);
    // A malformed key (filed under another user) is dropped.
    const other = await newCrossSigning(`@eve:${A}`);
    await sendEdus(net, A, B, [{
      edu_type: "m.signing_key_update",
      content: { user_id: alice.userId, master_key: other.upload.master },
    }]);
    const again = await queryOnB(b, bob, alice.userId);
    assert.deepEqual(again.master_keys[alice.userId], cs.upload.master);
  });
});

Deno.test("device lists in: updates about another server's users, users sharing no room or malformed are dropped", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B], c = net.servers[C];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await c.register("carol"); // shares no room with B
    await sharedRoom(net, alice, bob);
    const store = new KvRemoteDeviceStore(b.kv);
    const s0 = await syncLists(b, bob);
    const aboutAlice = {
      user_id: alice.userId,
      device_id: "D1",
      stream_id: 1,
      prev_id: [],
    };
    // C speaking for A's user.
    await sendEdus(net, C, B, [update(aboutAlice)]);
    // C's own user, sharing no room with B.
    await sendEdus(net, C, B, [update({ ...aboutAlice, user_id: carol.userId })]);
    // Malformed: a stream_id that is not a position, a prev_id that is not a list.
    await sendEdus(net, A, B, [
      update({ ...aboutAlice, stream_id: "one" }),
      update({ ...aboutAlice, prev_id: 3 }),
      update({ ...aboutAlice, device_id: "" }),
    ]);
    const cs = await newCrossSigning(alice.userId);
    await sendEdus(net, C, B, [{
      edu_type: "m.signing_key_update",
      content: { user_id: alice.userId, master_key: cs.upload.master },
    }]);
    assert.equal(resyncsOf(net, alice.userId), 0);
    assert.equal(resyncsOf(net, carol.userId), 0);
    assert.equal((await store.get([alice.userId, carol.userId])).size, 0);
    assert.deepEqual((await syncLists(b, bob, s0.nextBatch)).changed, []);
  }, [A, B, C]);
});

Deno.test("keys query: at most MAX_RESYNCS_PER_QUERY resyncs per query; further uncached users go in one batched query", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await sharedRoom(net, alice, bob);
    const others: RegisteredUser[] = [];
    for (let i = 0; i < MAX_RESYNCS_PER_QUERY + 3; i++) {
      const user = await a.register(`user${i}`);
      await ok(a, user, "POST", `${V3}/join/${enc(roomId)}`, {});
      others.push(user);
    }
    await a.deps.federationSender.runOnce();
    const answer = await ok(b, bob, "POST", `${V3}/keys/query`, {
      device_keys: Object.fromEntries(others.map((u) => [u.userId, []])),
    });
    assert.deepEqual(answer.failures, {});
    assert.deepEqual(Object.keys(answer.device_keys).sort(), others.map((u) => u.userId).sort());
    const resyncs = net.log.filter((r) =>
      r.origin === B && r.path.startsWith("/_matrix/federation/v1/user/devices/")
    ).length;
    assert.equal(resyncs, MAX_RESYNCS_PER_QUERY);
    assert.equal(keyQueriesTo(net, A), 1);
    const asked = net.log.find((r) =>
      r.origin === B && r.path === "/_matrix/federation/v1/user/keys/query"
    )!;
    assert.equal(
      Object.keys((asked.body as { device_keys: JsonObject }).device_keys).length,
      3,
    );
  });
});

Deno.test("device lists in: A's user leaving the last room shared with B drops B's cache of them; one still sharing keeps it", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A], b = net.servers[B];
    const alice = await a.register("alice");
    const amy = await a.register("amy");
    const bob = await b.register("bob");
    const roomId = await sharedRoom(net, alice, bob);
    await ok(a, amy, "POST", `${V3}/join/${enc(roomId)}`, {});
    await a.deps.federationSender.runOnce();
    await queryOnB(b, bob, alice.userId);
    await queryOnB(b, bob, amy.userId);
    const store = new KvRemoteDeviceStore(b.kv);
    assert.equal((await store.get([alice.userId, amy.userId])).size, 2);

    await ok(a, amy, "POST", `${V3}/rooms/${enc(roomId)}/leave`, {});
    await a.deps.federationSender.runOnce();
    const left = await store.get([alice.userId, amy.userId]);
    assert.deepEqual([...left.keys()], [alice.userId], "amy's cache went with her leave");
  });
});
