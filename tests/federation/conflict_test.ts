/**
 * Conflicts and forgeries between two Tessera servers on the in-process network (the issue's
 * "forgery and authorisation" and "two-server conflict" tests, at the network level; the
 * incoming-PDU steps themselves are tested in pdu_input_test.ts):
 *
 * - a transaction from a server in the room carrying events it has no right to send (one
 *   impersonating A's own user, one from a server nobody in the room is on, a power-level
 *   escalation) gets an error for each of them and none moves A's state;
 * - ban evasion across a partition: B does not hear of the ban and its user goes on talking;
 *   A soft-fails what arrives, and both end on the same state, the ban in it;
 * - both sides change power levels (and the topic) while split, and both converge on the same
 *   resolved state, event by event, with state resolution v2 (room v10) and v2.1 (room v12).
 */
import assert from "node:assert/strict";
import { type Network, type NetworkServer } from "./in_process_network.ts";
import { joinThrough, ok, say, withNetwork } from "./network_helpers.ts";
import { RemoteView } from "./remote_view.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { resolveState } from "../../domain/protocol/state_res/resolve_state.ts";
import { toRoomEvent } from "../../domain/protocol/events.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;

function putState(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  type: string,
  content: unknown,
  stateKey = "",
) {
  return server.request(
    "PUT",
    `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`,
    { token: user.accessToken, body: content },
  );
}

async function setState(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  type: string,
  content: unknown,
  stateKey = "",
): Promise<string> {
  const res = await putState(server, user, roomId, type, content, stateKey);
  assert.equal(res.status, 200, `${type} by ${user.userId}: ${JSON.stringify(res.body)}`);
  return res.body.event_id;
}

