/**
 * GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] and the bundled
 * aggregations (`unsigned["m.relations"]`) of events read through /event, /messages, /context
 * and /relations: pagination both ways, `recurse`, redacted children, history visibility.
 */
import { assert, assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { type JsonResponse, startTestServer } from "./test_server.ts";

async function setup(preset = "public_chat", extra: Record<string, unknown> = {}) {
  const server = await startTestServer();
  const alice = await registerUser(server, "alice");
  const bob = await registerUser(server, "bob");
  const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
    token: alice.accessToken,
    body: { preset, ...extra },
  });
  assertEquals(created.status, 200);
  const roomId = created.body.room_id as string;
  const room = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;
  const v1 = `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}`;
  let txn = 0;
  const send = async (token: string, content: Record<string, unknown>, type = "m.room.message") => {
    const res = await server.request("PUT", `${room}/send/${type}/t${txn++}`, {
      token,
      body: content,
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    return res.body.event_id as string;
  };
  const say = (token: string, body: string, relates?: Record<string, unknown>) =>
    send(token, { msgtype: "m.text", body, ...(relates ? { "m.relates_to": relates } : {}) });
  const get = (token: string, path: string) => server.request("GET", path, { token });
  return { server, alice, bob, roomId, room, v1, send, say, get };
}

const ids = (chunk: { event_id: string }[]) => chunk.map((e) => e.event_id);
const rel = (relType: string, eventId: string) => ({ rel_type: relType, event_id: eventId });

Deno.test("relations: all three forms, newest first, with pagination both ways", async () => {
  const { server, alice, v1, say, send, get } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    const t1 = await say(alice.accessToken, "t1", rel("m.thread", root));
    const r1 = await send(alice.accessToken, {
      "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "👍" },
    }, "m.reaction");
    const t2 = await say(alice.accessToken, "t2", rel("m.thread", root));
    const t3 = await say(alice.accessToken, "t3", rel("m.thread", root));
    const reply = await say(alice.accessToken, "reply", { "m.in_reply_to": { event_id: root } });
    const base = `${v1}/relations/${encodeURIComponent(root)}`;

    const all = await get(alice.accessToken, `${base}?limit=10`);
    assertEquals(all.status, 200);
    assertEquals(ids(all.body.chunk), [t3, t2, r1, t1], "a rich reply is no relation");
    assertEquals(all.body.next_batch, undefined);
    assertEquals(all.body.recursion_depth, undefined);

    const threads = await get(alice.accessToken, `${base}/m.thread`);
    assertEquals(ids(threads.body.chunk), [t3, t2, t1]);
    const reactions = await get(alice.accessToken, `${base}/m.annotation/m.reaction`);
    assertEquals(ids(reactions.body.chunk), [r1]);
    const none = await get(alice.accessToken, `${base}/m.annotation/m.room.message`);
    assertEquals(none.body.chunk, []);

    // Backwards in pages of two, then forwards from the start.
    const p1 = await get(alice.accessToken, `${base}/m.thread?limit=2`);
    assertEquals(ids(p1.body.chunk), [t3, t2]);
    assert(p1.body.next_batch);
    const p2 = await get(alice.accessToken, `${base}/m.thread?limit=2&from=${p1.body.next_batch}`);
    assertEquals(ids(p2.body.chunk), [t1]);
    assertEquals(p2.body.next_batch, undefined);
    assertEquals(p2.body.prev_batch, p1.body.next_batch);
    const f1 = await get(alice.accessToken, `${base}/m.thread?dir=f&limit=2`);
    assertEquals(ids(f1.body.chunk), [t1, t2]);
    const f2 = await get(alice.accessToken, `${base}/m.thread?dir=f&from=${f1.body.next_batch}`);
    assertEquals(ids(f2.body.chunk), [t3]);
    // `to` stops the walk: from page 1's start to page 2's start covers page 1 only.
    const bounded = await get(
      alice.accessToken,
      `${base}/m.thread?limit=10&to=${p1.body.next_batch}`,
    );
    assertEquals(ids(bounded.body.chunk), [t3, t2]);
    // A /messages token works as `from`.
    const messages = await get(
      alice.accessToken,
      `/_matrix/client/v3/rooms/${
        encodeURIComponent(all.body.chunk[0].room_id)
      }/messages?dir=b&limit=1`,
    );
    const fromMessages = await get(alice.accessToken, `${base}?from=${messages.body.end}`);
    assertEquals(ids(fromMessages.body.chunk), [t3, t2, r1, t1].filter((id) => id !== reply));
  } finally {
    server.close();
  }
});

