import assert from "node:assert/strict";
import type { EventStore } from "../../domain/ports/event_store.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const READER = "@reader:test";

async function setupRooms(store: EventStore, count: number): Promise<Map<string, RoomBuilder>> {
  const rooms = new Map<string, RoomBuilder>();
  for (let i = 0; i < count; i++) {
    const roomId = `!sync${i}:test`;
    const room = new RoomBuilder(roomId);
    await store.append({ roomId, events: [room.create(), room.member(READER, "join")] });
    rooms.set(roomId, room);
  }
  return rooms;
}

Deno.test("consecutive syncs under concurrent writers miss nothing and repeat nothing", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sync.kv`;
  const kvA = await Deno.openKv(path);
  const kvB = await Deno.openKv(path);
  const stores = [
    new KvEventStore(kvA, { resolver: greatestIdResolver }),
    new KvEventStore(kvB, { resolver: greatestIdResolver }),
  ];
  const rooms = await setupRooms(stores[0], 4);
  const roomIds = [...rooms.keys()];
  const expected = new Set<string>();
  for (const roomId of roomIds) {
    for (const e of (await stores[0].timeline(roomId, { dir: "f", limit: 100 })).events) {
      expected.add(e.eventId);
    }
  }

  let writing = true;
  const writers = Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let n = 0; n < 30; n++) {
      const roomId = roomIds[(w + n) % roomIds.length];
      const builder = new RoomBuilder(roomId, `w${w}`);
      const store = stores[(w + n) % 2];
      const head = await store.roomHead(roomId);
      const rejected = n % 10 === 9;
      const event = builder.message(`${w}/${n}`, {
        id: `$w${w}-${n}`,
        prev: head!.forwardExtremities,
        status: rejected ? "rejected" : "accepted",
      });
      await store.append({ roomId, events: [event] });
      if (!rejected) expected.add(event.eventId);
    }
  })).finally(() => (writing = false));

  const readers = Array.from({ length: 3 }, async (_, r) => {
    const store = stores[r % 2];
    const seen = new Set<string>();
    const lastPosition = new Map<string, number>();
    let since: string | undefined;
    let syncs = 0;
    const syncOnce = async () => {
      const result = await store.syncChanges({ userId: READER, since, limit: 10_000 });
      syncs++;
      if (since !== undefined) assert.ok(result.nextBatch > since, "tokens only grow");
      since = result.nextBatch;
      for (const room of result.rooms) {
        assert.equal(room.limited, false);
        for (const event of room.events) {
          assert.ok(!seen.has(event.eventId), `${event.eventId} repeated`);
          assert.equal(event.status, "accepted");
          assert.ok(event.position > (lastPosition.get(room.roomId) ?? 0), "in log order");
          lastPosition.set(room.roomId, event.position);
          seen.add(event.eventId);
        }
      }
    };
    while (writing) {
      await syncOnce();
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await writers;
    await syncOnce();
    return { seen, syncs };
  });

  const [, ...results] = await Promise.all([writers, ...readers]);
  for (const { seen, syncs } of results) {
    assert.ok(syncs > 2);
    assert.deepEqual([...seen].sort(), [...expected].sort());
  }
  kvA.close();
  kvB.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a sync window larger than the limit is limited and its prev_batch pages back", async () => {
  const { kv, store } = await memoryStore();
  const rooms = await setupRooms(store, 1);
  const [roomId, room] = [...rooms][0];
  const first = await store.syncChanges({ userId: READER, limit: 50 });
  const messages = Array.from({ length: 30 }, (_, i) => room.message(`m${i}`));
  await store.append({ roomId, events: messages });
  const next = await store.syncChanges({ userId: READER, since: first.nextBatch, limit: 10 });
  assert.equal(next.rooms.length, 1);
  const changes = next.rooms[0];
  assert.equal(changes.limited, true);
  assert.deepEqual(changes.events.map((e) => e.eventId), messages.slice(20).map((m) => m.eventId));
  const back = await store.timeline(roomId, { from: changes.prevBatch, dir: "b", limit: 20 });
  assert.deepEqual(
    back.events.map((e) => e.eventId),
    messages.slice(0, 20).map((m) => m.eventId).reverse(),
  );
  const idle = await store.syncChanges({ userId: READER, since: next.nextBatch, limit: 10 });
  assert.deepEqual(idle.rooms, []);
  kv.close();
});

Deno.test("sync covers only the user's rooms unless rooms are named, and checks tokens", async () => {
  const { kv, store } = await memoryStore();
  const rooms = await setupRooms(store, 2);
  const other = new RoomBuilder("!elsewhere:test");
  await store.append({
    roomId: "!elsewhere:test",
    events: [other.create(), other.member("@x:test", "join")],
  });
  const mine = await store.syncChanges({ userId: READER, limit: 5 });
  assert.deepEqual(mine.rooms.map((r) => r.roomId), [...rooms.keys()].sort());
  const named = await store.syncChanges({
    userId: READER,
    limit: 5,
    roomIds: ["!elsewhere:test"],
  });
  assert.deepEqual(named.rooms.map((r) => r.events.length), [2]);
  await assert.rejects(
    store.syncChanges({ userId: READER, since: "bogus", limit: 5 }),
    (error: Error & { errcode?: string }) => error.errcode === "M_INVALID_PARAM",
  );
  kv.close();
});

Deno.test("roomChanges between two barriers returns exactly what landed between them", async () => {
  const { kv, store } = await memoryStore();
  const rooms = await setupRooms(store, 2);
  const t1 = await store.syncBarrier(READER);
  const [[roomA, a], [roomB, b]] = [...rooms];
  const inWindow = a.message("in window");
  await store.append({ roomId: roomA, events: [inWindow] });
  const t2 = await store.syncBarrier(READER);
  await store.append({ roomId: roomB, events: [b.message("after window")] });
  const changes = await store.roomChanges({
    roomIds: [roomA, roomB],
    since: t1,
    upTo: t2,
    limit: 10,
  });
  assert.deepEqual(changes.map((c) => [c.roomId, c.events.map((e) => e.eventId)]), [
    [roomA, [inWindow.eventId]],
  ]);
  kv.close();
});
