import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { member, publicRoom, say } from "./sender_rooms.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

const q = (value: unknown) => encodeURIComponent(JSON.stringify(value));

Deno.test("initial sync shows joined rooms with timeline, state and the empty E2EE sections", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoom(server, alice.userId);
    const sent = await say(server, roomId, alice.userId, "hello");
    const res = await server.request("GET", "/_matrix/client/v3/sync", {
      token: alice.accessToken,
    });
    assertEquals(res.status, 200);
    assert(/^s[0-9a-f]{20}$/.test(res.body.next_batch));
    const room = res.body.rooms.join[roomId];
    const timeline = room.timeline.events.map((e: JsonObject) => e.event_id);
    assert(timeline.includes(sent.eventId));
    assert(typeof room.timeline.prev_batch === "string");
    // Five events fit the default limit of 10, so the create event is in the timeline.
    assertEquals(room.timeline.events[0].type, "m.room.create");
    assertEquals(room.state.events, []);
    const short = await server.request(
      "GET",
      `/_matrix/client/v3/sync?filter=${q({ room: { timeline: { limit: 2 } } })}`,
      { token: alice.accessToken },
    );
    const shortRoom = short.body.rooms.join[roomId];
    assertEquals(shortRoom.timeline.limited, true);
    assertEquals(
      shortRoom.state.events.map((e: JsonObject) => e.type).sort(),
      ["m.room.create", "m.room.member", "m.room.power_levels"],
      "the state before the timeline",
    );
    assertEquals(res.body.to_device, { events: [] });
    assertEquals(res.body.device_lists, { changed: [], left: [] });
    // A device that uploaded no keys yet has none: clients read the zero as "upload some".
    assertEquals(res.body.device_one_time_keys_count, { signed_curve25519: 0 });
    assertEquals(res.body.device_unused_fallback_key_types, []);

    const r0 = await server.request("GET", "/_matrix/client/r0/sync", { token: alice.accessToken });
    assertEquals(r0.status, 200);
    assert(r0.body.rooms.join[roomId], "r0 behaves like v3");
  } finally {
    server.close();
  }
});

Deno.test("sync refuses bad input with the right errcode", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const get = (query: string) =>
      server.request("GET", `/_matrix/client/v3/sync?${query}`, { token: alice.accessToken });
    const cases: [string, number, string][] = [
      ["since=garbage", 400, "M_INVALID_PARAM"],
      ["since=s" + "f".repeat(20), 400, "M_INVALID_PARAM"],
      ["filter=%7Bnot%20json", 400, "M_INVALID_PARAM"],
      [`filter=${q({ room: { timeline: { limit: "ten" } } })}`, 400, "M_INVALID_PARAM"],
      [`filter=${q({ event_format: "xml" })}`, 400, "M_INVALID_PARAM"],
      ["filter=unknownid", 404, "M_NOT_FOUND"],
      ["timeout=soon", 400, "M_INVALID_PARAM"],
      ["full_state=yes", 400, "M_INVALID_PARAM"],
      ["set_presence=busy", 400, "M_INVALID_PARAM"],
    ];
    for (const [query, status, errcode] of cases) {
      const res = await get(query);
      assertEquals([query, res.status, res.body.errcode], [query, status, errcode]);
    }
    const anonymous = await server.request("GET", "/_matrix/client/v3/sync");
    assertEquals(anonymous.body.errcode, "M_MISSING_TOKEN");
    const ignored = await get("unknown_param=1");
    assertEquals(ignored.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("concurrent senders: consecutive incremental syncs miss and repeat nothing", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const rooms = [await publicRoom(server, alice.userId), await publicRoom(server, bob.userId)];
    await member(server, rooms[0], bob.userId, "join");
    await member(server, rooms[1], alice.userId, "join");
    const filter = q({ room: { timeline: { limit: 200 } } });
    const first = await server.request("GET", `/_matrix/client/v3/sync?filter=${filter}`, {
      token: alice.accessToken,
    });
    let since: string = first.body.next_batch;

    const sentIds: string[] = [];
    const writers = [alice.userId, bob.userId].flatMap((user) =>
      rooms.map(async (roomId) => {
        for (let i = 0; i < 15; i++) {
          sentIds.push((await say(server, roomId, user, `${i}`)).eventId);
        }
      })
    );
    let writing = true;
    const done = Promise.all(writers).then(() => (writing = false));
    const seen: string[] = [];
    const collect = async () => {
      const res = await server.request(
        "GET",
        `/_matrix/client/v3/sync?since=${since}&filter=${filter}`,
        { token: alice.accessToken },
      );
      assertEquals(res.status, 200);
      for (const room of Object.values(res.body.rooms.join) as JsonObject[]) {
        const timeline = room.timeline as { events: JsonObject[]; limited: boolean };
        assertEquals(timeline.limited, false);
        for (const e of timeline.events) {
          if (e.type === "m.room.message") seen.push(e.event_id as string);
        }
      }
      since = res.body.next_batch;
    };
    while (writing) await collect();
    await done;
    await collect();
    assertEquals(seen.length, sentIds.length, "nothing missed or repeated");
    assertEquals(new Set(seen), new Set(sentIds));
  } finally {
    server.close();
  }
});

