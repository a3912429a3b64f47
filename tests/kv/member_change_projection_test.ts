import assert from "node:assert/strict";
import { KvDeviceListReader } from "../../kv/device_list_reads.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!members:test";
const keys = new EventStoreKeys();

async function memberChanges(kv: Deno.Kv, roomId = ROOM) {
  const out: { position: number; userId: string; membership: unknown; prev: unknown }[] = [];
  for await (
    const e of kv.list<{ membership: unknown; prev: unknown }>({
      prefix: keys.memberChangePrefix(roomId),
    })
  ) {
    out.push({
      position: e.key[2] as number,
      userId: e.key[3] as string,
      membership: e.value.membership,
      prev: e.value.prev,
    });
  }
  return out;
}

Deno.test("member changes record each real membership change with the one it replaces", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({
    roomId: ROOM,
    events: [room.create(), room.member("@a:test", "join"), room.member("@b:test", "join")],
  });
  // A displayname edit keeps the membership: no change recorded.
  await store.append({
    roomId: ROOM,
    events: [room.member("@a:test", "join", { content: { membership: "join", displayname: "A" } })],
  });
  await store.append({ roomId: ROOM, events: [room.member("@b:test", "leave")] });
  await store.append({
    roomId: ROOM,
    events: [
      room.event("m.room.member", { stateKey: "@c:test", content: { membership: "invite" } }),
    ],
  });
  // Two changes of one user in one batch: the second replaces the first's result.
  await store.append({
    roomId: ROOM,
    events: [room.member("@c:test", "join"), room.member("@c:test", "leave")],
  });
  assert.deepEqual(await memberChanges(kv), [
    { position: 2, userId: "@a:test", membership: "join", prev: null },
    { position: 3, userId: "@b:test", membership: "join", prev: null },
    { position: 5, userId: "@b:test", membership: "leave", prev: "join" },
    { position: 6, userId: "@c:test", membership: "invite", prev: null },
    { position: 7, userId: "@c:test", membership: "join", prev: "invite" },
    { position: 8, userId: "@c:test", membership: "leave", prev: "join" },
  ]);
  const head = await kv.get(keys.memberChangeHead(ROOM));
  assert.deepEqual(head.value, { position: 8 });
  // The marker is written in the commit of the room's last member change, not by messages.
  await store.append({ roomId: ROOM, events: [room.message("hello")] });
  assert.equal((await kv.get(keys.memberChangeHead(ROOM))).versionstamp, head.versionstamp);
  kv.close();
});

Deno.test("a fork that drops a member from current state records the removal", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create] });
  await store.append({ roomId: ROOM, events: [room.member("@b:test", "join")] });
  // A resolver that keeps only the create event whenever forks meet.
  const strict = new KvEventStore(kv, {
    resolver: (input) =>
      Promise.resolve(new Map([...input.stateMaps[0]].filter(([k]) => k.startsWith("m.room.c")))),
  });
  await strict.append({ roomId: ROOM, events: [room.message("fork", { prev: [create.eventId] })] });
  assert.deepEqual(await memberChanges(kv), [
    { position: 2, userId: "@b:test", membership: "join", prev: null },
    { position: 3, userId: "@b:test", membership: null, prev: "join" },
  ]);
  kv.close();
});

/** Joins, leaves, invites and a fork whose merge changes a membership, in several rooms. */
async function membershipHistory(store: KvEventStore, roomId: string): Promise<void> {
  const room = new RoomBuilder(roomId);
  await store.append({ roomId, events: [room.create(), room.member("@a:test", "join")] });
  for (let i = 0; i < 12; i++) {
    const user = `@u${i % 4}:test`;
    const membership = ["join", "leave", "invite", "ban"][i % 4];
    const events = [room.member(user, membership), room.message(`m${i}`)];
    await store.append({ roomId, events });
  }
  const base = room.last!;
  const left = room.member("@u1:test", "join");
  const right = room.member("@u1:test", "leave", { prev: [base] });
  await store.append({ roomId, events: [left] });
  await store.append({ roomId, events: [right] });
  await store.append({
    roomId,
    events: [room.message("merge", { prev: [left.eventId, right.eventId] })],
  });
}