Deno.test("relations: recurse follows relations three levels down and says how deep", async () => {
  const { server, alice, v1, say, send, get } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    const reply = await say(alice.accessToken, "in thread", rel("m.thread", root));
    const edit = await send(alice.accessToken, {
      msgtype: "m.text",
      body: "* edited",
      "m.new_content": { msgtype: "m.text", body: "edited" },
      "m.relates_to": rel("m.replace", reply),
    });
    const reaction = await send(alice.accessToken, {
      "m.relates_to": { rel_type: "m.annotation", event_id: edit, key: "x" },
    }, "m.reaction");
    const deeper = await send(alice.accessToken, {
      "m.relates_to": { rel_type: "m.reference", event_id: reaction },
    }, "m.key.verification.done");
    const base = `${v1}/relations/${encodeURIComponent(root)}`;
    const flat = await get(alice.accessToken, `${base}?recurse=false`);
    assertEquals(ids(flat.body.chunk), [reply]);
    assertEquals(flat.body.recursion_depth, 1);
    const deep = await get(alice.accessToken, `${base}?recurse=true&limit=10`);
    assertEquals(ids(deep.body.chunk), [reaction, edit, reply], "three levels, not the fourth");
    assertEquals(deep.body.recursion_depth, 3);
    assert(!ids(deep.body.chunk).includes(deeper));
    const edits = await get(alice.accessToken, `${base}/m.replace?recurse=true`);
    assertEquals(ids(edits.body.chunk), [edit], "the rel_type filter applies at every level");
    const paged = await get(alice.accessToken, `${base}?recurse=true&limit=2`);
    assertEquals(ids(paged.body.chunk), [reaction, edit]);
    const rest = await get(
      alice.accessToken,
      `${base}?recurse=true&limit=2&from=${paged.body.next_batch}`,
    );
    assertEquals(ids(rest.body.chunk), [reply]);
  } finally {
    server.close();
  }
});

Deno.test("relations: bad input, unknown and invisible parents", async () => {
  const { server, alice, bob, v1, say, get } = await setup("private_chat");
  try {
    const root = await say(alice.accessToken, "private");
    const base = `${v1}/relations/${encodeURIComponent(root)}`;
    assertEquals((await get(alice.accessToken, `${base}?dir=x`)).status, 400);
    assertEquals((await get(alice.accessToken, `${base}?limit=-1`)).status, 400);
    assertEquals((await get(alice.accessToken, `${base}?from=nonsense`)).status, 400);
    assertEquals((await get(alice.accessToken, `${base}?recurse=yes`)).status, 400);
    const unknown = await get(
      alice.accessToken,
      `${v1}/relations/${encodeURIComponent("$" + "A".repeat(43))}`,
    );
    assertEquals(unknown.status, 404);
    assertEquals(unknown.body.errcode, "M_NOT_FOUND");
    // Bob is no member: 403 for the room.
    assertEquals((await get(bob.accessToken, base)).status, 403);
    assertEquals((await server.request("GET", base)).status, 401);
  } finally {
    server.close();
  }
});

Deno.test("relations: a redacted child relates to nothing and drops out of the aggregations", async () => {
  const { server, alice, room, v1, say, get } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    const t1 = await say(alice.accessToken, "t1", rel("m.thread", root));
    const t2 = await say(alice.accessToken, "t2", rel("m.thread", root));
    const redact = await server.request(
      "PUT",
      `${room}/redact/${encodeURIComponent(t2)}/r1`,
      { token: alice.accessToken, body: {} },
    );
    assertEquals(redact.status, 200);
    const listed = await get(alice.accessToken, `${v1}/relations/${encodeURIComponent(root)}`);
    assertEquals(ids(listed.body.chunk), [t1]);
    const event = await get(alice.accessToken, `${room}/event/${encodeURIComponent(root)}`);
    const thread = event.body.unsigned["m.relations"]["m.thread"];
    assertEquals(thread.count, 1);
    assertEquals(thread.latest_event.event_id, t1);
  } finally {
    server.close();
  }
});

