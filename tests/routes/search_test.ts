/**
 * `POST /search` over HTTP: matching (case, accents, stems, prefixes, scripts without spaces,
 * every term), keys, filters, both orders and their pagination, context with profiles, state,
 * groupings, highlights, and what the reader may not see (history visibility, redactions,
 * ignored users, rooms they are not in).
 */
import { assert, assertEquals } from "../assert.ts";
import { type RegisteredUser, registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

/**
 * A server whose clock moves a millisecond at every reading, so events sent one after another
 * in different rooms never share an origin_server_ts (the `recent` order across rooms is by
 * timestamp, as Synapse's; within a room ties go by position).
 */
function startServer() {
  let clock = Date.now();
  return startTestServer({}, { now: () => ++clock });
}

async function createRoom(server: Server, user: RegisteredUser, body: Record<string, unknown>) {
  const res = await server.request("POST", `${V3}/createRoom`, { token: user.accessToken, body });
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.room_id as string;
}

let txn = 0;
async function send(server: Server, user: RegisteredUser, roomId: string, body: string) {
  const res = await server.request(
    "PUT",
    `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${++txn}`,
    { token: user.accessToken, body: { msgtype: "m.text", body } },
  );
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.event_id as string;
}

async function join(server: Server, user: RegisteredUser, roomId: string) {
  const res = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/join`, {
    token: user.accessToken,
    body: {},
  });
  assertEquals(res.status, 200, JSON.stringify(res.body));
}

async function search(
  server: Server,
  user: RegisteredUser,
  criteria: Record<string, unknown>,
  nextBatch?: string,
) {
  const query = nextBatch === undefined ? "" : `?next_batch=${encodeURIComponent(nextBatch)}`;
  return await server.request("POST", `${V3}/search${query}`, {
    token: user.accessToken,
    body: { search_categories: { room_events: criteria } },
  });
}

async function found(server: Server, user: RegisteredUser, criteria: Record<string, unknown>) {
  const res = await search(server, user, criteria);
  assertEquals(res.status, 200, JSON.stringify(res.body));
  return res.body.search_categories.room_events;
}

function bodies(result: { results: { result: { content: { body?: string } } }[] }) {
  return result.results.map((r) => r.result.content.body);
}

Deno.test("search matches words across case, accents, stems, prefixes and scripts", async () => {
  const server = await startServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice, { preset: "public_chat", name: "Kitchen" });
    await send(server, alice, roomId, "The CAFÉ opens at nine");
    await send(server, alice, roomId, "Three new messages arrived");
    await send(server, alice, roomId, "The Wombles of Wimbledon");
    await send(server, alice, roomId, "今日は世界がきれい");
    await send(server, alice, roomId, "nothing to see here");

    assertEquals(bodies(await found(server, alice, { search_term: "cafe" })), [
      "The CAFÉ opens at nine",
    ]);
    assertEquals(bodies(await found(server, alice, { search_term: "message" })), [
      "Three new messages arrived",
    ]);
    assertEquals(bodies(await found(server, alice, { search_term: "womb" })), [
      "The Wombles of Wimbledon",
    ]);
    assertEquals(bodies(await found(server, alice, { search_term: "世界" })), [
      "今日は世界がきれい",
    ]);
    // Every term must match.
    assertEquals(bodies(await found(server, alice, { search_term: "the wombles" })), [
      "The Wombles of Wimbledon",
    ]);
    assertEquals((await found(server, alice, { search_term: "wombles cafe" })).results, []);
    // Stop words are not indexed: a query of them alone finds nothing, as on Synapse/Postgres.
    assertEquals((await found(server, alice, { search_term: "the" })).results, []);
    // Punctuation alone searches for nothing.
    assertEquals(await found(server, alice, { search_term: "?!" }), {
      results: [],
      count: 0,
      highlights: [],
    });
    // The room's name is indexed under content.name; keys choose what is searched.
    const named = await found(server, alice, { search_term: "kitchen" });
    assertEquals(named.results.map((r: { result: { type: string } }) => r.result.type), [
      "m.room.name",
    ]);
    assertEquals(
      (await found(server, alice, { search_term: "kitchen", keys: ["content.body"] })).results,
      [],
    );
    // The filter's types (and not_types) apply too.
    assertEquals(
      (await found(server, alice, {
        search_term: "kitchen",
        filter: { types: ["m.room.message"] },
      })).results,
      [],
    );
    assertEquals(
      (await found(server, alice, { search_term: "kitchen", filter: { not_types: ["m.room.*"] } }))
        .results,
      [],
    );
    const result = await found(server, alice, { search_term: "WOMBLE" });
    assertEquals(result.count, 1);
    assertEquals(result.highlights, ["wombles"]);
    assertEquals(result.results[0].result.room_id, roomId);
    assert(typeof result.results[0].rank === "number" && result.results[0].rank > 0);
  } finally {
    server.close();
  }
});

Deno.test("search orders by rank or recency and pages with next_batch", async () => {
  const server = await startServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await createRoom(server, alice, { preset: "private_chat" });
    const sent: string[] = [];
    for (let i = 0; i < 7; i++) sent.push(await send(server, alice, roomId, `apple number ${i}`));
    await send(server, alice, roomId, "apple");
    // Recent: newest first, two at a time, nothing missed or repeated.
    const seen: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 10; page++) {
      const res = await search(
        server,
        alice,
        { search_term: "apple", order_by: "recent", filter: { limit: 3 } },
        token,
      );
      assertEquals(res.status, 200);
      const events = res.body.search_categories.room_events;
      seen.push(...events.results.map((r: { result: { event_id: string } }) => r.result.event_id));
      token = events.next_batch;
      if (!token) break;
    }
    assertEquals(seen.length, 8);
    assertEquals(seen.slice(1), [...sent].reverse());
    // Rank: the one-word message matches best.
    const ranked = await found(server, alice, { search_term: "apple", filter: { limit: 2 } });
    assertEquals(ranked.results[0].result.content.body, "apple");
    assert(ranked.results[0].rank > ranked.results[1].rank);
    assert(typeof ranked.next_batch === "string");
    // A token of one order is refused by the other; garbage is refused.
    const wrong = await search(
      server,
      alice,
      { search_term: "apple", order_by: "recent" },
      ranked.next_batch,
    );
    assertEquals(wrong.status, 400);
    const garbage = await search(server, alice, { search_term: "apple" }, "!!!");
    assertEquals(garbage.status, 400);
    assertEquals(garbage.body.errcode, "M_INVALID_PARAM");
  } finally {
    server.close();
  }
});

Deno.test("search applies history visibility, redactions, ignored users and membership", async () => {
  const server = await startServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await createRoom(server, alice, {
      preset: "public_chat",
      initial_state: [{
        type: "m.room.history_visibility",
        state_key: "",
        content: { history_visibility: "joined" },
      }],
    });
    await send(server, alice, roomId, "secret plans before bob");
    await join(server, bob, roomId);
    const after = await send(server, alice, roomId, "open plans after bob");
    const redacted = await send(server, alice, roomId, "plans to be redacted");
    const res = await server.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(redacted)}/r1`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(res.status, 200);

    // Bob joined after the first message of a `joined` room: he finds only what he may read,
    // and the count says nothing of the rest.
    const forBob = await found(server, bob, { search_term: "plans" });
    assertEquals(bodies(forBob), ["open plans after bob"]);
    assertEquals(forBob.count, 1);
    const forAlice = await found(server, alice, { search_term: "plans", order_by: "recent" });
    assertEquals(bodies(forAlice), ["open plans after bob", "secret plans before bob"]);
    assertEquals((await found(server, alice, { search_term: "redacted" })).results, []);

    // Ignoring alice hides her messages from bob.
    const ignore = await server.request(
      "PUT",
      `${V3}/user/${encodeURIComponent(bob.userId)}/account_data/m.ignored_user_list`,
      { token: bob.accessToken, body: { ignored_users: { [alice.userId]: {} } } },
    );
    assertEquals(ignore.status, 200);
    assertEquals((await found(server, bob, { search_term: "plans" })).results, []);

    // Carol is in no room: nothing, though the words exist.
    const carol = await registerUser(server, "carol");
    assertEquals((await found(server, carol, { search_term: "plans" })).results, []);
    // Once bob leaves, he searches the room no more.
    await server.request(
      "PUT",
      `${V3}/user/${encodeURIComponent(bob.userId)}/account_data/m.ignored_user_list`,
      {
        token: bob.accessToken,
        body: { ignored_users: {} },
      },
    );
    assertEquals(bodies(await found(server, bob, { search_term: "open" })), [
      "open plans after bob",
    ]);
    const left = await server.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/leave`, {
      token: bob.accessToken,
      body: {},
    });
    assertEquals(left.status, 200);
    assertEquals((await found(server, bob, { search_term: "open" })).results, []);
    assert(after);
  } finally {
    server.close();
  }
});

Deno.test("search filters by room and sender, groups results, and adds context and state", async () => {
  const server = await startServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const one = await createRoom(server, alice, { preset: "public_chat", name: "One" });
    const two = await createRoom(server, alice, { preset: "public_chat", name: "Two" });
    await join(server, bob, one);
    await join(server, bob, two);
    const profile = await server.request(
      "PUT",
      `${V3}/profile/${encodeURIComponent(bob.userId)}/displayname`,
      { token: bob.accessToken, body: { displayname: "Bobby" } },
    );
    assertEquals(profile.status, 200);
    await send(server, alice, one, "before the banana");
    const hit = await send(server, bob, one, "banana bread");
    await send(server, alice, one, "after the banana bread");
    await send(server, alice, one, "unrelated");
    await send(server, alice, two, "banana split");

    const inOne = await found(server, alice, {
      search_term: "banana",
      filter: { rooms: [one], senders: [bob.userId] },
    });
    assertEquals(bodies(inOne), ["banana bread"]);
    const notBob = await found(server, alice, {
      search_term: "banana",
      filter: { not_senders: [bob.userId], not_rooms: [two] },
      order_by: "recent",
    });
    assertEquals(bodies(notBob), ["after the banana bread", "before the banana"]);

    const grouped = await found(server, alice, {
      search_term: "banana",
      order_by: "recent",
      groupings: { group_by: [{ key: "room_id" }, { key: "sender" }] },
    });
    assertEquals(Object.keys(grouped.groups.room_id).sort(), [one, two].sort());
    assertEquals(grouped.groups.room_id[one].results.length, 3);
    assertEquals(grouped.groups.sender[bob.userId].results, [hit]);
    assertEquals(grouped.groups.room_id[two].order, 1);
    // A room group's next_batch pages within that room only.
    const criteria = {
      search_term: "banana",
      order_by: "recent",
      filter: { limit: 2 },
      groupings: { group_by: [{ key: "room_id" }] },
    };
    const firstPage = await found(server, alice, criteria);
    assertEquals(bodies(firstPage), ["banana split", "after the banana bread"]);
    const inGroup: string[] = [];
    for (let token = firstPage.groups.room_id[one].next_batch; token;) {
      const page = await search(server, alice, criteria, token);
      const events = page.body.search_categories.room_events;
      for (const r of events.results) {
        assertEquals(r.result.room_id, one);
        inGroup.push(r.result.content.body);
      }
      token = events.next_batch;
    }
    assertEquals(inGroup, ["banana bread", "before the banana"]);

    const withContext = await found(server, alice, {
      search_term: "bread",
      filter: { senders: [bob.userId] },
      event_context: { before_limit: 1, after_limit: 2, include_profile: true },
      include_state: true,
    });
    const [result] = withContext.results;
    assertEquals(result.result.event_id, hit);
    assertEquals(
      result.context.events_before.map((e: { content: { body: string } }) => e.content.body),
      ["before the banana"],
    );
    assertEquals(
      result.context.events_after.map((e: { content: { body: string } }) => e.content.body),
      ["after the banana bread", "unrelated"],
    );
    assertEquals(result.context.profile_info[bob.userId].displayname, "Bobby");
    assert(typeof result.context.start === "string" && typeof result.context.end === "string");
    const state = withContext.state[one] as { type: string; content: { name?: string } }[];
    assertEquals(state.find((e) => e.type === "m.room.name")?.content.name, "One");
    assertEquals(Object.keys(withContext.state), [one]);
  } finally {
    server.close();
  }
});

Deno.test("search refuses bad requests with Matrix errors", async () => {
  const server = await startServer();
  try {
    const alice = await registerUser(server, "alice");
    const noAuth = await server.request("POST", `${V3}/search`, {
      body: { search_categories: { room_events: { search_term: "x" } } },
    });
    assertEquals(noAuth.status, 401);
    const cases: [unknown, string][] = [
      [{}, "M_MISSING_PARAM"],
      [{ search_categories: { room_events: {} } }, "M_MISSING_PARAM"],
      [{ search_categories: { room_events: { search_term: 5 } } }, "M_BAD_JSON"],
      [
        { search_categories: { room_events: { search_term: "x", order_by: "best" } } },
        "M_BAD_JSON",
      ],
      [
        { search_categories: { room_events: { search_term: "x", keys: ["content.url"] } } },
        "M_BAD_JSON",
      ],
      [{
        search_categories: {
          room_events: { search_term: "x", groupings: { group_by: [{ key: "type" }] } },
        },
      }, "M_BAD_JSON"],
      [
        { search_categories: { room_events: { search_term: "x", filter: { limit: "a" } } } },
        "M_BAD_JSON",
      ],
      ["not json", "M_NOT_JSON"],
    ];
    for (const [body, errcode] of cases) {
      const res = await server.request("POST", `${V3}/search`, { token: alice.accessToken, body });
      assertEquals(res.status, 400, JSON.stringify(body));
      assertEquals(res.body.errcode, errcode, JSON.stringify(body));
    }
    // No category: nothing to search.
    const none = await server.request("POST", `${V3}/search`, {
      token: alice.accessToken,
      body: { search_categories: {} },
    });
    assertEquals(none.body, { search_categories: {} });
    // r0 serves it too.
    const r0 = await server.request("POST", "/_matrix/client/r0/search", {
      token: alice.accessToken,
      body: { search_categories: { room_events: { search_term: "x" } } },
    });
    assertEquals(r0.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("search of an upgraded room covers the rooms it replaced", async () => {
  const server = await startServer();
  try {
    const alice = await registerUser(server, "alice");
    const old = await createRoom(server, alice, { preset: "private_chat" });
    await send(server, alice, old, "history from the old room");
    const upgraded = await server.request(
      "POST",
      `${V3}/rooms/${encodeURIComponent(old)}/upgrade`,
      { token: alice.accessToken, body: { new_version: "10" } },
    );
    assertEquals(upgraded.status, 200, JSON.stringify(upgraded.body));
    const replacement = upgraded.body.replacement_room as string;
    await send(server, alice, replacement, "history from the new room");
    const result = await found(server, alice, {
      search_term: "history",
      order_by: "recent",
      filter: { rooms: [replacement] },
    });
    assertEquals(bodies(result), ["history from the new room", "history from the old room"]);
    // Naming the old room does not bring in its successor.
    assertEquals(
      bodies(await found(server, alice, { search_term: "history", filter: { rooms: [old] } })),
      ["history from the old room"],
    );
  } finally {
    server.close();
  }
});
