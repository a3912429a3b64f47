/**
 * Typing and read receipts between two in-process servers: A's user's typing and receipts
 * (threaded too) reach B's /sync and B's reach A's, stopping clears typing, remote typing expires
 * after the EDU's timeout, private receipts stay home, and a remote receipt moves no local unread
 * count. Inbound EDUs that the sending server may not send are dropped, each on its own: a user
 * of another server, a room the sender has no member in, a user not joined, a room whose server
 * ACL denies the sender, malformed fields; a receipt for an event we do not hold is kept.
 */
import assert from "node:assert/strict";
import type { Network, NetworkServer } from "./in_process_network.ts";
import {
  createRoom,
  edusSent,
  ok,
  say,
  sendEdus,
  sharedPublicRoom,
  withNetwork,
} from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import type { JsonObject, JsonValue } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const enc = encodeURIComponent;

/** A clock the test moves (remote typing expiry), starting now. */
function testClock() {
  let at = Date.now();
  return { now: () => at, advance: (ms: number) => at += ms };
}

/** Run `fn` on a fresh A/B network on `clock`; typing expiry timers are stopped afterwards. */
function withServers(
  clock: { now: () => number },
  fn: (net: Network, a: NetworkServer, b: NetworkServer) => Promise<void>,
): Promise<void> {
  return withNetwork(
    async (net) => {
      const [a, b] = [net.servers[A], net.servers[B]];
      try {
        await fn(net, a, b);
      } finally {
        a.deps.typing.stop();
        b.deps.typing.stop();
      }
    },
    [A, B],
    { now: clock.now },
  );
}

/** A full sync's ephemeral events of `type` in `roomId` for `user` (empty when none). */
async function ephemeral(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  type: string,
): Promise<JsonObject[]> {
  const body = await ok(server, user, "GET", "/_matrix/client/v3/sync");
  const events = (body.rooms?.join?.[roomId]?.ephemeral?.events ?? []) as JsonObject[];
  return events.filter((e) => e.type === type).map((e) => e.content as JsonObject);
}

/** Who `user` on `server` sees typing in `roomId` now. */
async function typingIn(server: NetworkServer, user: RegisteredUser, roomId: string) {
  return (await ephemeral(server, user, roomId, "m.typing")).flatMap((c) => c.user_ids as string[]);
}

/** The receipts `user` on `server` sees in `roomId`: event -> type -> user -> data. */
async function receiptsIn(server: NetworkServer, user: RegisteredUser, roomId: string) {
  const merged: Record<string, Record<string, Record<string, JsonObject>>> = {};
  for (const content of await ephemeral(server, user, roomId, "m.receipt")) {
    for (const [eventId, byType] of Object.entries(content)) {
      for (const [type, byUser] of Object.entries(byType as JsonObject)) {
        Object.assign((merged[eventId] ??= {})[type] ??= {}, byUser as JsonObject);
      }
    }
  }
  return merged;
}

/** `user`'s unread notification count in `roomId` on `server`. */
async function notificationCount(server: NetworkServer, user: RegisteredUser, roomId: string) {
  const body = await ok(server, user, "GET", "/_matrix/client/v3/sync");
  return body.rooms.join[roomId].unread_notifications.notification_count as number;
}

function setTyping(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  typing: boolean,
  timeout = 30_000,
) {
  return ok(
    server,
    user,
    "PUT",
    `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(user.userId)}`,
    {
      typing,
      timeout,
    },
  );
}

function sendReceipt(
  server: NetworkServer,
  user: RegisteredUser,
  roomId: string,
  eventId: string,
  type = "m.read",
  body: JsonObject = {},
) {
  return ok(
    server,
    user,
    "POST",
    `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/${type}/${enc(eventId)}`,
    body,
  );
}

/** The contents of the EDUs of `type` sent over the network so far from `origin`. */
function sentContents(net: Network, origin: string, type: string): JsonObject[] {
  return edusSent(net, { origin, type }).map((e) => e.content);
}

/** Alice on A creates a public room; Bob on B joins it through A; A tells B about nothing yet. */
async function sharedRoom(a: NetworkServer, b: NetworkServer, creator: "a" | "b" = "a") {
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const [home, guest, owner, joiner] = creator === "a" ? [a, b, alice, bob] : [b, a, bob, alice];
  const roomId = await sharedPublicRoom(home, owner, guest, joiner);
  await home.deps.federationSender.runOnce();
  return { alice, bob, roomId };
}

