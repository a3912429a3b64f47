import assert from "node:assert/strict";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { RoomBatchPlanner } from "../../kv/projections.ts";
import { applyMutations } from "../../kv/commit_budget.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import type { LogEntry } from "../../kv/store_records.ts";
import { stateKey } from "../../domain/protocol/events.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!busy:test";
const keys = new EventStoreKeys();

async function snapshot(kv: Deno.Kv): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const e of kv.list({ prefix: [] })) out.push([e.key, e.value, e.versionstamp]);
  return out;
}

async function logOf(kv: Deno.Kv, roomId: string): Promise<{ position: number; id: string }[]> {
  const out: { position: number; id: string }[] = [];
  for await (const e of kv.list<LogEntry>({ prefix: keys.logPrefix(roomId) })) {
    out.push({ position: e.key[e.key.length - 1] as number, id: e.value.event_id });
  }
  return out;
}

Deno.test("20 concurrent writers over two connections lose nothing, repeat nothing, leave no gap", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/busy.kv`;
  // Two connections to one file stand in for two processes: only the head check serialises them.
  const kvA = await Deno.openKv(path);
  const kvB = await Deno.openKv(path);
  const stores = [
    new KvEventStore(kvA, { resolver: greatestIdResolver }),
    new KvEventStore(kvB, { resolver: greatestIdResolver }),
  ];
  const setup = new RoomBuilder(ROOM);
  await stores[0].append({
    roomId: ROOM,
    events: [setup.create(), setup.member("@a:test", "join")],
  });

  const perWriter = 25;
  const results = await Promise.all(Array.from({ length: 20 }, async (_, w) => {
    const store = stores[w % 2];
    const builder = new RoomBuilder(ROOM, `w${w}`);
    const positions: number[] = [];
    for (let n = 0; n < perWriter; n++) {
      // Like a real server: cite whatever the extremities are now (racy, so forks happen).
      const head = await store.roomHead(ROOM);
      const event = builder.message(`${w}/${n}`, { prev: head!.forwardExtremities });
      const result = await store.append({ roomId: ROOM, events: [event] });
      assert.equal(result.events[0].duplicate, false);
      positions.push(result.events[0].position);
    }
    return positions;
  }));

  const all = results.flat();
  assert.equal(new Set(all).size, 20 * perWriter, "every append got its own position");
  const log = await logOf(kvA, ROOM);
  assert.equal(log.length, 2 + 20 * perWriter);
  assert.deepEqual(log.map((e) => e.position), log.map((_, i) => i + 1), "no gaps");
  assert.equal(new Set(log.map((e) => e.id)).size, log.length, "no event twice");
  for (const entry of log) {
    const indexed = await kvB.get(keys.eventPosition(entry.id));
    assert.deepEqual(indexed.value, { room_id: ROOM, position: entry.position });
  }
  const head = await stores[1].roomHead(ROOM);
  assert.equal(head?.lastPosition, log.length);
  kvA.close();
  kvB.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("appends waiting for the same room are folded into few commits", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create] });
  const events = Array.from(
    { length: 50 },
    (_, i) =>
      room.message(`m${i}`, { prev: [create.eventId], id: `$m${String(i).padStart(2, "0")}` }),
  );
  const results = await Promise.all(events.map((e) => store.append({ roomId: ROOM, events: [e] })));
  const commits = new Set(results.map((r) => r.versionstamp));
  assert.ok(commits.size < 10, `${commits.size} commits for 50 appends`);
  // Arrival order is kept: the i-th queued append got the i-th position.
  assert.deepEqual(results.map((r) => r.events[0].position), events.map((_, i) => i + 2));
  kv.close();
});

Deno.test("extra mutations ride in the append's commit and see where events landed", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const result = await store.append({
    roomId: ROOM,
    events: [create],
    extraMutations: (appended) => [
      { op: "set", key: ["test_outbox", appended[0].position], value: appended[0].eventId },
    ],
  });
  const outbox = await kv.get(["test_outbox", 1]);
  assert.equal(outbox.value, create.eventId);
  assert.equal(outbox.versionstamp, result.versionstamp);
  kv.close();
});

Deno.test("the in-process notifier hears every committed append", async () => {
  const { kv, store } = await memoryStore();
  const heard: [string, string][] = [];
  const stop = store.onRoomAppended((roomId, vs) => heard.push([roomId, vs]));
  const room = new RoomBuilder(ROOM);
  const result = await store.append({ roomId: ROOM, events: [room.create()] });
  stop();
  await store.append({ roomId: ROOM, events: [room.message("unheard")] });
  assert.deepEqual(heard, [[ROOM, result.versionstamp]]);
  kv.close();
});

Deno.test("a commit refused by KV for a value too large leaves nothing behind", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({ roomId: ROOM, events: [room.create()] });
  const before = await snapshot(kv);
  await assert.rejects(
    store.append({
      roomId: ROOM,
      events: [room.message("x")],
      extraMutations: () => [{ op: "set", key: ["test_big"], value: new Uint8Array(70_000) }],
    }),
    /too large/i,
  );
  assert.deepEqual(await snapshot(kv), before);
  kv.close();
});

Deno.test("a commit over the size budget is refused before it is tried", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({ roomId: ROOM, events: [room.create()] });
  const before = await snapshot(kv);
  await assert.rejects(
    store.append({
      roomId: ROOM,
      events: [room.message("x")],
      extraMutations: () =>
        Array.from({ length: 14 }, (_, i) => ({
          op: "set" as const,
          key: ["test_big", i],
          value: new Uint8Array(60_000),
        })),
    }),
    (error: Error & { errcode?: string }) => error.errcode === "M_TOO_LARGE",
  );
  assert.deepEqual(await snapshot(kv), before);
  kv.close();
});

Deno.test("a failing extra check fails only its own request and writes nothing of it", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create] });
  await kv.set(["test_txn", "taken"], 1);
  const bad = room.message("dup txn", { prev: [create.eventId] });
  const good = room.message("fine", { prev: [create.eventId] });
  const [badResult, goodResult] = await Promise.allSettled([
    store.append({
      roomId: ROOM,
      events: [bad],
      extraMutations: () => [{ op: "check", key: ["test_txn", "taken"], versionstamp: null }],
    }),
    store.append({ roomId: ROOM, events: [good] }),
  ]);
  assert.equal(badResult.status, "rejected");
  assert.equal((badResult as PromiseRejectedResult).reason.status, 409);
  assert.equal(goodResult.status, "fulfilled");
  assert.equal(await store.getEvent(bad.eventId), null);
  assert.equal(await kv.get(keys.eventStateGroups(bad.eventId)).then((e) => e.value), null);
  assert.deepEqual((await logOf(kv, ROOM)).map((e) => e.id), [create.eventId, good.eventId]);
  kv.close();
});

Deno.test("a planned commit whose head moved fails whole and leaves nothing behind", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create, room.member("@a:test", "join")] });
  const stale = await RoomBatchPlanner.open(store.ctx, ROOM);
  const lost = room.event("m.room.topic", { stateKey: "", content: { topic: "lost" } });
  await stale.planRequest({ roomId: ROOM, events: [lost] });
  // Another writer lands first.
  await store.append({
    roomId: ROOM,
    events: [room.message("winner", { prev: [create.eventId] })],
  });
  const before = await snapshot(kv);
  const result = await applyMutations(kv.atomic(), stale.mutations()).commit();
  assert.equal(result.ok, false);
  assert.deepEqual(await snapshot(kv), before);
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), null);
  // Through the store the same event lands after a replan against the new head.
  const retried = await store.append({ roomId: ROOM, events: [lost] });
  assert.equal(retried.events[0].position, 4);
  kv.close();
});

/** Count the commits on `kv` that a check failed. */
function countFailedCommits(kv: Deno.Kv): { failed: number } {
  const counter = { failed: 0 };
  const atomic = kv.atomic.bind(kv);
  kv.atomic = () => {
    const op = atomic();
    const commit = op.commit.bind(op);
    op.commit = async () => {
      const result = await commit();
      if (!result.ok) counter.failed++;
      return result;
    };
    return op;
  };
  return counter;
}

Deno.test("a head cached by one connection goes stale when another appends: replanned, nothing lost or repeated", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/stale.kv`;
  const kvA = await Deno.openKv(path);
  const kvB = await Deno.openKv(path);
  const failedA = countFailedCommits(kvA);
  const failedB = countFailedCommits(kvB);
  const storeA = new KvEventStore(kvA, { resolver: greatestIdResolver });
  const storeB = new KvEventStore(kvB, { resolver: greatestIdResolver });
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:test", "join");
  // A's commit leaves A holding the head in memory.
  await storeA.append({ roomId: ROOM, events: [create, join] });

  // B (no head cached yet) moves the head behind A's back: a fork off the join.
  const topic = room.event("m.room.topic", { stateKey: "", content: { topic: "from B" } });
  const b1 = await storeB.append({ roomId: ROOM, events: [topic] });
  assert.equal(b1.events[0].position, 3);

  // A plans from its stale head; the check fails, A re-reads the head and replans.
  const fromA = room.message("from A", { prev: [join.eventId] });
  const a1 = await storeA.append({ roomId: ROOM, events: [fromA] });
  assert.equal(failedA.failed, 1, "A's first commit was planned on the stale head");
  assert.equal(a1.events[0].position, 4);
  assert.equal(a1.events[0].duplicate, false);
  // Planned against the stale head, the message would have dropped B's extremity and topic.
  const head = await storeB.roomHead(ROOM);
  assert.deepEqual([...head!.forwardExtremities].sort(), [fromA.eventId, topic.eventId].sort());
  assert.equal(await storeA.currentStateEventId(ROOM, "m.room.topic", ""), topic.eventId);

  // Now B's cached head is stale: B's duplicate of A's event is found, and B's next event
  // (merging the fork) lands after A's, not over it.
  const again = await storeB.append({ roomId: ROOM, events: [fromA] });
  assert.deepEqual(again.events[0], { ...a1.events[0], duplicate: true });
  const name = room.event("m.room.name", {
    stateKey: "",
    content: { name: "merged" },
    prev: [fromA.eventId, topic.eventId],
  });
  const b2 = await storeB.append({ roomId: ROOM, events: [name] });
  assert.equal(b2.events[0].position, 5);
  assert.equal(failedB.failed, 1, "B's stale head cost one failed commit");

  const log = await logOf(kvA, ROOM);
  assert.deepEqual(log.map((e) => e.position), [1, 2, 3, 4, 5]);
  assert.deepEqual(log.map((e) => e.id), [
    create.eventId,
    join.eventId,
    topic.eventId,
    fromA.eventId,
    name.eventId,
  ]);
  const state = await storeA.currentState(ROOM);
  assert.equal(state.get(stateKey("m.room.topic", "")), topic.eventId);
  assert.equal(state.get(stateKey("m.room.name", "")), name.eventId);
  assert.deepEqual((await storeA.roomHead(ROOM))!.forwardExtremities, [name.eventId]);

  // Every projection equals a rebuild from the log.
  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kvA, target, resolver: greatestIdResolver });
  assert.deepEqual(report.differences, []);
  target.close();
  kvA.close();
  kvB.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a store's own appends plan from the head it committed, without reading it back", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({ roomId: ROOM, events: [room.create(), room.member("@a:test", "join")] });
  let gets = 0;
  let getManys = 0;
  const get = kv.get.bind(kv);
  const getMany = kv.getMany.bind(kv);
  kv.get = ((...args: Parameters<Deno.Kv["get"]>) => {
    gets++;
    return get(...args);
  }) as Deno.Kv["get"];
  kv.getMany = ((...args: Parameters<Deno.Kv["getMany"]>) => {
    getManys++;
    return getMany(...args);
  }) as Deno.Kv["getMany"];
  for (let i = 0; i < 5; i++) await store.append({ roomId: ROOM, events: [room.message(`${i}`)] });
  // The head and the prev events come from memory; the commit checks the new IDs are unused.
  assert.equal(gets, 0);
  assert.equal(getManys, 0);
  kv.close();
});

