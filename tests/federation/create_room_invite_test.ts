/**
 * `/createRoom` with users of other servers in `invite` (how Element starts a DM with someone
 * elsewhere): the room is made with its local invites, then each remote invitee is invited over
 * federation as by `/invite` (their server countersigns, `is_direct` in the content). A remote
 * invite that fails leaves the room as created, the failure logged; the checks done before
 * anything is written still refuse the whole request.
 */
import assert from "node:assert/strict";
import type { NetworkServer } from "./in_process_network.ts";
import { createRoom, memberOn, ok, say, withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { RoomCreator } from "../../domain/rooms/create_room.ts";
import { MAX_PENDING_INVITES } from "../../domain/rooms/invite_quota.ts";
import type { EventStore } from "../../domain/ports/event_store.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;

async function sync(server: NetworkServer, user: RegisteredUser, since?: string) {
  const query = since === undefined ? "" : `?since=${enc(since)}&timeout=0`;
  return await ok(server, user, "GET", `/_matrix/client/v3/sync${query}`);
}

/** The content of `userId`'s member event in `roomId` as stored on `server`, if any. */
async function storedMember(server: NetworkServer, roomId: string, userId: string) {
  const id = await server.deps.eventStore.currentStateEventId(roomId, "m.room.member", userId);
  return id === null ? undefined : (await server.deps.eventStore.getEvent(id))!.pdu;
}

/** A RoomCreator over `server`'s own room services whose log the test reads. */
function creatorWithLog(server: NetworkServer, store?: EventStore) {
  const logged: unknown[][] = [];
  const creator = new RoomCreator(
    { ...server.deps.rooms.deps, ...(store ? { store } : {}) },
    { log: (...args) => logged.push(args) },
  );
  return { creator, logged };
}

Deno.test("createRoom: a DM with a user on another server: invited over federation, is_direct, accepted, both chat", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const before = await sync(b, bob);

    // As Element creates a DM.
    const roomId = await createRoom(a, alice, {
      invite: [bob.userId],
      is_direct: true,
      preset: "trusted_private_chat",
      name: "Just us",
    });
    // Stored on A with B's countersignature, is_direct in the content, after the initial state.
    const invite = await storedMember(a, roomId, bob.userId);
    assert.equal(invite?.content.membership, "invite");
    assert.equal(invite?.content.is_direct, true);
    assert.ok(invite!.signatures[A] && invite!.signatures[B]);
    const timeline = await a.deps.eventStore.timeline(roomId, { dir: "f", limit: 100 });
    const last = timeline.events[timeline.events.length - 1].pdu;
    assert.equal(last.type, "m.room.member");
    assert.equal(last.state_key, bob.userId);
    assert.ok(net.log.some((r) => r.path.startsWith("/_matrix/federation/v2/invite/")));

    // Bob sees the invite in /sync, marked direct, with the room's name in the stripped state.
    const next = await sync(b, bob, before.next_batch);
    const invited = next.rooms.invite[roomId];
    assert.ok(invited, JSON.stringify(next.rooms));
    const events = invited.invite_state.events as JsonObject[];
    const own = events.find((e) => e.type === "m.room.member" && e.state_key === bob.userId);
    assert.equal((own?.content as JsonObject).is_direct, true);
    assert.equal(own?.sender, alice.userId);
    const name = events.find((e) => e.type === "m.room.name");
    assert.equal((name?.content as JsonObject).name, "Just us");

    // Bob accepts; the two talk both ways.
    await ok(b, bob, "POST", `/_matrix/client/v3/join/${enc(roomId)}`, {});
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "join");
    const hello = await say(a, alice, roomId, "hello Bob");
    await a.deps.federationSender.runOnce();
    const seenByBob = await ok(
      b,
      bob,
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(hello)}`,
    );
    assert.equal(seenByBob.content.body, "hello Bob");
    const reply = await say(b, bob, roomId, "hi Alice");
    await b.deps.federationSender.runOnce();
    const seenByAlice = await ok(
      a,
      alice,
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(reply)}`,
    );
    assert.equal(seenByAlice.content.body, "hi Alice");
  });
});

