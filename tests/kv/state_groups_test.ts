import assert from "node:assert/strict";
import { type StateKey, stateKey, type StateMap } from "../../domain/protocol/events.ts";
import { applyMutations } from "../../kv/commit_budget.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { diffStates, type StateDelta } from "../../kv/state_delta.ts";
import { LAYER_CAP_BYTES, StateGroupPlanner } from "../../kv/state_groups.ts";
import { createStoreContext } from "../../kv/store_context.ts";
import type { StateGroupRecord } from "../../kv/store_records.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!big:test";

Deno.test("a large room's state is kept in bounded layers and reads back exactly", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({ roomId: ROOM, events: [room.create()] });
  const joins: string[] = [];
  for (let batch = 0; batch < 30; batch++) {
    const events = Array.from({ length: 100 }, (_, i) => {
      const user = `@member-with-a-longish-name-${batch * 100 + i}:example.org`;
      return room.member(user, "join");
    });
    joins.push(...events.map((e) => e.eventId));
    await store.append({ roomId: ROOM, events });
  }
  const current = await store.currentState(ROOM);
  assert.equal(current.size, 3001);
  assert.equal((await store.members(ROOM, ["join"])).length, 3000);

  let groups = 0;
  let longestChain = 0;
  for await (const e of kv.list<StateGroupRecord>({ prefix: ["roomid_stategroup", ROOM] })) {
    groups++;
    assert.ok(e.value.bytes <= LAYER_CAP_BYTES, `group ${e.key} holds ${e.value.bytes} bytes`);
    longestChain = Math.max(longestChain, e.value.chain.length);
  }
  assert.ok(groups > 3000);
  // ~250 KiB of state: a handful of capped layers plus a logarithmic tail of smaller ones.
  assert.ok(longestChain <= 24, `chain of ${longestChain}`);

  // A store with cold caches reads the same states from KV.
  const cold = new KvEventStore(kv, { resolver: greatestIdResolver });
  assert.deepEqual(await cold.stateAtEvent(joins[2999], "after"), current);
  const middle = await cold.stateAtEvent(joins[1499], "after");
  assert.equal(middle?.size, 1501);
  assert.equal(
    middle?.get(stateKey("m.room.member", `@member-with-a-longish-name-1499:example.org`)),
    joins[1499],
  );
  assert.equal(
    middle?.has(stateKey("m.room.member", `@member-with-a-longish-name-1500:example.org`)),
    false,
  );
  const before = await cold.stateAtEvent(joins[1499], "before");
  assert.deepEqual(
    diffStates(before!, middle!),
    new Map([[
      stateKey("m.room.member", `@member-with-a-longish-name-1499:example.org`),
      joins[1499],
    ]]),
  );
  kv.close();
});

/** A small deterministic PRNG so failures reproduce. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("planned group chains (with removals, forks and compaction) match a naive model", async () => {
  const kv = await Deno.openKv(":memory:");
  const ctx = createStoreContext(kv, { resolver: greatestIdResolver });
  const random = prng(42);
  const model = new Map<number | string | null, StateMap>([[null, new Map()]]);
  let planner = new StateGroupPlanner(ctx, ROOM, 0);
  for (let step = 0; step < 400; step++) {
    const ids = [...model.keys()];
    // Mostly extend a recent group, sometimes fork from an old one.
    const parent = random() < 0.8 ? ids[ids.length - 1] : ids[Math.floor(random() * ids.length)];
    const delta: StateDelta = new Map();
    const size = 1 + Math.floor(random() * (random() < 0.1 ? 60 : 4));
    for (let i = 0; i < size; i++) {
      const key: StateKey = stateKey("t", `k${Math.floor(random() * 200)}`);
      delta.set(key, random() < 0.15 ? null : `$e${step}-${i}`);
    }
    const expected = new Map(model.get(parent));
    for (const [key, id] of delta) id === null ? expected.delete(key) : expected.set(key, id);
    const id = await planner.plan(parent, delta);
    assert.deepEqual(await planner.state(id), expected, `step ${step}`);
    model.set(id, expected);
    if (step % 7 === 6) {
      const result = await applyMutations(kv.atomic(), planner.mutations()).commit();
      assert.ok(result.ok);
      planner.publish();
      planner = new StateGroupPlanner(ctx, ROOM, planner.nextId);
    }
  }
  await applyMutations(kv.atomic(), planner.mutations()).commit();
  const cold = new StateGroupPlanner(
    createStoreContext(kv, { resolver: greatestIdResolver }),
    ROOM,
    0,
  );
  for (const [id, expected] of model) {
    assert.deepEqual(await cold.state(id), expected, `group ${id}`);
  }
  let longest = 0;
  for await (
    const e of kv.list<StateGroupRecord>({ prefix: new EventStoreKeys().map("roomid_stategroup") })
  ) {
    longest = Math.max(longest, e.value.chain.length);
  }
  // 200 keys never reach the cap, so layers more than double going down: log2(200) < 8.
  assert.ok(longest <= 9, `chain of ${longest}`);
  kv.close();
});
