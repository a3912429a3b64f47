/** Auth chains, auth difference and the v2.1 conflicted state subgraph. */
import assert from "node:assert/strict";
import {
  authChainOf,
  authChainsOfStateMaps,
  authDifference,
  conflictedStateSubgraph,
} from "../../../../domain/protocol/state_res/auth_chain.ts";
import { stateKey } from "../../../../domain/protocol/events.ts";
import { cacheOf, ev } from "./test_events.ts";

const sorted = (set: Set<string>) => [...set].sort();

// $top -> $mid -> $low -> $root, $side -> $root, $top -> $side
const graph = [
  ev("$root"),
  ev("$low", { auth_events: ["$root"] }),
  ev("$side", { auth_events: ["$root"] }),
  ev("$mid", { auth_events: ["$low"] }),
  ev("$top", { auth_events: ["$mid", "$side"] }),
];

Deno.test("auth chain: everything reachable through auth_events, not the start itself", async () => {
  const { cache, reads } = cacheOf(graph);
  assert.deepEqual(sorted(await authChainOf(["$top"], cache)), ["$low", "$mid", "$root", "$side"]);
  assert.deepEqual(sorted(await authChainOf(["$mid", "$side"], cache)), ["$low", "$root"]);
  assert.deepEqual(sorted(await authChainOf(["$root"], cache)), []);
  // Memoised: each event was read from storage once across the three walks.
  assert.ok([...reads.values()].every((n) => n === 1));
});

Deno.test("auth chain: a missing event ends its branch without failing", async () => {
  const { cache } = cacheOf([ev("$a", { auth_events: ["$gone", "$root"] }), ev("$root")]);
  assert.deepEqual(sorted(await authChainOf(["$a"], cache)), ["$gone", "$root"]);
});

Deno.test("auth difference: union minus intersection of the state maps' full auth chains", async () => {
  const { cache } = cacheOf(graph);
  const maps = [
    new Map([[stateKey("m.room.topic", ""), "$top"]]),
    new Map([[stateKey("m.room.topic", ""), "$side"]]),
  ];
  const chains = await authChainsOfStateMaps(maps, cache);
  assert.deepEqual(sorted(chains[1]), ["$root"]);
  assert.deepEqual(sorted(authDifference(chains)), ["$low", "$mid", "$side"]);
  assert.deepEqual(sorted(authDifference([new Set(["$a", "$b"]), new Set(["$b"]), new Set()])), [
    "$a",
    "$b",
  ]);
  assert.deepEqual(sorted(authDifference([new Set(["$a"]), new Set(["$a"])])), []);
});

Deno.test("conflicted subgraph: every event on a path between two conflicted events", async () => {
  // $c1 -> $x -> $y -> $c2 -> $base; $x -> $dead (reaches no conflicted event); $c3 isolated.
  const events = [
    ev("$base"),
    ev("$c2", { auth_events: ["$base"] }),
    ev("$y", { auth_events: ["$c2"] }),
    ev("$dead", { auth_events: ["$base"] }),
    ev("$x", { auth_events: ["$y", "$dead"] }),
    ev("$c1", { auth_events: ["$x"] }),
    ev("$c3", { auth_events: ["$base"] }),
  ];
  const { cache } = cacheOf(events);
  const subgraph = await conflictedStateSubgraph(["$c1", "$c2", "$c3"], cache);
  assert.deepEqual(sorted(subgraph), ["$c1", "$c2", "$x", "$y"]);
});

Deno.test("conflicted subgraph: paths through a missing event are cut; none without a pair", async () => {
  const events = [
    ev("$c2"),
    ev("$c1", { auth_events: ["$gone"] }),
    ev("$d1", { auth_events: ["$d2"] }),
    ev("$d2"),
  ];
  const { cache } = cacheOf(events);
  assert.deepEqual(sorted(await conflictedStateSubgraph(["$c1", "$c2"], cache)), []);
  assert.deepEqual(sorted(await conflictedStateSubgraph(["$d1", "$d2"], cache)), ["$d1", "$d2"]);
  assert.deepEqual(sorted(await conflictedStateSubgraph(["$d1"], cache)), []);
});
