/**
 * Presence across servers on the in-process network: a user's presence reaches the servers
 * sharing a room with them (sync and GET /presence there), on changes and on joins, and no
 * other server; inbound entries about users of another server or users sharing no room with
 * us, and malformed ones, are dropped; a remote user whose server went silent for 30 minutes
 * shows offline, and a syncing user's presence is resent before that.
 */
import assert from "node:assert/strict";
import type { Network, NetworkServer } from "./in_process_network.ts";
import { createRoom, edusSent, joinThrough, ok, sendEdus, withNetwork } from "./network_helpers.ts";
import type { RegisteredUser } from "../routes/client_harness.ts";
import { KvPresenceStore } from "../../kv/presence_store.ts";
import { MAX_PRESENCE_PER_EDU } from "../../domain/federation/edus/presence_edu.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

const A = "a.test";
const B = "b.test";
const C = "c.test";
const enc = encodeURIComponent;
const presencePath = (userId: string) => `/_matrix/client/v3/presence/${enc(userId)}/status`;

/** The m.presence contents of a sync by `user` (not marking them online), by sender. */
async function syncPresence(
  server: NetworkServer,
  user: RegisteredUser,
  since?: string,
): Promise<{ nextBatch: string; presence: Map<string, JsonObject> }> {
  const query = `set_presence=offline&timeout=0${since ? `&since=${enc(since)}` : ""}`;
  const body = await ok(server, user, "GET", `/_matrix/client/v3/sync?${query}`);
  const events = (body.presence?.events ?? []) as { sender: string; content: JsonObject }[];
  return {
    nextBatch: body.next_batch as string,
    presence: new Map(events.map((e) => [e.sender, e.content])),
  };
}

/** The m.presence EDUs delivered to `destination` so far, in order. */
function presenceEdusTo(net: Network, destination: string): JsonObject[] {
  return edusSent(net, { destination, type: "m.presence" }).map((e) => e.content);
}

/** Flush every server's federation outbox. */
async function flush(net: Network): Promise<void> {
  for (const server of Object.values(net.servers)) await server.deps.federationSender.runOnce();
}

/** Alice on A creates a public room that `joiners` join through A; its room ID. */
async function sharedRoom(
  net: Network,
  alice: RegisteredUser,
  joiners: { server: NetworkServer; user: RegisteredUser }[],
): Promise<string> {
  const roomId = await createRoom(net.servers[A], alice, { preset: "public_chat" });
  for (const { server, user } of joiners) {
    await joinThrough(server, user, roomId, A);
  }
  await flush(net);
  return roomId;
}

Deno.test("presence: set on A reaches B's sync and GET /presence, and back; C shares no room and gets nothing", async () => {
  await withNetwork(async (net) => {
    const [a, b, c] = [net.servers[A], net.servers[B], net.servers[C]];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await c.register("carol");
    await sharedRoom(net, alice, [{ server: b, user: bob }]);
    const bobs = await syncPresence(b, bob);

    await ok(a, alice, "PUT", presencePath(alice.userId), {
      presence: "online",
      status_msg: "at lunch",
    });
    await flush(net);
    const seenOnB = (await syncPresence(b, bob, bobs.nextBatch)).presence.get(alice.userId);
    assert.equal(seenOnB?.presence, "online");
    assert.equal(seenOnB?.status_msg, "at lunch");
    assert.equal(seenOnB?.currently_active, true);
    assert.equal(typeof seenOnB?.last_active_ago, "number");
    const status = await ok(b, bob, "GET", presencePath(alice.userId));
    assert.equal(status.presence, "online");
    assert.equal(status.status_msg, "at lunch");

    // And back: Bob's presence on B reaches Alice on A.
    const alices = await syncPresence(a, alice);
    await ok(b, bob, "PUT", presencePath(bob.userId), {
      presence: "unavailable",
      status_msg: "in a meeting",
    });
    await flush(net);
    const seenOnA = (await syncPresence(a, alice, alices.nextBatch)).presence.get(bob.userId);
    assert.equal(seenOnA?.presence, "unavailable");
    assert.equal(seenOnA?.status_msg, "in a meeting");
    assert.equal(seenOnA?.currently_active, false);
    assert.equal((await ok(a, alice, "GET", presencePath(bob.userId))).presence, "unavailable");

    // Setting what other servers already show sends nothing more.
    const sentToB = presenceEdusTo(net, B).length;
    await ok(a, alice, "PUT", presencePath(alice.userId), {
      presence: "online",
      status_msg: "at lunch",
    });
    await flush(net);
    assert.equal(presenceEdusTo(net, B).length, sentToB);

    // C shares no room with either: no presence went there, and Carol may not read theirs.
    assert.deepEqual(presenceEdusTo(net, C), []);
    const refused = await c.request("GET", presencePath(alice.userId), {
      token: carol.accessToken,
    });
    assert.equal(refused.status, 403);
    assert.equal(await new KvPresenceStore(c.kv).get(alice.userId), null);
  }, [A, B, C]);
});