Deno.test("typing over federation: A's reaches B's sync and B's reaches A's; stop clears it; remote typing expires", async () => {
  const clock = testClock();
  await withServers(clock, async (net, a, b) => {
    const { alice, bob, roomId } = await sharedRoom(a, b);

    await setTyping(a, alice, roomId, true, 20_000);
    await a.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(b, bob, roomId), [alice.userId]);
    // The EDU as the spec shapes it, with the timeout a Tessera receiver expires it by.
    assert.deepEqual(sentContents(net, A, "m.typing"), [
      { room_id: roomId, user_id: alice.userId, typing: true, timeout: 20_000 },
    ]);

    await setTyping(b, bob, roomId, true, 10_000);
    await b.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(a, alice, roomId), [alice.userId, bob.userId].sort());

    await setTyping(a, alice, roomId, false);
    await a.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(b, bob, roomId), [bob.userId]);
    assert.deepEqual(sentContents(net, A, "m.typing").at(-1), {
      room_id: roomId,
      user_id: alice.userId,
      typing: false,
    });

    // Bob's typing on A lasts the 10 s his EDU said; nothing from B is needed to end it.
    clock.advance(10_001);
    assert.deepEqual(await typingIn(a, alice, roomId), []);
    // A never sends other servers' users' typing on.
    assert.equal(sentContents(net, A, "m.typing").some((c) => c.user_id === bob.userId), false);
  });
});

Deno.test("typing over federation: a member who leaves stops typing at once, on both servers", async () => {
  const clock = testClock();
  await withServers(clock, async (net, a, b) => {
    const { alice, bob, roomId } = await sharedRoom(a, b);
    const carol = await a.register("carol");
    await ok(a, carol, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {});
    await a.deps.federationSender.runOnce();

    await setTyping(a, alice, roomId, true);
    await setTyping(b, bob, roomId, true);
    await a.deps.federationSender.runOnce();
    await b.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(b, bob, roomId), [alice.userId, bob.userId].sort());

    // Alice (local to A) leaves while typing: gone on A at once, and B is told, no timeout run.
    await ok(a, alice, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
    await a.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(a, carol, roomId), [bob.userId]);
    assert.deepEqual(await typingIn(b, bob, roomId), [bob.userId]);
    assert.deepEqual(sentContents(net, A, "m.typing").at(-1), {
      room_id: roomId,
      user_id: alice.userId,
      typing: false,
    });

    // Bob (remote to A) leaves while typing: A drops his typing when his leave arrives.
    await ok(b, bob, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
    await b.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(a, carol, roomId), []);
    // A speaks only for its own users.
    assert.equal(sentContents(net, A, "m.typing").some((c) => c.user_id === bob.userId), false);
  });
});

Deno.test("receipts over federation: public ones (threaded too) cross both ways, private ones stay, local counts stay", async () => {
  await withServers(testClock(), async (net, a, b) => {
    const { alice, bob, roomId } = await sharedRoom(a, b);
    const hello = await say(a, alice, roomId, "hello Bob");
    await a.deps.federationSender.runOnce();
    assert.equal(await notificationCount(b, bob, roomId), 1);

    // Alice's receipt reaches Bob's sync; Bob's own unread count does not move.
    await sendReceipt(a, alice, roomId, hello);
    await a.deps.federationSender.runOnce();
    const onB = await receiptsIn(b, bob, roomId);
    assert.equal(typeof onB[hello]["m.read"][alice.userId].ts, "number");
    assert.equal(await notificationCount(b, bob, roomId), 1);
    const [sent] = sentContents(net, A, "m.receipt");
    assert.deepEqual(Object.keys(sent), [roomId]);
    assert.deepEqual(
      (sent[roomId] as JsonObject)["m.read"],
      { [alice.userId]: { event_ids: [hello], data: onB[hello]["m.read"][alice.userId] } },
    );

    // Bob's private receipt never leaves B; his public one reaches Alice.
    await sendReceipt(b, bob, roomId, hello, "m.read.private");
    await b.deps.federationSender.runOnce();
    assert.deepEqual(sentContents(net, B, "m.receipt"), []);
    assert.equal((await receiptsIn(a, alice, roomId))[hello]["m.read"][bob.userId], undefined);
    await sendReceipt(b, bob, roomId, hello);
    await b.deps.federationSender.runOnce();
    assert.equal(
      typeof (await receiptsIn(a, alice, roomId))[hello]["m.read"][bob.userId].ts,
      "number",
    );

    // Threaded receipts keep their thread: the main timeline and a thread.
    const root = await say(a, alice, roomId, "a thread");
    const replyPath = `/_matrix/client/v3/rooms/${
      enc(roomId)
    }/send/m.room.message/${crypto.randomUUID()}`;
    const reply = (await ok(a, alice, "PUT", replyPath, {
      msgtype: "m.text",
      body: "in the thread",
      "m.relates_to": { rel_type: "m.thread", event_id: root },
    })).event_id as string;
    await a.deps.federationSender.runOnce();
    await sendReceipt(b, bob, roomId, root, "m.read", { thread_id: "main" });
    await sendReceipt(b, bob, roomId, reply, "m.read", { thread_id: root });
    await b.deps.federationSender.runOnce();
    const onA = await receiptsIn(a, alice, roomId);
    assert.equal(onA[root]["m.read"][bob.userId].thread_id, "main");
    assert.equal(onA[reply]["m.read"][bob.userId].thread_id, root);
    // Alice's own count on A is hers: Bob reading moved nothing (she sent every message).
    assert.equal(await notificationCount(a, alice, roomId), 0);
  });
});