Deno.test("replay rebuilds the member-change projection and reports a corrupted entry", async () => {
  const { kv, store } = await memoryStore();
  await Promise.all(["!r1:test", "!r2:test", "!r3:test"].map((r) => membershipHistory(store, r)));
  const live =
    (await Promise.all(["!r1:test", "!r2:test", "!r3:test"].map((r) => memberChanges(kv, r))))
      .flat();
  // Per room: @a's join, four first memberships, then the fork's join and its resolved leave.
  assert.equal(live.length, 21);
  const sound = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(sound.differences, []);

  const victim = live[5];
  await kv.set(keys.memberChange("!r2:test", victim.position, victim.userId), {
    membership: "ban",
    prev: "join",
  });
  await kv.delete(keys.memberChangeHead("!r3:test"));
  const target = await Deno.openKv(":memory:");
  const broken = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.deepEqual(
    broken.differences.map((d) => [d.map, d.key[1]]).sort(),
    [["roomid_memberchange", "!r2:test"], ["roomid_memberchangehead", "!r3:test"]],
  );
  let rebuilt = 0;
  for await (const _ of target.list({ prefix: ["roomid_memberchange"] })) rebuilt++;
  assert.equal(rebuilt, live.length);
  // The commit index is rebuilt too (not compared: the rebuilt commits have their own stamps).
  let stamped = 0;
  for await (const _ of target.list({ prefix: ["memberchangestamp_roomid"] })) stamped++;
  assert.ok(stamped > 0);
  kv.close();
  target.close();
});

Deno.test("member transitions after a token: newest first, only rooms that had some", async () => {
  const { kv, store } = await memoryStore();
  const one = new RoomBuilder("!one:test");
  const two = new RoomBuilder("!two:test");
  await store.append({
    roomId: "!one:test",
    events: [one.create(), one.member("@a:test", "join")],
  });
  await store.append({
    roomId: "!two:test",
    events: [two.create(), two.member("@a:test", "join")],
  });
  const since = await store.syncBarrier("@a:test");
  await store.append({ roomId: "!one:test", events: [one.member("@b:test", "join")] });
  await store.append({ roomId: "!one:test", events: [one.member("@b:test", "leave")] });
  await store.append({ roomId: "!two:test", events: [two.message("no member change")] });
  const reader = new KvDeviceListReader(kv);
  const found = await reader.memberTransitionsAfter(
    ["!one:test", "!two:test", "!none:test"],
    since,
  );
  assert.deepEqual([...found.keys()], ["!one:test"]);
  assert.deepEqual(
    found.get("!one:test")!.map((t) => [t.userId, t.prev, t.membership]),
    [["@b:test", "join", "leave"], ["@b:test", null, "join"]],
  );
  const [newer, older] = found.get("!one:test")!;
  assert.ok(newer.versionstamp > older.versionstamp && older.versionstamp > since.slice(1));
  const now = await store.syncBarrier("@a:test");
  assert.equal((await reader.memberTransitionsAfter(["!one:test"], now)).size, 0);
  // The server-wide list of member-change commits: the two in !one after `since`, in order.
  assert.deepEqual(await reader.memberChangeCommitsAfter(since, 10), [
    { roomId: "!one:test", versionstamp: older.versionstamp },
    { roomId: "!one:test", versionstamp: newer.versionstamp },
  ]);
  assert.equal(await reader.memberChangeCommitsAfter(since, 1), null);
  assert.deepEqual(await reader.memberChangeCommitsAfter(now, 1), []);
  // Memberships come with the versionstamp of the commit that last wrote them.
  const mine = await reader.membershipsOf("@b:test");
  assert.deepEqual(mine.map((m) => [m.roomId, m.membership, m.versionstamp]), [
    ["!one:test", "leave", newer.versionstamp],
  ]);
  assert.deepEqual((await reader.membersOf("!two:test")).map((m) => m.userId), ["@a:test"]);
  kv.close();
});