Deno.test("long-polls woken by appends read up to the waking commit and miss and repeat nothing", async () => {
  const server = await startTestServer();
  // Count barriers: a long-poll woken by an append reads up to that commit without one.
  const store = server.deps.eventStore;
  const barrier = store.syncBarrier.bind(store);
  const changes = store.roomChanges.bind(store);
  let barriers = 0;
  let reads = 0;
  store.syncBarrier = (userId: string) => {
    barriers++;
    return barrier(userId);
  };
  // Alice leaves no room, so each read of every stream asks for room changes once.
  store.roomChanges = (options) => {
    reads++;
    return changes(options);
  };
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const rooms = [await publicRoom(server, alice.userId), await publicRoom(server, bob.userId)];
    await member(server, rooms[0], bob.userId, "join");
    await member(server, rooms[1], alice.userId, "join");
    const filter = q({ room: { timeline: { limit: 200 } } });
    const first = await server.request("GET", `/_matrix/client/v3/sync?filter=${filter}`, {
      token: alice.accessToken,
    });
    let since: string = first.body.next_batch;

    const sentIds: string[] = [];
    const pause = () => new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 4));
    const writers = [alice.userId, bob.userId].flatMap((user) =>
      rooms.map(async (roomId) => {
        for (let i = 0; i < 15; i++) {
          await pause();
          sentIds.push((await say(server, roomId, user, `${i}`)).eventId);
        }
      })
    );
    // Account data wakes without a versionstamp: those wakes must still take a barrier.
    let accountData = 0;
    const dataWriter = (async () => {
      for (let i = 0; i < 10; i++) {
        await pause();
        const res = await server.request(
          "PUT",
          `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/account_data/t.test`,
          { token: alice.accessToken, body: { i } },
        );
        assertEquals(res.status, 200);
        accountData++;
      }
    })();
    let writing = true;
    const done = Promise.all([...writers, dataWriter]).then(() => (writing = false));
    const seen: string[] = [];
    let syncs = 0;
    let sawAccountData = 0;
    const collect = async (timeout: number) => {
      const res = await server.request(
        "GET",
        `/_matrix/client/v3/sync?since=${since}&filter=${filter}&timeout=${timeout}`,
        { token: alice.accessToken },
      );
      assertEquals(res.status, 200);
      syncs++;
      assert(res.body.next_batch > since, "tokens only grow");
      for (const room of Object.values(res.body.rooms.join) as JsonObject[]) {
        const timeline = room.timeline as { events: JsonObject[]; limited: boolean };
        assertEquals(timeline.limited, false);
        for (const e of timeline.events) {
          if (e.type === "m.room.message") seen.push(e.event_id as string);
        }
      }
      const data = (res.body.account_data.events as JsonObject[]).find((e) => e.type === "t.test");
      if (data) sawAccountData = (data.content as { i: number }).i + 1;
      since = res.body.next_batch;
    };
    while (writing) await collect(2_000);
    await done;
    await collect(0);
    assertEquals(seen.length, sentIds.length, "nothing missed or repeated");
    assertEquals(new Set(seen), new Set(sentIds));
    assertEquals(sawAccountData, accountData, "the last account data write arrived");
    assert(syncs > 5);

    // A parked long-poll, woken by an append, then by account data (a wake with no commit).
    const parked = async (act: () => Promise<unknown>) => {
      const started = Date.now();
      const polling = server.request(
        "GET",
        `/_matrix/client/v3/sync?since=${since}&filter=${filter}&timeout=20000`,
        { token: alice.accessToken },
      );
      await new Promise((resolve) => setTimeout(resolve, 30));
      await act();
      const res = await polling;
      assert(Date.now() - started < 10_000, "woken, not timed out");
      since = res.body.next_batch;
      return res.body;
    };
    const message = await parked(() => say(server, rooms[1], bob.userId, "late"));
    const late = (message.rooms.join[rooms[1]].timeline.events as JsonObject[]).map((e) =>
      e.content && (e.content as JsonObject).body
    );
    assertEquals(late, ["late"]);
    const data = await parked(() =>
      server.request(
        "PUT",
        `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/account_data/t.test`,
        { token: alice.accessToken, body: { i: 99 } },
      )
    );
    assertEquals(
      (data.account_data.events as JsonObject[]).find((e) => e.type === "t.test")?.content,
      { i: 99 },
    );
    assert(barriers < reads, `woken reads skip the barrier (${barriers} for ${reads} reads)`);
  } finally {
    store.syncBarrier = barrier;
    store.roomChanges = changes;
    server.close();
  }
});

