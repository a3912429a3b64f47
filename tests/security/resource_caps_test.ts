/**
 * Resource limits on writes (issue 8, finding 10): per-user rate limits on every write, and
 * caps on what one user can store (room state bytes, account data, filters), each refused with
 * a clear error and without writing anything. Body limits, nesting and page sizes are in
 * resource_limits_test.ts.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { registerUser } from "../routes/client_harness.ts";
import { DEFAULT_RATE_LIMITS } from "../../domain/rate_limiter.ts";

const V3 = "/_matrix/client/v3";
type Server = Awaited<ReturnType<typeof startTestServer>>;

async function createRoom(
  server: Server,
  token: string,
  body: unknown = { preset: "public_chat" },
) {
  const created = await server.request("POST", `${V3}/createRoom`, { token, body });
  assertEquals(created.status, 200, JSON.stringify(created.body));
  const roomId: string = created.body.room_id;
  return { roomId, room: `${V3}/rooms/${encodeURIComponent(roomId)}` };
}

// ---- Rate limits on every write ----

Deno.test("finding 10: every kind of write has a per-user rate limit answering 429", async () => {
  const now = 1_000_000; // a frozen clock: no bucket refills during the test
  const server = await startTestServer({}, { now: () => now });
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const user = encodeURIComponent(alice.userId);
    const { roomId, room } = await createRoom(server, token);
    const events = await server.request("GET", `${room}/messages?dir=b&limit=1`, { token });
    const eventId = encodeURIComponent(events.body.chunk[0].event_id);
    const rid = encodeURIComponent(roomId);
    const cases: [string, number, (i: number) => [string, string, unknown]][] = [
      ["state", DEFAULT_RATE_LIMITS.state.burst, (i) => [
        "PUT",
        `${room}/state/org.example.s/${i}`,
        { i },
      ]],
      ["profile", DEFAULT_RATE_LIMITS.profile.burst, (i) => [
        "PUT",
        `${V3}/profile/${user}/displayname`,
        { displayname: `a${i}` },
      ]],
      ["filter", DEFAULT_RATE_LIMITS.filter.burst, (i) => [
        "POST",
        `${V3}/user/${user}/filter`,
        { room: { timeline: { limit: i + 1 } } },
      ]],
      ["account_data", DEFAULT_RATE_LIMITS.account_data.burst, (i) => [
        "PUT",
        `${V3}/user/${user}/rooms/${rid}/tags/t${i % 3}`,
        {},
      ]],
      ["receipt", DEFAULT_RATE_LIMITS.receipt.burst, () => [
        "POST",
        `${room}/receipt/m.read/${eventId}`,
        {},
      ]],
      ["typing", DEFAULT_RATE_LIMITS.typing.burst, (i) => [
        "PUT",
        `${room}/typing/${user}`,
        { typing: i % 2 === 0, timeout: 1000 },
      ]],
      ["push_rules", DEFAULT_RATE_LIMITS.push_rules.burst, (i) => [
        "PUT",
        `${V3}/pushrules/global/room/${rid}`,
        { actions: i % 2 === 0 ? ["notify"] : [] },
      ]],
      ["directory", DEFAULT_RATE_LIMITS.directory.burst, (i) => [
        "PUT",
        `${V3}/directory/list/room/${rid}`,
        { visibility: i % 2 === 0 ? "public" : "private" },
      ]],
      ["presence", DEFAULT_RATE_LIMITS.presence.burst, (i) => [
        "PUT",
        `${V3}/presence/${user}/status`,
        { presence: i % 2 === 0 ? "online" : "unavailable" },
      ]],
      ["user_write", DEFAULT_RATE_LIMITS.user_write.burst, (i) => [
        "PUT",
        `${V3}/devices/${encodeURIComponent(alice.deviceId)}`,
        { display_name: `d${i}` },
      ]],
      // Not a write, but the most a read may cost (about 100,000 index entries).
      ["search", DEFAULT_RATE_LIMITS.search.burst, (i) => [
        "POST",
        `${V3}/search`,
        { search_categories: { room_events: { search_term: `w${i}` } } },
      ]],
      ["report", DEFAULT_RATE_LIMITS.report.burst, (i) => [
        "POST",
        `${V3}/users/${user}/report`,
        { reason: `r${i}` },
      ]],
    ];
    const failures: string[] = [];
    for (const [action, burst, make] of cases) {
      for (let i = 0; i < burst; i++) {
        const [method, path, body] = make(i);
        const res = await server.request(method, path, { token, body });
        if (res.status !== 200) {
          failures.push(`${action} #${i}: ${res.status} ${JSON.stringify(res.body)}`);
          break;
        }
      }
      const [method, path, body] = make(burst);
      const limited = await server.request(method, path, { token, body });
      if (limited.status !== 429 || limited.body.errcode !== "M_LIMIT_EXCEEDED") {
        failures.push(`${action}: ${limited.status} ${JSON.stringify(limited.body)}`);
      } else if (!(limited.body.retry_after_ms > 0)) failures.push(`${action}: no retry_after_ms`);
    }
    assertEquals(failures, []);
    // The refused state event was not written.
    const refused = await server.request(
      "GET",
      `${room}/state/org.example.s/${DEFAULT_RATE_LIMITS.state.burst}`,
      { token },
    );
    assertEquals(refused.status, 404);
  } finally {
    server.close();
  }
});

Deno.test("finding 10: invites are limited per inviter and per invitee", async () => {
  const now = 1_000_000;
  const server = await startTestServer({}, { now: () => now });
  try {
    const alice = await registerUser(server, "alice");
    const mallory = await registerUser(server, "mallory");
    const victim = await registerUser(server, "victim");
    const invitedBurst = DEFAULT_RATE_LIMITS.invited.burst;
    // Many rooms each inviting the same user: the invitee's bucket runs out, whoever invites.
    const statuses: number[] = [];
    for (let i = 0; i <= invitedBurst; i++) {
      const inviter = i % 2 === 0 ? alice : mallory;
      const { room } = await createRoom(server, inviter.accessToken, { preset: "private_chat" });
      const res = await server.request("POST", `${room}/invite`, {
        token: inviter.accessToken,
        body: { user_id: victim.userId },
      });
      statuses.push(res.status);
    }
    assertEquals(statuses.slice(0, invitedBurst), Array(invitedBurst).fill(200));
    assertEquals(statuses[invitedBurst], 429);
    // The empty bucket holds for the other ways to invite too: a member state event, and
    // createRoom's invite list.
    const { room } = await createRoom(server, mallory.accessToken, { preset: "private_chat" });
    const viaState = await server.request(
      "PUT",
      `${room}/state/m.room.member/${encodeURIComponent(victim.userId)}`,
      { token: mallory.accessToken, body: { membership: "invite" } },
    );
    assertEquals(viaState.status, 429, JSON.stringify(viaState.body));
    const viaCreate = await server.request("POST", `${V3}/createRoom`, {
      token: mallory.accessToken,
      body: { preset: "private_chat", invite: [victim.userId] },
    });
    assertEquals(viaCreate.status, 429, JSON.stringify(viaCreate.body));
    const sync = await server.request("GET", `${V3}/sync`, { token: victim.accessToken });
    assertEquals(Object.keys(sync.body.rooms?.invite ?? {}).length, invitedBurst);
  } finally {
    server.close();
  }
});

Deno.test("finding 10: TESSERA_RATE_LIMITS=off switches the write limits off", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const { room } = await createRoom(server, alice.accessToken);
    for (let i = 0; i < DEFAULT_RATE_LIMITS.state.burst + 5; i++) {
      const res = await server.request("PUT", `${room}/state/org.example.s/${i}`, {
        token: alice.accessToken,
        body: { i },
      });
      assertEquals(res.status, 200);
    }
  } finally {
    server.close();
  }
});

// ---- Caps on room state ----

/** Send 30 KB state events under fresh keys until one is refused (or `max` are sent). */
async function fillState(server: Server, token: string, room: string, prefix: string, max = 200) {
  const content = { blob: "z".repeat(30_000) };
  for (let i = 0; i < max; i++) {
    const res = await server.request("PUT", `${room}/state/org.example.spam/${prefix}${i}`, {
      token,
      body: content,
    });
    if (res.status !== 200) return { accepted: i, refused: res };
  }
  return { accepted: max, refused: undefined };
}

