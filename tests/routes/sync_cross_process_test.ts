/**
 * Long-polls woken across processes: two servers (the real assembly) over one KV handle in
 * `TESSERA_WAKE=poll` mode, so nothing in A's memory hears of B's commits; only the wake keys
 * B's commits bump, polled by A, can end A's wait before its 60 s timeout. A test-level guard
 * reports a missed wake instead of waiting for that timeout.
 */
import { assert, assertEquals } from "../assert.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { registerUser, sendText } from "./client_harness.ts";
import { guardWithin } from "../guard.ts";
import {
  longPollAfterSync,
  startCrossProcessLongPoll as longPoll,
  TIMELINE_ONLY,
} from "./long_polls.ts";
import {
  startSharedKvRoom,
  startSharedKvServers,
  V3,
} from "../fleet_coherence/shared_kv_servers.ts";

const POLL = { TESSERA_WAKE: "poll", TESSERA_WAKE_POLL_MS: "20" };
/** Far beyond any wake; the timeout the long-polls ask for is longer still. */
const guarded = guardWithin(30_000);

for (const mode of ["poll", "watch"] as const) {
  Deno.test(`${mode}: a message sent through B wakes a long-poll /sync on A`, async () => {
    // kv.watch crosses isolates on Deploy, and handles within one process here.
    const { a, b, alice, bob, roomId, close } = await startSharedKvRoom({
      ...POLL,
      TESSERA_WAKE: mode,
    });
    try {
      assertEquals(a.wakeSource.mode, mode);
      const { since, response: polling } = await longPollAfterSync(
        a,
        bob.accessToken,
        TIMELINE_ONLY,
      );
      const sent = await sendText(b, alice, roomId, "across processes");
      assertEquals(sent.status, 200);

      const woken = await guarded(polling, "/sync on A");
      assertEquals(woken.status, 200);
      const events: JsonObject[] = woken.body.rooms.join[roomId].timeline.events;
      assertEquals(events.map((e) => e.event_id), [sent.body.event_id]);
      assertEquals((events[0].content as JsonObject).body, "across processes");
      assert(woken.body.next_batch > since);
    } finally {
      close();
    }
  });
}

Deno.test("an invite sent through B wakes the invitee's long-poll /sync on A", async () => {
  const { a, b, close } = await startSharedKvServers(POLL);
  try {
    const alice = await registerUser(b, "alice");
    const bob = await registerUser(a, "bob");
    const created = await b.request("POST", `${V3}/createRoom`, {
      token: alice.accessToken,
      body: { preset: "private_chat" },
    });
    const roomId: string = created.body.room_id;
    // Bob is in no room: only his user's wake key can tell A of the invite.
    const polling = (await longPollAfterSync(a, bob.accessToken, TIMELINE_ONLY)).response;
    const invited = await b.request("POST", `${V3}/rooms/${encodeURIComponent(roomId)}/invite`, {
      token: alice.accessToken,
      body: { user_id: bob.userId },
    });
    assertEquals(invited.status, 200);

    const woken = await guarded(polling, "/sync on A");
    assertEquals(woken.status, 200);
    const invite = woken.body.rooms.invite[roomId];
    assert(invite, "the invite is in the woken sync");
    const member = invite.invite_state.events.find((e: JsonObject) =>
      e.type === "m.room.member" && e.state_key === bob.userId
    );
    assertEquals(member?.content?.membership, "invite");
  } finally {
    close();
  }
});

Deno.test("a to-device message sent through B wakes the recipient's long-poll /sync on A", async () => {
  const { a, b, close } = await startSharedKvServers(POLL);
  try {
    const alice = await registerUser(b, "alice");
    const bob = await registerUser(a, "bob");
    const polling = (await longPollAfterSync(a, bob.accessToken, TIMELINE_ONLY)).response;
    const sent = await b.request("PUT", `${V3}/sendToDevice/m.test.ping/${crypto.randomUUID()}`, {
      token: alice.accessToken,
      body: { messages: { [bob.userId]: { [bob.deviceId]: { hello: "from B" } } } },
    });
    assertEquals(sent.status, 200);

    const woken = await guarded(polling, "/sync on A");
    assertEquals(woken.status, 200);
    assertEquals(woken.body.to_device.events, [
      { type: "m.test.ping", sender: alice.userId, content: { hello: "from B" } },
    ]);
  } finally {
    close();
  }
});

Deno.test("a message sent through B wakes a long-poll /events on A", async () => {
  const { a, b, alice, bob, roomId, close } = await startSharedKvRoom(POLL);
  try {
    const first = await a.request("GET", `${V3}/events?timeout=0`, { token: bob.accessToken });
    assertEquals(first.status, 200);

    const polling =
      (await longPoll(a, `${V3}/events?timeout=60000&from=${first.body.end}`, bob.accessToken))
        .response;
    const sent = await sendText(b, alice, roomId, "to the event stream");
    assertEquals(sent.status, 200);

    const woken = await guarded(polling, "/events on A");
    assertEquals(woken.status, 200);
    const messages = woken.body.chunk.filter((e: JsonObject) => e.type === "m.room.message");
    assertEquals(messages.map((e: JsonObject) => e.event_id), [sent.body.event_id]);
  } finally {
    close();
  }
});
