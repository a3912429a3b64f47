/**
 * Room state views across two servers on one KV: A keeps each room's state view and DAG tip
 * after its own commits (LocalEventSender), the remote servers of a room (FederationSender) and
 * its audience (NotificationPlanner); a state change committed through B binds A's very next
 * event, built on B's event (the DAG stays linear), authorised on the state B left.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  createPublicRoom,
  joinRoom,
  type RegisteredUser,
  registerUser,
  sendText,
} from "../routes/client_harness.ts";
import { type SharedKvServer, startSharedKvServers, V3 } from "./shared_kv_servers.ts";

function room(roomId: string): string {
  return `${V3}/rooms/${encodeURIComponent(roomId)}`;
}

function setState(
  server: SharedKvServer,
  user: RegisteredUser,
  roomId: string,
  type: string,
  content: unknown,
) {
  return server.request("PUT", `${room(roomId)}/state/${type}/`, {
    token: user.accessToken,
    body: content,
  });
}

/** A public room of `creator` (made through A) that `members` joined through A. */
async function sharedRoom(
  a: SharedKvServer,
  creator: RegisteredUser,
  members: RegisteredUser[],
  powerLevels?: unknown,
): Promise<string> {
  const roomId = await createPublicRoom(
    a,
    creator,
    powerLevels ? { power_level_content_override: powerLevels } : {},
  );
  for (const member of members) await joinRoom(a, member, roomId);
  return roomId;
}

Deno.test("coherence: a ban through B refuses the banned user's next send on A", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const alice = await registerUser(a, "alice");
    const bob = await registerUser(a, "bob");
    const roomId = await sharedRoom(a, alice, [bob]);
    // A's view of the room after bob's message: A built and committed it.
    assertEquals((await sendText(a, bob, roomId, "hello")).status, 200);

    const ban = await b.request("POST", `${room(roomId)}/ban`, {
      token: alice.accessToken,
      body: { user_id: bob.userId, reason: "bye" },
    });
    assertEquals(ban.status, 200);
    const refused = await sendText(a, bob, roomId, "still here?");
    assertEquals(refused.status, 403);
    assertEquals(refused.body.errcode, "M_FORBIDDEN");

    // Alice's next message on A is built on B's ban: the DAG stays one line.
    const after = await sendText(a, alice, roomId, "after the ban");
    assertEquals(after.status, 200);
    const banId = await a.deps.eventStore.currentStateEventId(roomId, "m.room.member", bob.userId);
    const built = await a.deps.eventStore.getEvent(after.body.event_id);
    assertEquals(built?.pdu.prev_events as unknown, [banId]);
    const head = await a.deps.eventStore.roomHead(roomId);
    assertEquals(head?.forwardExtremities, [after.body.event_id]);
  } finally {
    close();
  }
});

Deno.test("coherence: a demotion through B binds A's next state change", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const alice = await registerUser(a, "alice");
    const bob = await registerUser(a, "bob");
    // Room version 12: the creator's power comes from the create event, not `users`.
    const roomId = await sharedRoom(a, alice, [bob], { events: { "m.room.topic": 50 } });
    const promote = await setState(a, alice, roomId, "m.room.power_levels", {
      users: { [bob.userId]: 50 },
      events: { "m.room.topic": 50 },
    });
    assertEquals(promote.status, 200);
    // A's view holds bob at 50: his topic change passes.
    assertEquals((await setState(a, bob, roomId, "m.room.topic", { topic: "one" })).status, 200);

    const demote = await setState(b, alice, roomId, "m.room.power_levels", {
      events: { "m.room.topic": 50 },
    });
    assertEquals(demote.status, 200);
    const refused = await setState(a, bob, roomId, "m.room.topic", { topic: "two" });
    assertEquals(refused.status, 403);
    const topic = await a.request("GET", `${room(roomId)}/state/m.room.topic/`, {
      token: alice.accessToken,
    });
    assertEquals(topic.body.topic, "one");
  } finally {
    close();
  }
});

Deno.test("coherence: a join rule closed through B refuses a join on A", async () => {
  const { a, b, close } = await startSharedKvServers();
  try {
    const alice = await registerUser(a, "alice");
    const bob = await registerUser(a, "bob");
    const carol = await registerUser(a, "carol");
    const roomId = await sharedRoom(a, alice, [bob]);
    assertEquals((await sendText(a, bob, roomId, "warm A's view")).status, 200);
    const closed = await setState(b, alice, roomId, "m.room.join_rules", { join_rule: "invite" });
    assertEquals(closed.status, 200);
    const join = await a.request("POST", `${V3}/join/${encodeURIComponent(roomId)}`, {
      token: carol.accessToken,
      body: {},
    });
    assertEquals(join.status, 403);
    const members = await a.request("GET", `${room(roomId)}/joined_members`, {
      token: alice.accessToken,
    });
    assert(!(carol.userId in members.body.joined));
  } finally {
    close();
  }
});