Deno.test("createRoom: the invitee's server unreachable or refusing: the room stands whole, the invite is logged and written nowhere", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");

    // Over HTTP: the client gets the room's ID; the room has everything asked for but the invite.
    net.setReachable(B, false);
    const roomId = await createRoom(a, alice, {
      invite: [bob.userId],
      is_direct: true,
      preset: "trusted_private_chat",
      name: "Lonely",
      room_alias_name: "lonely",
      visibility: "public",
    });
    assert.equal(await memberOn(a, alice, roomId, alice.userId), "join");
    assert.equal(await storedMember(a, roomId, bob.userId), undefined);
    const name = await ok(
      a,
      alice,
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.name`,
    );
    assert.equal(name.name, "Lonely");
    assert.equal((await a.deps.roomDirectory.resolveAlias(`#lonely:${A}`))?.roomId, roomId);
    assert.ok((await a.deps.roomDirectory.publishedRooms()).includes(roomId));
    net.setReachable(B, true);
    // B holds nothing of it, and Bob's sync shows no invite.
    assert.equal(await b.deps.remoteMemberships.get(bob.userId, roomId), null);
    assert.equal((await sync(b, bob)).rooms?.invite?.[roomId], undefined);

    // The failure is logged, naming the room and the invitee (B down, then B refusing).
    const { creator, logged } = creatorWithLog(a);
    net.setReachable(B, false);
    const down = await creator.create({ creator: alice.userId, invite: [bob.userId] });
    net.setReachable(B, true);
    net.intercept((r) =>
      r.path.includes("/invite/")
        ? { status: 403, body: { errcode: "M_FORBIDDEN", error: "too many invites" } }
        : "deliver"
    );
    const refused = await creator.create({ creator: alice.userId, invite: [bob.userId] });
    net.intercept(undefined);
    assert.equal(logged.length, 2);
    for (const [entry, room, status] of [[logged[0], down, 502], [logged[1], refused, 403]]) {
      const details = (entry as unknown[])[1] as {
        roomId: string;
        invitee: string;
        reason: string;
      };
      assert.equal(details.roomId, room);
      assert.equal(details.invitee, bob.userId);
      assert.match(details.reason, new RegExp(` ${status}: `));
      assert.equal(await memberOn(a, alice, room as string, alice.userId), "join");
      assert.equal(await storedMember(a, room as string, bob.userId), undefined);
    }

    // The creator invites again later, the same way, and it works.
    await ok(a, alice, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      user_id: bob.userId,
    });
    assert.ok((await sync(b, bob)).rooms.invite[roomId]);
  });
});