Deno.test("finding 10: one user's state in a room is capped, so a new joiner's first sync stays small", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const { roomId, room } = await createRoom(server, alice.accessToken);
    // The issue: 2,000 events of 30 KB, 60 MB per first sync. Here at most 200 are tried (6 MB).
    const { accepted, refused } = await fillState(server, alice.accessToken, room, "k");
    assert(refused !== undefined, `all ${accepted} events of 30 KB were accepted`);
    assertEquals(refused.status, 413);
    assertEquals(refused.body.errcode, "M_TOO_LARGE");
    assert(/Your state events in this room/.test(refused.body.error), refused.body.error);
    assert(accepted >= 30 && accepted < 40, `${accepted} accepted`);
    // The refused write wrote nothing.
    const head = (await server.deps.eventStore.roomHead(roomId))!.lastPosition;
    const again = await server.request("PUT", `${room}/state/org.example.spam/k${accepted}`, {
      token: alice.accessToken,
      body: { blob: "z".repeat(30_000) },
    });
    assertEquals(again.status, 413);
    assertEquals((await server.deps.eventStore.roomHead(roomId))!.lastPosition, head);
    const missing = await server.request("GET", `${room}/state/org.example.spam/k${accepted}`, {
      token: alice.accessToken,
    });
    assertEquals(missing.status, 404);
    // At the cap, shrinking an entry (or replacing it with one no larger) still works, and the
    // room's other state (name, topic) is not hers to fill.
    const shrink = await server.request("PUT", `${room}/state/org.example.spam/k0`, {
      token: alice.accessToken,
      body: {},
    });
    assertEquals(shrink.status, 200);
    const topic = await server.request("PUT", `${room}/state/m.room.topic`, {
      token: alice.accessToken,
      body: { topic: "still possible" },
    });
    assertEquals(topic.status, 200);
    // A new joiner's first sync carries all of it, and stays around the cap (1 MiB), not 6 MB.
    assertEquals(
      (await server.request("POST", `${room}/join`, { token: bob.accessToken })).status,
      200,
    );
    const res = await server.app.request(`${V3}/sync`, {
      headers: { authorization: `Bearer ${bob.accessToken}` },
    });
    const bytes = (await res.arrayBuffer()).byteLength;
    assertEquals(res.status, 200);
    assert(bytes < 1.5 * 1024 * 1024, `first sync is ${bytes} bytes`);
  } finally {
    server.close();
  }
});