Deno.test("aggregations: the latest valid edit, whole, on /event, /messages and /context", async () => {
  const { server, alice, bob, room, roomId, say, send, get } = await setup();
  try {
    assertEquals(
      (await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} })).status,
      200,
    );
    const original = await say(alice.accessToken, "original");
    const edit = (token: string, body: string, extra: Record<string, unknown> = {}) =>
      send(token, {
        msgtype: "m.text",
        body: `* ${body}`,
        "m.new_content": { msgtype: "m.text", body },
        "m.relates_to": rel("m.replace", original),
        ...extra,
      });
    const e1 = await edit(alice.accessToken, "first");
    const e2 = await edit(alice.accessToken, "second");
    // Not valid replacements: another sender, and one without m.new_content.
    await edit(bob.accessToken, "bob's");
    await send(alice.accessToken, {
      msgtype: "m.text",
      body: "no new content",
      "m.relates_to": rel("m.replace", original),
    });
    const check = (event: JsonResponse["body"]) => {
      const replace = event.unsigned["m.relations"]["m.replace"];
      assertEquals(replace.event_id, e2);
      assertEquals(replace.sender, alice.userId);
      assertEquals(typeof replace.origin_server_ts, "number");
      assertEquals(replace.content["m.new_content"].body, "second");
      assertEquals(event.content.body, "original", "the original's content is not replaced");
    };
    check((await get(alice.accessToken, `${room}/event/${encodeURIComponent(original)}`)).body);
    const messages = await get(alice.accessToken, `${room}/messages?dir=b&limit=50`);
    check(messages.body.chunk.find((e: { event_id: string }) => e.event_id === original));
    const context = await get(alice.accessToken, `${room}/context/${encodeURIComponent(e1)}`);
    check(context.body.events_before.find((e: { event_id: string }) => e.event_id === original));
    // The edits themselves carry no bundle.
    const editEvent = await get(alice.accessToken, `${room}/event/${encodeURIComponent(e1)}`);
    assertEquals(editEvent.body.unsigned["m.relations"], undefined);
    // The room's ID went through unchanged.
    assertEquals(messages.body.chunk[0].room_id, roomId);
    // A redacted original bundles no edit.
    await server.request("PUT", `${room}/redact/${encodeURIComponent(original)}/r`, {
      token: alice.accessToken,
      body: {},
    });
    const redacted = await get(alice.accessToken, `${room}/event/${encodeURIComponent(original)}`);
    assertEquals(redacted.body.unsigned["m.relations"]?.["m.replace"], undefined);
  } finally {
    server.close();
  }
});

Deno.test("aggregations: threads count, latest reply, participation; references", async () => {
  const { server, alice, bob, room, say, send, get } = await setup();
  try {
    await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
    const root = await say(bob.accessToken, "root");
    await say(alice.accessToken, "a1", rel("m.thread", root));
    const latest = await say(alice.accessToken, "a2", rel("m.thread", root));
    const edit = await send(alice.accessToken, {
      msgtype: "m.text",
      body: "* a2 edited",
      "m.new_content": { msgtype: "m.text", body: "a2 edited" },
      "m.relates_to": rel("m.replace", latest),
    });
    const ref = await send(alice.accessToken, {
      "m.relates_to": rel("m.reference", root),
    }, "m.key.verification.ready");
    const path = `${room}/event/${encodeURIComponent(root)}`;
    const forAlice = (await get(alice.accessToken, path)).body.unsigned["m.relations"];
    assertEquals(forAlice["m.thread"].count, 2);
    assertEquals(forAlice["m.thread"].current_user_participated, true);
    assertEquals(forAlice["m.thread"].latest_event.event_id, latest);
    assertEquals(
      forAlice["m.thread"].latest_event.unsigned["m.relations"]["m.replace"].event_id,
      edit,
      "the latest reply carries its own edit",
    );
    assertEquals(forAlice["m.reference"], { chunk: [{ event_id: ref }] });
    // Bob sent the root: he participated too. Carol joins late and did not.
    assertEquals(
      (await get(bob.accessToken, path)).body.unsigned["m.relations"]["m.thread"]
        .current_user_participated,
      true,
    );
    const carol = await registerUser(server, "carol");
    await server.request("POST", `${room}/join`, { token: carol.accessToken, body: {} });
    const forCarol = (await get(carol.accessToken, path)).body.unsigned["m.relations"];
    assertEquals(forCarol["m.thread"].current_user_participated, false);
    assertEquals(forCarol["m.thread"].count, 2, "shared history: she sees the thread");
    // Ignoring Alice hides her replies from Bob's count, and with them the whole thread.
    await server.request(
      "PUT",
      `/_matrix/client/v3/user/${encodeURIComponent(bob.userId)}/account_data/m.ignored_user_list`,
      { token: bob.accessToken, body: { ignored_users: { [alice.userId]: {} } } },
    );
    const ignoring = (await get(bob.accessToken, path)).body.unsigned["m.relations"];
    assertEquals(ignoring?.["m.thread"], undefined);
    assertEquals(ignoring?.["m.reference"], undefined);
  } finally {
    server.close();
  }
});

