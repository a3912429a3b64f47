import assert from "node:assert/strict";
import { stateKey, type StateMap } from "../../domain/protocol/events.ts";
import { MissingPrevEvents, type NewEvent } from "../../domain/ports/event_store.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!big:remote.test";
const CREATOR = "@creator:remote.test";
const ME = "@me:local.test";

/** A remote room's state as its send_join answer would carry it: create, power, rules, members. */
function remoteRoom(members: number): { events: NewEvent[]; state: StateMap; last: string } {
  const room = new RoomBuilder(ROOM, "r");
  const events: NewEvent[] = [];
  const state: StateMap = new Map();
  const add = (event: NewEvent) => {
    events.push(event);
    state.set(stateKey(event.pdu.type, event.pdu.state_key as string), event.eventId);
  };
  add(room.event("m.room.create", {
    stateKey: "",
    sender: CREATOR,
    content: { room_version: "10", creator: CREATOR },
  }));
  add(room.member(CREATOR, "join"));
  add(room.event("m.room.power_levels", {
    stateKey: "",
    sender: CREATOR,
    content: { users: { [CREATOR]: 100 } },
  }));
  add(room.event("m.room.join_rules", {
    stateKey: "",
    sender: CREATOR,
    content: { join_rule: "public" },
  }));
  for (let i = 0; i < members; i++) add(room.member(`@user${i}:remote.test`, "join"));
  return { events, state, last: room.last! };
}

function joinEvent(prev: string): NewEvent {
  const join = new RoomBuilder(ROOM, "me").member(ME, "join", { prev: [prev] });
  return join;
}

Deno.test("an event citing prev events we do not hold is refused without a staged state", async () => {
  const { kv, store } = await memoryStore();
  const join = joinEvent("$somewhere-else");
  await assert.rejects(
    store.append({ roomId: ROOM, events: [join], roomVersion: "10" }),
    (error) => error instanceof MissingPrevEvents && error.missing.join() === "$somewhere-else",
  );
  assert.equal(await store.roomHead(ROOM), null);
  // In a room we hold too: a gap is refused, not filled with a guessed state.
  const local = new RoomBuilder("!local:test");
  await store.append({ roomId: "!local:test", events: [local.create()] });
  const gap = local.message("after a gap", { prev: ["$unseen"] });
  await assert.rejects(
    store.append({ roomId: "!local:test", events: [gap] }),
    MissingPrevEvents,
  );
  assert.equal((await store.roomHead("!local:test"))?.lastPosition, 1);
  kv.close();
});

Deno.test("joining a 5,000-member room: outliers, a staged state and the join, then replay", async () => {
  const { kv, store } = await memoryStore();
  const { events, state, last } = remoteRoom(4_996);
  const t0 = performance.now();
  await store.storeOutliers(ROOM, events);
  const t1 = performance.now();
  const staged = await store.stageState(ROOM, "10", state);
  const t2 = performance.now();
  assert.equal(staged.entries, 5_000);
  // An interrupted earlier attempt with another state left an entry behind: the join clears it.
  const keys = new EventStoreKeys();
  await kv.set(keys.currentState(ROOM, "m.room.topic", ""), "$left-behind");
  await kv.set(keys.roomMember(ROOM, "@ghost:remote.test"), { membership: "join", event_id: "$g" });
  await kv.set(keys.userRoom("@ghost:remote.test", ROOM), { membership: "join", event_id: "$g" });

  const join = joinEvent(last);
  const appended = await store.append({
    roomId: ROOM,
    roomVersion: "10",
    events: [{ ...join, checkState: true, stateBefore: staged }],
  });
  const t3 = performance.now();
  console.log(
    `5,000-member join: outliers ${(t1 - t0).toFixed(0)} ms, stageState ${
      (t2 - t1).toFixed(0)
    } ms, join append ${(t3 - t2).toFixed(0)} ms (:memory: KV)`,
  );
  assert.equal(appended.events[0].status, "accepted");
  assert.equal(appended.events[0].position, 1);
  const head = await store.roomHead(ROOM);
  assert.deepEqual(head?.forwardExtremities, [join.eventId]);
  assert.equal((await store.members(ROOM, ["join"])).length, 4_998);
  assert.equal((await store.currentState(ROOM)).size, 5_001);
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), null);
  assert.deepEqual(await store.roomsOfUser("@ghost:remote.test"), []);
  assert.equal((await store.stateAtEvent(join.eventId, "before"))?.size, 5_000);
  // Only our join is in the timeline; the state came as outliers.
  const page = await store.timeline(ROOM, { dir: "b", limit: 50 });
  assert.deepEqual(page.events.map((e) => e.eventId), [join.eventId]);

  // Staging the same state again (a resumed join) finds it and writes nothing.
  const again = await store.stageState(ROOM, "10", new Map(state));
  assert.deepEqual(again, staged);
  const rejoin = await store.append({
    roomId: ROOM,
    events: [{ ...join, checkState: true, stateBefore: staged }],
  });
  assert.equal(rejoin.events[0].duplicate, true);

  // A later message in the room builds on the join like any local event.
  const next = new RoomBuilder(ROOM, "next").message("hi", { sender: ME, prev: [join.eventId] });
  await store.append({ roomId: ROOM, events: [next] });
  assert.equal((await store.currentState(ROOM)).size, 5_001);

  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.deepEqual(report.differences, []);
  assert.equal(report.events, 2);
  target.close();
  kv.close();
});

