/**
 * A woken long-poll reads up to the commit that woke it without a barrier, reusing the
 * memberships its next watch read. A second wake arriving WHILE those memberships were read (a
 * poll tick of another process's commit, or an in-process one) named a commit the read may have
 * missed: a join or an invite of the user. Reading up to that commit with the older memberships
 * answered without the room, and the next sync started after it: the invite was never seen.
 *
 * The wake source here is a hand-driven one, so the order is exact: a message wakes the wait,
 * and during the memberships read an invite is committed and its wake delivered.
 */
import { assert, assertEquals } from "../assert.ts";
import type { OnWake, WakeSource, WakeTopic } from "../../domain/ports/wake_source.ts";
import type { Membership } from "../../domain/ports/event_store.ts";
import { wakeKeys } from "../../kv/schema.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import { guardWithin } from "../guard.ts";

const V3 = "/_matrix/client/v3";
const guarded = guardWithin(30_000);
/** Presence and account data cannot end the wait: only rooms can. */
const ROOMS_ONLY = encodeURIComponent(
  JSON.stringify({ presence: { types: [] }, account_data: { types: [] } }),
);

/** A wake source the test drives: it records subscriptions and fires them on demand. */
class HandWakeSource implements WakeSource {
  readonly mode = "poll";
  readonly subscriptions: { topics: readonly WakeTopic[]; onWake: OnWake }[] = [];

  watchAfter(topics: readonly WakeTopic[], _after: string, onWake: OnWake): () => void {
    const subscription = { topics, onWake };
    this.subscriptions.push(subscription);
    return () => {
      const i = this.subscriptions.indexOf(subscription);
      if (i >= 0) this.subscriptions.splice(i, 1);
    };
  }

  watchFromNow(): Promise<() => void> {
    return Promise.resolve(() => {});
  }

  close(): void {}
}

Deno.test("a wake arriving while a woken sync reads its memberships does not hide an invite", async () => {
  const wakes = new HandWakeSource();
  const server = await startTestServer({ TESSERA_WAKE: "poll" }, { wakeSource: wakes });
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const room = await server.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId: string = room.body.room_id;
    const joined = await server.request("POST", `${V3}/join/${encodeURIComponent(roomId)}`, {
      token: bob.accessToken,
    });
    assertEquals(joined.status, 200);
    const first = await server.request("GET", `${V3}/sync?filter=${ROOMS_ONLY}`, {
      token: bob.accessToken,
    });
    assertEquals(first.status, 200);

    const polling = server.request(
      "GET",
      `${V3}/sync?filter=${ROOMS_ONLY}&timeout=60000&since=${first.body.next_batch}`,
      { token: bob.accessToken },
    );
    await guarded(
      (async () => {
        while (wakes.subscriptions.length === 0) await new Promise((r) => setTimeout(r, 5));
      })(),
      "the long-poll subscribing",
    );

    // The next read of bob's memberships (the woken sync's next watch) returns what it read,
    // but only after an invite for bob is committed and its wake delivered to the old watch.
    const store = server.deps.eventStore;
    const roomsOfUser = store.roomsOfUser.bind(store);
    let invitedRoom: string | undefined;
    let armed = true;
    store.roomsOfUser = async (userId: string, memberships?: readonly string[]) => {
      const read: Membership[] = await roomsOfUser(userId, memberships);
      if (userId === bob.userId && armed) {
        armed = false;
        const invite = await server.request("POST", `${V3}/createRoom`, {
          token: alice.accessToken,
          body: { preset: "private_chat", invite: [bob.userId] },
        });
        invitedRoom = invite.body.room_id;
        const bumped = await server.kv.get(wakeKeys.user(bob.userId));
        assert(bumped.versionstamp !== null);
        for (const s of [...wakes.subscriptions]) s.onWake(bumped.versionstamp);
      }
      return read;
    };

    const sent = await server.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`,
      { token: alice.accessToken, body: { msgtype: "m.text", body: "wake up" } },
    );
    assertEquals(sent.status, 200);
    const woken = await guarded(polling, "the woken /sync");
    assertEquals(woken.status, 200);
    assert(invitedRoom !== undefined, "the memberships were never read again");
    store.roomsOfUser = roomsOfUser;

    // The invite is in this answer or the next; never skipped.
    const next = await server.request(
      "GET",
      `${V3}/sync?filter=${ROOMS_ONLY}&timeout=0&since=${woken.body.next_batch}`,
      { token: bob.accessToken },
    );
    const invites = { ...woken.body.rooms?.invite, ...next.body.rooms?.invite };
    assert(invitedRoom in invites, `the invite to ${invitedRoom} was never synced`);
  } finally {
    server.close();
  }
});