async function getState(server: NetworkServer, user: RegisteredUser, roomId: string, type: string) {
  return await ok(server, user, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/${type}/`);
}

/** The room's current state on `server`, entry by entry, sorted. */
async function currentState(server: NetworkServer, roomId: string): Promise<[string, string][]> {
  const state = await server.deps.eventStore.currentState(roomId);
  return [...state].map(([k, id]) => [String(k), id] as [string, string]).sort();
}

/** The room's state resolved afresh from the states after each of its forward extremities. */
async function resolvedAtExtremities(
  server: NetworkServer,
  roomId: string,
  versionId: string,
): Promise<[string, string][]> {
  const store = server.deps.eventStore;
  const version = roomVersion(versionId)!;
  const head = (await store.roomHead(roomId))!;
  const stateMaps = await Promise.all(
    head.forwardExtremities.map(async (id) => (await store.stateAtEvent(id, "after"))!),
  );
  const resolved = await resolveState({
    version,
    stateMaps,
    getEvent: async (id) => {
      const found = (await store.findEvents([id])).get(id);
      return found ? toRoomEvent(found.pdu, id, version) : undefined;
    },
    isRejected: () => false,
  });
  return [...resolved].map(([k, id]) => [String(k), id] as [string, string]).sort();
}

/** Let both servers send what they have queued, a few rounds (answers can cause sends). */
async function exchange(net: Network): Promise<void> {
  for (let round = 0; round < 3; round++) {
    // Any backoff from the partition is over: each server has heard from the other.
    await net.servers[A].deps.federationSender.noteInboundRequest(B);
    await net.servers[B].deps.federationSender.noteInboundRequest(A);
    await net.servers[A].deps.federationSender.runOnce();
    await net.servers[B].deps.federationSender.runOnce();
  }
}

/** Split the two servers: neither reaches the other. */
function split(net: Network, apart: boolean): void {
  net.setReachable(A, !apart);
  net.setReachable(B, !apart);
}

/** Alice's room on A (public, `version`), Bob of B joined. */
async function sharedRoom(net: Network, version: string) {
  const a = net.servers[A];
  const b = net.servers[B];
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const created = await ok(a, alice, "POST", "/_matrix/client/v3/createRoom", {
    preset: "public_chat",
    room_version: version,
  });
  const roomId: string = created.room_id;
  await joinThrough(b, bob, roomId, A);
  return { a, b, alice, bob, roomId };
}

const inNetwork = (fn: (net: Network) => Promise<void>) => withNetwork(fn, [A, B, "c.test"]);

Deno.test("forgery over /send: impersonation, a stranger's event and an escalation are refused; A's state does not move", async () => {
  await inNetwork(async (net) => {
    const { a, b, alice, bob, roomId } = await sharedRoom(net, "10");
    await say(a, alice, roomId, "hello");
    const store = a.deps.eventStore;
    // B's own view of the room, signing with B's real key, as a misbehaving B would.
    const view = new RemoteView(roomId, roomVersion("10")!, B, b.deps.keyring.current);
    await view.syncFrom(store);
    const tip = (await store.roomHead(roomId))!.forwardExtremities[0];
    const honest = await view.build(tip, {
      sender: bob.userId,
      type: "m.room.message",
      content: { msgtype: "m.text", body: "honest" },
    });
    // Alice's name, B's signature: only A may sign for its users.
    const impersonation = await view.build(honest.eventId, {
      sender: alice.userId,
      type: "m.room.topic",
      stateKey: "",
      content: { topic: "B speaks for Alice" },
    });
    // A user of c.test, a server with nobody in the room, signed by B.
    const stranger = await view.build(honest.eventId, {
      sender: "@mallory:c.test",
      type: "m.room.message",
      content: { msgtype: "m.text", body: "let me in" },
    });
    // Bob (level 0) makes himself an admin.
    const levels = await getState(a, alice, roomId, "m.room.power_levels");
    const escalation = await view.build(honest.eventId, {
      sender: bob.userId,
      type: "m.room.power_levels",
      stateKey: "",
      content: { ...levels, users: { ...levels.users, [bob.userId]: 100 } },
    });
    const stateBefore = await currentState(a, roomId);

    const sent = await net.transportFor(B).request({
      method: "PUT",
      destination: A,
      path: `/_matrix/federation/v1/send/${crypto.randomUUID()}`,
      body: {
        origin: B,
        origin_server_ts: Date.now(),
        pdus: [
          honest.pdu,
          impersonation.pdu,
          stranger.pdu,
          escalation.pdu,
        ] as unknown as JsonObject[],
        edus: [],
      },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const results = (sent.body as { pdus: Record<string, { error?: string }> }).pdus;
    assert.equal(results[honest.eventId]?.error, undefined, JSON.stringify(results));
    for (const refused of [impersonation, stranger, escalation]) {
      // Answered with an error (or, when stored, stored as rejected: never accepted).
      const held = await store.getEvent(refused.eventId);
      assert.ok(
        results[refused.eventId]?.error !== undefined || held?.status === "rejected",
        `${refused.pdu.type} from ${refused.pdu.sender}: ${JSON.stringify(results)}`,
      );
      assert.notEqual(held?.status, "accepted");
    }
    assert.equal((await store.getEvent(honest.eventId))?.status, "accepted");
    // The state did not move: the honest message is no state event.
    assert.deepEqual(await currentState(a, roomId), stateBefore);
    assert.equal(
      (await a.request("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.topic/`, {
        token: alice.accessToken,
      })).status,
      404,
    );
    // And a third server that asks to send into the room on its own is refused outright.
    const fromC = await net.transportFor("c.test").request({
      method: "PUT",
      destination: A,
      path: `/_matrix/federation/v1/send/${crypto.randomUUID()}`,
      body: {
        origin: "c.test",
        origin_server_ts: Date.now(),
        pdus: [stranger.pdu as unknown as JsonObject],
        edus: [],
      },
    });
    const cResults = (fromC.body as { pdus?: Record<string, { error?: string }> }).pdus ?? {};
    assert.ok(fromC.status >= 400 || cResults[stranger.eventId]?.error, JSON.stringify(fromC));
    assert.deepEqual(await currentState(a, roomId), stateBefore);
  });
});