Deno.test("a limited timeline gives prev_batch to paginate, and the gap's state changes", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoom(server, alice.userId);
    const filter = q({ room: { timeline: { limit: 3 } } });
    const path = (since?: string) =>
      `/_matrix/client/v3/sync?filter=${filter}${since ? `&since=${since}` : ""}`;
    const first = await server.request("GET", path(), { token: alice.accessToken });
    await server.deps.sender.send({
      roomId,
      sender: alice.userId,
      type: "m.room.name",
      stateKey: "",
      content: { name: "Gap" },
    });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      ids.push((await say(server, roomId, alice.userId, `m${i}`)).eventId);
    }

    const res = await server.request("GET", path(first.body.next_batch), {
      token: alice.accessToken,
    });
    const room = res.body.rooms.join[roomId];
    assertEquals(room.timeline.limited, true);
    assertEquals(room.timeline.events.map((e: JsonObject) => e.event_id), ids.slice(5));
    assertEquals(
      room.state.events.map((e: JsonObject) => [e.type, (e.content as JsonObject).name]),
      [["m.room.name", "Gap"]],
      "state holds what changed in the gap, and only that",
    );
    const page = await server.deps.eventStore.timeline(roomId, {
      from: room.timeline.prev_batch,
      dir: "b",
      limit: 5,
    });
    assertEquals(page.events.map((e) => e.eventId), ids.slice(0, 5).reverse());
  } finally {
    server.close();
  }
});

Deno.test("invite, join and leave move a room between sections across syncs", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId, "12");
    const sync = async (since?: string) => {
      const res = await server.request(
        "GET",
        `/_matrix/client/v3/sync${since ? `?since=${since}` : ""}`,
        { token: bob.accessToken },
      );
      assertEquals(res.status, 200);
      return res.body;
    };
    let body = await sync();
    assertEquals(Object.keys(body.rooms.join), []);

    await member(server, roomId, bob.userId, "invite", alice.userId);
    body = await sync(body.next_batch);
    const invite = body.rooms.invite[roomId].invite_state.events as JsonObject[];
    assert(invite.some((e) => e.type === "m.room.create"), "invite state carries the create");
    assert(
      invite.some((e) =>
        e.type === "m.room.member" && e.state_key === bob.userId &&
        (e.content as JsonObject).membership === "invite"
      ),
    );
    assertEquals(body.rooms.join[roomId], undefined);

    await member(server, roomId, bob.userId, "join");
    await say(server, roomId, alice.userId, "welcome");
    body = await sync(body.next_batch);
    const joined = body.rooms.join[roomId];
    assert(joined, "joined room appears");
    assertEquals(body.rooms.invite[roomId], undefined);
    const stateTypes = new Set([...joined.state.events, ...joined.timeline.events].map((
      e: JsonObject,
    ) => e.type));
    assert(stateTypes.has("m.room.create"), "a room joined since gets its full state");

    await say(server, roomId, alice.userId, "before leave");
    await member(server, roomId, bob.userId, "leave");
    const after = await say(server, roomId, alice.userId, "after leave");
    body = await sync(body.next_batch);
    const left = body.rooms.leave[roomId];
    assert(left, "left room appears in leave");
    const texts = left.timeline.events.map((e: JsonObject) => e.event_id);
    assert(!texts.includes(after.eventId), "the leave's timeline stops at the leave");
    assertEquals(left.timeline.events.at(-1).content.membership, "leave");
    assertEquals(body.rooms.join[roomId], undefined);

    await say(server, roomId, alice.userId, "unseen");
    body = await sync(body.next_batch);
    assertEquals(body.rooms.leave[roomId], undefined);
    assertEquals(body.rooms.join[roomId], undefined);

    const withLeave = await server.request(
      "GET",
      `/_matrix/client/v3/sync?filter=${q({ room: { include_leave: true } })}`,
      { token: bob.accessToken },
    );
    assert(withLeave.body.rooms.leave[roomId], "include_leave shows it in a full sync");
    const without = await sync();
    assertEquals(without.rooms.leave[roomId], undefined);
  } finally {
    server.close();
  }
});

