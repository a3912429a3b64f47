/**
 * Write access when rooms are set up (issue 8): membership PUTs go through the membership rules
 * (finding 4), createRoom is all or nothing (finding 14), and alias events are honest: sent by
 * the user who acted (finding 15), naming only aliases of the room (finding 16). Redactions are
 * in write_access_test.ts.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { type RegisteredUser, registerUser } from "../routes/client_harness.ts";

const V3 = "/_matrix/client/v3";

type Server = Awaited<ReturnType<typeof startTestServer>>;

function roomPath(roomId: string): string {
  return `${V3}/rooms/${encodeURIComponent(roomId)}`;
}

async function setup() {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const carol = await registerUser(server, "carol");
  return { server, alice, bob, carol };
}

async function createRoom(server: Server, user: RegisteredUser, body: Record<string, unknown>) {
  const res = await server.request("POST", `${V3}/createRoom`, { token: user.accessToken, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

async function stateEvent(server: Server, roomId: string, type: string, key = "") {
  const id = await server.deps.eventStore.currentStateEventId(roomId, type, key);
  return id ? (await server.deps.eventStore.getEvent(id))!.pdu : undefined;
}

/** Every key and value in the store, to show a refused request wrote nothing. */
async function snapshot(server: Server): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const entry of server.kv.list({ prefix: [] })) {
    out.set(JSON.stringify(entry.key, bigints), JSON.stringify(entry.value, bigints));
  }
  return out;
}

function bigints(_key: string, value: unknown) {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return [...value];
  return value;
}

/** Keys added or changed between two snapshots. */
function written(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...after].filter(([key, value]) => before.get(key) !== value).map(([key]) => key);
}

// ---- Finding 4: restricted joins through PUT /state ----

async function restrictedRoom(server: Server, alice: RegisteredUser) {
  const space = await createRoom(server, alice, { preset: "public_chat", room_version: "10" });
  const roomId = await createRoom(server, alice, {
    preset: "private_chat",
    room_version: "10",
    initial_state: [{
      type: "m.room.join_rules",
      content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] },
    }],
  });
  return { space, roomId };
}