Deno.test("ban evasion across a partition: A soft-fails what the banned user sent, both end banned", async () => {
  await inNetwork(async (net) => {
    const { a, b, alice, bob, roomId } = await sharedRoom(net, "10");
    split(net, true);
    await ok(a, alice, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/ban`, {
      user_id: bob.userId,
    });
    const stateOnA = await currentState(a, roomId);
    // B has not heard of the ban: Bob goes on talking, and changes the topic.
    const evading = await say(b, bob, roomId, "you can't ban me");
    const topic = await putState(b, bob, roomId, "m.room.topic", { topic: "mine now" });
    await a.deps.federationSender.runOnce();
    await b.deps.federationSender.runOnce();
    split(net, false);
    await exchange(net);

    // On A: Bob's events are held but soft-failed; nothing of them in state or timeline.
    assert.equal((await a.deps.eventStore.getEvent(evading))?.status, "soft_failed");
    if (topic.status === 200) {
      const held = await a.deps.eventStore.getEvent(topic.body.event_id);
      assert.notEqual(held?.status, "accepted");
    }
    assert.deepEqual(await currentState(a, roomId), stateOnA);
    const messages = await ok(
      a,
      alice,
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=50`,
    );
    assert.ok(!messages.chunk.some((e: { event_id: string }) => e.event_id === evading));
    // On B: the ban arrived and took effect; both servers hold the same state.
    const member = await b.deps.eventStore.currentState(roomId);
    const memberId = member.get(`m.room.member\u0000${bob.userId}` as never);
    assert.ok(memberId);
    assert.equal((await b.deps.eventStore.getEvent(memberId))?.pdu.content.membership, "ban");
    assert.deepEqual(await currentState(b, roomId), await currentState(a, roomId));
    const refused = await b.request(
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${crypto.randomUUID()}`,
      { token: bob.accessToken, body: { msgtype: "m.text", body: "again" } },
    );
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
  });
});

/**
 * Both sides change power levels and the topic while split, twice: first as equals (both
 * changes valid on either side: the resolution orders them), then Alice demotes Bob while Bob
 * promotes someone and sets the topic (Bob's changes lose on both sides).
 */
async function powerLevelConflict(version: string): Promise<void> {
  await inNetwork(async (net) => {
    const { a, b, alice, bob, roomId } = await sharedRoom(net, version);
    const base = await getState(a, alice, roomId, "m.room.power_levels") as JsonObject;
    const users = base.users as Record<string, number>;
    const events = base.events as Record<string, number>;
    // Bob may edit power levels and the topic (level 50 suffices for both).
    await setState(a, alice, roomId, "m.room.power_levels", {
      ...base,
      users: { ...users, [bob.userId]: 50 },
      events: { ...events, "m.room.power_levels": 50, "m.room.topic": 50 },
    });
    await exchange(net);
    const shared = await getState(b, bob, roomId, "m.room.power_levels") as JsonObject;
    assert.equal((shared.users as Record<string, number>)[bob.userId], 50);

    // Round 1: equals. Each side changes a different level and the topic, unaware of the other;
    // each change is one the other side's state also allows (both at most Bob's level 50), so
    // neither is soft-failed and the forks meet in a state resolution.
    split(net, true);
    const fork = [
      await setState(a, alice, roomId, "m.room.power_levels", { ...shared, kick: 40 }),
      await setState(a, alice, roomId, "m.room.topic", { topic: "Alice's topic" }),
      await setState(b, bob, roomId, "m.room.power_levels", { ...shared, redact: 40 }),
      await setState(b, bob, roomId, "m.room.topic", { topic: "Bob's topic" }),
    ];
    await a.deps.federationSender.runOnce();
    await b.deps.federationSender.runOnce();
    assert.notDeepEqual(await currentState(a, roomId), await currentState(b, roomId));
    split(net, false);
    await exchange(net);
    // Both hold both forks, every change in them accepted (none was soft-failed: the forks
    // really meet), and resolve them to the same state, entry by entry.
    for (const server of [a, b]) {
      for (const id of fork) {
        assert.equal((await server.deps.eventStore.getEvent(id))?.status, "accepted", id);
      }
    }
    const resolved1 = await currentState(a, roomId);
    assert.deepEqual(await currentState(b, roomId), resolved1);
    // Each holds two forward extremities (the forks' tips), and its current-state projection is
    // what resolving the states after them gives.
    for (const server of [a, b]) {
      const head = (await server.deps.eventStore.roomHead(roomId))!;
      assert.equal(head.forwardExtremities.length, 2, server.name);
      assert.deepEqual(await resolvedAtExtremities(server, roomId, version), resolved1);
    }
    // The resolved power levels and topic are each one side's (which one is the algorithm's
    // choice; that both servers make the same one is the point).
    const entry1 = (key: string) => resolved1.find(([k]) => k === key)?.[1];
    assert.ok([fork[0], fork[2]].includes(entry1("m.room.power_levels\u0000")!));
    assert.ok([fork[1], fork[3]].includes(entry1("m.room.topic\u0000")!));
    assert.ok(resolved1.some(([k]) => k === "m.room.create\u0000"));
    // A message on each side merges the forks; the state stays the resolved one.
    await say(a, alice, roomId, "merged on A");
    await say(b, bob, roomId, "merged on B");
    await exchange(net);
    assert.deepEqual(await currentState(a, roomId), resolved1);
    assert.deepEqual(await currentState(b, roomId), resolved1);
    const headA = (await a.deps.eventStore.roomHead(roomId))!;
    const headB = (await b.deps.eventStore.roomHead(roomId))!;
    assert.deepEqual([...headA.forwardExtremities].sort(), [...headB.forwardExtremities].sort());

    // Round 2: Alice demotes Bob while Bob, split off, promotes a user and sets the topic.
    const now = await getState(a, alice, roomId, "m.room.power_levels") as JsonObject;
    const nowUsers = now.users as Record<string, number>;
    split(net, true);
    const demotion = await setState(a, alice, roomId, "m.room.power_levels", {
      ...now,
      users: { ...nowUsers, [bob.userId]: 0 },
    });
    const aliceTopic = await setState(a, alice, roomId, "m.room.topic", { topic: "settled" });
    const bobsLevels = await setState(b, bob, roomId, "m.room.power_levels", {
      ...now,
      users: { ...nowUsers, "@dave:b.test": 50 },
    });
    const bobsTopic = await setState(b, bob, roomId, "m.room.topic", { topic: "not settled" });
    await a.deps.federationSender.runOnce();
    await b.deps.federationSender.runOnce();
    split(net, false);
    await exchange(net);
    const resolved2 = await currentState(a, roomId);
    assert.deepEqual(await currentState(b, roomId), resolved2);
    const entry = (key: string) => resolved2.find(([k]) => k === key)?.[1];
    assert.equal(entry("m.room.power_levels\u0000"), demotion);
    assert.equal(entry("m.room.topic\u0000"), aliceTopic);
    assert.notEqual(entry("m.room.power_levels\u0000"), bobsLevels);
    assert.notEqual(entry("m.room.topic\u0000"), bobsTopic);
    // Bob's server enforces the outcome: he may no longer change the topic.
    const refused = await putState(b, bob, roomId, "m.room.topic", { topic: "again" });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    // Clients on both sides read the same resolved state.
    assert.deepEqual(
      await getState(b, bob, roomId, "m.room.topic"),
      await getState(a, alice, roomId, "m.room.topic"),
    );
  });
}

Deno.test("conflict: concurrent power-level changes converge, state resolution v2 (room v10)", () =>
  powerLevelConflict("10"));

Deno.test("conflict: concurrent power-level changes converge, state resolution v2.1 (room v12)", () =>
  powerLevelConflict("12"));
