/**
 * Every writer of something a waiting /sync or /events reads bumps the matching wake keys
 * (kv/wake_keys.ts) in the commit that makes the change: the wake key's versionstamp is the
 * change's own, so a waiter in another process that reads up to it sees the change.
 */
import assert from "node:assert/strict";
import { replay } from "../../kv/replay.ts";
import { wakeKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

/** The versionstamp of the commit that last wrote `key`, asserting there was one. */
async function stampOf(kv: Deno.Kv, key: Deno.KvKey): Promise<string> {
  const entry = await kv.get(key);
  assert.ok(entry.versionstamp, `nothing at ${JSON.stringify(key)}`);
  return entry.versionstamp;
}

Deno.test("a room append bumps the room's wake key and the member events' users' keys in its commit", async () => {
  const { kv, store } = await memoryStore();
  try {
    const room = new RoomBuilder("!wake:test");
    const created = await store.append({
      roomId: room.roomId,
      events: [room.create(), room.member("@alice:test", "join")],
    });
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), created.versionstamp);
    assert.equal(await stampOf(kv, wakeKeys.user("@alice:test")), created.versionstamp);

    // An invite reaches the invitee, who does not watch the room yet.
    const invited = await store.append({
      roomId: room.roomId,
      events: [room.member("@bob:test", "invite")],
    });
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), invited.versionstamp);
    assert.equal(await stampOf(kv, wakeKeys.user("@bob:test")), invited.versionstamp);
    assert.equal(await stampOf(kv, wakeKeys.user("@alice:test")), created.versionstamp);

    // A message wakes the room only.
    const sent = await store.append({ roomId: room.roomId, events: [room.message("hi")] });
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), sent.versionstamp);
    assert.equal(await stampOf(kv, wakeKeys.user("@bob:test")), invited.versionstamp);
  } finally {
    kv.close();
  }
});

Deno.test("appends folded into one group commit bump every member's key in that commit", async () => {
  const { kv, store } = await memoryStore();
  try {
    const room = new RoomBuilder("!fold:test");
    await store.append({ roomId: room.roomId, events: [room.create()] });
    const users = Array.from({ length: 20 }, (_, i) => `@u${i}:test`);
    const results = await Promise.all(
      users.map((userId) =>
        store.append({ roomId: room.roomId, events: [room.member(userId, "join")] })
      ),
    );
    for (const [i, userId] of users.entries()) {
      assert.equal(await stampOf(kv, wakeKeys.user(userId)), results[i].versionstamp);
    }
    const newest = results.map((r) => r.versionstamp).sort().at(-1);
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), newest);
  } finally {
    kv.close();
  }
});

Deno.test("replay rebuilding under a namespace of the live database wakes nobody", async () => {
  const { kv, store } = await memoryStore();
  try {
    const room = new RoomBuilder("!replayed:test");
    const appended = await store.append({
      roomId: room.roomId,
      events: [room.create(), room.member("@alice:test", "join"), room.message("hi")],
    });
    const report = await replay({
      source: kv,
      target: kv,
      targetNamespace: ["replay", 1],
      resolver: greatestIdResolver,
    });
    assert.equal(report.differenceCount, 0);
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), appended.versionstamp);
    assert.equal(await stampOf(kv, wakeKeys.user("@alice:test")), appended.versionstamp);
  } finally {
    kv.close();
  }
});
