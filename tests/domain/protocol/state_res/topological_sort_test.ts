/** Reverse topological power ordering: topology first, then power, ts and event ID tie-breaks. */
import assert from "node:assert/strict";
import {
  comparePowerTieBreak,
  lexicographicTopologicalSort,
  type PowerTieBreak,
  reverseTopologicalPowerOrder,
} from "../../../../domain/protocol/state_res/topological_sort.ts";
import { MinHeap } from "../../../../domain/protocol/state_res/min_heap.ts";
import { senderPowerLevel } from "../../../../domain/protocol/state_res/power_events.ts";
import { roomVersion } from "../../../../domain/protocol/room_versions.ts";
import { cacheOf, ev } from "./test_events.ts";

const tie = (power: number, originServerTs: number): PowerTieBreak => ({ power, originServerTs });

Deno.test("power order: higher sender power comes first, whatever the timestamps", () => {
  const graph = new Map([["$low", []], ["$high", []]]);
  const ties = new Map([["$low", tie(0, 1)], ["$high", tie(100, 9)]]);
  assert.deepEqual(reverseTopologicalPowerOrder(graph, ties), ["$high", "$low"]);
});

Deno.test("power order: equal power falls back to origin_server_ts, not event ID", () => {
  const graph = new Map([["$a", []], ["$b", []]]);
  const ties = new Map([["$a", tie(50, 7)], ["$b", tie(50, 6)]]);
  assert.deepEqual(reverseTopologicalPowerOrder(graph, ties), ["$b", "$a"]);
});

Deno.test("power order: equal power and ts fall back to the smaller event ID", () => {
  const graph = new Map([["$b", []], ["$a", []], ["$c", []]]);
  const ties = new Map([["$a", tie(50, 1)], ["$b", tie(50, 1)], ["$c", tie(50, 1)]]);
  assert.deepEqual(reverseTopologicalPowerOrder(graph, ties), ["$a", "$b", "$c"]);
});

Deno.test("power order: auth events come before the events citing them", () => {
  // $child outranks everything but cites $root, which has the lowest power.
  const graph = new Map([["$child", ["$root"]], ["$root", []], ["$other", []]]);
  const ties = new Map([
    ["$child", tie(100, 0)],
    ["$root", tie(0, 5)],
    ["$other", tie(50, 5)],
  ]);
  assert.deepEqual(reverseTopologicalPowerOrder(graph, ties), ["$other", "$root", "$child"]);
});

Deno.test("power order: Infinity (v12 creators) sorts first and ties break by ts", () => {
  const graph = new Map([["$x", []], ["$y", []], ["$z", []]]);
  const ties = new Map([["$x", tie(Infinity, 3)], ["$y", tie(Infinity, 2)], ["$z", tie(100, 0)]]);
  assert.deepEqual(reverseTopologicalPowerOrder(graph, ties), ["$y", "$x", "$z"]);
  assert.equal(
    comparePowerTieBreak({ id: "$a", ...tie(Infinity, 1) }, { id: "$a", ...tie(Infinity, 1) }),
    0,
  );
});

Deno.test("topological sort: edges to unknown events are ignored, cycles are dropped", () => {
  const graph = new Map([
    ["$a", ["$outside"]],
    ["$b", ["$c"]],
    ["$c", ["$b"]],
  ]);
  assert.deepEqual(lexicographicTopologicalSort(graph, (x, y) => (x < y ? -1 : 1)), ["$a"]);
});

Deno.test("min heap pops in comparator order", () => {
  const heap = new MinHeap<number>((a, b) => a - b);
  for (const n of [5, 3, 9, 1, 4, 1, 8]) heap.push(n);
  const out: number[] = [];
  while (heap.size > 0) out.push(heap.pop()!);
  assert.deepEqual(out, [1, 1, 3, 4, 5, 8, 9]);
  assert.equal(heap.pop(), undefined);
});

Deno.test("sender power comes from the event's own auth events", async () => {
  const v10 = roomVersion("10")!;
  const create = ev("$create", {
    type: "m.room.create",
    content: { creator: "@alice:example.com" },
  });
  const pl = ev("$pl", {
    type: "m.room.power_levels",
    content: { users: { "@bob:example.com": 50 }, users_default: 10 },
  });
  const byBob = ev("$bob", { sender: "@bob:example.com", auth_events: ["$create", "$pl"] });
  const byCarol = ev("$carol", { sender: "@carol:example.com", auth_events: ["$create", "$pl"] });
  const noPlAlice = ev("$alice", { auth_events: ["$create"] });
  const noPlBob = ev("$bob2", { sender: "@bob:example.com", auth_events: ["$create"] });
  const { cache } = cacheOf([create, pl, byBob, byCarol, noPlAlice, noPlBob]);
  await cache.getMany(["$create", "$pl"]);
  assert.equal(senderPowerLevel(byBob, cache, v10), 50);
  assert.equal(senderPowerLevel(byCarol, cache, v10), 10);
  assert.equal(senderPowerLevel(noPlAlice, cache, v10), 100);
  assert.equal(senderPowerLevel(noPlBob, cache, v10), 0);
});

Deno.test("sender power: v12 creators are infinite via the room ID's create event", async () => {
  const v12 = roomVersion("12")!;
  const create = ev("$create12", {
    room_id: "!create12",
    type: "m.room.create",
    content: { room_version: "12", additional_creators: ["@bob:example.com"] },
  });
  const pl = ev("$pl", { room_id: "!create12", type: "m.room.power_levels", content: {} });
  const byBob = ev("$b", {
    room_id: "!create12",
    sender: "@bob:example.com",
    auth_events: ["$pl"],
  });
  const byEve = ev("$e", {
    room_id: "!create12",
    sender: "@eve:example.com",
    auth_events: ["$pl"],
  });
  const { cache } = cacheOf([create, pl, byBob, byEve]);
  await cache.getMany(["$create12", "$pl"]);
  assert.equal(senderPowerLevel(byBob, cache, v12), Infinity);
  assert.equal(senderPowerLevel(byEve, cache, v12), 0);
});