Deno.test("aggregations: a reply from history the reader cannot see is neither bundled nor counted", async () => {
  const { server, alice, bob, room, v1, say, get } = await setup("public_chat");
  try {
    const hv = await server.request(
      "PUT",
      `${room}/state/m.room.history_visibility/`,
      { token: alice.accessToken, body: { history_visibility: "joined" } },
    );
    assertEquals(hv.status, 200);
    const root = await say(alice.accessToken, "root");
    await say(alice.accessToken, "before bob", rel("m.thread", root));
    await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
    const late = await say(alice.accessToken, "after bob", rel("m.thread", root));
    // Bob cannot see the root (sent before he joined): 404 for its relations.
    const hidden = await get(bob.accessToken, `${v1}/relations/${encodeURIComponent(root)}`);
    assertEquals(hidden.status, 404);
    // Alice sees both replies; a later root shows Bob only what he saw.
    const aliceView = (await get(alice.accessToken, `${room}/event/${encodeURIComponent(root)}`))
      .body.unsigned["m.relations"]["m.thread"];
    assertEquals(aliceView.count, 2);
    assertEquals(aliceView.latest_event.event_id, late);
  } finally {
    server.close();
  }
});

Deno.test("aggregations: a reader who left sees neither later replies nor later edits", async () => {
  const { server, alice, bob, room, say, send, get } = await setup("public_chat");
  try {
    await server.request("PUT", `${room}/state/m.room.history_visibility/`, {
      token: alice.accessToken,
      body: { history_visibility: "joined" },
    });
    await server.request("POST", `${room}/join`, { token: bob.accessToken, body: {} });
    const root = await say(alice.accessToken, "root");
    const seen = await say(alice.accessToken, "seen", rel("m.thread", root));
    const firstEdit = await send(alice.accessToken, {
      msgtype: "m.text",
      body: "* root v2",
      "m.new_content": { msgtype: "m.text", body: "root v2" },
      "m.relates_to": rel("m.replace", root),
    });
    await server.request("POST", `${room}/leave`, { token: bob.accessToken, body: {} });
    await say(alice.accessToken, "unseen", rel("m.thread", root));
    await send(alice.accessToken, {
      msgtype: "m.text",
      body: "* root v3",
      "m.new_content": { msgtype: "m.text", body: "root v3" },
      "m.relates_to": rel("m.replace", root),
    });
    const bobView = await get(bob.accessToken, `${room}/event/${encodeURIComponent(root)}`);
    assertEquals(bobView.status, 200);
    const relations = bobView.body.unsigned["m.relations"];
    assertEquals(relations["m.thread"].count, 1);
    assertEquals(relations["m.thread"].latest_event.event_id, seen);
    assertEquals(relations["m.replace"].event_id, firstEdit);
    const aliceView = (await get(alice.accessToken, `${room}/event/${encodeURIComponent(root)}`))
      .body.unsigned["m.relations"];
    assertEquals(aliceView["m.thread"].count, 2);
  } finally {
    server.close();
  }
});

Deno.test("aggregations: a limited sync timeline bundles them", async () => {
  const { server, alice, roomId, say } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    const reply = await say(alice.accessToken, "reply", rel("m.thread", root));
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 3 } } }));
    const initial = await server.request("GET", `/_matrix/client/v3/sync?filter=${filter}`, {
      token: alice.accessToken,
    });
    assertEquals(initial.status, 200);
    const timeline = initial.body.rooms.join[roomId].timeline;
    assertEquals(timeline.limited, true);
    const shown = timeline.events.find((e: { event_id: string }) => e.event_id === root);
    assertEquals(shown.unsigned["m.relations"]["m.thread"].latest_event.event_id, reply);
    assertEquals(shown.unsigned["m.relations"]["m.thread"].count, 1);
  } finally {
    server.close();
  }
});

