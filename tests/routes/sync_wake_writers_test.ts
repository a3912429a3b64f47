/**
 * Every kind of change a long-poll reads wakes it from another process: two servers (the real
 * assembly) over one KV handle in `TESSERA_WAKE=poll` mode, so A's memory hears nothing of B's
 * commits and only the wake keys B's writers bump (tests/kv/wake_writers_test.ts) can end A's
 * wait before its 60 s timeout. Messages, invites and to-device messages are covered in
 * sync_cross_process_test.ts; these are the rest: typing, receipts public and private, account
 * data, push rules, presence and device lists. A test-level guard reports a missed wake.
 */
import { assert, assertEquals } from "../assert.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { guardWithin } from "../guard.ts";
import { type RegisteredUser, sendText } from "./client_harness.ts";
import { longPollAfterSync, syncFilterShowing as only } from "./long_polls.ts";
import {
  type SharedKvServer,
  startSharedKvRoom,
  V3,
} from "../fleet_coherence/shared_kv_servers.ts";

const POLL = { TESSERA_WAKE: "poll", TESSERA_WAKE_POLL_MS: "20" };
/** Far beyond any wake; the long-polls ask for 60 s. */
const guarded = guardWithin(30_000);

/** Send a message through `server`; its event ID. */
async function send(server: SharedKvServer, user: RegisteredUser, roomId: string): Promise<string> {
  const sent = await sendText(server, user, roomId, "hello");
  assertEquals(sent.status, 200);
  return sent.body.event_id;
}

Deno.test("typing through B wakes a room-mate's long-poll on A", async () => {
  const { a, b, alice, bob, roomId, close } = await startSharedKvRoom(POLL);
  try {
    const polling = (await longPollAfterSync(a, bob.accessToken, only("ephemeral"))).response;
    const typed = await b.request(
      "PUT",
      `${V3}/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(alice.userId)}`,
      { token: alice.accessToken, body: { typing: true, timeout: 30_000 } },
    );
    assertEquals(typed.status, 200);
    const woken = await guarded(polling, "/sync on A");
    assertEquals(woken.status, 200);
    const ephemeral: JsonObject[] = woken.body.rooms.join[roomId].ephemeral.events;
    const typing = ephemeral.find((e) => e.type === "m.typing");
    assertEquals((typing?.content as JsonObject).user_ids, [alice.userId]);
  } finally {
    close();
  }
});

// A public receipt reaches the room (Bob, a room-mate, waits); a private one only its owner.
const receiptCases = [
  { type: "m.read", waiter: "bob", whose: "a room-mate's" },
  { type: "m.read.private", waiter: "alice", whose: "its owner's own" },
] as const;

for (const { type, waiter, whose } of receiptCases) {
  Deno.test(`a ${type} receipt through B wakes ${whose} long-poll on A`, async () => {
    const room = await startSharedKvRoom(POLL);
    const { a, b, alice, roomId, close } = room;
    try {
      const eventId = await send(b, alice, roomId);
      const polling =
        (await longPollAfterSync(a, room[waiter].accessToken, only("ephemeral"))).response;
      const read = await b.request(
        "POST",
        `${V3}/rooms/${encodeURIComponent(roomId)}/receipt/${type}/${encodeURIComponent(eventId)}`,
        { token: alice.accessToken, body: {} },
      );
      assertEquals(read.status, 200);
      const woken = await guarded(polling, "/sync on A");
      const receipt = (woken.body.rooms.join[roomId].ephemeral.events as JsonObject[])
        .find((e) => e.type === "m.receipt");
      const content = receipt?.content as Record<string, Record<string, JsonObject>>;
      assert(content?.[eventId]?.[type]?.[alice.userId], `Alice's ${type} receipt is in the sync`);
    } finally {
      close();
    }
  });
}

Deno.test("account data and push rules set through B wake the user's long-poll on A", async () => {
  const { a, b, alice, close } = await startSharedKvRoom(POLL);
  try {
    const token = alice.accessToken;
    let polling = (await longPollAfterSync(a, token, only("account_data"))).response;
    const put = await b.request(
      "PUT",
      `${V3}/user/${encodeURIComponent(alice.userId)}/account_data/org.example.setting`,
      { token, body: { across: "processes" } },
    );
    assertEquals(put.status, 200);
    let woken = await guarded(polling, "/sync on A (account data)");
    assertEquals(woken.body.account_data.events, [
      { type: "org.example.setting", content: { across: "processes" } },
    ]);

    polling = (await longPollAfterSync(a, token, only("account_data"))).response;
    const rule = await b.request("PUT", `${V3}/pushrules/global/content/across`, {
      token,
      body: { pattern: "across", actions: ["notify"] },
    });
    assertEquals(rule.status, 200);
    woken = await guarded(polling, "/sync on A (push rules)");
    const rules = (woken.body.account_data.events as JsonObject[])
      .find((e) => e.type === "m.push_rules");
    const content = (rules?.content as JsonObject).global as Record<string, JsonObject[]>;
    assert(content.content.some((r) => r.rule_id === "across"), "the new rule is in the sync");
  } finally {
    close();
  }
});

Deno.test("presence set through B wakes a room-mate's long-poll on A", async () => {
  const { a, b, alice, bob, close } = await startSharedKvRoom(POLL);
  try {
    const polling = (await longPollAfterSync(a, bob.accessToken, only("presence"))).response;
    const set = await b.request(
      "PUT",
      `${V3}/presence/${encodeURIComponent(alice.userId)}/status`,
      { token: alice.accessToken, body: { presence: "unavailable", status_msg: "elsewhere" } },
    );
    assertEquals(set.status, 200);
    const woken = await guarded(polling, "/sync on A");
    const presence = (woken.body.presence.events as JsonObject[])
      .find((e) => e.sender === alice.userId);
    assertEquals((presence?.content as JsonObject).presence, "unavailable");
    assertEquals((presence?.content as JsonObject).status_msg, "elsewhere");
  } finally {
    close();
  }
});

Deno.test("a device-list change through B wakes a room-mate's long-poll on A", async () => {
  const { a, b, alice, bob, close } = await startSharedKvRoom(POLL);
  try {
    const polling = (await longPollAfterSync(a, bob.accessToken, only("device_lists"))).response;
    const renamed = await b.request(
      "PUT",
      `${V3}/devices/${encodeURIComponent(alice.deviceId)}`,
      { token: alice.accessToken, body: { display_name: "renamed on B" } },
    );
    assertEquals(renamed.status, 200);
    const woken = await guarded(polling, "/sync on A");
    assertEquals(woken.body.device_lists.changed, [alice.userId]);
  } finally {
    close();
  }
});
