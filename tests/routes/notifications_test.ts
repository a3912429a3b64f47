import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

type Server = Awaited<ReturnType<typeof startTestServer>>;

/** A public room with alice (creator) and bob joined, built through the real sender. */
async function roomWithAliceAndBob(server: Server, alice: string, bob: string) {
  const { sender } = server.deps;
  const { roomId } = await sender.createRoom({ version: "12", creator: alice });
  const state = (s: string, type: string, content: JsonObject, key = "") =>
    sender.send({ roomId, sender: s, type, stateKey: key, content });
  await state(alice, "m.room.member", { membership: "join" }, alice);
  await state(alice, "m.room.power_levels", { users: {} });
  await state(alice, "m.room.join_rules", { join_rule: "public" });
  await state(bob, "m.room.member", { membership: "join" }, bob);
  const send = async (s: string, content: JsonObject, type = "m.room.message") =>
    (await sender.send({ roomId, sender: s, type, content })).eventId;
  return { roomId, send };
}

Deno.test("unread counts: messages notify, mentions highlight, receipts and own messages reset", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const { roomId, send } = await roomWithAliceAndBob(server, alice.userId, bob.userId);
    const counts = async (userId = bob.userId) =>
      (await server.deps.notificationCounts.countsFor(userId, [roomId])).get(roomId)!;

    assertEquals((await counts()).notification_count, 0);
    const first = await send(alice.userId, { msgtype: "m.text", body: "hello" });
    // Two members: the one-to-one rule notifies.
    assertEquals([(await counts()).notification_count, (await counts()).highlight_count], [1, 0]);
    await send(alice.userId, { msgtype: "m.notice", body: "bot says hi" });
    assertEquals((await counts()).notification_count, 1);
    const mention = await send(alice.userId, {
      msgtype: "m.text",
      body: "bob: look",
      "m.mentions": { user_ids: [bob.userId] },
    });
    assertEquals([(await counts()).notification_count, (await counts()).highlight_count], [2, 1]);
    const inThread = await send(alice.userId, {
      msgtype: "m.text",
      body: "in a thread",
      "m.relates_to": { rel_type: "m.thread", event_id: first },
    });
    let c = await counts();
    assertEquals(c.notification_count, 3);
    assertEquals(c.main, { notification_count: 2, highlight_count: 1 });
    assertEquals(c.threads, { [first]: { notification_count: 1, highlight_count: 0 } });
    // The sender is never notified of their own events.
    assertEquals((await counts(alice.userId)).notification_count, 0);

    // An unthreaded receipt on the mention reads the main timeline; the later thread event stays.
    const receipt = (eventId: string, body: JsonObject = {}) =>
      server.request(
        "POST",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${
          encodeURIComponent(eventId)
        }`,
        { token: bob.accessToken, body },
      );
    assertEquals((await receipt(mention)).status, 200);
    c = await counts();
    assertEquals([c.notification_count, c.highlight_count, c.main.notification_count], [1, 0, 0]);
    assertEquals(c.threads[first].notification_count, 1);
    // A threaded (private) receipt clears that thread only.
    const priv = await server.request(
      "POST",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read.private/${
        encodeURIComponent(inThread)
      }`,
      { token: bob.accessToken, body: { thread_id: first } },
    );
    assertEquals(priv.status, 200);
    assertEquals((await counts()).notification_count, 0);

    // Bob's own message is an implicit receipt.
    await send(alice.userId, { msgtype: "m.text", body: "one" });
    await send(alice.userId, { msgtype: "m.text", body: "two" });
    assertEquals((await counts()).notification_count, 2);
    await send(bob.userId, { msgtype: "m.text", body: "reply" });
    assertEquals((await counts()).notification_count, 0);
    // Alice's counts grew with Bob's message, and an @room from a power-0 user is no highlight.
    assertEquals((await counts(alice.userId)).notification_count, 1);

    // The counts reach /sync when the sync area shows them.
    const sync = await server.request("GET", "/_matrix/client/v3/sync", {
      token: alice.accessToken,
    });
    const room = sync.body?.rooms?.join?.[roomId];
    if (sync.status === 200 && room?.unread_notifications?.notification_count !== undefined) {
      assertEquals(room.unread_notifications.notification_count, 1);
    }
  } finally {
    server.close();
  }
});

Deno.test("GET /notifications: newest first, highlight filter, read flags, pagination, bad input", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const { roomId, send } = await roomWithAliceAndBob(server, alice.userId, bob.userId);
    const a = await send(alice.userId, { msgtype: "m.text", body: "a" });
    const b = await send(alice.userId, {
      msgtype: "m.text",
      body: "b",
      "m.mentions": { user_ids: [bob.userId] },
    });
    const c = await send(alice.userId, { msgtype: "m.text", body: "c" });
    await server.request(
      "POST",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${
        encodeURIComponent(b)
      }`,
      { token: bob.accessToken, body: {} },
    );
    const token = bob.accessToken;
    const list = await server.request("GET", "/_matrix/client/v3/notifications", { token });
    assertEquals(list.status, 200);
    const notes = list.body.notifications;
    assertEquals(notes.map((n: { event: { event_id: string } }) => n.event.event_id), [c, b, a]);
    assertEquals(notes.map((n: { read: boolean }) => n.read), [false, true, true]);
    assertEquals(notes[0].room_id, roomId);
    assertEquals(notes[0].event.content.body, "c");
    assert(!("room_id" in notes[0].event));
    assert(typeof notes[0].ts === "number");
    assertEquals(notes[1].actions, ["notify", { set_tweak: "sound", value: "default" }, {
      set_tweak: "highlight",
    }]);
    assertEquals(list.body.next_token, undefined);

    const high = await server.request("GET", "/_matrix/client/r0/notifications?only=highlight", {
      token,
    });
    assertEquals(
      high.body.notifications.map((n: { event: { event_id: string } }) => n.event.event_id),
      [b],
    );

    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 5; i++) {
      const q = from === undefined ? "" : `&from=${encodeURIComponent(from)}`;
      const page = await server.request("GET", `/_matrix/client/v3/notifications?limit=1${q}`, {
        token,
      });
      seen.push(
        ...page.body.notifications.map((n: { event: { event_id: string } }) => n.event.event_id),
      );
      from = page.body.next_token;
      if (from === undefined) break;
    }
    assertEquals(seen, [c, b, a]);

    const bad = async (query: string) => {
      const res = await server.request("GET", `/_matrix/client/v3/notifications?${query}`, {
        token,
      });
      assertEquals([res.status, res.body.errcode], [400, "M_INVALID_PARAM"]);
    };
    await bad("limit=abc");
    await bad("limit=-1");
    await bad("from=garbage");
    const anon = await server.request("GET", "/_matrix/client/v3/notifications");
    assertEquals(anon.status, 401);
    // Alice was notified of nothing.
    const none = await server.request("GET", "/_matrix/client/v3/notifications", {
      token: alice.accessToken,
    });
    assertEquals(none.body.notifications, []);
  } finally {
    server.close();
  }
});
