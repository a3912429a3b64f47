/**
 * Every writer of something a waiting /sync or /events reads bumps the matching wake keys
 * (kv/wake_keys.ts) in the commit that makes the change: the wake key's versionstamp is the
 * change's own, so a waiter in another process that reads up to it sees the change.
 */
import assert from "node:assert/strict";
import { KvAccountDataStore } from "../../kv/account_data_store.ts";
import { KvCrossSigningStore } from "../../kv/cross_signing_store.ts";
import { commitWithDeviceListChanges } from "../../kv/device_list_log.ts";
import { KvPresenceStore } from "../../kv/presence_store.ts";
import { KvPushRuleStore } from "../../kv/push_rule_store.ts";
import { KvReceiptStore } from "../../kv/receipt_store.ts";
import { KvRemoteMembershipStore } from "../../kv/remote_membership_store.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys, wakeKeys } from "../../kv/schema.ts";
import { KvToDeviceStore } from "../../kv/to_device_store.ts";
import { KvTypingStore } from "../../kv/typing_store.ts";
import { emptyUserPushRules } from "../../domain/push/push_rules.ts";
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
    // Queued together, they share commits: each commit bumps all of its members' keys.
    assert.ok(new Set(results.map((r) => r.versionstamp)).size < users.length);
    for (const [i, userId] of users.entries()) {
      assert.equal(await stampOf(kv, wakeKeys.user(userId)), results[i].versionstamp);
    }
    const newest = results.map((r) => r.versionstamp).sort().at(-1);
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), newest);
  } finally {
    kv.close();
  }
});

Deno.test("an append of more member events than its commit holds wakes the rest of their users right after", async () => {
  const { kv, store } = await memoryStore();
  try {
    const room = new RoomBuilder("!crowd:test");
    await store.append({ roomId: room.roomId, events: [room.create()] });
    // 100 joins take about 900 mutations: their users' wakes do not all fit beside them.
    const users = Array.from(
      { length: 100 },
      (_, i) => `@member-with-a-longish-name-${i}:example.org`,
    );
    const appended = await store.append({
      roomId: room.roomId,
      events: users.map((userId) => room.member(userId, "join")),
    });
    assert.equal(await stampOf(kv, wakeKeys.room(room.roomId)), appended.versionstamp);
    const stamps = await Promise.all(users.map((userId) => stampOf(kv, wakeKeys.user(userId))));
    const inCommit = stamps.filter((s) => s === appended.versionstamp).length;
    assert.ok(inCommit > 0 && inCommit < users.length, `${inCommit} users in the commit`);
    assert.ok(stamps.every((s) => s >= appended.versionstamp));
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

/** An in-memory KV for one test, closed after it. */
async function withKv(test: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const kv = await Deno.openKv(":memory:");
  try {
    await test(kv);
  } finally {
    kv.close();
  }
}

/** The versionstamp at `key`, or null when nothing was ever written there. */
async function stampOrNull(kv: Deno.Kv, key: Deno.KvKey): Promise<string | null> {
  return (await kv.get(key)).versionstamp;
}

/** Put `userId` in `roomIds` with `membership` in the membership projection. */
async function memberOf(
  kv: Deno.Kv,
  userId: string,
  roomIds: readonly string[],
  membership = "join",
): Promise<void> {
  const keys = new EventStoreKeys();
  for (let i = 0; i < roomIds.length; i += 500) {
    const op = kv.atomic();
    for (const roomId of roomIds.slice(i, i + 500)) {
      op.set(keys.userRoom(userId, roomId), { membership, event_id: `$m-${roomId}` });
    }
    await op.commit();
  }
}

Deno.test("typing bumps the room's wake key in its commit", () =>
  withKv(async (kv) => {
    const written = await new KvTypingStore(kv).update("!r:test", () => ({ "@a:test": 1 }));
    assert.ok(written);
    assert.equal(await stampOf(kv, wakeKeys.room("!r:test")), written);
  }));

Deno.test("a public receipt bumps the room's key, a private one its owner's", () =>
  withKv(async (kv) => {
    const store = new KvReceiptStore(kv);
    const receipt = { roomId: "!r:test", userId: "@a:test", eventId: "$e", position: 5, ts: 1 };
    const read = await store.put({ ...receipt, receiptType: "m.read" });
    assert.ok(read);
    assert.equal(await stampOf(kv, wakeKeys.room("!r:test")), read);
    assert.equal(await stampOrNull(kv, wakeKeys.user("@a:test")), null);
    const own = await store.put({ ...receipt, receiptType: "m.read.private" });
    assert.ok(own);
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), own);
    assert.equal(await stampOf(kv, wakeKeys.room("!r:test")), read);
  }));

Deno.test("account data, global and per room, bumps its user's key", () =>
  withKv(async (kv) => {
    const store = new KvAccountDataStore(kv);
    const global = await store.put("@a:test", null, "m.direct", {});
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), global);
    const tagged = await store.put("@a:test", "!r:test", "m.tag", { tags: {} });
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), tagged);
  }));

