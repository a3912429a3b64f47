/** Rooms over HTTP: /createRoom (presets, state order, aliases, versions), upgrades, member reads. */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

async function setup() {
  const server = await startTestServer();
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  return { server, alice, bob };
}

type Server = Awaited<ReturnType<typeof setup>>["server"];

/** The room's events in log order, read from the store. */
async function roomEvents(server: Server, roomId: string) {
  const page = await server.deps.eventStore.timeline(roomId, { dir: "f", limit: 100 });
  return page.events.map((e) => e.pdu);
}

// deno-lint-ignore no-explicit-any
async function stateContent(server: Server, roomId: string, type: string, key = ""): Promise<any> {
  const id = await server.deps.eventStore.currentStateEventId(roomId, type, key);
  return id ? (await server.deps.eventStore.getEvent(id))!.pdu.content : undefined;
}

Deno.test("createRoom: public_chat with alias, name, topic, invite, in the spec's order", async () => {
  const { server, alice, bob } = await setup();
  try {
    const res = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: {
        preset: "public_chat",
        visibility: "public",
        room_alias_name: "pub",
        name: "The Pub",
        topic: "Happy hour",
        invite: [bob.userId],
        is_direct: true,
        initial_state: [{
          type: "m.room.encryption",
          content: { algorithm: "m.megolm.v1.aes-sha2" },
        }],
      },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const roomId: string = res.body.room_id;
    assert(roomId.startsWith("!"));
    const types = (await roomEvents(server, roomId)).map((e) =>
      `${e.type}${e.state_key ? `/${e.state_key}` : ""}`
    );
    assertEquals(types, [
      "m.room.create",
      `m.room.member/${alice.userId}`,
      "m.room.power_levels",
      "m.room.canonical_alias",
      "m.room.join_rules",
      "m.room.history_visibility",
      "m.room.guest_access",
      "m.room.encryption",
      "m.room.name",
      "m.room.topic",
      `m.room.member/${bob.userId}`,
    ]);
    assertEquals((await stateContent(server, roomId, "m.room.join_rules"))?.join_rule, "public");
    assertEquals(
      (await stateContent(server, roomId, "m.room.guest_access"))?.guest_access,
      "forbidden",
    );
    const invite = await stateContent(server, roomId, "m.room.member", bob.userId);
    assertEquals(invite?.membership, "invite");
    assertEquals(invite?.is_direct, true);
    // v12 default: the creator is not listed in power levels users.
    const pl = await stateContent(server, roomId, "m.room.power_levels");
    assertEquals(pl?.users, {});

    const alias = await server.request(
      "GET",
      `${V3}/directory/room/${encodeURIComponent("#pub:example.org:8448")}`,
    );
    assertEquals(alias.status, 200);
    assertEquals(alias.body.room_id, roomId);
    const listed = await server.request("GET", `${V3}/publicRooms`);
    assertEquals(listed.body.chunk.map((r: { room_id: string }) => r.room_id), [roomId]);
    assertEquals(listed.body.chunk[0].name, "The Pub");
    assertEquals(listed.body.chunk[0].canonical_alias, "#pub:example.org:8448");
  } finally {
    server.close();
  }
});

Deno.test("createRoom: private_chat v10 gives the creator 100, trusted_private_chat invitees too", async () => {
  const { server, alice, bob } = await setup();
  try {
    const priv = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { room_version: "10" },
    });
    assertEquals(priv.status, 200);
    const pl = await stateContent(server, priv.body.room_id, "m.room.power_levels");
    assertEquals(pl?.users, { [alice.userId]: 100 });
    assertEquals(
      (await stateContent(server, priv.body.room_id, "m.room.join_rules"))?.join_rule,
      "invite",
    );
    assertEquals(
      (await stateContent(server, priv.body.room_id, "m.room.guest_access"))?.guest_access,
      "can_join",
    );

    const trusted = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { room_version: "10", preset: "trusted_private_chat", invite: [bob.userId] },
    });
    const tpl = await stateContent(server, trusted.body.room_id, "m.room.power_levels");
    assertEquals(tpl?.users, { [alice.userId]: 100, [bob.userId]: 100 });

    const v12 = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "trusted_private_chat", invite: [bob.userId] },
    });
    const create = await stateContent(server, v12.body.room_id, "m.room.create");
    assertEquals(create?.additional_creators, [bob.userId]);
  } finally {
    server.close();
  }
});