Deno.test("finding 4: a member PUT naming an authoriser does not let an ineligible user in", async () => {
  const { server, alice, bob } = await setup();
  try {
    const { roomId } = await restrictedRoom(server, alice);
    const head = await server.deps.eventStore.roomHead(roomId);
    const res = await server.request(
      "PUT",
      `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
        body: { membership: "join", join_authorised_via_users_server: alice.userId },
      },
    );
    assertEquals([res.status, res.body.errcode], [403, "M_FORBIDDEN"], JSON.stringify(res.body));
    assertEquals((await server.deps.eventStore.roomHead(roomId))!.lastPosition, head!.lastPosition);
    assertEquals(await stateEvent(server, roomId, "m.room.member", bob.userId), undefined);
  } finally {
    server.close();
  }
});

Deno.test("finding 4: an eligible user's member PUT gets an authoriser the server chose", async () => {
  const { server, alice, bob, carol } = await setup();
  try {
    const { space, roomId } = await restrictedRoom(server, alice);
    assertEquals(
      (await server.request("POST", `${roomPath(space)}/join`, {
        token: bob.accessToken,
        body: {},
      })).status,
      200,
    );
    // The client names Carol, who is not in the room; the server ignores the client's choice
    // and names a joined local user who may invite (Alice).
    const res = await server.request(
      "PUT",
      `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
        body: {
          membership: "join",
          displayname: "B",
          join_authorised_via_users_server: carol.userId,
        },
      },
    );
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const member = await stateEvent(server, roomId, "m.room.member", bob.userId);
    assertEquals(member!.content.membership, "join");
    assertEquals(member!.content.join_authorised_via_users_server, alice.userId);
    assertEquals(member!.content.displayname, "B");

    // Once joined, a profile change carries no authoriser, whatever the client sends.
    const again = await server.request(
      "PUT",
      `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(bob.userId)}`,
      {
        token: bob.accessToken,
        body: {
          membership: "join",
          displayname: "B2",
          join_authorised_via_users_server: alice.userId,
        },
      },
    );
    assertEquals(again.status, 200);
    const updated = await stateEvent(server, roomId, "m.room.member", bob.userId);
    assertEquals(updated!.content.displayname, "B2");
    assert(!("join_authorised_via_users_server" in updated!.content));

    // Nor does the join the server re-sends for a profile change (Synapse strips it too): the
    // field vouches for one join the server checked, not for later copies of its content.
    const rejoin = await server.request("POST", `${roomPath(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(rejoin.status, 200);
    assertEquals(
      (await server.request("POST", `${roomPath(roomId)}/join`, {
        token: bob.accessToken,
        body: {},
      })).status,
      200,
    );
    const joined = await stateEvent(server, roomId, "m.room.member", bob.userId);
    assertEquals(joined!.content.join_authorised_via_users_server, alice.userId);
    const renamed = await server.request(
      "PUT",
      `${V3}/profile/${encodeURIComponent(bob.userId)}/displayname`,
      { token: bob.accessToken, body: { displayname: "Bobby" } },
    );
    assertEquals(renamed.status, 200);
    const afterRename = await stateEvent(server, roomId, "m.room.member", bob.userId);
    assertEquals(afterRename!.content.displayname, "Bobby");
    assert(!("join_authorised_via_users_server" in afterRename!.content));
  } finally {
    server.close();
  }
});

Deno.test("finding 4: member PUTs keep the membership rules (bad membership, remote invite)", async () => {
  const { server, alice, bob } = await setup();
  try {
    const roomId = await createRoom(server, alice, { preset: "public_chat" });
    const put = (target: string, body: unknown) =>
      server.request(
        "PUT",
        `${roomPath(roomId)}/state/m.room.member/${encodeURIComponent(target)}`,
        { token: alice.accessToken, body },
      );
    assertEquals((await put(bob.userId, { membership: "party" })).status, 400);
    assertEquals((await put(bob.userId, {})).status, 400);
    // A remote invite takes the invite path even as a state PUT: the invitee's server must sign
    // it first, and one that cannot be reached (none can from this test) leaves nothing written.
    const remote = await put("@zed:elsewhere.org", { membership: "invite" });
    assertEquals([remote.status, remote.body.errcode], [502, "M_UNKNOWN"]);
    assertEquals(
      await stateEvent(server, roomId, "m.room.member", "@zed:elsewhere.org"),
      undefined,
    );
    assertEquals((await put(bob.userId, { membership: "invite" })).status, 200);
    assertEquals(
      (await stateEvent(server, roomId, "m.room.member", bob.userId))!.content.membership,
      "invite",
    );
  } finally {
    server.close();
  }
});

// ---- Finding 14: createRoom is all or nothing ----

Deno.test("finding 14: a refused createRoom writes nothing to the store", async () => {
  const { server, alice } = await setup();
  try {
    const huge = "x".repeat(66_000);
    const published = { visibility: "public" };
    const cases: [string, unknown, number, string][] = [
      [
        "string power level in v10",
        {
          ...published,
          room_alias_name: "half1",
          room_version: "10",
          power_level_content_override: { kick: "50" },
        },
        400,
        "M_INVALID_ROOM_STATE",
      ],
      [
        "float power level",
        {
          ...published,
          room_alias_name: "half2",
          power_level_content_override: { events: { "m.room.name": 1.5 } },
        },
        400,
        "M_BAD_JSON",
      ],
      [
        "non-object events",
        {
          ...published,
          power_level_content_override: { events: ["m.room.name"] },
        },
        400,
        "M_INVALID_ROOM_STATE",
      ],
      ["lone surrogate in the name", '{"visibility":"public","name":"\\ud800"}', 400, "M_BAD_JSON"],
      [
        "lone surrogate in a topic",
        '{"visibility":"public","topic":"a\\udc00b"}',
        400,
        "M_BAD_JSON",
      ],
      [
        "oversize initial_state",
        {
          ...published,
          room_alias_name: "half3",
          initial_state: [{ type: "com.example.big", state_key: "", content: { huge } }],
        },
        413,
        "M_TOO_LARGE",
      ],
      [
        "state_key naming another user",
        {
          ...published,
          initial_state: [{
            type: "com.example.x",
            state_key: "@bob:example.org:8448",
            content: {},
          }],
        },
        400,
        "M_INVALID_ROOM_STATE",
      ],
      [
        "initial canonical alias of no room",
        {
          ...published,
          initial_state: [{
            type: "m.room.canonical_alias",
            content: { alias: "#a:example.org:8448" },
          }],
        },
        400,
        "M_BAD_ALIAS",
      ],
      [
        "malformed initial canonical alias",
        {
          ...published,
          initial_state: [{ type: "m.room.canonical_alias", content: { alt_aliases: ["a"] } }],
        },
        400,
        "M_INVALID_PARAM",
      ],
    ];
    for (const [what, body, status, errcode] of cases) {
      const before = await snapshot(server);
      const res = await server.request("POST", `${V3}/createRoom`, {
        token: alice.accessToken,
        body,
      });
      assertEquals([res.status, res.body.errcode], [status, errcode], `${what}: ${res.body.error}`);
      assertEquals(written(before, await snapshot(server)), [], `${what} wrote to the store`);
    }
    const listed = await server.request("GET", `${V3}/publicRooms`);
    assertEquals(listed.body.chunk, []);
    const joined = await server.request("GET", `${V3}/joined_rooms`, { token: alice.accessToken });
    assertEquals(joined.body.joined_rooms, []);
  } finally {
    server.close();
  }
});

Deno.test("finding 14: a taken alias is 400 M_ROOM_IN_USE, also when two creates race", async () => {
  const { server, alice, bob } = await setup();
  try {
    const results = await Promise.all(
      [alice, bob, alice, bob].map((user) =>
        server.request("POST", `${V3}/createRoom`, {
          token: user.accessToken,
          body: { visibility: "public", room_alias_name: "contested" },
        })
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    assertEquals(ok.length, 1, JSON.stringify(results.map((r) => [r.status, r.body])));
    for (const r of results.filter((r) => r.status !== 200)) {
      assertEquals([r.status, r.body.errcode], [400, "M_ROOM_IN_USE"]);
    }
    const rooms = [
      ...(await server.deps.eventStore.roomsOfUser(alice.userId)),
      ...(await server.deps.eventStore.roomsOfUser(bob.userId)),
    ];
    assertEquals(rooms.map((r) => r.roomId), [ok[0].body.room_id]);
    const listed = await server.request("GET", `${V3}/publicRooms`);
    assertEquals(listed.body.chunk.map((r: { room_id: string }) => r.room_id), [
      ok[0].body.room_id,
    ]);
  } finally {
    server.close();
  }
});

// ---- Findings 15 and 16: canonical alias events ----

const SERVER = "example.org:8448";

async function putCanonical(
  server: Server,
  user: RegisteredUser,
  roomId: string,
  content: unknown,
) {
  return await server.request("PUT", `${roomPath(roomId)}/state/m.room.canonical_alias/`, {
    token: user.accessToken,
    body: content,
  });
}

Deno.test("finding 16: a canonical alias may only name valid aliases of the room", async () => {
  const { server, alice } = await setup();
  try {
    const mine = await createRoom(server, alice, {
      preset: "public_chat",
      room_alias_name: "mine",
    });
    await createRoom(server, alice, { preset: "public_chat", room_alias_name: "theirs" });
    const extra = await server.request(
      "PUT",
      `${V3}/directory/room/${encodeURIComponent(`#extra:${SERVER}`)}`,
      { token: alice.accessToken, body: { room_id: mine } },
    );
    assertEquals(extra.status, 200);
    const head = await server.deps.eventStore.roomHead(mine);
    const refused: [unknown, string][] = [
      [{ alias: `#theirs:${SERVER}` }, "M_BAD_ALIAS"],
      [{ alias: `#nowhere:${SERVER}` }, "M_BAD_ALIAS"],
      [{ alias: "#remote:elsewhere.org" }, "M_BAD_ALIAS"],
      [{ alias: `#mine:${SERVER}`, alt_aliases: [`#theirs:${SERVER}`] }, "M_BAD_ALIAS"],
      [{ alias: "mine" }, "M_INVALID_PARAM"],
      [{ alias: 7 }, "M_INVALID_PARAM"],
      [{ alt_aliases: `#extra:${SERVER}` }, "M_INVALID_PARAM"],
      [{ alt_aliases: ["#no server"] }, "M_INVALID_PARAM"],
      [{ alt_aliases: [null] }, "M_INVALID_PARAM"],
    ];
    for (const [content, errcode] of refused) {
      const res = await putCanonical(server, alice, mine, content);
      assertEquals([res.status, res.body.errcode], [400, errcode], JSON.stringify(content));
    }
    assertEquals((await server.deps.eventStore.roomHead(mine))!.lastPosition, head!.lastPosition);
    assertEquals((await stateEvent(server, mine, "m.room.canonical_alias"))!.content, {
      alias: `#mine:${SERVER}`,
    });

    const good = { alias: `#mine:${SERVER}`, alt_aliases: [`#extra:${SERVER}`] };
    assertEquals((await putCanonical(server, alice, mine, good)).status, 200);
    assertEquals((await stateEvent(server, mine, "m.room.canonical_alias"))!.content, good);
    assertEquals((await putCanonical(server, alice, mine, {})).status, 200);
  } finally {
    server.close();
  }
});

