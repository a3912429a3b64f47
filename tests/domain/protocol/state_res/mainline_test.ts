/** Mainline ordering: position along the resolved power levels' ancestry, then ts, then ID. */
import assert from "node:assert/strict";
import {
  mainlineOf,
  mainlineOrder,
  mainlinePosition,
} from "../../../../domain/protocol/state_res/mainline.ts";
import { cacheOf, ev } from "./test_events.ts";

const pl = (id: string, cites: string[] = []) =>
  ev(id, { type: "m.room.power_levels", auth_events: ["$create", ...cites] });

// $p0 <- $p1 <- $p2 is the mainline; $fork is a power levels event off it, citing $p0.
const events = [
  ev("$create", { type: "m.room.create" }),
  pl("$p0"),
  pl("$p1", ["$p0"]),
  pl("$p2", ["$p1"]),
  pl("$fork", ["$p0"]),
  ev("$on-p0", { origin_server_ts: 5, auth_events: ["$create", "$p0"] }),
  ev("$on-p1", { origin_server_ts: 1, auth_events: ["$create", "$p1"] }),
  ev("$on-p2", { origin_server_ts: 0, auth_events: ["$create", "$p2"] }),
  ev("$on-fork", { origin_server_ts: 5, auth_events: ["$create", "$fork"] }),
  ev("$no-pl", { origin_server_ts: 9, auth_events: ["$create"] }),
];

Deno.test("mainline of a power levels event follows cited power levels back to the first", async () => {
  const { cache } = cacheOf(events);
  assert.deepEqual(await mainlineOf("$p2", cache), ["$p2", "$p1", "$p0"]);
  assert.deepEqual(await mainlineOf("$p0", cache), ["$p0"]);
});

Deno.test("mainline position: index of the first mainline event met, Infinity if none", async () => {
  const { cache } = cacheOf(events);
  const index = new Map([["$p2", 0], ["$p1", 1], ["$p0", 2]]);
  const position = async (id: string) => mainlinePosition((await cache.get(id))!, index, cache);
  assert.equal(await position("$on-p2"), 0);
  assert.equal(await position("$on-p1"), 1);
  assert.equal(await position("$on-fork"), 2);
  assert.equal(await position("$no-pl"), Infinity);
  // The event itself is not part of its own list (e0 is excluded).
  assert.equal(await position("$p1"), 2);
});

Deno.test("mainline order: older mainline position first, then ts, then event ID", async () => {
  const { cache } = cacheOf(events);
  const ids = ["$on-p2", "$on-p1", "$on-p0", "$on-fork", "$no-pl"];
  assert.deepEqual(await mainlineOrder(ids, "$p2", cache), [
    "$no-pl", // no power levels ancestry: position Infinity
    "$on-fork", // position 2, ts 5, "$on-f" < "$on-p"
    "$on-p0", // position 2, ts 5
    "$on-p1",
    "$on-p2",
  ]);
});

Deno.test("mainline order without resolved power levels sorts by ts and ID only", async () => {
  const { cache } = cacheOf(events);
  const ids = ["$no-pl", "$on-p0", "$on-fork", "$on-p2"];
  assert.deepEqual(await mainlineOrder(ids, undefined, cache), [
    "$on-p2",
    "$on-fork",
    "$on-p0",
    "$no-pl",
  ]);
});

Deno.test("mainline order skips events it cannot fetch and survives a power levels cycle", async () => {
  const cyclic = [pl("$c1", ["$c2"]), pl("$c2", ["$c1"]), ev("$x", { auth_events: ["$c1"] })];
  const { cache } = cacheOf([...events, ...cyclic]);
  assert.deepEqual(await mainlineOf("$c1", cache), ["$c1", "$c2"]);
  assert.deepEqual(await mainlineOrder(["$missing", "$x", "$on-p2"], "$p2", cache), [
    "$x",
    "$on-p2",
  ]);
});
