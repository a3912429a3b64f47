/** Membership over HTTP: join by ID and alias, knock, invite, leave, forget, kick, ban, unban. */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

async function setup(createBody: Record<string, unknown> = { preset: "public_chat" }) {
  const server = await startTestServer();
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const res = await server.request("POST", `${V3}/createRoom`, {
    token: alice.accessToken,
    body: createBody,
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  const roomId: string = res.body.room_id;
  const membershipOf = async (userId: string) => {
    const id = await server.deps.eventStore.currentStateEventId(roomId, "m.room.member", userId);
    return id ? (await server.deps.eventStore.getEvent(id))!.pdu.content : undefined;
  };
  return { server, alice, bob, roomId, room: encodeURIComponent(roomId), membershipOf };
}

Deno.test("join by room ID (encoded or not), by alias, and over r0; leave is idempotent", async () => {
  const { server, alice, bob, roomId, room, membershipOf } = await setup({
    preset: "public_chat",
    room_alias_name: "hall",
  });
  try {
    const raw = await server.request("POST", `${V3}/join/${roomId}?server_name=x.org`, {
      token: bob.accessToken,
    });
    assertEquals(raw.status, 200, JSON.stringify(raw.body));
    assertEquals(raw.body.room_id, roomId);
    assertEquals((await membershipOf(bob.userId))?.membership, "join");

    assertEquals(
      (await server.request("POST", `${V3}/rooms/${room}/leave`, {
        token: bob.accessToken,
        body: { reason: "bye" },
      })).status,
      200,
    );
    assertEquals(await membershipOf(bob.userId), { membership: "leave", reason: "bye" });
    const again = await server.request("POST", `${V3}/rooms/${room}/leave`, {
      token: bob.accessToken,
    });
    assertEquals(again.status, 200);

    const byAlias = await server.request(
      "POST",
      `/_matrix/client/r0/join/${encodeURIComponent("#hall:example.org:8448")}`,
      { token: bob.accessToken, body: {} },
    );
    assertEquals(byAlias.body.room_id, roomId);
    const viaRooms = await server.request("POST", `${V3}/rooms/${room}/join`, {
      token: bob.accessToken,
    });
    assertEquals(viaRooms.status, 200);
    const joined = await server.request("GET", `${V3}/joined_rooms`, { token: bob.accessToken });
    assertEquals(joined.body.joined_rooms, [roomId]);
    assert(alice.userId !== bob.userId);
  } finally {
    server.close();
  }
});

Deno.test("join: unknown, remote and malformed targets", async () => {
  const { server, bob } = await setup();
  try {
    const cases: [string, number, string][] = [
      [`${V3}/join/${encodeURIComponent("!missing:example.org:8448")}`, 404, "M_NOT_FOUND"],
      // A remote room is joined over federation: no server reachable is 502, as Synapse answers.
      [`${V3}/join/${encodeURIComponent("!remote:elsewhere.org")}`, 502, "M_UNKNOWN"],
      [`${V3}/join/${encodeURIComponent("#nope:example.org:8448")}`, 404, "M_NOT_FOUND"],
      [`${V3}/join/${encodeURIComponent("#room:elsewhere.org")}`, 404, "M_NOT_FOUND"],
      [`${V3}/join/garbage`, 400, "M_INVALID_PARAM"],
      [`${V3}/rooms/garbage/join`, 400, "M_INVALID_PARAM"],
    ];
    for (const [path, status, errcode] of cases) {
      const res = await server.request("POST", path, { token: bob.accessToken });
      assertEquals([res.status, res.body.errcode], [status, errcode], path);
    }
    const badBody = await server.request("POST", `${V3}/join/${encodeURIComponent("!a:b.c")}`, {
      token: bob.accessToken,
      body: "{",
    });
    assertEquals([badBody.status, badBody.body.errcode], [400, "M_NOT_JSON"]);
    const noToken = await server.request("POST", `${V3}/join/${encodeURIComponent("!a:b.c")}`);
    assertEquals(noToken.status, 401);
  } finally {
    server.close();
  }
});

Deno.test("invite-only room: join refused until invited; invite carries reason", async () => {
  const { server, alice, bob, room, membershipOf } = await setup({ preset: "private_chat" });
  try {
    const refused = await server.request("POST", `${V3}/rooms/${room}/join`, {
      token: bob.accessToken,
    });
    assertEquals([refused.status, refused.body.errcode], [403, "M_FORBIDDEN"]);
    assertEquals(await membershipOf(bob.userId), undefined);

    const invite = await server.request("POST", `${V3}/rooms/${room}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId, reason: "welcome" },
    });
    assertEquals(invite.status, 200);
    assertEquals((await membershipOf(bob.userId))?.reason, "welcome");
    // Bob rejects, then is invited again and accepts.
    await server.request("POST", `${V3}/rooms/${room}/leave`, { token: bob.accessToken });
    assertEquals((await membershipOf(bob.userId))?.membership, "leave");
    await server.request("POST", `${V3}/rooms/${room}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    const join = await server.request("POST", `${V3}/rooms/${room}/join`, {
      token: bob.accessToken,
    });
    assertEquals(join.status, 200);
    const twice = await server.request("POST", `${V3}/rooms/${room}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assertEquals([twice.status, twice.body.errcode], [403, "M_FORBIDDEN"]);

    const bad: [unknown, string][] = [
      [{}, "M_MISSING_PARAM"],
      [{ user_id: 5 }, "M_BAD_JSON"],
      [{ user_id: "bob" }, "M_BAD_JSON"],
      ["nope", "M_NOT_JSON"],
    ];
    for (const [body, errcode] of bad) {
      const res = await server.request("POST", `${V3}/rooms/${room}/invite`, {
        token: alice.accessToken,
        body,
      });
      assertEquals([res.status, res.body.errcode], [400, errcode], JSON.stringify(body));
    }
    // A remote invitee's server must sign the invite first; one that cannot be reached (no
    // such name here) fails it with 502, and nothing is written.
    const remote = await server.request("POST", `${V3}/rooms/${room}/invite`, {
      token: alice.accessToken,
      body: { user_id: "@carol:elsewhere.org" },
    });
    assertEquals([remote.status, remote.body.errcode], [502, "M_UNKNOWN"]);
    assertEquals(await membershipOf("@carol:elsewhere.org"), undefined);
  } finally {
    server.close();
  }
});

Deno.test("kick, ban, unban follow power levels", async () => {
  const { server, alice, bob, room, membershipOf } = await setup();
  try {
    const carol = await registerUser(server, "carol");
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken });
    await server.request("POST", `${V3}/join/${room}`, { token: carol.accessToken });

    const bobKicks = await server.request("POST", `${V3}/rooms/${room}/kick`, {
      token: bob.accessToken,
      body: { user_id: carol.userId },
    });
    assertEquals([bobKicks.status, bobKicks.body.errcode], [403, "M_FORBIDDEN"]);
    assertEquals((await membershipOf(carol.userId))?.membership, "join");

    const kick = await server.request("POST", `${V3}/rooms/${room}/kick`, {
      token: alice.accessToken,
      body: { user_id: carol.userId, reason: "spam" },
    });
    assertEquals(kick.status, 200);
    assertEquals(await membershipOf(carol.userId), { membership: "leave", reason: "spam" });
    const kickAgain = await server.request("POST", `${V3}/rooms/${room}/kick`, {
      token: alice.accessToken,
      body: { user_id: carol.userId },
    });
    assertEquals(kickAgain.status, 403);

    const ban = await server.request("POST", `${V3}/rooms/${room}/ban`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assertEquals(ban.status, 200);
    assertEquals((await membershipOf(bob.userId))?.membership, "ban");
    const rejoin = await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken });
    assertEquals(rejoin.status, 403);
    const unbanOther = await server.request("POST", `${V3}/rooms/${room}/unban`, {
      token: alice.accessToken,
      body: { user_id: carol.userId },
    });
    assertEquals(unbanOther.status, 403);
    const unban = await server.request("POST", `${V3}/rooms/${room}/unban`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assertEquals(unban.status, 200);
    assertEquals((await membershipOf(bob.userId))?.membership, "leave");
    const missing = await server.request("POST", `${V3}/rooms/${room}/ban`, {
      token: alice.accessToken,
      body: {},
    });
    assertEquals([missing.status, missing.body.errcode], [400, "M_MISSING_PARAM"]);
  } finally {
    server.close();
  }
});

Deno.test("forget: only after leaving; a rejoin clears it", async () => {
  const { server, bob, roomId, room } = await setup();
  try {
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken });
    const early = await server.request("POST", `${V3}/rooms/${room}/forget`, {
      token: bob.accessToken,
    });
    assertEquals(early.status, 400);
    assertEquals(await server.deps.roomDirectory.isForgotten(bob.userId, roomId), false);
    await server.request("POST", `${V3}/rooms/${room}/leave`, { token: bob.accessToken });
    const forget = await server.request("POST", `${V3}/rooms/${room}/forget`, {
      token: bob.accessToken,
    });
    assertEquals(forget.status, 200);
    assertEquals(await server.deps.roomDirectory.isForgotten(bob.userId, roomId), true);
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken });
    assertEquals(await server.deps.roomDirectory.isForgotten(bob.userId, roomId), false);
    const dave = await registerUser(server, "dave");
    const never = await server.request("POST", `${V3}/rooms/${room}/forget`, {
      token: dave.accessToken,
    });
    assertEquals([never.status, never.body.errcode], [404, "M_NOT_FOUND"]);
  } finally {
    server.close();
  }
});

Deno.test("knock: allowed in knock rooms, refused elsewhere", async () => {
  const { server, alice, bob, room, membershipOf } = await setup({
    preset: "private_chat",
    initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }],
  });
  try {
    const knock = await server.request("POST", `${V3}/knock/${room}`, {
      token: bob.accessToken,
      body: { reason: "let me in" },
    });
    assertEquals(knock.status, 200, JSON.stringify(knock.body));
    assertEquals((await membershipOf(bob.userId))?.membership, "knock");
    assertEquals((await membershipOf(bob.userId))?.reason, "let me in");
    const invite = await server.request("POST", `${V3}/rooms/${room}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assertEquals(invite.status, 200);

    const other = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "private_chat" },
    });
    const refused = await server.request(
      "POST",
      `${V3}/knock/${encodeURIComponent(other.body.room_id)}`,
      { token: bob.accessToken },
    );
    assertEquals([refused.status, refused.body.errcode], [403, "M_FORBIDDEN"]);
  } finally {
    server.close();
  }
});

Deno.test("member events carry the user's displayname from the profile", async () => {
  const { server, bob, room, membershipOf } = await setup();
  try {
    const put = await server.request(
      "PUT",
      `${V3}/profile/${encodeURIComponent(bob.userId)}/displayname`,
      { token: bob.accessToken, body: { displayname: "Bobby" } },
    );
    assertEquals(put.status, 200);
    await server.request("POST", `${V3}/join/${room}`, { token: bob.accessToken });
    assertEquals(await membershipOf(bob.userId), { membership: "join", displayname: "Bobby" });
  } finally {
    server.close();
  }
});