Deno.test("finding 10: a room's state is capped across its users; the counts survive replay", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const users = [];
    for (const name of ["alice", "u1", "u2", "u3", "u4"]) {
      users.push(await registerUser(server, name));
    }
    const [alice, ...others] = users;
    const { roomId, room } = await createRoom(server, alice.accessToken, {
      preset: "public_chat",
      power_level_content_override: {
        users: Object.fromEntries(others.map((u) => [u.userId, 50])),
      },
    });
    for (const u of others) {
      assertEquals(
        (await server.request("POST", `${room}/join`, { token: u.accessToken })).status,
        200,
      );
    }
    const refusals: string[] = [];
    for (const [i, u] of users.entries()) {
      const { refused } = await fillState(server, u.accessToken, room, `u${i}-`);
      refusals.push(refused?.body.error ?? "none");
    }
    // Four users fill about 4 MiB; the fifth is refused by the room's cap, not their own.
    assert(/Your state events/.test(refusals[0]), refusals[0]);
    assert(/The room's state would exceed/.test(refusals[4]), refusals[4]);
    // Another user replaces one of alice's entries: her bytes move to them; a removal-by-empty
    // content shrinks the room. Replay rebuilds exactly the counts the live path keeps.
    const taken = await server.request("PUT", `${room}/state/org.example.spam/u0-1`, {
      token: others[0].accessToken,
      body: { small: true },
    });
    assertEquals(taken.status, 200);
    const { replay } = await import("../../kv/replay.ts");
    const target = await Deno.openKv(":memory:");
    try {
      const report = await replay({ source: server.kv, target });
      assertEquals(report.differences, []);
    } finally {
      target.close();
    }
    const usage = await server.deps.stateQuota["usage"].stateUsage(roomId, alice.userId, "x", "");
    assert(usage.roomBytes <= 4 * 1024 * 1024 + 64 * 1024, `${usage.roomBytes}`);
  } finally {
    server.close();
  }
});