Deno.test("replay finds a staged layer altered in place", async () => {
  const { kv, store } = await memoryStore();
  const { events, state, last } = remoteRoom(3);
  await store.storeOutliers(ROOM, events);
  const staged = await store.stageState(ROOM, "10", state);
  await store.append({
    roomId: ROOM,
    roomVersion: "10",
    events: [{ ...joinEvent(last), stateBefore: staged }],
  });
  const keys = new EventStoreKeys();
  const layer = await kv.get<{ delta: Uint8Array }>(keys.stateGroup(ROOM, `${staged.id}.0`));
  const text = new TextDecoder().decode(layer.value!.delta).replace("@user0", "@userX");
  await kv.set(keys.stateGroup(ROOM, `${staged.id}.0`), {
    ...layer.value,
    delta: new TextEncoder().encode(text),
  });
  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.ok(report.differenceCount > 0);
  assert.ok(report.differences.some((d) => d.map === "roomid_stagedstate"));
  target.close();
  kv.close();
});

Deno.test("a staged state of another room, or never staged, is refused", async () => {
  const { kv, store } = await memoryStore();
  const { events, state, last } = remoteRoom(1);
  await store.storeOutliers(ROOM, events);
  const staged = await store.stageState(ROOM, "10", state);
  const other = new KvEventStore(kv, { resolver: greatestIdResolver });
  await assert.rejects(
    other.append({
      roomId: ROOM,
      roomVersion: "10",
      events: [{ ...joinEvent(last), stateBefore: { ...staged, id: "nope" } }],
    }),
    /never staged/,
  );
  await assert.rejects(
    other.append({
      roomId: ROOM,
      roomVersion: "10",
      events: [{ ...joinEvent(last), stateBefore: { ...staged, roomId: "!x:test" } }],
    }),
    /belongs to !x:test/,
  );
  assert.equal(await store.roomHead(ROOM), null);
  kv.close();
});

Deno.test("replay rebuilds a joined room with gaps, backfill and checked events exactly", async () => {
  const { kv, store } = await memoryStore();
  const { events, state, last } = remoteRoom(20);
  await store.storeOutliers(ROOM, events);
  const staged = await store.stageState(ROOM, "10", state);
  const join = joinEvent(last);
  await store.append({
    roomId: ROOM,
    roomVersion: "10",
    events: [{ ...join, checkState: true, stateBefore: staged }],
  });
  const later = new RoomBuilder(ROOM, "later");
  const mine = later.message("after joining", { sender: ME, prev: [join.eventId] });
  await store.append({ roomId: ROOM, events: [mine] });
  // A gap: the sender's history before this event is not held; its state came from /state_ids.
  const afterGap = later.message("after a gap", { sender: "@user1:remote.test", prev: ["$gap"] });
  // A stranger's message, refused by the state before it.
  const stranger = later.message("let me in", {
    sender: "@x:elsewhere.test",
    prev: [mine.eventId],
  });
  const checked = await store.append({
    roomId: ROOM,
    events: [
      { ...afterGap, checkState: true, stateBefore: staged },
      { ...stranger, checkState: true },
    ],
  });
  assert.deepEqual(checked.events.map((e) => e.status), ["accepted", "rejected"]);
  assert.deepEqual(
    (await store.roomHead(ROOM))?.forwardExtremities.sort(),
    [afterGap.eventId, mine.eventId].sort(),
  );
  // History from before our join, fetched by backfill, with the state before it staged too.
  const older = new RoomBuilder(ROOM, "older").message("old news", {
    sender: "@user2:remote.test",
    prev: ["$even-older"],
  });
  const back = await store.append({
    roomId: ROOM,
    backfill: true,
    events: [{ ...older, checkState: true, stateBefore: staged }],
  });
  assert.equal(back.events[0].position, 0);
  assert.equal(back.events[0].status, "accepted");
  const merge = later.message("merge", { sender: ME, prev: [mine.eventId, afterGap.eventId] });
  await store.append({ roomId: ROOM, events: [merge] });

  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.deepEqual(report.differences, []);
  assert.equal(report.events, 6);
  target.close();
  kv.close();
});