Deno.test("push rules bump their user's key", () =>
  withKv(async (kv) => {
    const written = await new KvPushRuleStore(kv).put("@a:test", emptyUserPushRules(), null);
    assert.ok(written);
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), written);
  }));

Deno.test("to-device deliveries, local and remote, bump each recipient's key in their commit", () =>
  withKv(async (kv) => {
    const store = new KvToDeviceStore(kv);
    const event = new TextEncoder().encode(JSON.stringify({ type: "m.x", content: {} }));
    const commits: { versionstamp: string; userIds: string[] }[] = [];
    const deliveries = ["@b:test", "@c:test"].flatMap((userId) =>
      ["D1", "D2"].map((deviceId) => ({ userId, deviceId, event }))
    );
    await store.deliver(
      { sender: "@a:test", senderDeviceId: "A", txnId: "t1" },
      deliveries,
      (versionstamp, userIds) => commits.push({ versionstamp, userIds }),
    );
    await store.deliver(
      { origin: "remote.test", messageId: "m1" },
      [{ userId: "@d:test", deviceId: "D", event }],
      (versionstamp, userIds) => commits.push({ versionstamp, userIds }),
    );
    assert.deepEqual(commits.map((c) => c.userIds), [["@b:test", "@c:test"], ["@d:test"]]);
    for (const { versionstamp, userIds } of commits) {
      for (const userId of userIds) {
        assert.equal(await stampOf(kv, wakeKeys.user(userId)), versionstamp);
      }
    }
  }));

Deno.test("deliveries to more users than one commit holds bump each user's key with their message", () =>
  withKv(async (kv) => {
    const store = new KvToDeviceStore(kv);
    const event = new TextEncoder().encode(JSON.stringify({ type: "m.x", content: {} }));
    // 700 users of two devices: 1,400 messages and 700 wakes need three commits at least.
    const deliveries = Array.from({ length: 700 }, (_, i) => `@u${String(i).padStart(4, "0")}:test`)
      .flatMap((userId) => ["D1", "D2"].map((deviceId) => ({ userId, deviceId, event })));
    const byUser = new Map<string, string[]>();
    await store.deliver(
      { sender: "@a:test", senderDeviceId: "A", txnId: "wide" },
      deliveries,
      (versionstamp, userIds) => {
        for (const userId of userIds) {
          byUser.set(userId, [...byUser.get(userId) ?? [], versionstamp]);
        }
      },
    );
    assert.equal(byUser.size, 700);
    assert.ok(new Set([...byUser.values()].flat()).size >= 3);
    for (const [userId, stamps] of byUser) {
      assert.equal(await stampOf(kv, wakeKeys.user(userId)), stamps.sort().at(-1));
    }
  }));