// ---- Caps on account data ----

Deno.test("finding 10: account data is capped in types and bytes; a new login's first sync stays small", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const user = encodeURIComponent(alice.userId);
    const put = (type: string, body: unknown, roomId?: string) =>
      server.request(
        "PUT",
        roomId === undefined
          ? `${V3}/user/${user}/account_data/${type}`
          : `${V3}/user/${user}/rooms/${encodeURIComponent(roomId)}/account_data/${type}`,
        { token, body },
      );
    // Bytes: objects of 59 KB until refused (the 500 types made first syncs 88 MB).
    const big = { blob: "b".repeat(59_000) };
    let accepted = 0;
    let refused;
    for (; accepted < 60; accepted++) {
      const res = await put(`org.example.big${accepted}`, big);
      if (res.status !== 200) {
        refused = res;
        break;
      }
    }
    assert(refused !== undefined, "60 objects of 59 KB were all accepted");
    assertEquals(refused.status, 413);
    assertEquals(refused.body.errcode, "M_TOO_LARGE");
    assert(accepted >= 30 && accepted < 40, `${accepted} accepted`);
    assertEquals(
      (await server.request("GET", `${V3}/user/${user}/account_data/org.example.big${accepted}`, {
        token,
      })).status,
      404,
    );
    // Room account data counts toward the same bytes.
    const { roomId, room } = await createRoom(server, token);
    assertEquals((await put("org.example.roombig", big, roomId)).status, 413);
    // Replacing an entry with a smaller one still works at the cap; read markers are exempt.
    assertEquals((await put("org.example.big0", { small: 1 })).status, 200);
    const events = await server.request("GET", `${room}/messages?dir=b&limit=1`, { token });
    const marker = await server.request("POST", `${room}/read_markers`, {
      token,
      body: { "m.fully_read": events.body.chunk[0].event_id },
    });
    assertEquals(marker.status, 200);
    // A new login's first sync (no since token) carries every object: bounded by the cap
    // (2 MiB), not the 3.5 MB of the 60 objects tried.
    const res = await server.app.request(`${V3}/sync`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const bytes = (await res.arrayBuffer()).byteLength;
    assertEquals(res.status, 200);
    assert(bytes < 2.5 * 1024 * 1024, `first sync is ${bytes} bytes`);
  } finally {
    server.close();
  }
});

Deno.test("finding 10: at most 200 global account data types per user", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const user = encodeURIComponent(alice.userId);
    const put = (type: string) =>
      server.request("PUT", `${V3}/user/${user}/account_data/${type}`, { token, body: { a: 1 } });
    const statuses = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      const status = (await put(`org.example.t${i}`)).status;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    assertEquals([...statuses], [[200, 200]]);
    const over = await put("org.example.t200");
    assertEquals(over.status, 413);
    assertEquals(over.body.errcode, "M_TOO_LARGE");
    assert(/account data types/.test(over.body.error), over.body.error);
    assertEquals(
      (await server.request("GET", `${V3}/user/${user}/account_data/org.example.t200`, { token }))
        .status,
      404,
    );
    // Existing types can still be rewritten.
    assertEquals((await put("org.example.t5")).status, 200);
  } finally {
    server.close();
  }
});