Deno.test("createRoom: bad requests are refused and write nothing", async () => {
  const { server, alice } = await setup();
  try {
    const before = (await server.deps.eventStore.roomsOfUser(alice.userId)).length;
    const cases: [unknown, number, string][] = [
      ["{not json", 400, "M_NOT_JSON"],
      [{ preset: "party" }, 400, "M_BAD_JSON"],
      [{ invite: "bob" }, 400, "M_BAD_JSON"],
      [{ name: 7 }, 400, "M_BAD_JSON"],
      [{ initial_state: [{ type: "m.room.name" }] }, 400, "M_MISSING_PARAM"],
      [{ room_version: "99" }, 400, "M_UNSUPPORTED_ROOM_VERSION"],
      [{ invite: ["not-a-user"] }, 400, "M_INVALID_PARAM"],
      [{ invite: ["@carol:bad server"] }, 400, "M_INVALID_PARAM"],
      [{ room_alias_name: "a:b" }, 400, "M_INVALID_PARAM"],
      [
        {
          room_version: "10",
          power_level_content_override: { users: { [alice.userId]: 10 } },
          name: "x",
        },
        400,
        "M_INVALID_ROOM_STATE",
      ],
      [
        { power_level_content_override: { users: { [alice.userId]: 100 } } },
        400,
        "M_INVALID_ROOM_STATE",
      ],
    ];
    for (const [body, status, errcode] of cases) {
      const res = await server.request("POST", `${V3}/createRoom`, {
        token: alice.accessToken,
        body,
      });
      assertEquals([res.status, res.body.errcode], [status, errcode], JSON.stringify(body));
    }
    const unauth = await server.request("POST", `${V3}/createRoom`, { body: {} });
    assertEquals(unauth.status, 401);
    assertEquals((await server.deps.eventStore.roomsOfUser(alice.userId)).length, before);

    // A taken alias: M_ROOM_IN_USE, and no second room.
    const first = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { room_alias_name: "taken" },
    });
    assertEquals(first.status, 200);
    const again = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { room_alias_name: "taken" },
    });
    assertEquals([again.status, again.body.errcode], [400, "M_ROOM_IN_USE"]);
    assertEquals((await server.deps.eventStore.roomsOfUser(alice.userId)).length, before + 1);
  } finally {
    server.close();
  }
});

Deno.test("createRoom: with federation off a remote invitee is refused (403) and nothing written", async () => {
  const server = await startTestServer({ TESSERA_FEDERATION: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const res = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { invite: [bob.userId, "@carol:elsewhere.org"], room_alias_name: "nope" },
    });
    assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"]);
    assertEquals(await server.deps.eventStore.roomsOfUser(alice.userId), []);
    assertEquals(await server.deps.eventStore.roomsOfUser(bob.userId), []);
    assertEquals(await server.deps.roomDirectory.resolveAlias("#nope:example.org:8448"), null);
  } finally {
    server.close();
  }
});

