/**
 * The backward extremities projection (`roomid_backwardextremity`, kv/backward_extremities.ts):
 * events a room's log cites as prev events but lacks, opened by the append that cites them and
 * cleared by the one that brings them, in the same commit, and rebuilt exactly by replay. The
 * room head lists the open ones (bounded), so an event that fills none writes nothing there.
 */
import assert from "node:assert/strict";
import type { AppendRequest } from "../../domain/ports/event_store.ts";
import { MAX_TRACKED_BACKWARD } from "../../kv/backward_extremities.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { RoomBatchPlanner } from "../../kv/projections.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import type { RoomHead } from "../../kv/store_records.ts";
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

/** The room head as committed. */
async function headOf(kv: Deno.Kv, roomId: string): Promise<RoomHead> {
  return (await kv.get<RoomHead>(keys.head(roomId))).value!;
}

/**
 * The backward extremity mutations the commit of `request` would make, planned by the live
 * planner on the committed head (then appended for real, so the test goes on from there).
 */
async function backwardWrites(store: KvEventStore, request: AppendRequest) {
  const planner = await RoomBatchPlanner.open(store.ctx, request.roomId);
  await planner.planRequest(request);
  const prefix = keys.backwardExtremityPrefix(request.roomId);
  const writes = planner.mutations().filter((m) =>
    m.op !== "check" && prefix.every((part, i) => m.key[i] === part)
  ).map((m) => [m.op, m.key[m.key.length - 1]]);
  await store.append(request);
  return writes;
}

/** Replay into a fresh KV finds no difference. */
async function assertReplaySound(kv: Deno.Kv): Promise<void> {
  const report = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(report.differences, []);
}

Deno.test("backward extremities: a local send writes no backward extremity mutation", async () => {
  const { kv, store } = await memoryStore();
  const plain = new RoomBuilder("!plain:a.test", "plain");
  await store.append({ roomId: plain.roomId, events: [plain.create()] });
  const send = { roomId: plain.roomId, events: [plain.message("hi"), plain.message("again")] };
  assert.deepEqual(await backwardWrites(store, send), []);
  assert.deepEqual((await headOf(kv, plain.roomId)).backward_extremities, []);

  // In a room with a hole too: the head lists the hole, and the send is not in the list.
  const { room, m4 } = await roomWithHole(store);
  assert.deepEqual((await headOf(kv, ROOM)).backward_extremities, [m4.eventId]);
  const local = { roomId: ROOM, events: [room.message("local")] };
  assert.deepEqual(await backwardWrites(store, local), []);
  assert.deepEqual([...(await store.backwardExtremities(ROOM)).keys()], [m4.eventId]);
  assert.deepEqual((await headOf(kv, ROOM)).backward_extremities, [m4.eventId]);
  kv.close();
});

Deno.test("backward extremities: the head follows a hole as it opens, moves and fills", async () => {
  const { kv, store } = await memoryStore();
  const { m2, m3, m4, state } = await roomWithHole(store);
  const stateBefore = await store.stageState(ROOM, "10", state);
  const fill4 = { roomId: ROOM, backfill: true, events: [{ ...m4, stateBefore }] };
  assert.deepEqual((await backwardWrites(store, fill4)).map(([op, id]) => [op, id]), [
    ["delete", m4.eventId],
    ["set", m3.eventId],
  ]);
  assert.deepEqual((await headOf(kv, ROOM)).backward_extremities, [m3.eventId]);
  await store.append({ roomId: ROOM, backfill: true, events: [{ ...m3, stateBefore }] });
  assert.deepEqual((await headOf(kv, ROOM)).backward_extremities, [m2.eventId]);
  const fill2 = { roomId: ROOM, backfill: true, events: [m2] };
  assert.deepEqual(await backwardWrites(store, fill2), [["delete", m2.eventId]]);
  assert.deepEqual((await headOf(kv, ROOM)).backward_extremities, []);
  assert.deepEqual([...await store.backwardExtremities(ROOM)], []);
  await assertReplaySound(kv);
  kv.close();
});

Deno.test("backward extremities: past the bound every event deletes, until backfill reads them back", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder("!many:a.test", "many");
  const create = room.create();
  const join = room.member("@alice:a.test", "join");
  await store.append({ roomId: room.roomId, events: [create, join] });
  const state = (await store.stateAtEvent(join.eventId, "after"))!;
  // One event citing more missing events than the head lists.
  const count = MAX_TRACKED_BACKWARD + 6;
  const missing = Array.from(
    { length: count },
    (_, i) => room.message(`x${i}`, { prev: [join.eventId] }),
  );
  const wide = room.message("wide", { prev: missing.map((e) => e.eventId) });
  const stateBefore = await store.stageState(room.roomId, "10", state);
  await store.append({ roomId: room.roomId, events: [{ ...wide, stateBefore }] });
  assert.equal((await store.backwardExtremities(room.roomId)).size, count);
  assert.equal((await headOf(kv, room.roomId)).backward_extremities, null);

  // Unknown: a local send deletes its own entry unconditionally, as before the list was kept.
  const local = room.message("local");
  assert.deepEqual(await backwardWrites(store, { roomId: room.roomId, events: [local] }), [
    ["delete", local.eventId],
  ]);
  assert.equal((await headOf(kv, room.roomId)).backward_extremities, null);

  // Backfill brings 7 of them in one batch: the 7th finds 64 open (read back, with the batch's
  // fills overlaid) and the head lists the 63 left, exactly the projection's entries.
  await store.append({ roomId: room.roomId, backfill: true, events: missing.slice(0, 7) });
  const open = [...(await store.backwardExtremities(room.roomId)).keys()];
  assert.equal(open.length, count - 7);
  assert.deepEqual((await headOf(kv, room.roomId)).backward_extremities, [...open].sort());
  // Known again: a local send writes nothing here; the next backfilled one deletes its own.
  const again = { roomId: room.roomId, events: [room.message("again")] };
  assert.deepEqual(await backwardWrites(store, again), []);
  const next = { roomId: room.roomId, backfill: true, events: [missing[7]] };
  assert.deepEqual(await backwardWrites(store, next), [["delete", missing[7].eventId]]);
  assert.equal((await headOf(kv, room.roomId)).backward_extremities?.length, count - 8);
  // Replay re-appends one event per request, yet lands on the same heads.
  await assertReplaySound(kv);
  kv.close();
});

Deno.test("backward extremities: a head written before the list was kept reads it back once", async () => {
  const { kv, store } = await memoryStore();
  const { room, m4 } = await roomWithHole(store);
  const { backward_extremities: _, ...legacy } = await headOf(kv, ROOM);
  await kv.set(keys.head(ROOM), legacy);
  // The first append reads the projection back: it fills nothing, so it deletes nothing.
  const local = { roomId: ROOM, events: [room.message("after upgrade")] };
  assert.deepEqual(await backwardWrites(store, local), []);
  assert.deepEqual((await headOf(kv, ROOM)).backward_extremities, [m4.eventId]);
  assert.deepEqual([...(await store.backwardExtremities(ROOM)).keys()], [m4.eventId]);
  await assertReplaySound(kv);
  kv.close();
});
