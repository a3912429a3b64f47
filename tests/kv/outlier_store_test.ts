import assert from "node:assert/strict";
import { memoryStore, RoomBuilder } from "./event_fixtures.ts";
import { OUTLIER_POSITION } from "../../domain/ports/event_store.ts";

const ROOM = "!outliers:test";

Deno.test("outliers are found by ID but never reach the timeline or sync", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:test", "join");
  await store.append({ roomId: ROOM, events: [create, join] });
  // Events of the room from elsewhere (an auth chain): big enough to need chunks, too.
  const remote = new RoomBuilder(ROOM, "remote");
  const small = remote.message("auth chain", { prev: [] });
  const big = remote.message("x".repeat(100_000), { prev: [] });
  await store.storeOutliers(ROOM, [small, big]);

  const found = await store.findEvents([small.eventId, big.eventId, join.eventId, "$unknown"]);
  assert.deepEqual([...found.keys()].sort(), [big.eventId, join.eventId, small.eventId].sort());
  assert.equal(found.get(small.eventId)?.outlier, true);
  assert.deepEqual(found.get(big.eventId)?.pdu, big.pdu);
  assert.equal(found.get(join.eventId)?.outlier, false);

  // Readers of state get it (a joined remote room's state is outliers), outside every log.
  assert.equal((await store.getEvent(small.eventId))?.position, OUTLIER_POSITION);
  assert.equal(
    (await store.getEvents([small.eventId])).get(small.eventId)?.position,
    OUTLIER_POSITION,
  );
  const page = await store.timeline(ROOM, { dir: "b", limit: 10 });
  assert.deepEqual(page.events.map((e) => e.eventId), [join.eventId, create.eventId]);
  const sync = await store.roomChanges({
    roomIds: [ROOM],
    upTo: await store.syncBarrier("@alice:test"),
    limit: 10,
  });
  assert.deepEqual(sync[0].events.map((e) => e.eventId), [create.eventId, join.eventId]);
  assert.equal((await store.roomHead(ROOM))?.lastPosition, 2);
  kv.close();
});

Deno.test("storing outliers skips what is held, and appending one de-outliers it", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create] });
  const message = room.message("arrives first as an outlier");
  await store.storeOutliers(ROOM, [message, create]);
  // The log's create event did not become an outlier too.
  assert.equal((await store.findEvents([create.eventId])).get(create.eventId)?.outlier, false);
  const outlierKeys = [];
  for await (const e of kv.list({ prefix: ["eventid_outlier"] })) outlierKeys.push(e.key[1]);
  assert.deepEqual(outlierKeys, [message.eventId]);
  await store.storeOutliers(ROOM, [message]);

  const appended = await store.append({ roomId: ROOM, events: [message] });
  assert.equal(appended.events[0].duplicate, false);
  const found = (await store.findEvents([message.eventId])).get(message.eventId);
  assert.equal(found?.outlier, false);
  assert.equal((await store.getEvent(message.eventId))?.position, 2);
  const page = await store.timeline(ROOM, { dir: "b", limit: 10 });
  assert.deepEqual(page.events.map((e) => e.eventId), [message.eventId, create.eventId]);
  kv.close();
});

Deno.test("outliers of another room are refused", async () => {
  const { kv, store } = await memoryStore();
  const other = new RoomBuilder("!other:test").message("elsewhere", { prev: [] });
  await assert.rejects(store.storeOutliers(ROOM, [other]), /belongs to !other:test/);
  kv.close();
});

Deno.test("thousands of outliers are stored over several commits", async () => {
  const { kv, store } = await memoryStore();
  const remote = new RoomBuilder(ROOM, "many");
  const events = Array.from({ length: 3_000 }, (_, i) => remote.message(`m${i}`, { prev: [] }));
  await store.storeOutliers(ROOM, events);
  const found = await store.findEvents(events.map((e) => e.eventId));
  assert.equal(found.size, 3_000);
  assert.ok([...found.values()].every((e) => e.outlier));
  kv.close();
});

Deno.test("a v12 create event (no room_id) is stored as an outlier of the room its ID names", async () => {
  const { kv, store } = await memoryStore();
  const hash = "A".repeat(43);
  const create = {
    eventId: `$${hash}`,
    status: "accepted" as const,
    pdu: {
      type: "m.room.create",
      state_key: "",
      sender: "@alice:remote",
      content: { room_version: "12" },
      origin_server_ts: 1,
      depth: 1,
      prev_events: [],
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
    },
  };
  await store.storeOutliers(`!${hash}`, [create]);
  assert.equal((await store.findEvents([create.eventId])).get(create.eventId)?.outlier, true);
  // Another room's ID still does not match it.
  await assert.rejects(store.storeOutliers(ROOM, [create]), /belongs to/);
  kv.close();
});