Deno.test("createRoom over r0 behaves like v3; joined_rooms lists it", async () => {
  const { server, alice } = await setup();
  try {
    const res = await server.request("POST", "/_matrix/client/r0/createRoom", {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(res.status, 200);
    const joined = await server.request("GET", "/_matrix/client/r0/joined_rooms", {
      token: alice.accessToken,
    });
    assertEquals(joined.body, { joined_rooms: [res.body.room_id] });
  } finally {
    server.close();
  }
});

Deno.test("members and joined_members: filters, and only for (former) members", async () => {
  const { server, alice, bob } = await setup();
  try {
    const carol = await registerUser(server, "carol");
    const { body } = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat", invite: [carol.userId] },
    });
    const room = encodeURIComponent(body.room_id);
    assertEquals(
      (await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken })).status,
      200,
    );
    const all = await server.request("GET", `${V3}/rooms/${room}/members`, {
      token: alice.accessToken,
    });
    assertEquals(all.status, 200);
    assertEquals(
      all.body.chunk.map((e: { state_key: string }) => e.state_key).sort(),
      [alice.userId, bob.userId, carol.userId].sort(),
    );
    assert(all.body.chunk.every((e: { room_id: string }) => e.room_id === body.room_id));
    const invited = await server.request("GET", `${V3}/rooms/${room}/members?membership=invite`, {
      token: alice.accessToken,
    });
    assertEquals(invited.body.chunk.map((e: { state_key: string }) => e.state_key), [carol.userId]);
    const notJoined = await server.request(
      "GET",
      `${V3}/rooms/${room}/members?not_membership=join&unknown=1`,
      { token: alice.accessToken },
    );
    assertEquals(notJoined.body.chunk.length, 1);
    // `at` a timeline token from before Bob joined: Bob is not there yet.
    const before = await server.deps.eventStore.timeline(body.room_id, { dir: "b", limit: 1 });
    const atBefore = await server.request(
      "GET",
      `${V3}/rooms/${room}/members?at=${before.end}`,
      { token: alice.accessToken },
    );
    assertEquals(atBefore.status, 200);
    assert(!atBefore.body.chunk.some((e: { state_key: string }) => e.state_key === bob.userId));
    // A sync token (as matrix-js-sdk sends) means now.
    const atSync = await server.request("GET", `${V3}/rooms/${room}/members?at=s123`, {
      token: alice.accessToken,
    });
    assertEquals(atSync.body.chunk.length, 3);
    const bad = await server.request("GET", `${V3}/rooms/${room}/members?membership=maybe`, {
      token: alice.accessToken,
    });
    assertEquals([bad.status, bad.body.errcode], [400, "M_INVALID_PARAM"]);

    const joined = await server.request("GET", `${V3}/rooms/${room}/joined_members`, {
      token: bob.accessToken,
    });
    assertEquals(Object.keys(joined.body.joined).sort(), [alice.userId, bob.userId].sort());
    const dave = await registerUser(server, "dave");
    const outsider = await server.request("GET", `${V3}/rooms/${room}/joined_members`, {
      token: dave.accessToken,
    });
    assertEquals([outsider.status, outsider.body.errcode], [403, "M_FORBIDDEN"]);
    const outsiderMembers = await server.request("GET", `${V3}/rooms/${room}/members`, {
      token: dave.accessToken,
    });
    assertEquals(outsiderMembers.status, 403);
    const unknown = await server.request("GET", `${V3}/rooms/!nope:example.org:8448/members`, {
      token: alice.accessToken,
    });
    assertEquals([unknown.status, unknown.body.errcode], [404, "M_NOT_FOUND"]);
    const invalid = await server.request("GET", `${V3}/rooms/nope/members`, {
      token: alice.accessToken,
    });
    assertEquals([invalid.status, invalid.body.errcode], [400, "M_INVALID_PARAM"]);
  } finally {
    server.close();
  }
});

Deno.test("upgrade: new room with predecessor, tombstone, restricted old room, moved alias", async () => {
  const { server, alice, bob } = await setup();
  try {
    const { body } = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: {
        preset: "public_chat",
        visibility: "public",
        room_version: "10",
        room_alias_name: "up",
        name: "Before",
      },
    });
    const old = body.room_id;
    const res = await server.request("POST", `${V3}/rooms/${encodeURIComponent(old)}/upgrade`, {
      token: alice.accessToken,
      body: { new_version: "12" },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const next = res.body.replacement_room;
    assertEquals((await stateContent(server, next, "m.room.create"))?.predecessor?.room_id, old);
    assertEquals((await stateContent(server, next, "m.room.name"))?.name, "Before");
    assertEquals((await stateContent(server, next, "m.room.join_rules"))?.join_rule, "public");
    // v12: the upgrader is the creator and leaves power levels users.
    assertEquals((await stateContent(server, next, "m.room.power_levels"))?.users, {});
    assertEquals(
      (await stateContent(server, old, "m.room.tombstone"))?.replacement_room,
      next,
    );
    assertEquals((await stateContent(server, old, "m.room.power_levels"))?.events_default, 50);
    const alias = await server.request("GET", `${V3}/directory/room/%23up:example.org:8448`);
    assertEquals(alias.body.room_id, next);
    const listed = await server.request("GET", `${V3}/publicRooms`);
    assertEquals(listed.body.chunk.map((r: { room_id: string }) => r.room_id), [next]);

    const denied = await server.request("POST", `${V3}/rooms/${encodeURIComponent(next)}/upgrade`, {
      token: bob.accessToken,
      body: { new_version: "12" },
    });
    assertEquals([denied.status, denied.body.errcode], [403, "M_FORBIDDEN"]);
    const badVersion = await server.request(
      "POST",
      `${V3}/rooms/${encodeURIComponent(next)}/upgrade`,
      { token: alice.accessToken, body: { new_version: "77" } },
    );
    assertEquals(badVersion.body.errcode, "M_UNSUPPORTED_ROOM_VERSION");
    const missing = await server.request(
      "POST",
      `${V3}/rooms/${encodeURIComponent(next)}/upgrade`,
      {
        token: alice.accessToken,
        body: {},
      },
    );
    assertEquals([missing.status, missing.body.errcode], [400, "M_MISSING_PARAM"]);
  } finally {
    server.close();
  }
});

