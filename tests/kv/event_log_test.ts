import assert from "node:assert/strict";
import { stateKey } from "../../domain/protocol/events.ts";
import { AppendTooLarge } from "../../domain/ports/event_store.ts";
import { memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!room:test";

Deno.test("append stores events at growing positions with projections", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:test", "join");
  const topic = room.event("m.room.topic", { stateKey: "", content: { topic: "hi" } });
  const msg = room.message("hello");
  const result = await store.append({ roomId: ROOM, events: [create, join, topic, msg] });
  assert.deepEqual(result.events.map((e) => e.position), [1, 2, 3, 4]);
  assert.ok(result.events.every((e) => !e.duplicate));

  const stored = await store.getEvent(msg.eventId);
  assert.equal(stored?.position, 4);
  assert.equal(stored?.status, "accepted");
  assert.deepEqual(stored?.pdu, msg.pdu);

  const state = await store.currentState(ROOM);
  assert.deepEqual(
    state,
    new Map([
      [stateKey("m.room.create", ""), create.eventId],
      [stateKey("m.room.member", "@alice:test"), join.eventId],
      [stateKey("m.room.topic", ""), topic.eventId],
    ]),
  );
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), topic.eventId);
  assert.deepEqual(await store.members(ROOM), [
    { userId: "@alice:test", roomId: ROOM, membership: "join", eventId: join.eventId },
  ]);
  assert.deepEqual(await store.roomsOfUser("@alice:test"), [
    { userId: "@alice:test", roomId: ROOM, membership: "join", eventId: join.eventId },
  ]);
  const head = await store.roomHead(ROOM);
  assert.equal(head?.lastPosition, 4);
  assert.equal(head?.firstPosition, 1);
  assert.deepEqual(head?.forwardExtremities, [msg.eventId]);
  assert.equal(head?.roomVersion, "10");

  const before = await store.stateAtEvent(topic.eventId, "before");
  const after = await store.stateAtEvent(topic.eventId, "after");
  assert.equal(before?.has(stateKey("m.room.topic", "")), false);
  assert.equal(after?.get(stateKey("m.room.topic", "")), topic.eventId);
  assert.deepEqual(await store.stateAtEvent(msg.eventId, "after"), state);
  kv.close();
});

Deno.test("membership follows leaves both ways and filters work", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({
    roomId: ROOM,
    events: [room.create(), room.member("@a:test", "join"), room.member("@b:test", "join")],
  });
  const leave = room.member("@b:test", "leave");
  await store.append({ roomId: ROOM, events: [leave] });
  assert.deepEqual((await store.members(ROOM, ["join"])).map((m) => m.userId), ["@a:test"]);
  assert.deepEqual(await store.roomsOfUser("@b:test"), [
    { userId: "@b:test", roomId: ROOM, membership: "leave", eventId: leave.eventId },
  ]);
  assert.deepEqual(await store.roomsOfUser("@b:test", ["join"]), []);
  kv.close();
});

Deno.test("rejected and soft-failed events are stored and marked but move nothing", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@a:test", "join");
  await store.append({ roomId: ROOM, events: [create, join] });
  const rejected = room.event("m.room.topic", {
    stateKey: "",
    content: { topic: "bad" },
    status: "rejected",
  });
  const soft = room.event("m.room.name", {
    stateKey: "",
    content: { name: "soft" },
    prev: [join.eventId],
    status: "soft_failed",
  });
  await store.append({ roomId: ROOM, events: [rejected, soft] });

  assert.equal((await store.getEvent(rejected.eventId))?.status, "rejected");
  assert.equal((await store.getEvent(soft.eventId))?.status, "soft_failed");
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), null);
  assert.equal(await store.currentStateEventId(ROOM, "m.room.name", ""), null);
  assert.deepEqual((await store.roomHead(ROOM))?.forwardExtremities, [join.eventId]);
  // A rejected event's state after is its state before; a soft-failed one's includes it.
  const rejectedAfter = await store.stateAtEvent(rejected.eventId, "after");
  assert.equal(rejectedAfter?.has(stateKey("m.room.topic", "")), false);
  const softAfter = await store.stateAtEvent(soft.eventId, "after");
  assert.equal(softAfter?.get(stateKey("m.room.name", "")), soft.eventId);
  const page = await store.timeline(ROOM, { dir: "b", limit: 10 });
  assert.deepEqual(page.events.map((e) => e.eventId), [join.eventId, create.eventId]);
  kv.close();
});

Deno.test("forks keep several extremities and current state is their resolution", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@a:test", "join");
  await store.append({ roomId: ROOM, events: [create, join] });
  const topicA = room.event("m.room.topic", {
    stateKey: "",
    content: { topic: "a" },
    prev: [join.eventId],
    id: "$topic-a",
  });
  const topicB = room.event("m.room.topic", {
    stateKey: "",
    content: { topic: "b" },
    prev: [join.eventId],
    id: "$topic-b",
  });
  const nameOnB = room.event("m.room.name", {
    stateKey: "",
    content: { name: "n" },
    prev: [topicB.eventId],
  });
  await store.append({ roomId: ROOM, events: [topicA, topicB, nameOnB] });

  const head = await store.roomHead(ROOM);
  assert.deepEqual(new Set(head?.forwardExtremities), new Set([topicA.eventId, nameOnB.eventId]));
  // The trivial resolver keeps the greatest ID: $topic-b wins over $topic-a.
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), topicB.eventId);
  assert.equal(await store.currentStateEventId(ROOM, "m.room.name", ""), nameOnB.eventId);

  const merge = room.message("merge", { prev: [topicA.eventId, nameOnB.eventId] });
  await store.append({ roomId: ROOM, events: [merge] });
  assert.deepEqual((await store.roomHead(ROOM))?.forwardExtremities, [merge.eventId]);
  const before = await store.stateAtEvent(merge.eventId, "before");
  assert.equal(before?.get(stateKey("m.room.topic", "")), topicB.eventId);
  assert.equal(before?.get(stateKey("m.room.name", "")), nameOnB.eventId);
  assert.deepEqual(
    await store.stateAfterEvents(ROOM, [topicA.eventId, nameOnB.eventId]),
    before,
  );
  assert.deepEqual(await store.currentState(ROOM), before);
  kv.close();
});

