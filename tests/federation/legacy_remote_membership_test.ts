/**
 * The legacy `/initialSync` and `/events` show a user's memberships in rooms their server is not
 * in (remote invites and their rejections, held in the remote-membership record) as they show
 * local invites and as `/sync` shows them: two in-process servers, A inviting B's user.
 */
import assert from "node:assert/strict";
import { type NetworkServer } from "./in_process_network.ts";
import { withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;

async function get(server: NetworkServer, user: RegisteredUser, path: string) {
  const res = await server.request("GET", path, { token: user.accessToken });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** The `/events` chunk after `from` (no wait), and the token to continue from. */
async function events(server: NetworkServer, user: RegisteredUser, from: string) {
  const body = await get(server, user, `/_matrix/client/v3/events?from=${enc(from)}&timeout=0`);
  return { chunk: body.chunk as JsonObject[], end: body.end as string };
}

/** A's `alice` creates a room and invites B's `bob`; returns the room's ID. */
async function invite(
  a: NetworkServer,
  alice: RegisteredUser,
  bob: RegisteredUser,
  roomVersion = "10",
): Promise<string> {
  const created = await a.request("POST", "/_matrix/client/v3/createRoom", {
    token: alice.accessToken,
    body: { preset: "private_chat", name: "Old APIs", room_version: roomVersion },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const roomId = created.body.room_id as string;
  const invited = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
    token: alice.accessToken,
    body: { user_id: bob.userId },
  });
  assert.equal(invited.status, 200, JSON.stringify(invited.body));
  return roomId;
}

const roomOf = (body: JsonObject, roomId: string) =>
  (body.rooms as JsonObject[]).find((r) => r.room_id === roomId);

const membershipsIn = (chunk: JsonObject[], roomId: string) =>
  chunk.filter((e) => e.room_id === roomId && e.type === "m.room.member").map((e) =>
    (e.content as JsonObject).membership
  );

Deno.test("legacy sync: a remote invite shows in /initialSync and /events, and so does its rejection", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const start = (await get(b, bob, "/_matrix/client/v3/initialSync")).end as string;
    const roomId = await invite(a, alice, bob);
    // B holds no copy of the room: the invite is only in bob's remote-membership record.
    assert.equal(await b.deps.eventStore.roomHead(roomId), null);

    const snapshot = await get(b, bob, "/_matrix/client/v3/initialSync");
    const room = roomOf(snapshot, roomId);
    assert.ok(room, JSON.stringify(snapshot.rooms));
    assert.equal(room.membership, "invite");
    assert.equal(room.inviter, alice.userId);
    const inviteEvent = room.invite as JsonObject;
    assert.equal(inviteEvent.type, "m.room.member");
    assert.equal(inviteEvent.state_key, bob.userId);
    assert.equal(inviteEvent.sender, alice.userId);
    assert.equal(inviteEvent.user_id, alice.userId); // the legacy format
    assert.equal((inviteEvent.content as JsonObject).membership, "invite");
    // The invite's room state travels with it, as with a local invite's event.
    const stripped = (inviteEvent.unsigned as JsonObject).invite_room_state as JsonObject[];
    assert.ok(stripped.some((e) => e.type === "m.room.name"));

    const streamed = await events(b, bob, start);
    assert.deepEqual(membershipsIn(streamed.chunk, roomId), ["invite"]);
    const invited = streamed.chunk.find((e) => e.room_id === roomId)!;
    assert.equal(invited.event_id, inviteEvent.event_id);
    // Streamed once: the next page from its end has nothing of it.
    assert.deepEqual(membershipsIn((await events(b, bob, streamed.end)).chunk, roomId), []);

    const left = await b.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(left.status, 200, JSON.stringify(left.body));
    const rejection = await events(b, bob, streamed.end);
    assert.deepEqual(membershipsIn(rejection.chunk, roomId), ["leave"]);
    assert.equal(rejection.chunk.find((e) => e.room_id === roomId)!.sender, bob.userId);

    // The rejected invite is gone from the snapshot; with archived, the room shows as left.
    const after = await get(b, bob, "/_matrix/client/v3/initialSync");
    assert.equal(roomOf(after, roomId), undefined);
    const archived = await get(b, bob, "/_matrix/client/v3/initialSync?archived=true");
    const leftRoom = roomOf(archived, roomId);
    assert.ok(leftRoom, JSON.stringify(archived.rooms));
    assert.equal(leftRoom.membership, "leave");
    const chunk = (leftRoom.messages as JsonObject).chunk as JsonObject[];
    assert.deepEqual(chunk.map((e) => (e.content as JsonObject).membership), ["leave"]);
    assert.deepEqual(leftRoom.state, []);
  });
});

Deno.test("legacy sync: an accepted remote invite gives way to the join; an ignored inviter's is not shown", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const mallory = await a.register("mallory");
    const bob = await b.register("bob");
    const roomId = await invite(a, alice, bob);
    const joined = await b.request("POST", `/_matrix/client/v3/join/${enc(roomId)}`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    // The record still says "invite"; the join, newer, wins.
    assert.equal((await b.deps.remoteMemberships.get(bob.userId, roomId))?.membership, "invite");
    const snapshot = await get(b, bob, "/_matrix/client/v3/initialSync");
    const room = roomOf(snapshot, roomId);
    assert.ok(room, JSON.stringify(snapshot.rooms));
    assert.equal(room.membership, "join");
    assert.equal((snapshot.rooms as JsonObject[]).filter((r) => r.room_id === roomId).length, 1);

    // bob ignores mallory: her invite reaches B but neither legacy API shows it.
    const ignored = await b.request(
      "PUT",
      `/_matrix/client/v3/user/${enc(bob.userId)}/account_data/m.ignored_user_list`,
      { token: bob.accessToken, body: { ignored_users: { [mallory.userId]: {} } } },
    );
    assert.equal(ignored.status, 200, JSON.stringify(ignored.body));
    const from = (await get(b, bob, "/_matrix/client/v3/initialSync")).end as string;
    const spam = await invite(a, mallory, bob);
    assert.equal((await b.deps.remoteMemberships.get(bob.userId, spam))?.membership, "invite");
    assert.equal(roomOf(await get(b, bob, "/_matrix/client/v3/initialSync"), spam), undefined);
    assert.deepEqual(membershipsIn((await events(b, bob, from)).chunk, spam), []);
  });
});

Deno.test("legacy sync: a long-polling /events wakes for a remote invite", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const from = (await get(b, bob, "/_matrix/client/v3/initialSync")).end as string;
    // The wait is long: without a wake-up it would come back empty only at its end.
    const waiting = get(b, bob, `/_matrix/client/v3/events?from=${enc(from)}&timeout=30000`);
    const roomId = await invite(a, alice, bob);
    const woken = await waiting;
    assert.deepEqual(membershipsIn(woken.chunk as JsonObject[], roomId), ["invite"]);
  });
});