Deno.test("lazy-loaded members: only timeline senders and the syncing user", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const carol = await registerUser(server, "carol");
    const roomId = await publicRoom(server, alice.userId);
    await member(server, roomId, bob.userId, "join");
    await member(server, roomId, carol.userId, "join");
    await say(server, roomId, bob.userId, "only bob talks");
    const lazy = q({ room: { timeline: { limit: 1 }, state: { lazy_load_members: true } } });
    const res = await server.request("GET", `/_matrix/client/v3/sync?filter=${lazy}`, {
      token: alice.accessToken,
    });
    const room = res.body.rooms.join[roomId];
    const members = room.state.events.filter((e: JsonObject) => e.type === "m.room.member")
      .map((e: JsonObject) => e.state_key).sort();
    assertEquals(members, [alice.userId, bob.userId].sort());
    assertEquals(room.summary["m.joined_member_count"], 3);
    assertEquals(room.summary["m.invited_member_count"], 0);
    assertEquals([...room.summary["m.heroes"]].sort(), [bob.userId, carol.userId].sort());

    const eager = await server.request(
      "GET",
      `/_matrix/client/v3/sync?filter=${q({ room: { timeline: { limit: 1 } } })}`,
      { token: alice.accessToken },
    );
    const all = eager.body.rooms.join[roomId].state.events.filter((e: JsonObject) =>
      e.type === "m.room.member"
    );
    assertEquals(all.length, 3);
  } finally {
    server.close();
  }
});

Deno.test("a long-poll returns as soon as a message arrives", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const roomId = await publicRoom(server, alice.userId);
    const first = await server.request("GET", "/_matrix/client/v3/sync", {
      token: alice.accessToken,
    });
    const polling = server.request(
      "GET",
      `/_matrix/client/v3/sync?since=${first.body.next_batch}&timeout=600000`,
      { token: alice.accessToken },
    );
    // Send once the poll is waiting; the wait is what the test checks, not its duration.
    while (server.deps.syncNotifier.watching === 0) await new Promise((r) => setTimeout(r, 1));
    const sent = await say(server, roomId, alice.userId, "wake up");
    const res = await polling;
    assertEquals(res.status, 200);
    const ids = res.body.rooms.join[roomId].timeline.events.map((e: JsonObject) => e.event_id);
    assertEquals(ids, [sent.eventId]);
  } finally {
    server.close();
  }
});

Deno.test("an invite wakes the invited user's long-poll", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const roomId = await publicRoom(server, alice.userId);
    const first = await server.request("GET", "/_matrix/client/v3/sync", {
      token: bob.accessToken,
    });
    const polling = server.request(
      "GET",
      `/_matrix/client/v3/sync?since=${first.body.next_batch}&timeout=600000`,
      { token: bob.accessToken },
    );
    while (server.deps.syncNotifier.watching === 0) await new Promise((r) => setTimeout(r, 1));
    await member(server, roomId, bob.userId, "invite", alice.userId);
    const res = await polling;
    assert(res.body.rooms.invite[roomId]);
  } finally {
    server.close();
  }
});