// ---- Cap on stored filters ----

Deno.test("finding 10: at most 100 stored filters per user; the same filter again is free", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const path = `${V3}/user/${encodeURIComponent(alice.userId)}/filter`;
    const upload = (limit: number) =>
      server.request("POST", path, { token, body: { room: { timeline: { limit } } } });
    const ids: string[] = [];
    for (let i = 1; i <= 100; i++) {
      const res = await upload(i);
      assertEquals(res.status, 200);
      ids.push(res.body.filter_id);
    }
    const over = await upload(101);
    assertEquals(over.status, 413);
    assertEquals(over.body.errcode, "M_TOO_LARGE");
    assert(/100 filters/.test(over.body.error), over.body.error);
    // Re-uploading a stored filter answers its ID, as every client start-up does.
    const again = await upload(7);
    assertEquals(again.status, 200);
    assertEquals(again.body.filter_id, ids[6]);
    // Nothing was stored for the refused one: the first 100 are all there is.
    let stored = 0;
    for await (const _ of server.kv.list({ prefix: ["userid_filter", alice.userId] })) stored++;
    assertEquals(stored, 100);
  } finally {
    server.close();
  }
});

// ---- Cap on pending invites ----

Deno.test("finding 10: a user holds at most 200 pending invites; rejecting one makes room", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const mallory = await registerUser(server, "mallory");
    const victim = await registerUser(server, "victim");
    const invite = async () => {
      const { roomId, room } = await createRoom(server, mallory.accessToken, {
        preset: "private_chat",
      });
      const res = await server.request("POST", `${room}/invite`, {
        token: mallory.accessToken,
        body: { user_id: victim.userId },
      });
      return { roomId, room, res };
    };
    let first = "";
    for (let i = 0; i < 200; i++) {
      const { room, res } = await invite();
      assertEquals(res.status, 200);
      if (i === 0) first = room;
    }
    const over = await invite();
    assertEquals(over.res.status, 403);
    assertEquals(over.res.body.errcode, "M_FORBIDDEN");
    assert(/pending invites/.test(over.res.body.error), over.res.body.error);
    // The other ways to invite are held to the same cap: a member state event, and
    // createRoom's invite list (which refuses the whole room, writing nothing).
    const bypass = await createRoom(server, mallory.accessToken, { preset: "private_chat" });
    const viaState = await server.request(
      "PUT",
      `${bypass.room}/state/m.room.member/${encodeURIComponent(victim.userId)}`,
      { token: mallory.accessToken, body: { membership: "invite" } },
    );
    assertEquals(viaState.status, 403, JSON.stringify(viaState.body));
    assert(/pending invites/.test(viaState.body.error), viaState.body.error);
    const roomsBefore = await server.deps.eventStore.roomsOfUser(mallory.userId);
    const viaCreate = await server.request("POST", `${V3}/createRoom`, {
      token: mallory.accessToken,
      body: { preset: "private_chat", invite: [victim.userId] },
    });
    assertEquals(viaCreate.status, 403, JSON.stringify(viaCreate.body));
    assert(/pending invites/.test(viaCreate.body.error), viaCreate.body.error);
    assertEquals(
      (await server.deps.eventStore.roomsOfUser(mallory.userId)).length,
      roomsBefore.length,
      "a refused createRoom made a room",
    );
    const state = await server.deps.eventStore.roomsOfUser(victim.userId, ["invite"]);
    assertEquals(state.length, 200);
    assert(!state.some((m) => m.roomId === over.roomId), "the refused invite was written");
    assert(!state.some((m) => m.roomId === bypass.roomId), "the state-event invite was written");
    // The victim rejects one: another invite fits again.
    assertEquals(
      (await server.request("POST", `${first}/leave`, { token: victim.accessToken })).status,
      200,
    );
    assertEquals((await invite()).res.status, 200);
  } finally {
    server.close();
  }
});