Deno.test("inbound typing and receipts: wrong origin, not in room, not joined and malformed entries dropped alone", async () => {
  await withServers(testClock(), async (net, a, b) => {
    const { alice, bob, roomId } = await sharedRoom(a, b);
    const hello = await say(a, alice, roomId, "hello");
    await a.deps.federationSender.runOnce();
    // A room on B that A has no member in.
    const bobsOwn = await createRoom(b, bob, { preset: "private_chat" });
    const bobsEvent = await say(b, bob, bobsOwn, "mine");
    const typing = (roomId: string, userId: string, value: JsonValue = true) => ({
      edu_type: "m.typing",
      content: { room_id: roomId, user_id: userId, typing: value },
    });
    const read = (eventIds: JsonValue, data: JsonValue = { ts: 1 }) => ({
      event_ids: eventIds,
      data,
    });

    await sendEdus(net, A, B, [
      typing(roomId, bob.userId), // B's own user, claimed by A
      typing(roomId, "@ghost:a.test"), // A's, but not in the room
      typing(bobsOwn, alice.userId), // a room A has no member in
      typing(roomId, alice.userId, "yes"), // malformed
      typing("not a room", alice.userId),
    ]);
    assert.deepEqual(await typingIn(b, bob, roomId), []);
    assert.deepEqual(await typingIn(b, bob, bobsOwn), []);

    await sendEdus(net, A, B, [{
      edu_type: "m.receipt",
      content: {
        [roomId]: {
          "m.read": {
            [bob.userId]: read([hello]), // B's own user, claimed by A
            "@ghost:a.test": read([hello]), // not joined
            [alice.userId]: read([hello], { ts: 5, thread_id: "main" }), // the good one
          },
          "m.read.private": { [alice.userId]: read([hello]) }, // never sent between servers
        },
        [bobsOwn]: { "m.read": { [alice.userId]: read([bobsEvent]) } }, // A not in the room
      },
    }]);
    const seen = await receiptsIn(b, bob, roomId);
    assert.deepEqual(Object.keys(seen), [hello]);
    assert.deepEqual(seen[hello], { "m.read": { [alice.userId]: { ts: 5, thread_id: "main" } } });
    assert.deepEqual(await receiptsIn(b, bob, bobsOwn), {});

    // Malformed entries are dropped; an event of another room too.
    const aliceOnly = (data: JsonValue, eventIds: JsonValue = [hello]) => ({
      edu_type: "m.receipt",
      content: { [roomId]: { "m.read": { [alice.userId]: read(eventIds, data) } } },
    });
    await sendEdus(net, A, B, [
      aliceOnly({ ts: -1 }),
      aliceOnly({ ts: "soon" }),
      aliceOnly({ ts: 9, thread_id: "not a thread" }),
      aliceOnly({ ts: 9 }, []),
      aliceOnly({ ts: 9 }, ["no sigil"]),
      aliceOnly({ ts: 9 }, [bobsEvent]),
    ]);
    assert.deepEqual(await receiptsIn(b, bob, roomId), seen);

    // A receipt for an event B does not hold is kept (clients show it once they have the event),
    // and the sender's next receipt replaces it.
    const unknown = "$not-here-yet:a.test";
    await sendEdus(net, A, B, [aliceOnly({ ts: 10 }, [unknown])]);
    const withUnknown = await receiptsIn(b, bob, roomId);
    assert.deepEqual(withUnknown[unknown], { "m.read": { [alice.userId]: { ts: 10 } } });
    await sendEdus(net, A, B, [aliceOnly({ ts: 11 }, [hello])]);
    const later = await receiptsIn(b, bob, roomId);
    assert.equal(later[unknown], undefined);
    assert.deepEqual(later[hello]["m.read"][alice.userId], { ts: 11 });
  });
});

Deno.test("inbound typing and receipts: a room whose server ACL denies the sender drops them", async () => {
  await withServers(testClock(), async (_net, a, b) => {
    // Bob's room on B, so Bob may set its ACL.
    const { alice, bob, roomId } = await sharedRoom(a, b, "b");
    const hello = await say(b, bob, roomId, "hello");
    await b.deps.federationSender.runOnce();

    // Allowed first: the same EDUs are taken before the ACL.
    await setTyping(a, alice, roomId, true);
    await a.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(b, bob, roomId), [alice.userId]);
    await setTyping(a, alice, roomId, false);
    await a.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(b, bob, roomId), []);

    await ok(b, bob, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.server_acl`, {
      allow: ["*"],
      deny: [A],
    });
    await b.deps.federationSender.runOnce();
    await setTyping(a, alice, roomId, true);
    await sendReceipt(a, alice, roomId, hello);
    await a.deps.federationSender.runOnce();
    assert.deepEqual(await typingIn(b, bob, roomId), []);
    assert.equal((await receiptsIn(b, bob, roomId))[hello]?.["m.read"]?.[alice.userId], undefined);
  });
});
