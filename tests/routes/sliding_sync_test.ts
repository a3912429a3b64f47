/**
 * Simplified sliding sync (MSC4186) over HTTP: first and incremental answers, sticky room
 * subscriptions, a retried pos, unknown positions, refused input, a woken long-poll and the
 * /versions flag.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser, sendText } from "./client_harness.ts";
import { guardWithin } from "../guard.ts";
import { startSharedKvRoom } from "../fleet_coherence/shared_kv_servers.ts";
import { startTestServer } from "./test_server.ts";
import { publicRoom, say } from "./sender_rooms.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** Bounds a wait that must end on a wake; far above any real answer, it measures nothing. */
const guarded = guardWithin(30_000);

const PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const LIST = { ranges: [[0, 1]], required_state: [["m.room.create", ""]], timeline_limit: 5 };
const SUB = { required_state: [["m.room.create", ""]], timeline_limit: 5 };

function slidingSync(server: Server, token: string, body: JsonObject, query = "") {
  return server.request("POST", `${PATH}${query}`, { token, body });
}

/** The bodies of a room entry's timeline messages. */
function bodies(room: JsonObject | undefined): unknown[] {
  const timeline = (room?.timeline ?? []) as JsonObject[];
  return timeline.filter((e) => e.type === "m.room.message")
    .map((e) => (e.content as JsonObject).body);
}

/** Alice in three rooms, the last one created the most recent. */
async function threeRooms(server: Server) {
  const alice = await registerUser(server, "alice");
  const rooms: string[] = [];
  for (const name of ["a", "b", "c"]) {
    const roomId = await publicRoom(server, alice.userId);
    await say(server, roomId, alice.userId, `hello ${name}`);
    rooms.push(roomId);
  }
  return { alice, rooms };
}