Deno.test("upgrade to a version whose room IDs the server picks: predecessor is the tombstone", async () => {
  const { server, alice } = await setup();
  try {
    const { body } = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat", visibility: "public", room_alias_name: "up10" },
    });
    const old = body.room_id;
    const res = await server.request("POST", `${V3}/rooms/${encodeURIComponent(old)}/upgrade`, {
      token: alice.accessToken,
      body: { new_version: "10" },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const next = res.body.replacement_room;
    const tombstoneId = await server.deps.eventStore.currentStateEventId(
      old,
      "m.room.tombstone",
      "",
    );
    const create = await stateContent(server, next, "m.room.create");
    assertEquals(create?.predecessor, { room_id: old, event_id: tombstoneId });
    assertEquals(create?.room_version, "10");
    assertEquals(create?.creator, alice.userId, "v10 keeps creator");
    assertEquals((await stateContent(server, old, "m.room.tombstone"))?.replacement_room, next);
    const alias = await server.request("GET", `${V3}/directory/room/%23up10:example.org:8448`);
    assertEquals(alias.body.room_id, next);
    const listed = await server.request("GET", `${V3}/publicRooms`);
    assertEquals(listed.body.chunk.map((r: { room_id: string }) => r.room_id), [next]);
  } finally {
    server.close();
  }
});

Deno.test("upgrade: members' m.direct and tags follow the room to its replacement", async () => {
  const { server, alice, bob } = await setup();
  try {
    const { body } = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "trusted_private_chat", invite: [bob.userId], is_direct: true },
    });
    const old: string = body.room_id;
    await server.request("POST", `${V3}/join/${encodeURIComponent(old)}`, {
      token: bob.accessToken,
      body: {},
    });
    const put = (user: { userId: string; accessToken: string }, path: string, content: unknown) =>
      server.request("PUT", `${V3}/user/${encodeURIComponent(user.userId)}${path}`, {
        token: user.accessToken,
        body: content,
      });
    await put(alice, "/account_data/m.direct", { [bob.userId]: ["!other:x", old] });
    await put(bob, `/rooms/${encodeURIComponent(old)}/tags/u.work`, { order: 0.5 });
    const res = await server.request("POST", `${V3}/rooms/${encodeURIComponent(old)}/upgrade`, {
      token: alice.accessToken,
      body: { new_version: "12" },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const next: string = res.body.replacement_room;
    const direct = await server.request(
      "GET",
      `${V3}/user/${encodeURIComponent(alice.userId)}/account_data/m.direct`,
      { token: alice.accessToken },
    );
    assertEquals(direct.body, { [bob.userId]: ["!other:x", old, next] });
    const tags = await server.request(
      "GET",
      `${V3}/user/${encodeURIComponent(bob.userId)}/rooms/${encodeURIComponent(next)}/tags`,
      { token: bob.accessToken },
    );
    assertEquals(tags.body, { tags: { "u.work": { order: 0.5 } } });
  } finally {
    server.close();
  }
});

Deno.test("TESSERA_DEFAULT_ROOM_VERSION picks the version of rooms that name none", async () => {
  const server = await startTestServer({ TESSERA_DEFAULT_ROOM_VERSION: "10" });
  try {
    const alice = await registerUser(server, "alice");
    const { body } = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: {},
    });
    const create = await stateContent(server, body.room_id, "m.room.create");
    // v10 keeps `creator` in the create event; v11 and later use the sender.
    assertEquals([create?.room_version, create?.creator], ["10", alice.userId]);
    const named = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { room_version: "12" },
    });
    const v12 = await stateContent(server, named.body.room_id, "m.room.create");
    assertEquals([v12?.room_version, v12?.creator], ["12", undefined]);
    const capabilities = await server.request("GET", `${V3}/capabilities`, {
      token: alice.accessToken,
    });
    assertEquals(capabilities.body.capabilities["m.room_versions"].default, "10");
  } finally {
    server.close();
  }
});
