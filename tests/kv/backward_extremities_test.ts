/**
 * The backward extremities projection (`roomid_backwardextremity`, kv/backward_extremities.ts):
 * events a room's log cites as prev events but lacks, opened by the append that cites them and
 * cleared by the one that brings them, in the same commit, and rebuilt exactly by replay.
 */
import assert from "node:assert/strict";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!holes:a.test";
const OTHER = "!other:a.test";
const keys = new EventStoreKeys();

/**
 * A room we hold with a hole: create, join, m1; then m5 arrives citing m4 (m2..m4 missing),
 * appended with a staged state as the incoming-PDU handler does across a gap.
 */
async function roomWithHole(store: KvEventStore) {
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:a.test", "join");
  const m1 = room.message("m1");
  await store.append({ roomId: ROOM, events: [create, join, m1] });
  const m2 = room.message("m2");
  const m3 = room.message("m3");
  const m4 = room.message("m4");
  const m5 = room.message("m5");
  const state = (await store.stateAtEvent(m1.eventId, "after"))!;
  const stateBefore = await store.stageState(ROOM, "10", state);
  const appended = await store.append({ roomId: ROOM, events: [{ ...m5, stateBefore }] });
  return { room, create, join, m1, m2, m3, m4, m5, state, m5Position: appended.events[0].position };
}

Deno.test("backward extremities: a hole in the middle is recorded with the citing position", async () => {
  const { kv, store } = await memoryStore();
  const { m4, m5Position } = await roomWithHole(store);
  assert.deepEqual([...await store.backwardExtremities(ROOM)], [[m4.eventId, m5Position]]);
  // The entry landed in the append's own commit: it carries the log entry's versionstamp.
  const entry = await kv.get(keys.backwardExtremity(ROOM, m4.eventId));
  const logged = await store.getEvent(
    (await store.timeline(ROOM, { dir: "b", limit: 1 })).events[0].eventId,
  );
  assert.equal(entry.versionstamp, logged!.versionstamp);
  kv.close();
});

Deno.test("backward extremities: backfill moves the entry down the hole, then clears it", async () => {
  const { kv, store } = await memoryStore();
  const { m1, m2, m3, m4, state } = await roomWithHole(store);
  // m4 and m3 come back first (one answer), newest first below the room's first position;
  // m3 cites m2, which is still missing.
  const stateBefore = await store.stageState(ROOM, "10", state);
  const b4 = await store.append({
    roomId: ROOM,
    backfill: true,
    events: [{ ...m4, stateBefore }],
  });
  const b3 = await store.append({
    roomId: ROOM,
    backfill: true,
    events: [{ ...m3, stateBefore }],
  });
  assert.ok(b3.events[0].position < b4.events[0].position);
  assert.deepEqual([...await store.backwardExtremities(ROOM)], [[
    m2.eventId,
    b3.events[0].position,
  ]]);
  // m2 cites m1, which the log holds: no hole is left.
  await store.append({ roomId: ROOM, backfill: true, events: [m2] });
  assert.deepEqual([...await store.backwardExtremities(ROOM)], []);
  assert.ok((await store.getEvent(m1.eventId))!.position > 0);
  kv.close();
});

Deno.test("backward extremities: a prev event of another room counts as missing", async () => {
  const { kv, store } = await memoryStore();
  const other = new RoomBuilder(OTHER, "other");
  const p = other.create();
  await store.append({ roomId: OTHER, events: [p] });
  const { room, state } = await roomWithHole(store);
  // An event citing P (held, but in another room's log) needs a staged state like any gap.
  const q = room.message("q", { prev: [p.eventId] });
  const stateBefore = await store.stageState(ROOM, "10", state);
  const appended = await store.append({ roomId: ROOM, events: [{ ...q, stateBefore }] });
  const extremities = await store.backwardExtremities(ROOM);
  assert.equal(extremities.get(p.eventId), appended.events[0].position);
  assert.deepEqual([...await store.backwardExtremities(OTHER)], []);
  kv.close();
});

Deno.test("backward extremities: a room we joined starts with one; local sends open none", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder("!joined:b.test");
  room.create();
  const theirs = room.message("before us");
  const join = room.member("@bob:b.test", "join");
  const stateBefore = await store.stageState(room.roomId, "10", new Map());
  await store.append({
    roomId: room.roomId,
    roomVersion: "10",
    events: [{ ...join, stateBefore }],
  });
  assert.deepEqual([...(await store.backwardExtremities(room.roomId)).keys()], [theirs.eventId]);
  await store.append({ roomId: room.roomId, events: [room.message("after")] });
  assert.deepEqual([...(await store.backwardExtremities(room.roomId)).keys()], [theirs.eventId]);
  kv.close();
});

Deno.test("backward extremities: replay rebuilds them and reports one altered", async () => {
  const { kv, store } = await memoryStore();
  const { m3, m4, state } = await roomWithHole(store);
  const stateBefore = await store.stageState(ROOM, "10", state);
  await store.append({ roomId: ROOM, backfill: true, events: [{ ...m4, stateBefore }] });
  await store.append({ roomId: ROOM, backfill: true, events: [{ ...m3, stateBefore }] });
  const sound = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(sound.differences, []);

  await kv.set(keys.backwardExtremity(ROOM, "$never"), 3);
  const broken = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(
    broken.differences.map((d) => [d.map, d.live, d.rebuilt]),
    [["roomid_backwardextremity", 3, undefined]],
  );
  kv.close();
});
