/**
 * Membership handshakes between two in-process servers: invites both ways (A's user invites
 * B's, B's user sees it in /sync, rejects it, A sees the leave), make_join/send_join v1 and v2
 * answers against the spec, restricted joins co-signed, knocks, and bad input answered with
 * Matrix errors that write nothing.
 */
import assert from "node:assert/strict";
import { type Network, type NetworkServer } from "./in_process_network.ts";
import { createRoom, heldInvite, memberOn, withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import {
  checkMembershipTemplate,
  type HandshakeMembership,
  signFromTemplate,
} from "../../domain/federation/membership_template.ts";
import { referencedIds } from "../../domain/protocol/events.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";
import type { FederationResponse } from "../../domain/ports/federation_transport.ts";

const A = "a.test";
const B = "b.test";

async function sync(server: NetworkServer, user: RegisteredUser, since?: string) {
  const query = since === undefined ? "" : `?since=${encodeURIComponent(since)}&timeout=0`;
  const res = await server.request("GET", `/_matrix/client/v3/sync${query}`, {
    token: user.accessToken,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** A request from `origin` to `destination` over the network (signed with X-Matrix). */
function fed(
  net: Network,
  origin: string,
  request: { method: "GET" | "PUT"; destination: string; path: string; body?: JsonValue },
): Promise<FederationResponse> {
  return net.transportFor(origin).request(request);
}

const enc = encodeURIComponent;

/** make_<membership> then the signed event from the template, as `origin` for `userId`. */
async function makeAndSign(
  net: Network,
  origin: string,
  roomId: string,
  userId: string,
  membership: HandshakeMembership,
  ver = "&ver=1&ver=2&ver=3&ver=4&ver=5&ver=6&ver=7&ver=8&ver=9&ver=10&ver=11&ver=12",
) {
  const made = await fed(net, origin, {
    method: "GET",
    destination: A,
    path: `/_matrix/federation/v1/make_${membership}/${enc(roomId)}/${enc(userId)}?x=1${ver}`,
  });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const { version, template } = checkMembershipTemplate(A, made.body, {
    roomId,
    userId,
    membership,
  });
  const built = await signFromTemplate({
    version,
    template,
    serverName: origin,
    signingKey: net.servers[origin].deps.keyring.current,
    originServerTs: Date.now(),
  });
  return { template, built, version };
}

Deno.test("membership: A invites B's user, who sees it in sync and rejects it; A sees the leave", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat", name: "Plans" });
    const before = await sync(b, bob);

    const invited = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(invited.status, 200, JSON.stringify(invited.body));
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "invite");
    // A stored the invite with B's signature beside its own.
    const stateId = await a.deps.eventStore.currentStateEventId(
      roomId,
      "m.room.member",
      bob.userId,
    );
    const stored = await a.deps.eventStore.getEvent(stateId!);
    assert.ok(stored!.pdu.signatures[A] && stored!.pdu.signatures[B]);
    // The invite went out as v2 (room version 12).
    assert.ok(net.log.some((r) => r.path.startsWith("/_matrix/federation/v2/invite/")));

    // B's user sees it with the room's stripped state; it is not a joined room.
    const next = await sync(b, bob, before.next_batch);
    const invite = next.rooms.invite[roomId];
    assert.ok(invite, JSON.stringify(next.rooms));
    const types = invite.invite_state.events.map((e: JsonObject) => e.type);
    assert.ok(types.includes("m.room.name") && types.includes("m.room.member"));
    const nameEvent = invite.invite_state.events.find((e: JsonObject) => e.type === "m.room.name");
    assert.equal(nameEvent.content.name, "Plans");
    const joined = await b.request("GET", "/_matrix/client/v3/joined_rooms", {
      token: bob.accessToken,
    });
    assert.deepEqual(joined.body.joined_rooms, []);
    // An initial sync shows it too.
    assert.ok((await sync(b, bob)).rooms.invite[roomId]);

    const left = await b.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(left.status, 200, JSON.stringify(left.body));
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "leave");
    assert.ok(net.log.some((r) => r.path.startsWith("/_matrix/federation/v1/make_leave/")));
    const after = await sync(b, bob, next.next_batch);
    assert.equal(after.rooms.invite[roomId], undefined);
    const leave = after.rooms.leave[roomId];
    assert.equal(leave.timeline.events[0].content.membership, "leave");
    assert.equal(leave.timeline.events[0].sender, bob.userId);
    assert.equal((await sync(b, bob)).rooms.invite[roomId], undefined);
    // The rejected room can be forgotten, as any room left.
    const forgot = await b.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/forget`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(forgot.status, 200, JSON.stringify(forgot.body));
  });
});

Deno.test("membership: a rejection when the inviting server is down is made locally", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat", room_version: "2" });
    const invited = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(invited.status, 200, JSON.stringify(invited.body));
    // A v2 room invites over v1.
    assert.ok(net.log.some((r) => r.path.startsWith("/_matrix/federation/v1/invite/")));
    const first = await sync(b, bob);
    assert.ok(first.rooms.invite[roomId]);
    net.setReachable(A, false);
    const left = await b.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {
      token: bob.accessToken,
      body: { reason: "no" },
    });
    assert.equal(left.status, 200, JSON.stringify(left.body));
    const after = await sync(b, bob, first.next_batch);
    const event = after.rooms.leave[roomId].timeline.events[0];
    assert.equal(event.content.membership, "leave");
    assert.equal(event.content.reason, "no");
    // A never heard of it: bob is still invited there.
    net.setReachable(A, true);
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "invite");
  });
});

Deno.test("membership: an invite the invitee's server refuses or signs badly writes nothing", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat" });
    const head = await a.deps.eventStore.roomHead(roomId);
    net.intercept((r) =>
      r.path.includes("/invite/")
        ? { status: 403, body: { errcode: "M_FORBIDDEN", error: "not today" } }
        : "deliver"
    );
    const refused = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.errcode, "M_FORBIDDEN");
    // B answers with the event unsigned by B: refused too.
    net.intercept((r) => {
      if (!r.path.includes("/invite/")) return "deliver";
      return { status: 200, body: { event: (r.body as JsonObject).event } };
    });
    const unsigned = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(unsigned.status, 502);
    net.intercept(undefined);
    assert.equal(await memberOn(a, alice, roomId, bob.userId), undefined);
    assert.equal((await a.deps.eventStore.roomHead(roomId))!.lastPosition, head!.lastPosition);
  });
});

Deno.test("membership: send_join v2 and v1 answer with the full state, its auth chain and the event", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const alice = await a.register("alice");
    for (const [roomVersion, api] of [["10", "v2"], ["1", "v1"], ["12", "v2"]] as const) {
      const roomId = await createRoom(a, alice, {
        preset: "public_chat",
        room_version: roomVersion,
      });
      const userId = `@bob${roomVersion}:${B}`;
      const { built } = await makeAndSign(net, B, roomId, userId, "join");
      const sent = await fed(net, B, {
        method: "PUT",
        destination: A,
        path: `/_matrix/federation/${api}/send_join/${enc(roomId)}/${enc(built.eventId)}`,
        body: built.pdu as unknown as JsonObject,
      });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      let answer: JsonObject;
      if (api === "v1") {
        assert.ok(Array.isArray(sent.body) && sent.body[0] === 200);
        answer = (sent.body as JsonValue[])[1] as JsonObject;
      } else {
        answer = sent.body as JsonObject;
        assert.equal(answer.members_omitted, false);
      }
      assert.equal(answer.origin, A);
      const state = answer.state as JsonObject[];
      const chain = answer.auth_chain as JsonObject[];
      const types = state.map((e) => `${e.type}|${e.state_key}`);
      for (
        const key of [
          "m.room.create|",
          "m.room.power_levels|",
          "m.room.join_rules|",
          `m.room.member|${alice.userId}`,
        ]
      ) assert.ok(types.includes(key), `${key} in ${types}`);
      // The state is from before the join.
      assert.ok(!types.includes(`m.room.member|${userId}`));
      // The auth chain is closed: every auth event of the state, the join and the chain.
      const version = roomVersion;
      const ids = new Set<string>();
      const idOf = async (e: JsonObject) => {
        const { computeEventId } = await import("../../domain/protocol/event_ids.ts");
        const { roomVersion: rv } = await import("../../domain/protocol/room_versions.ts");
        return computeEventId(e as never, rv(version)!);
      };
      for (const e of [...state, ...chain]) ids.add(await idOf(e));
      for (const e of [...state, ...chain, answer.event as JsonObject]) {
        for (const id of referencedIds(e.auth_events as string[])) {
          assert.ok(ids.has(id), `auth event ${id} missing from the answer`);
        }
      }
      const event = answer.event as JsonObject;
      assert.ok((event.signatures as JsonObject)[B]);
      assert.equal(await memberOn(a, alice, roomId, userId), "join");
    }
  });
});

Deno.test("membership: a restricted join names a local authoriser and is co-signed", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const alice = await a.register("alice");
    const bobId = `@bob:${B}`;
    const lobby = await createRoom(a, alice, { preset: "public_chat", room_version: "10" });
    const joinedLobby = await makeAndSign(net, B, lobby, bobId, "join");
    const sent = await fed(net, B, {
      method: "PUT",
      destination: A,
      path: `/_matrix/federation/v2/send_join/${enc(lobby)}/${enc(joinedLobby.built.eventId)}`,
      body: joinedLobby.built.pdu as unknown as JsonObject,
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const inner = await createRoom(a, alice, {
      preset: "private_chat",
      room_version: "10",
      initial_state: [{
        type: "m.room.join_rules",
        state_key: "",
        content: {
          join_rule: "restricted",
          allow: [{ type: "m.room_membership", room_id: lobby }],
        },
      }],
    });
    const { template, built } = await makeAndSign(net, B, inner, bobId, "join");
    assert.equal((template.content as JsonObject).join_authorised_via_users_server, alice.userId);
    const joined = await fed(net, B, {
      method: "PUT",
      destination: A,
      path: `/_matrix/federation/v2/send_join/${enc(inner)}/${enc(built.eventId)}`,
      body: built.pdu as unknown as JsonObject,
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    const signatures = ((joined.body as JsonObject).event as JsonObject).signatures as JsonObject;
    assert.ok(signatures[A] && signatures[B], "signed by both servers");
    assert.equal(await memberOn(a, alice, inner, bobId), "join");
    // Someone in no allowed room is refused at make_join.
    const carol = await fed(net, B, {
      method: "GET",
      destination: A,
      path: `/_matrix/federation/v1/make_join/${enc(inner)}/${enc(`@carol:${B}`)}?ver=10`,
    });
    assert.equal(carol.status, 403);
  });
});

Deno.test("membership: B's user knocks on A's room, sees the knock in sync, then withdraws it", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, {
      preset: "private_chat",
      room_version: "10",
      name: "Knockers",
      initial_state: [{
        type: "m.room.join_rules",
        state_key: "",
        content: { join_rule: "knock" },
      }],
    });
    const first = await sync(b, bob);
    const badVia = await b.request(
      "POST",
      `/_matrix/client/v3/knock/${enc(roomId)}?via=${enc("not a server")}`,
      { token: bob.accessToken, body: {} },
    );
    assert.equal(badVia.status, 400);
    assert.equal(await memberOn(a, alice, roomId, bob.userId), undefined);
    const knocked = await b.request(
      "POST",
      `/_matrix/client/v3/knock/${enc(roomId)}?via=${A}`,
      { token: bob.accessToken, body: { reason: "let me in" } },
    );
    assert.equal(knocked.status, 200, JSON.stringify(knocked.body));
    assert.equal(knocked.body.room_id, roomId);
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "knock");
    const next = await sync(b, bob, first.next_batch);
    const knock = next.rooms.knock[roomId];
    assert.ok(knock, JSON.stringify(next.rooms));
    const name = knock.knock_state.events.find((e: JsonObject) => e.type === "m.room.name");
    assert.equal(name.content.name, "Knockers");
    const left = await b.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(left.status, 200, JSON.stringify(left.body));
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "leave");
  });
});

Deno.test("membership: bad handshakes get Matrix errors and write nothing", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const alice = await a.register("alice");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "6" });
    const head = await a.deps.eventStore.roomHead(roomId);
    const get = (path: string) => fed(net, B, { method: "GET", destination: A, path });
    const bob = `@bob:${B}`;

    // Versions the caller does not speak (none given means only "1").
    const old = await get(`/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(bob)}`);
    assert.equal(old.status, 400);
    assert.equal((old.body as JsonObject).errcode, "M_INCOMPATIBLE_ROOM_VERSION");
    assert.equal((old.body as JsonObject).room_version, "6");
    // A user of another server; an unknown room; a room v6 cannot be knocked on.
    const other = await get(
      `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(alice.userId)}?ver=6`,
    );
    assert.equal(other.status, 403);
    const unknown = await get(
      `/_matrix/federation/v1/make_join/${enc("!nope:a.test")}/${enc(bob)}?ver=6`,
    );
    assert.equal(unknown.status, 404);
    const knock = await get(`/_matrix/federation/v1/make_knock/${enc(roomId)}/${enc(bob)}?ver=6`);
    assert.equal(knock.status, 400);
    // make_leave for a local user is refused; for a stranger the auth rules refuse it.
    const kick = await get(`/_matrix/federation/v1/make_leave/${enc(roomId)}/${enc(alice.userId)}`);
    assert.equal(kick.status, 403);
    const bad = await get(
      `/_matrix/federation/v1/make_join/${enc("not a room")}/${enc(bob)}?ver=6`,
    );
    assert.equal(bad.status, 400);

    const { built } = await makeAndSign(net, B, roomId, bob, "join", "&ver=6");
    const put = (path: string, body: JsonValue) =>
      fed(net, B, { method: "PUT", destination: A, path, body });
    const joinPath = (id: string) => `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`;
    const pdu = built.pdu as unknown as JsonObject;
    // The wrong event ID; no signatures; a float (v6 rejects non-canonical JSON).
    const wrongId = await put(joinPath("$abc"), pdu);
    assert.equal(wrongId.status, 400);
    const unsignedJoin = await put(joinPath(built.eventId), { ...pdu, signatures: {} });
    assert.equal(unsignedJoin.status, 403);
    assert.equal((unsignedJoin.body as JsonObject).errcode, "M_FORBIDDEN");
    // A float (v6 rejects non-canonical JSON) added after signing, at the handshake itself;
    // membership_rejections_test.ts sends ones signed with it over the network, as SyTest does.
    await assert.rejects(
      a.deps.membershipHandshakes.sendMembership(B, roomId, built.eventId, {
        ...pdu,
        content: { ...(pdu.content as JsonObject), bad: 1.5 },
      }, "join"),
      (e) => (e as { errcode?: string }).errcode === "M_BAD_JSON",
    );
    // A join sent as a leave; from a server that is not the user's.
    const asLeave = await put(
      `/_matrix/federation/v2/send_leave/${enc(roomId)}/${enc(built.eventId)}`,
      pdu,
    );
    assert.equal(asLeave.status, 400);
    const fromA = await fed(net, A, {
      method: "PUT",
      destination: A,
      path: joinPath(built.eventId),
      body: pdu,
    });
    assert.equal(fromA.status, 403);
    // An unsigned request is refused before anything.
    const anonymous = await a.request(
      "GET",
      `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(bob)}`,
    );
    assert.equal(anonymous.status, 401);
    assert.equal(await memberOn(a, alice, roomId, bob), undefined);
    assert.equal((await a.deps.eventStore.roomHead(roomId))!.lastPosition, head!.lastPosition);
    // The good join is accepted after all that.
    const ok = await put(joinPath(built.eventId), pdu);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });
});

Deno.test("membership: inbound invites are checked before they are signed and shown", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "private_chat", room_version: "9" });
    // A builds an invite for bob without sending it, and plays it by hand.
    const captured = await heldInvite(net, a, alice, roomId, bob.userId);
    const event = captured.event as JsonObject;
    const { computeEventId } = await import("../../domain/protocol/event_ids.ts");
    const { roomVersion } = await import("../../domain/protocol/room_versions.ts");
    const eventId = computeEventId(event as never, roomVersion("9")!);
    const path = `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(eventId)}`;
    const put = (origin: string, body: JsonValue) =>
      fed(net, origin, { method: "PUT", destination: B, path, body });
    const unsupported = await put(A, { ...captured, room_version: "99" });
    assert.equal(unsupported.status, 400);
    assert.equal((unsupported.body as JsonObject).errcode, "M_INCOMPATIBLE_ROOM_VERSION");
    const unsigned = await put(A, { ...captured, event: { ...event, signatures: {} } });
    assert.equal(unsigned.status, 403);
    await assert.rejects(
      b.deps.membershipHandshakes.receiveInvite(A, roomId, eventId, {
        event: { ...event, content: { ...(event.content as JsonObject), x: 0.5 } },
        roomVersion: "9",
      }),
      (e) => (e as { errcode?: string }).errcode === "M_BAD_JSON",
    );
    // The right sender but the request came from B itself about A's user: refused.
    const fromB = await fed(net, B, { method: "PUT", destination: B, path, body: captured });
    assert.equal(fromB.status, 403);
    // An invite for a user B does not have is signed, as Synapse does, but writes nothing.
    const { addContentHash } = await import("../../domain/protocol/hashing.ts");
    const { signEvent } = await import("../../domain/protocol/event_signing.ts");
    const unsignedGhost: JsonObject = { ...event, state_key: `@ghost:${B}` };
    delete unsignedGhost.signatures;
    const ghostEvent = await signEvent(
      { ...addContentHash(unsignedGhost, roomVersion("9")!), signatures: {} } as never,
      roomVersion("9")!,
      A,
      a.deps.keyring.current,
    ) as JsonObject;
    const ghostId = computeEventId(ghostEvent as never, roomVersion("9")!);
    const ghost = await b.deps.membershipHandshakes.receiveInvite(A, roomId, ghostId, {
      event: ghostEvent,
      roomVersion: "9",
    });
    assert.ok(ghost.signatures[B]);
    assert.deepEqual(await b.deps.remoteMemberships.ofUser(`@ghost:${B}`), []);
    assert.equal((await b.deps.eventStore.findEvents([ghostId])).size, 0);
    assert.equal((await sync(b, bob)).rooms.invite[roomId], undefined);
    // The real thing is signed by B and shown.
    const good = await put(A, captured);
    assert.equal(good.status, 200, JSON.stringify(good.body));
    const signed = (good.body as JsonObject).event as JsonObject;
    assert.ok((signed.signatures as JsonObject)[B]);
    assert.ok((await sync(b, bob)).rooms.invite[roomId]);
  });
});

Deno.test("membership: B's user accepts a remote invite by joining; the invite leaves sync", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, {
      preset: "private_chat",
      name: "Yes",
      room_version: "10",
    });
    const invited = await a.request("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assert.equal(invited.status, 200, JSON.stringify(invited.body));
    const first = await sync(b, bob);
    assert.ok(first.rooms.invite[roomId]);
    // No via: the invite names the servers to join through.
    const joined = await b.request("POST", `/_matrix/client/v3/join/${enc(roomId)}`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    assert.equal(await memberOn(a, alice, roomId, bob.userId), "join");
    const next = await sync(b, bob, first.next_batch);
    assert.ok(next.rooms.join[roomId], JSON.stringify(next.rooms));
    assert.equal(next.rooms.invite[roomId], undefined);
    const rooms = await b.request("GET", "/_matrix/client/v3/joined_rooms", {
      token: bob.accessToken,
    });
    assert.deepEqual(rooms.body.joined_rooms, [roomId]);
  });
});

Deno.test("membership: an invite for a user already joined to a room we hold is refused", async () => {
  await withNetwork(async (net) => {
    const a = net.servers[A];
    const b = net.servers[B];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = await createRoom(a, alice, { preset: "public_chat", room_version: "10" });
    const captured = await heldInvite(net, a, alice, roomId, bob.userId);
    const joined = await b.request("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${A}`, {
      token: bob.accessToken,
      body: {},
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    const { computeEventId } = await import("../../domain/protocol/event_ids.ts");
    const { roomVersion } = await import("../../domain/protocol/room_versions.ts");
    const eventId = computeEventId(captured.event as never, roomVersion("10")!);
    const replayed = await fed(net, A, {
      method: "PUT",
      destination: B,
      path: `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(eventId)}`,
      body: captured,
    });
    assert.equal(replayed.status, 403);
    const state = await sync(b, bob);
    assert.ok(state.rooms.join[roomId]);
    assert.equal(state.rooms.invite[roomId], undefined);
  });
});