Deno.test("events assumed new that are stored fail the commit's check and come back as duplicates", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@a:test", "join");
  await store.append({ roomId: ROOM, events: [create, join] });
  const old = room.message("stored already");
  await store.append({ roomId: ROOM, events: [old] });
  // A second store on the same KV has nothing cached, so it takes `old` as new at first.
  const cold = new KvEventStore(kv, { resolver: greatestIdResolver });
  const failed = countFailedCommits(kv);
  const fresh = room.message("new", { prev: [old.eventId] });
  const before = await snapshot(kv);
  const [dup, mixed] = await Promise.all([
    cold.append({ roomId: ROOM, events: [old] }),
    cold.append({ roomId: ROOM, events: [old, fresh] }),
  ]);
  assert.equal(failed.failed, 1, "one optimistic commit failed, the replan read instead");
  assert.deepEqual(dup.events[0], {
    eventId: old.eventId,
    roomId: ROOM,
    position: 3,
    status: "accepted",
    duplicate: true,
  });
  assert.deepEqual(mixed.events.map((e) => [e.position, e.duplicate]), [[3, true], [4, false]]);
  const log = await logOf(kv, ROOM);
  assert.deepEqual(log.map((e) => e.id), [
    create.eventId,
    join.eventId,
    old.eventId,
    fresh.eventId,
  ]);
  // Nothing but the new event's records and the head changed: its log entry, its position, its
  // state groups, its timestamp and search entries; no second copy of `old`.
  const after = await snapshot(kv);
  const keysOf = (entries: unknown[]) =>
    new Set(entries.map((e) => JSON.stringify((e as [Deno.KvKey])[0])));
  const beforeKeys = keysOf(before);
  const added = [...keysOf(after)].filter((k) => !beforeKeys.has(k))
    .map((k) => (JSON.parse(k) as string[])[0]).sort();
  assert.deepEqual(added, [
    "eventid_position",
    "eventid_stategroups",
    "roomid_log",
    "roomid_searchterm",
    "roomid_tsevent",
  ]);
  kv.close();
});