Deno.test("finding 15: deleting an alias never sends an event as another user", async () => {
  const { server, alice, bob } = await setup();
  try {
    const roomId = await createRoom(server, alice, {
      preset: "public_chat",
      room_alias_name: "main",
    });
    await server.request("POST", `${roomPath(roomId)}/join`, { token: bob.accessToken, body: {} });
    const bobsAlias = `#bobs:${SERVER}`;
    const made = await server.request(
      "PUT",
      `${V3}/directory/room/${encodeURIComponent(bobsAlias)}`,
      { token: bob.accessToken, body: { room_id: roomId } },
    );
    assertEquals(made.status, 200);
    const listed = { alias: `#main:${SERVER}`, alt_aliases: [bobsAlias] };
    assertEquals((await putCanonical(server, alice, roomId, listed)).status, 200);
    const canonical = await server.deps.eventStore.currentStateEventId(
      roomId,
      "m.room.canonical_alias",
      "",
    );
    const head = await server.deps.eventStore.roomHead(roomId);

    // Bob created the alias, so he may delete it; he may not change the canonical alias (level
    // 0 < 50), so it is left as it is (Synapse does the same), and nobody else speaks for him.
    const deleted = await server.request(
      "DELETE",
      `${V3}/directory/room/${encodeURIComponent(bobsAlias)}`,
      { token: bob.accessToken },
    );
    assertEquals(deleted.status, 200);
    assertEquals((await server.deps.eventStore.roomHead(roomId))!.lastPosition, head!.lastPosition);
    assertEquals(
      await server.deps.eventStore.currentStateEventId(roomId, "m.room.canonical_alias", ""),
      canonical,
    );

    // Alice may: her deletion updates the event, sent as herself.
    const deletedMain = await server.request(
      "DELETE",
      `${V3}/directory/room/${encodeURIComponent(`#main:${SERVER}`)}`,
      { token: alice.accessToken },
    );
    assertEquals(deletedMain.status, 200);
    const updated = await stateEvent(server, roomId, "m.room.canonical_alias");
    assertEquals(updated!.sender, alice.userId);
    assertEquals(updated!.content, { alt_aliases: [bobsAlias] });
  } finally {
    server.close();
  }
});