Deno.test("a fork that loses a key removes it from current state and membership", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create] });
  const joinB = room.member("@b:test", "join", { prev: [create.eventId] });
  await store.append({ roomId: ROOM, events: [joinB] });
  assert.equal((await store.members(ROOM)).length, 1);
  // A resolver that drops everything but the create event on conflict-free merges.
  const strict = new (await import("../../kv/kv_event_store.ts")).KvEventStore(kv, {
    resolver: (input) =>
      Promise.resolve(new Map([...input.stateMaps[0]].filter(([k]) => k.startsWith("m.room.c")))),
  });
  const other = room.message("fork", { prev: [create.eventId] });
  await strict.append({ roomId: ROOM, events: [other] });
  assert.deepEqual(await strict.members(ROOM), []);
  assert.deepEqual(await strict.roomsOfUser("@b:test"), []);
  assert.equal(await strict.currentStateEventId(ROOM, "m.room.member", "@b:test"), null);
  kv.close();
});

Deno.test("backfill takes positions below the first and moves no state", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const older1 = room.event("m.room.topic", { stateKey: "", content: { topic: "old" }, id: "$o1" });
  const older2 = room.message("old", { id: "$o2" });
  const latest = room.message("new", { prev: [older2.eventId] });
  // Every event here cites history we do not hold, so each brings the state before it.
  const stateBefore = await store.stageState(ROOM, "10", new Map());
  await store.append({ roomId: ROOM, events: [{ ...latest, stateBefore }], roomVersion: "10" });
  const result = await store.append({
    roomId: ROOM,
    events: [{ ...older2, stateBefore }, { ...older1, stateBefore }],
    backfill: true,
  });
  assert.deepEqual(result.events.map((e) => e.position), [0, -1]);
  const head = await store.roomHead(ROOM);
  assert.equal(head?.firstPosition, -1);
  assert.equal(head?.lastPosition, 1);
  assert.deepEqual(head?.forwardExtremities, [latest.eventId]);
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), null);
  const page = await store.timeline(ROOM, { dir: "b", limit: 10 });
  assert.deepEqual(page.events.map((e) => e.position), [1, 0, -1]);
  kv.close();
});

Deno.test("duplicates come back marked and write nothing", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create] });
  const before = await store.roomHead(ROOM);
  const again = await store.append({ roomId: ROOM, events: [create, create] });
  assert.deepEqual(again.events.map((e) => [e.position, e.duplicate]), [[1, true], [1, true]]);
  assert.equal((await store.roomHead(ROOM))?.versionstamp, before?.versionstamp);
  kv.close();
});

Deno.test("an event larger than one KV value is chunked and reads back whole", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const big = room.message("€".repeat(70_000), { prev: [] });
  await store.append({ roomId: ROOM, events: [big], roomVersion: "10" });
  const fresh = new (await import("../../kv/kv_event_store.ts")).KvEventStore(kv, {
    resolver: () => Promise.resolve(new Map()),
  });
  const read = await fresh.getEvent(big.eventId);
  assert.deepEqual(read?.pdu, big.pdu);
  const page = await fresh.timeline(ROOM, { dir: "f", limit: 5 });
  assert.deepEqual(page.events[0].pdu, big.pdu);
  kv.close();
});

Deno.test("events of another room and unknown rooms without a version are refused", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder("!other:test");
  await assert.rejects(
    store.append({ roomId: ROOM, events: [room.create()] }),
    /belongs to !other:test/,
  );
  const stray = new RoomBuilder(ROOM).message("x");
  await assert.rejects(store.append({ roomId: ROOM, events: [stray] }), /no room version/);
  assert.equal(await store.roomHead(ROOM), null);
  kv.close();
});

Deno.test("a request over one commit's limits is refused typed and whole; its parts commit", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({ roomId: ROOM, events: [room.create(), room.member("@a:test", "join")] });
  const before = await store.roomHead(ROOM);
  // Fourteen events near 64 KiB need more than a commit's 800 KiB.
  const big = Array.from({ length: 14 }, (_, i) => room.message(`${i} ${"x".repeat(64_000)}`));
  const refused = await store.append({ roomId: ROOM, events: big }).catch((e) => e);
  assert.ok(refused instanceof AppendTooLarge, String(refused));
  assert.equal(refused.status, 413);
  assert.equal(refused.events, 14);
  assert.equal((await store.roomHead(ROOM))?.versionstamp, before?.versionstamp);
  const first = await store.append({ roomId: ROOM, events: big.slice(0, 7) });
  const second = await store.append({ roomId: ROOM, events: big.slice(7) });
  assert.deepEqual(
    [...first.events, ...second.events].map((e) => e.position),
    Array.from({ length: 14 }, (_, i) => i + 3),
  );
  kv.close();
});