Deno.test("relations: a sync token as `from` is the point that sync reached", async () => {
  const { server, alice, v1, say } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    await say(alice.accessToken, "seen", rel("m.thread", root));
    const sync = await server.request("GET", "/_matrix/client/v3/sync", {
      token: alice.accessToken,
    });
    const late = await say(alice.accessToken, "after the sync", rel("m.thread", root));
    const base = `${v1}/relations/${encodeURIComponent(root)}`;
    const forward = await server.request("GET", `${base}?dir=f&from=${sync.body.next_batch}`, {
      token: alice.accessToken,
    });
    assertEquals(ids(forward.body.chunk), [late]);
  } finally {
    server.close();
  }
});

Deno.test("sending relations: same room, known parent, one reaction per key, no thread off a relation", async () => {
  const { server, alice, room, v1, say, send } = await setup();
  try {
    const root = await say(alice.accessToken, "root");
    const reply = await say(alice.accessToken, "reply", rel("m.thread", root));
    let txn = 0;
    const attempt = (content: Record<string, unknown>, type = "m.room.message") =>
      server.request("PUT", `${room}/send/${type}/bad${txn++}`, {
        token: alice.accessToken,
        body: content,
      });
    const refused = async (content: Record<string, unknown>, type?: string) => {
      const res = await attempt(content, type);
      assertEquals(res.status, 400, JSON.stringify(res.body));
      assertEquals(res.body.errcode, "M_INVALID_PARAM");
    };
    // A thread off a thread reply, and a relation to an event nobody knows.
    await refused({ body: "x", "m.relates_to": rel("m.thread", reply) });
    await refused({ body: "x", "m.relates_to": rel("m.thread", "$" + "B".repeat(43)) });
    // Reactions: a key is needed, at most 500 characters, and once per sender.
    const react = (key?: unknown) => ({
      "m.relates_to": {
        rel_type: "m.annotation",
        event_id: root,
        ...(key === undefined ? {} : { key }),
      },
    });
    await refused(react(), "m.reaction");
    await refused(react("x".repeat(501)), "m.reaction");
    const first = await send(alice.accessToken, react("👍"), "m.reaction");
    await refused(react("👍"), "m.reaction");
    await send(alice.accessToken, react("🎉"), "m.reaction");
    // Taken back, it may be given again.
    await server.request("PUT", `${room}/redact/${encodeURIComponent(first)}/undo`, {
      token: alice.accessToken,
      body: {},
    });
    await send(alice.accessToken, react("👍"), "m.reaction");
    // A relation to another room's event.
    const other = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: {},
    });
    const elsewhere = await server.request(
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(other.body.room_id)}/send/m.room.message/x`,
      { token: alice.accessToken, body: { body: "x", "m.relates_to": rel("m.reference", root) } },
    );
    assertEquals(elsewhere.status, 400);
    // Nothing refused was sent; the redacted reaction relates to nothing any more.
    const listed = await server.request(
      "GET",
      `${v1}/relations/${encodeURIComponent(root)}/m.annotation`,
      { token: alice.accessToken },
    );
    assertEquals(listed.body.chunk.length, 2);
  } finally {
    server.close();
  }
});

Deno.test("aggregations: search results carry them too", async () => {
  const { server, alice, say } = await setup();
  try {
    const root = await say(alice.accessToken, "findable root");
    const reply = await say(alice.accessToken, "reply", rel("m.thread", root));
    const res = await server.request("POST", "/_matrix/client/v3/search", {
      token: alice.accessToken,
      body: { search_categories: { room_events: { search_term: "findable" } } },
    });
    assertEquals(res.status, 200, JSON.stringify(res.body));
    const [hit] = res.body.search_categories.room_events.results;
    assertEquals(hit.result.event_id, root);
    assertEquals(hit.result.unsigned["m.relations"]["m.thread"].latest_event.event_id, reply);
  } finally {
    server.close();
  }
});