Deno.test("sliding sync: a first answer, then only what changed", async () => {
  const server = await startTestServer();
  try {
    const { alice, rooms: [a, b, c] } = await threeRooms(server);
    const first = await slidingSync(server, alice.accessToken, { lists: { all: LIST } });
    assertEquals(first.status, 200, JSON.stringify(first.body));
    assertEquals(first.body.lists.all.count, 3);
    assertEquals(Object.keys(first.body.rooms).sort(), [b, c].sort(), "the two most recent");
    assertEquals(first.body.rooms[c].initial, true);
    assertEquals(bodies(first.body.rooms[c]), ["hello c"]);
    assertEquals(first.body.rooms[c].required_state.map((e: JsonObject) => e.type), [
      "m.room.create",
    ]);
    assert(typeof first.body.pos === "string");

    await say(server, b, alice.userId, "again b");
    const second = await slidingSync(
      server,
      alice.accessToken,
      { lists: { all: LIST } },
      `?pos=${first.body.pos}`,
    );
    assertEquals(second.status, 200, JSON.stringify(second.body));
    assertEquals(Object.keys(second.body.rooms), [b], "only the room with news");
    assert(second.body.rooms[b].initial !== true);
    assertEquals(bodies(second.body.rooms[b]), ["again b"]);

    // Nothing new: an empty answer at once (no timeout).
    const third = await slidingSync(
      server,
      alice.accessToken,
      { lists: { all: LIST } },
      `?pos=${second.body.pos}`,
    );
    assertEquals(third.status, 200);
    assertEquals(third.body.rooms, {});
    assertEquals(third.body.lists.all.count, 3);

    // A room that moves into the range is sent from scratch.
    await say(server, a, alice.userId, "again a");
    const fourth = await slidingSync(
      server,
      alice.accessToken,
      { lists: { all: LIST } },
      `?pos=${third.body.pos}`,
    );
    assertEquals(fourth.body.rooms[a]?.initial, true);
    assertEquals(bodies(fourth.body.rooms[a]), ["hello a", "again a"]);

    // The stable path is the same handler (a new connection there).
    const stable = await server.request("POST", "/_matrix/client/v4/sync", {
      token: alice.accessToken,
      body: { lists: { all: LIST } },
    });
    assertEquals(stable.status, 200);
    assertEquals(stable.body.lists.all.count, 3);
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: room subscriptions stay on the connection until unsubscribed", async () => {
  const server = await startTestServer();
  try {
    const { alice, rooms: [a] } = await threeRooms(server);
    const none = { ranges: [[0, 0]], required_state: [], timeline_limit: 0 };
    const first = await slidingSync(server, alice.accessToken, {
      lists: { top: none },
      room_subscriptions: { [a]: SUB },
    });
    assertEquals(first.status, 200, JSON.stringify(first.body));
    assertEquals(first.body.rooms[a]?.initial, true, "the subscribed room, outside the range");
    assertEquals(bodies(first.body.rooms[a]), ["hello a"]);

    // Not sent again, yet still subscribed: its news arrives.
    await say(server, a, alice.userId, "news a");
    const second = await slidingSync(
      server,
      alice.accessToken,
      { lists: { top: none } },
      `?pos=${first.body.pos}`,
    );
    assertEquals(bodies(second.body.rooms[a]), ["news a"]);
    assert(second.body.rooms[a].initial !== true);

    const third = await slidingSync(server, alice.accessToken, {
      lists: { top: none },
      unsubscribe_rooms: [a],
    }, `?pos=${second.body.pos}`);
    assertEquals(third.status, 200);
    await say(server, a, alice.userId, "unheard");
    const fourth = await slidingSync(
      server,
      alice.accessToken,
      { lists: { top: none } },
      `?pos=${third.body.pos}`,
    );
    // Now the most recent room, it is in the list's range, whose timeline_limit 0 sends
    // its new bump stamp but no timeline: the subscription's timeline is gone.
    assertEquals(fourth.body.rooms[a]?.timeline, undefined, "unsubscribed");

    // A subscription to a room the user is not in is ignored.
    const stranger = await registerUser(server, "stranger");
    const theirs = await publicRoom(server, stranger.userId);
    const fifth = await slidingSync(server, alice.accessToken, {
      room_subscriptions: { [theirs]: SUB },
    }, `?pos=${fourth.body.pos}`);
    assertEquals(fifth.status, 200);
    assertEquals(fifth.body.rooms[theirs], undefined);
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: a retried pos answers again; older and unknown ones are M_UNKNOWN_POS", async () => {
  const server = await startTestServer();
  try {
    const { alice, rooms: [, , c] } = await threeRooms(server);
    const body = { conn_id: "main", lists: { all: LIST } };
    const first = await slidingSync(server, alice.accessToken, body);
    await say(server, c, alice.userId, "maybe lost");
    const lost = await slidingSync(server, alice.accessToken, body, `?pos=${first.body.pos}`);
    assertEquals(bodies(lost.body.rooms[c]), ["maybe lost"]);
    // The answer never reached the client: it sends the same pos again and gets the same news.
    const retry = await slidingSync(server, alice.accessToken, body, `?pos=${first.body.pos}`);
    assertEquals(retry.status, 200);
    assertEquals(bodies(retry.body.rooms[c]), ["maybe lost"]);
    assert(retry.body.pos !== lost.body.pos);

    const idle = await slidingSync(server, alice.accessToken, body, `?pos=${retry.body.pos}`);
    assertEquals(idle.body.rooms, {}, "the retried answer is what the connection holds");
    // Nothing new: no position issued, the client carries on from the one it sent.
    assertEquals(idle.body.pos, retry.body.pos);
    await say(server, c, alice.userId, "after");
    const next = await slidingSync(server, alice.accessToken, body, `?pos=${retry.body.pos}`);
    assertEquals(next.status, 200);
    assertEquals(bodies(next.body.rooms[c]), ["after"], "only what came after the retry");
    for (const stale of [lost.body.pos, first.body.pos, "nonsense", `${first.body.pos}0`]) {
      const res = await slidingSync(
        server,
        alice.accessToken,
        body,
        `?pos=${encodeURIComponent(stale)}`,
      );
      assertEquals(res.status, 400, stale);
      assertEquals(res.body.errcode, "M_UNKNOWN_POS");
    }
    // Another conn_id is another connection: this pos means nothing there.
    const other = await slidingSync(
      server,
      alice.accessToken,
      { ...body, conn_id: "other" },
      `?pos=${next.body.pos}`,
    );
    assertEquals(other.body.errcode, "M_UNKNOWN_POS");
    // The client starts again without a pos, from scratch.
    const fresh = await slidingSync(server, alice.accessToken, body);
    assertEquals(fresh.body.rooms[c]?.initial, true);
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: bad input answers 400 before any work", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const many = <T>(n: number, make: (i: number) => T): T[] =>
      Array.from({ length: n }, (_, i) => make(i));
    const cases: [string, unknown, string][] = [
      [
        "too many lists",
        { lists: Object.fromEntries(many(101, (i) => [`l${i}`, LIST] as const)) },
        "M_INVALID_PARAM",
      ],
      [
        "too many ranges",
        { lists: { l: { ...LIST, ranges: many(11, (i) => [i, i]) } } },
        "M_BAD_JSON",
      ],
      ["too much required_state", {
        lists: { l: { ...LIST, required_state: many(101, (i) => ["t", `${i}`]) } },
      }, "M_BAD_JSON"],
      [
        "timeline_limit over the cap",
        { lists: { l: { ...LIST, timeline_limit: 100_000 } } },
        "M_BAD_JSON",
      ],
      ["a backwards range", { lists: { l: { ...LIST, ranges: [[5, 2]] } } }, "M_BAD_JSON"],
      ["a negative range", { lists: { l: { ...LIST, ranges: [[-1, 2]] } } }, "M_BAD_JSON"],
      ["lists not an object", { lists: [1] }, "M_BAD_JSON"],
      ["a bad filter", { lists: { l: { ...LIST, filters: { is_dm: "yes" } } } }, "M_BAD_JSON"],
      ["a bad conn_id", { conn_id: "a b/c" }, "M_BAD_JSON"],
      ["a bad set_presence", { set_presence: "away" }, "M_BAD_JSON"],
    ];
    for (const [what, body, errcode] of cases) {
      const res = await slidingSync(server, alice.accessToken, body as JsonObject);
      assertEquals(res.status, 400, what);
      assertEquals(res.body.errcode, errcode, what);
    }
    const timeout = await slidingSync(server, alice.accessToken, {}, "?timeout=soon");
    assertEquals([timeout.status, timeout.body.errcode], [400, "M_INVALID_PARAM"]);
    const notJson = await server.request("POST", PATH, { token: alice.accessToken, body: "{" });
    assertEquals([notJson.status, notJson.body.errcode], [400, "M_NOT_JSON"]);
    const anonymous = await server.request("POST", PATH, { body: {} });
    assertEquals(anonymous.status, 401);
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: a long-poll is woken by a message", async () => {
  const server = await startTestServer();
  try {
    const { alice, rooms: [a] } = await threeRooms(server);
    const body = { lists: { all: { ...LIST, ranges: [[0, 9]] } } };
    const first = await slidingSync(server, alice.accessToken, body);
    const watching = server.deps.syncNotifier.watching;
    // A long timeout: the test passes only if the message wakes the request.
    const polling = slidingSync(
      server,
      alice.accessToken,
      body,
      `?pos=${first.body.pos}&timeout=600000`,
    );
    while (server.deps.syncNotifier.watching === watching) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // Messages keep coming while the woken request reads: each arrives exactly once, in order,
    // over that answer and the next ones.
    const sent = ["wake up", "m1", "m2", "m3", "m4"];
    const sending = (async () => {
      for (const text of sent) await say(server, a, alice.userId, text);
    })();
    const res = await guarded(polling, "the woken long-poll");
    assertEquals(res.status, 200);
    await sending;
    const seen = bodies(res.body.rooms[a]);
    let pos = res.body.pos;
    for (;;) {
      const next = await slidingSync(server, alice.accessToken, body, `?pos=${pos}`);
      assertEquals(next.status, 200, JSON.stringify(next.body));
      if (next.body.rooms[a] === undefined) break;
      seen.push(...bodies(next.body.rooms[a]));
      pos = next.body.pos;
    }
    assertEquals(seen, sent);
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: /versions advertises the flag clients look for", async () => {
  const server = await startTestServer();
  try {
    const res = await server.request("GET", "/_matrix/client/versions");
    assertEquals(res.body.unstable_features["org.matrix.simplified_msc3575"], true);
    const alice = await registerUser(server, "alice");
    const served = await slidingSync(server, alice.accessToken, {});
    assertEquals(served.status, 200, "and the endpoint it names is served");
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: a message sent through another process wakes a long-poll", async () => {
  // Poll mode: nothing in A's memory hears of B's commits, only the wake keys they bump.
  const { a, b, alice, bob, roomId, close } = await startSharedKvRoom({
    TESSERA_WAKE: "poll",
    TESSERA_WAKE_POLL_MS: "20",
  });
  try {
    const body = { lists: { all: { ...LIST, ranges: [[0, 9]] } } };
    const first = await slidingSync(a, bob.accessToken, body);
    assertEquals(first.status, 200);
    const watching = a.deps.syncNotifier.watching;
    const polling = slidingSync(a, bob.accessToken, body, `?pos=${first.body.pos}&timeout=600000`);
    while (a.deps.syncNotifier.watching === watching) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const sent = await sendText(b, alice, roomId, "across processes");
    assertEquals(sent.status, 200);
    const res = await guarded(polling, "the long-poll on A");
    assertEquals(res.status, 200);
    assertEquals(bodies(res.body.rooms[roomId]), ["across processes"]);

    // The connection lives in the shared store: its next request, served by B, carries on.
    await sendText(a, bob, roomId, "from A");
    const onB = await slidingSync(b, bob.accessToken, body, `?pos=${res.body.pos}`);
    assertEquals(onB.status, 200);
    assertEquals(bodies(onB.body.rooms[roomId]), ["from A"], "only the news, on the other process");
  } finally {
    close();
  }
});

Deno.test("sliding sync: two requests racing on one pos both answer, and either pos carries on", async () => {
  const server = await startTestServer();
  try {
    const { alice, rooms: [, b] } = await threeRooms(server);
    const body = { lists: { all: LIST } };
    const first = await slidingSync(server, alice.accessToken, body);
    await say(server, b, alice.userId, "raced");
    const [one, two] = await Promise.all([
      slidingSync(server, alice.accessToken, body, `?pos=${first.body.pos}`),
      slidingSync(server, alice.accessToken, body, `?pos=${first.body.pos}`),
    ]);
    for (const res of [one, two]) {
      assertEquals(res.status, 200, JSON.stringify(res.body));
      assertEquals(bodies(res.body.rooms[b]), ["raced"]);
    }
    assert(one.body.pos !== two.body.pos);
    await say(server, b, alice.userId, "then");
    const next = await slidingSync(server, alice.accessToken, body, `?pos=${two.body.pos}`);
    assertEquals(bodies(next.body.rooms[b]), ["then"], "nothing repeated from the race");
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: a to-device message wakes a long-poll with the to_device extension", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const body = { extensions: { to_device: { enabled: true } } };
    const first = await slidingSync(server, alice.accessToken, body);
    assertEquals(first.status, 200, JSON.stringify(first.body));
    const since = first.body.extensions.to_device.next_batch;
    const watching = server.deps.syncNotifier.watching;
    const polling = slidingSync(
      server,
      alice.accessToken,
      { extensions: { to_device: { enabled: true, since } } },
      `?pos=${first.body.pos}&timeout=600000`,
    );
    while (server.deps.syncNotifier.watching === watching) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const sent = await server.request("PUT", "/_matrix/client/v3/sendToDevice/m.test/t1", {
      token: bob.accessToken,
      body: { messages: { [alice.userId]: { [alice.deviceId]: { hello: "alice" } } } },
    });
    assertEquals(sent.status, 200);
    const res = await guarded(polling, "the woken long-poll");
    assertEquals(res.status, 200);
    const events = res.body.extensions.to_device.events as JsonObject[];
    assertEquals(events.map((e) => [e.type, e.sender, e.content]), [
      ["m.test", bob.userId, { hello: "alice" }],
    ]);
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: a list's count changing alone ends a long-poll", async () => {
  const server = await startTestServer();
  try {
    const { alice } = await threeRooms(server);
    // A range past the list's end: no room is ever sent, only the count can change.
    const body = { lists: { far: { ...LIST, ranges: [[10, 19]] } } };
    const first = await slidingSync(server, alice.accessToken, body);
    assertEquals(first.body.lists.far.count, 3);
    assertEquals(first.body.rooms, {});
    const watching = server.deps.syncNotifier.watching;
    const polling = slidingSync(
      server,
      alice.accessToken,
      body,
      `?pos=${first.body.pos}&timeout=600000`,
    );
    while (server.deps.syncNotifier.watching === watching) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await publicRoom(server, alice.userId);
    const next = await guarded(polling, "the long-poll");
    assertEquals(next.body.lists.far.count, 4);
    assertEquals(next.body.rooms, {});
    assert(next.body.pos !== first.body.pos, "a new position");
  } finally {
    server.close();
  }
});

Deno.test("sliding sync: a list without timelines (timeline_limit 0) still hears of a room's new messages", async () => {
  const server = await startTestServer();
  try {
    const { alice, rooms: [a] } = await threeRooms(server);
    const list = { ranges: [[0, 9]], required_state: [], timeline_limit: 0 };
    const first = await slidingSync(server, alice.accessToken, { lists: { all: list } });
    assertEquals(first.status, 200, JSON.stringify(first.body));
    const before = first.body.rooms[a].bump_stamp;
    await say(server, a, alice.userId, "news");
    const second = await slidingSync(
      server,
      alice.accessToken,
      { lists: { all: list } },
      `?pos=${first.body.pos}`,
    );
    assertEquals(second.status, 200, JSON.stringify(second.body));
    assertEquals(Object.keys(second.body.rooms), [a], JSON.stringify(second.body));
    assert(second.body.rooms[a].bump_stamp > before, "the new message moved its bump stamp");
    assertEquals(second.body.rooms[a].timeline, undefined);
  } finally {
    await server.close();
  }
});
