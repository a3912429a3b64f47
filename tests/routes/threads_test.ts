/**
 * GET /v1/rooms/{roomId}/threads: thread roots by latest activity, `include=participated`,
 * pagination, history visibility, and an ignored user's root shown redacted.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";

async function setup() {
  const server = await startTestServer();
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
    token: alice.accessToken,
    body: { preset: "public_chat" },
  });
  const roomId = created.body.room_id as string;
  const room = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
  const threads = `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/threads`;
  await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
  let txn = 0;
  const say = async (token: string, body: string, threadRoot?: string) => {
    const content: Record<string, unknown> = { msgtype: "m.text", body };
    if (threadRoot) content["m.relates_to"] = { rel_type: "m.thread", event_id: threadRoot };
    const res = await server.request("PUT", `${room}/send/m.room.message/t${txn++}`, {
      token,
      body: content,
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    return res.body.event_id as string;
  };
  const list = (token: string, query = "") =>
    server.request("GET", `${threads}${query}`, { token });
  return { server, alice, bob, roomId, room, threads, say, list };
}

const ids = (chunk: { event_id: string }[]) => chunk.map((e) => e.event_id);

Deno.test("threads: roots ordered by their latest reply, with bundled thread summaries", async () => {
  const { server, alice, bob, say, list } = await setup();
  try {
    const a = await say(alice.accessToken, "thread A");
    const b = await say(bob.accessToken, "thread B");
    const c = await say(alice.accessToken, "thread C");
    await say(alice.accessToken, "no thread");
    await say(bob.accessToken, "c1", c);
    await say(alice.accessToken, "a1", a);
    await say(alice.accessToken, "b1", b);
    const latestA = await say(bob.accessToken, "a2", a);

    const all = await list(alice.accessToken, "?limit=10");
    assertEquals(all.status, 200);
    assertEquals(ids(all.body.chunk), [a, b, c], "by latest reply, newest first");
    assertEquals(all.body.next_batch, undefined);
    const summary = all.body.chunk[0].unsigned["m.relations"]["m.thread"];
    assertEquals(summary.count, 2);
    assertEquals(summary.latest_event.event_id, latestA);
    assertEquals(summary.current_user_participated, true);

    // Bob sent B's root and replied in C and A: he took part in all three.
    const bobs = await list(bob.accessToken, "?include=participated&limit=10");
    assertEquals(ids(bobs.body.chunk), [a, b, c]);
    // Someone outside the room may not list its threads.
    const carol = await registerUser(server, "carol");
    const carols = await list(carol.accessToken, "?include=participated");
    assertEquals(carols.status, 403, "not in the room");

    // Pages of one.
    const p1 = await list(alice.accessToken, "?limit=1");
    assertEquals(ids(p1.body.chunk), [a]);
    assert(p1.body.next_batch);
    const p2 = await list(alice.accessToken, `?limit=1&from=${p1.body.next_batch}`);
    assertEquals(ids(p2.body.chunk), [b]);
    const p3 = await list(alice.accessToken, `?limit=1&from=${p2.body.next_batch}`);
    assertEquals(ids(p3.body.chunk), [c]);
    const p4 = p3.body.next_batch === undefined
      ? { body: { chunk: [] } }
      : await list(alice.accessToken, `?limit=1&from=${p3.body.next_batch}`);
    assertEquals(p4.body.chunk, []);

    // A new reply moves its thread to the front.
    await say(alice.accessToken, "c2", c);
    assertEquals(ids((await list(alice.accessToken)).body.chunk), [c, a, b]);
  } finally {
    server.close();
  }
});

Deno.test("threads: participated means the root's sender or a replier", async () => {
  const { server, alice, bob, say, list } = await setup();
  try {
    const mine = await say(alice.accessToken, "alice's root");
    const bobsRoot = await say(bob.accessToken, "bob's root");
    const repliedTo = await say(bob.accessToken, "bob's other root");
    await say(bob.accessToken, "reply", mine);
    await say(bob.accessToken, "reply", bobsRoot);
    await say(alice.accessToken, "alice replies", repliedTo);
    const participated = await list(alice.accessToken, "?include=participated");
    assertEquals(ids(participated.body.chunk).sort(), [mine, repliedTo].sort());
    assertEquals((await list(alice.accessToken, "?include=everything")).status, 400);
    assertEquals((await list(alice.accessToken, "?limit=x")).status, 400);
    assertEquals((await list(alice.accessToken, "?from=bogus")).status, 400);
  } finally {
    server.close();
  }
});

Deno.test("threads: an ignored user's root comes redacted, their replies uncounted", async () => {
  const { server, alice, bob, say, list } = await setup();
  try {
    const root = await say(bob.accessToken, "bob's secret");
    await say(alice.accessToken, "alice in thread", root);
    await say(bob.accessToken, "bob in thread", root);
    await server.request(
      "PUT",
      `/_matrix/client/v3/user/${
        encodeURIComponent(alice.userId)
      }/account_data/m.ignored_user_list`,
      { token: alice.accessToken, body: { ignored_users: { [bob.userId]: {} } } },
    );
    const res = await list(alice.accessToken);
    assertEquals(ids(res.body.chunk), [root]);
    const event = res.body.chunk[0];
    assertEquals(event.content, {}, "redacted");
    const thread = event.unsigned["m.relations"]["m.thread"];
    assertEquals(thread.count, 1);
    assertEquals(thread.latest_event.content.body, "alice in thread");
  } finally {
    server.close();
  }
});

Deno.test("threads: a thread the reader saw none of is not listed", async () => {
  const { server, alice, bob, room, say, list } = await setup();
  try {
    await server.request("PUT", `${room}/state/m.room.history_visibility/`, {
      token: alice.accessToken,
      body: { history_visibility: "joined" },
    });
    await server.request("POST", `${room}/leave`, { token: bob.accessToken, body: {} });
    const before = await say(alice.accessToken, "before bob is back");
    await say(alice.accessToken, "reply before", before);
    await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
    const after = await say(alice.accessToken, "after");
    await say(alice.accessToken, "reply after", after);
    assertEquals(ids((await list(bob.accessToken)).body.chunk), [after]);
    assertEquals(ids((await list(alice.accessToken)).body.chunk), [after, before]);
  } finally {
    server.close();
  }
});

Deno.test("threaded receipts: the event must be in the thread; sync counts per thread", async () => {
  const { server, alice, bob, roomId, room, say } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    const inThread = await say(alice.accessToken, "in thread", root);
    const edit = await server.request("PUT", `${room}/send/m.room.message/edit`, {
      token: alice.accessToken,
      body: {
        msgtype: "m.text",
        body: "* edited",
        "m.new_content": { msgtype: "m.text", body: "edited" },
        "m.relates_to": { rel_type: "m.replace", event_id: inThread },
      },
    });
    const main = await say(alice.accessToken, "main timeline");
    const receipt = (eventId: string, threadId: string) =>
      server.request("POST", `${room}/receipt/m.read/${encodeURIComponent(eventId)}`, {
        token: bob.accessToken,
        body: { thread_id: threadId },
      });
    // Per-thread counts in /sync, main-timeline counts apart.
    const filter = encodeURIComponent(
      JSON.stringify({ room: { timeline: { unread_thread_notifications: true } } }),
    );
    const counts = async () => {
      const sync = await server.request("GET", `/_matrix/client/v3/sync?filter=${filter}`, {
        token: bob.accessToken,
      });
      assertEquals(sync.status, 200);
      return sync.body.rooms.join[roomId];
    };
    const before = await counts();
    // The reply notifies; its edit does not (.m.rule.suppress_edits).
    assertEquals(before.unread_thread_notifications[root].notification_count, 1);
    assertEquals(before.unread_notifications.notification_count, 2, "root and main message");

    const wrong = await receipt(main, root);
    assertEquals(wrong.status, 400);
    assertEquals(wrong.body.errcode, "M_INVALID_PARAM");
    assertEquals((await receipt(inThread, "main")).status, 400);
    assertEquals((await receipt(inThread, "$other")).status, 400);
    // The root counts as in its thread and in main; an edit of a reply is in the thread.
    assertEquals((await receipt(root, root)).status, 200);
    assertEquals((await receipt(root, "main")).status, 200);
    assertEquals((await receipt(edit.body.event_id, root)).status, 200);
    // A reaction to the root relates to the thread too (Synapse accepts it there).
    const reaction = await server.request("PUT", `${room}/send/m.reaction/react`, {
      token: alice.accessToken,
      body: { "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "x" } },
    });
    assertEquals((await receipt(reaction.body.event_id, root)).status, 200);
    const after = await counts();
    assertEquals(after.unread_thread_notifications?.[root], undefined, "thread read");
    assertEquals(after.unread_notifications.notification_count, 1, "main: after the root");
    assertEquals((await receipt(main, "main")).status, 200);
    assertEquals((await counts()).unread_notifications.notification_count, 0);
  } finally {
    server.close();
  }
});
