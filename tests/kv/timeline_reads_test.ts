import assert from "node:assert/strict";
import { memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!timeline:test";

Deno.test("timeline pages walk both directions with position tokens", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const events = [room.create(), ...Array.from({ length: 9 }, (_, i) => room.message(`m${i}`))];
  await store.append({ roomId: ROOM, events });
  const ids = events.map((e) => e.eventId);

  const back1 = await store.timeline(ROOM, { dir: "b", limit: 4 });
  assert.deepEqual(back1.events.map((e) => e.eventId), ids.slice(6).reverse());
  const back2 = await store.timeline(ROOM, { from: back1.end, dir: "b", limit: 4 });
  assert.deepEqual(back2.events.map((e) => e.eventId), ids.slice(2, 6).reverse());
  const back3 = await store.timeline(ROOM, { from: back2.end, dir: "b", limit: 4 });
  assert.deepEqual(back3.events.map((e) => e.eventId), ids.slice(0, 2).reverse());
  assert.equal(back3.end, undefined);

  // Walking forward from a backward page's end returns what that page skipped past.
  const forward = await store.timeline(ROOM, { from: back2.end, dir: "f", limit: 3 });
  assert.deepEqual(forward.events.map((e) => e.eventId), ids.slice(2, 5));
  const rest = await store.timeline(ROOM, { from: forward.end, dir: "f", limit: 100 });
  assert.deepEqual(rest.events.map((e) => e.eventId), ids.slice(5));
  assert.equal(rest.end, undefined);
  kv.close();
});

Deno.test("timeline walks into backfilled history below position 1", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const recent = room.message("recent", { prev: ["$older"] });
  // The history cited is not held: the state before comes staged, as over federation.
  const stateBefore = await store.stageState(ROOM, "10", new Map());
  await store.append({ roomId: ROOM, events: [{ ...recent, stateBefore }], roomVersion: "10" });
  const older = room.message("older", { id: "$older", prev: ["$oldest"] });
  const oldest = room.message("oldest", { id: "$oldest", prev: [] });
  await store.append({
    roomId: ROOM,
    events: [{ ...older, stateBefore }, oldest],
    backfill: true,
  });
  const page = await store.timeline(ROOM, { dir: "f", limit: 10 });
  assert.deepEqual(page.events.map((e) => [e.eventId, e.position]), [
    ["$oldest", -1],
    ["$older", 0],
    [recent.eventId, 1],
  ]);
  kv.close();
});

Deno.test("a malformed timeline token is refused as M_INVALID_PARAM", async () => {
  const { kv, store } = await memoryStore();
  await assert.rejects(
    store.timeline(ROOM, { from: "s123", dir: "b", limit: 5 }),
    (error: Error & { errcode?: string }) => error.errcode === "M_INVALID_PARAM",
  );
  kv.close();
});

Deno.test("a sync token as from is placed after the events committed up to it", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const first = [room.create(), room.message("a")];
  await store.append({ roomId: ROOM, events: first });
  const ids = first.map((e) => e.eventId);
  const tokens: string[] = [];
  // 40 commits of one event each, a sync token after each: bisection over a longer log.
  for (let i = 0; i < 40; i++) {
    const event = room.message(`m${i}`);
    const appended = await store.append({ roomId: ROOM, events: [event] });
    ids.push(event.eventId);
    tokens.push(`s${appended.versionstamp}`);
  }
  for (const i of [0, 1, 17, 38, 39]) {
    const forward = await store.timeline(ROOM, { from: tokens[i], dir: "f", limit: 100 });
    assert.deepEqual(forward.events.map((e) => e.eventId), ids.slice(i + 3), `after ${i}`);
    const backward = await store.timeline(ROOM, { from: tokens[i], dir: "b", limit: 2 });
    assert.deepEqual(backward.events.map((e) => e.eventId), [ids[i + 2], ids[i + 1]]);
  }
  kv.close();
});