Deno.test("a device-list change bumps the user's key in its commit and their rooms' right after", () =>
  withKv(async (kv) => {
    await memberOf(kv, "@a:test", ["!joined:test"], "join");
    await memberOf(kv, "@a:test", ["!invited:test"], "invite");
    await memberOf(kv, "@a:test", ["!left:test"], "leave");
    const committed = await commitWithDeviceListChanges(kv, (_op, changes) => {
      changes.add("@a:test", { deviceIds: ["D1"] });
      return Promise.resolve(true);
    });
    assert.ok(committed);
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), committed.versionstamp);
    for (const roomId of ["!joined:test", "!invited:test"]) {
      // A later blind commit: a waiter woken by it reads past the change.
      assert.ok((await stampOf(kv, wakeKeys.room(roomId))) > committed.versionstamp);
    }
    assert.equal(await stampOrNull(kv, wakeKeys.room("!left:test")), null);
  }));

Deno.test("signature notices bump their owner's key in their commit", () =>
  withKv(async (kv) => {
    const store = new KvCrossSigningStore(kv);
    const ownerOnly = await store.updateKeys("@a:test", () =>
      Promise.resolve({
        put: { user_signing: { user_id: "@a:test", usage: ["user_signing"], keys: {} } },
        remove: [],
        staleSignatures: { targetKeyIds: [], ownSignerKeyIds: [] },
        ownerOnly: true,
      }));
    assert.ok(ownerOnly);
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), ownerOnly);

    const signed = await store.addSignatures({
      signerUserId: "@a:test",
      signatures: [{
        targetUserId: "@b:test",
        targetKeyId: "bmaster",
        signerUserId: "@a:test",
        signerKeyId: "ed25519:ausk",
        signature: "sig",
      }],
      expected: [],
      signerDeviceIds: [],
      signerCrossSigning: false,
      noticeTargets: ["@b:test"],
    });
    assert.notEqual(signed, "stale");
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), signed);
    assert.equal(await stampOrNull(kv, wakeKeys.user("@b:test")), null);
  }));

Deno.test("a visible presence change bumps the user's and their joined rooms' keys in its commit", () =>
  withKv(async (kv) => {
    await memberOf(kv, "@a:test", ["!one:test", "!two:test"]);
    await memberOf(kv, "@a:test", ["!invited:test"], "invite");
    const store = new KvPresenceStore(kv);
    // A refresh of the last-active time alone wakes nobody, as in one process.
    await store.put({ userId: "@a:test", presence: "online", lastActiveTs: 1 });
    assert.equal(await stampOrNull(kv, wakeKeys.user("@a:test")), null);
    const changed = await store.put({ userId: "@a:test", presence: "unavailable" }, {
      wake: true,
    });
    for (
      const key of [
        wakeKeys.user("@a:test"),
        wakeKeys.room("!one:test"),
        wakeKeys.room("!two:test"),
      ]
    ) {
      assert.equal(await stampOf(kv, key), changed);
    }
    assert.equal(await stampOrNull(kv, wakeKeys.room("!invited:test")), null);
  }));

Deno.test("presence of a user in more rooms than one commit holds wakes the rest right after", () =>
  withKv(async (kv) => {
    const rooms = Array.from({ length: 1200 }, (_, i) => `!room${String(i).padStart(4, "0")}:test`);
    await memberOf(kv, "@a:test", rooms);
    const changed = await new KvPresenceStore(kv).put(
      { userId: "@a:test", presence: "online" },
      { wake: true },
    );
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), changed);
    const stamps = await Promise.all(rooms.map((roomId) => stampOf(kv, wakeKeys.room(roomId))));
    const inCommit = stamps.filter((s) => s === changed).length;
    assert.ok(inCommit > 0 && inCommit < rooms.length, `${inCommit} rooms in the commit`);
    assert.ok(stamps.every((s) => s >= changed));
  }));

Deno.test("a remote membership (an invite over federation) bumps its user's key", () =>
  withKv(async (kv) => {
    const recorded = await new KvRemoteMembershipStore(kv).record({
      userId: "@a:test",
      roomId: "!far:remote.test",
      membership: "invite",
      eventId: "$invite",
      pdu: {
        type: "m.room.member",
        state_key: "@a:test",
        sender: "@b:remote.test",
        room_id: "!far:remote.test",
        content: { membership: "invite" },
      } as never,
      roomVersion: "10",
      servers: ["remote.test"],
    });
    assert.equal(await stampOf(kv, wakeKeys.user("@a:test")), recorded);
  }));