Deno.test("presence: a join brings presence set before it, both ways", async () => {
  await withNetwork(async (net) => {
    const [a, b] = [net.servers[A], net.servers[B]];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    await ok(a, alice, "PUT", presencePath(alice.userId), { presence: "online", status_msg: "hi" });
    await ok(b, bob, "PUT", presencePath(bob.userId), { presence: "unavailable" });
    await flush(net);
    // Nobody shares a room yet: nothing went anywhere.
    assert.deepEqual(presenceEdusTo(net, A), []);
    assert.deepEqual(presenceEdusTo(net, B), []);

    // Bob's join through A: A's first member from B gets Alice's presence; B sends Bob's.
    await sharedRoom(net, alice, [{ server: b, user: bob }]);
    const onB = (await syncPresence(b, bob)).presence.get(alice.userId);
    assert.equal(onB?.presence, "online");
    assert.equal(onB?.status_msg, "hi");
    const onA = (await syncPresence(a, alice)).presence.get(bob.userId);
    assert.equal(onA?.presence, "unavailable");
  });
});

Deno.test("presence: inbound entries about users of another server, users sharing no room, malformed ones or past the per-EDU cap are dropped", async () => {
  await withNetwork(async (net) => {
    const [a, b, c] = [net.servers[A], net.servers[B], net.servers[C]];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const bert = await b.register("bert");
    const carol = await c.register("carol");
    await sharedRoom(net, alice, [
      { server: b, user: bob },
      { server: b, user: bert },
      { server: c, user: carol },
    ]);
    const store = new KvPresenceStore(a.kv);
    const send = (edus: JsonObject[]) => sendEdus(net, B, A, edus);
    const dave = `@dave:${B}`; // of B, in no room with us
    await send([{
      edu_type: "m.presence",
      content: {
        push: [
          {
            user_id: bob.userId,
            presence: "online",
            last_active_ago: 5000,
            currently_active: true,
          },
          // B speaking for C's user, and for its own user sharing no room with us.
          { user_id: carol.userId, presence: "online", last_active_ago: 0 },
          { user_id: dave, presence: "online", last_active_ago: 0 },
          // Malformed entries about a user who does share a room.
          { user_id: bert.userId, presence: "busy", last_active_ago: 0 },
          { user_id: bert.userId, presence: "online", status_msg: "x".repeat(1025) },
          { user_id: bert.userId, presence: "online", last_active_ago: -1 },
          { user_id: bert.userId, presence: "online", currently_active: "yes" },
          "not an entry",
        ],
      },
    }, { edu_type: "m.presence", content: { push: "not a list" } }]);
    const bobs = await store.get(bob.userId);
    assert.equal(bobs?.presence, "online");
    assert.equal(bobs?.currentlyActive, true);
    assert.equal(await store.get(carol.userId), null);
    assert.equal(await store.get(dave), null);
    assert.equal(await store.get(bert.userId), null);
    const seen = await ok(a, alice, "GET", presencePath(bob.userId));
    assert.equal(seen.presence, "online");
    assert.ok((seen.last_active_ago as number) >= 5000);
    // Alice may not read the presence of a user she shares no room with.
    const refused = await a.request("GET", presencePath(dave), { token: alice.accessToken });
    assert.equal(refused.status, 403);

    // An entry past the cap is not read; alone in an EDU, the same entry is stored.
    const filler = Array.from({ length: MAX_PRESENCE_PER_EDU }, () => ({
      user_id: dave,
      presence: "online",
    }));
    const berts = { user_id: bert.userId, presence: "unavailable", status_msg: "away" };
    await send([{ edu_type: "m.presence", content: { push: [...filler, berts] } }]);
    assert.equal(await store.get(bert.userId), null);
    await send([{ edu_type: "m.presence", content: { push: [berts] } }]);
    assert.equal((await store.get(bert.userId))?.statusMsg, "away");
    const bertSeen = await ok(a, alice, "GET", presencePath(bert.userId));
    assert.equal(bertSeen.presence, "unavailable");
    assert.equal(bertSeen.status_msg, "away");
  }, [A, B, C]);
});

Deno.test("presence: a syncing user's presence is resent before the 30-minute timeout, not every minute; a silent server's user shows offline", async () => {
  let t = Date.now();
  const minutes = (n: number) => (t += n * 60_000);
  await withNetwork(
    async (net) => {
      const [a, b] = [net.servers[A], net.servers[B]];
      const alice = await a.register("alice");
      const bob = await b.register("bob");
      await sharedRoom(net, alice, [{ server: b, user: bob }]);
      const syncAsOnline = () => ok(b, bob, "GET", "/_matrix/client/v3/sync?timeout=0");
      await syncAsOnline();
      await flush(net);
      const sent = presenceEdusTo(net, A).length;
      assert.ok(sent >= 1);
      assert.equal((await ok(a, alice, "GET", presencePath(bob.userId))).presence, "online");

      // Syncing on, past the last-active refresh but not the resend interval: nothing sent.
      minutes(2);
      await syncAsOnline();
      await flush(net);
      assert.equal(presenceEdusTo(net, A).length, sent);

      // 26 minutes after the first send, a sync resends; A keeps showing Bob online past the
      // 30 minutes since the first.
      minutes(24);
      await syncAsOnline();
      await flush(net);
      assert.equal(presenceEdusTo(net, A).length, sent + 1);
      minutes(6);
      assert.equal((await ok(a, alice, "GET", presencePath(bob.userId))).presence, "online");

      // Bob's client went away: B says nothing more, and A shows him offline 30 minutes on.
      minutes(25);
      assert.equal((await ok(a, alice, "GET", presencePath(bob.userId))).presence, "offline");
      const onA = (await syncPresence(a, alice)).presence.get(bob.userId);
      assert.equal(onA?.presence, "offline");
      assert.equal(onA?.currently_active, false);
    },
    [A, B],
    { now: () => t },
  );
});