Deno.test("createRoom: local and remote invitees together: local ones with the initial events, remote ones after, failures cost only their own invites", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const carol = await a.register("carol");
    const bob = await b.register("bob");
    const bert = await b.register("bert");
    // Two users of a server that does not exist, and B refusing Bert's invite alone.
    const dan = "@dan:nowhere.test";
    const erin = "@erin:nowhere.test";
    net.intercept((r) =>
      r.path.includes("/invite/") &&
        ((r.body as JsonObject).event as JsonObject).state_key === bert.userId
        ? { status: 403, body: { errcode: "M_FORBIDDEN", error: "not Bert" } }
        : "deliver"
    );
    const { creator, logged } = creatorWithLog(a);
    const roomId = await creator.create({
      creator: alice.userId,
      invite: [bob.userId, carol.userId, dan, bert.userId, erin],
      isDirect: false,
      preset: "private_chat",
      topic: "some of us",
    });
    net.intercept(undefined);
    assert.equal((await storedMember(a, roomId, carol.userId))?.content.membership, "invite");
    const bobs = await storedMember(a, roomId, bob.userId);
    assert.equal(bobs?.content.membership, "invite");
    assert.equal(bobs?.content.is_direct, undefined);
    assert.ok(bobs!.signatures[B]);
    for (const user of [bert.userId, dan, erin]) {
      assert.equal(await storedMember(a, roomId, user), undefined);
    }
    // Each failure logged; B's refusal of Bert did not stop Bob's invite, and the dead
    // server was asked once, for Dan, not again for Erin.
    const reasons = new Map(
      logged.map((entry) => {
        const details = entry[1] as { invitee: string; reason: string };
        return [details.invitee, details.reason];
      }),
    );
    assert.deepEqual([...reasons.keys()].sort(), [bert.userId, dan, erin].sort());
    assert.match(reasons.get(bert.userId)!, /^M_FORBIDDEN 403: /);
    assert.match(reasons.get(dan)!, /^M_UNKNOWN 502: /);
    assert.match(reasons.get(erin)!, /^not tried: M_UNKNOWN 502: /);
    assert.equal(net.log.filter((r) => r.destination === "nowhere.test").length, 1);

    // Order: Carol's invite with the initial events, after the topic as the spec orders them;
    // Bob's after all of those, the room's last event.
    const timeline = await a.deps.eventStore.timeline(roomId, { dir: "f", limit: 100 });
    const order = timeline.events.map((e) => `${e.pdu.type}|${e.pdu.state_key ?? ""}`);
    assert.ok(order.indexOf("m.room.topic|") < order.indexOf(`m.room.member|${carol.userId}`));
    assert.equal(order[order.length - 1], `m.room.member|${bob.userId}`);
    assert.equal(order.length, order.indexOf(`m.room.member|${carol.userId}`) + 2);

    // Both invitees see their invite; Bert does not.
    assert.ok((await sync(a, carol)).rooms.invite[roomId]);
    assert.ok((await sync(b, bob)).rooms.invite[roomId]);
    assert.equal((await sync(b, bert)).rooms?.invite?.[roomId], undefined);
  });
});

Deno.test("createRoom: a remote invitee failing the checks up front refuses the room, nothing written or sent", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const rooms = async () => (await a.deps.eventStore.roomsOfUser(alice.userId)).length;

    // An invalid remote user ID: 400 before anything is written.
    const bad = await a.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { invite: [bob.userId, "@bad id:b.test"], room_alias_name: "never" },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errcode, "M_INVALID_PARAM");
    assert.equal(await rooms(), 0);
    assert.equal(await a.deps.roomDirectory.resolveAlias(`#never:${A}`), null);

    // Bob at this server's cap on pending invites: 403 up front, B never asked.
    const real = a.deps.eventStore;
    const full = Array.from({ length: MAX_PENDING_INVITES }, (_, i) => ({
      userId: bob.userId,
      roomId: `!full${i}:${A}`,
      membership: "invite",
      eventId: `$full${i}`,
    }));
    const store = new Proxy(real, {
      get(target, property) {
        if (property === "roomsOfUser") {
          return (userId: string, memberships?: string[]) =>
            userId === bob.userId && memberships?.includes("invite")
              ? Promise.resolve(full)
              : target.roomsOfUser(userId, memberships as never);
        }
        const value = Reflect.get(target, property);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { creator, logged } = creatorWithLog(a, store as EventStore);
    const sent = net.log.length;
    await assert.rejects(
      creator.create({ creator: alice.userId, invite: [bob.userId], roomAliasName: "capped" }),
      (error: { errcode?: string; status?: number }) =>
        error.errcode === "M_FORBIDDEN" && error.status === 403,
    );
    assert.equal(await rooms(), 0);
    assert.equal(await a.deps.roomDirectory.resolveAlias(`#capped:${A}`), null);
    assert.equal(net.log.length, sent);
    assert.deepEqual(logged, []);
  });
});
