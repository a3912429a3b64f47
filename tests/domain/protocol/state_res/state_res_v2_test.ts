/** State resolution v2/v2.1 end to end with stub auth rules: the steps and their edge cases. */
import assert from "node:assert/strict";
import { type RoomEvent, stateKey, type StateMap } from "../../../../domain/protocol/events.ts";
import { roomVersion } from "../../../../domain/protocol/room_versions.ts";
import { resolveState } from "../../../../domain/protocol/state_res/resolve_state.ts";
import type { CheckAuth } from "../../../../domain/protocol/state_res/resolution_input.ts";
import { authStateFor } from "../../../../domain/protocol/state_res/iterative_auth_checks.ts";
import { splitStateMaps } from "../../../../domain/protocol/state_res/state_split.ts";
import { cacheOf, ev } from "./test_events.ts";

const v10 = roomVersion("10")!;
const v12 = roomVersion("12")!;
const TOPIC = stateKey("m.room.topic", "");
const PL = stateKey("m.room.power_levels", "");
const CREATE = stateKey("m.room.create", "");
const ALICE = stateKey("m.room.member", "@alice:example.com");
const allowAll: CheckAuth = () => ({ allowed: true });

const base = [
  ev("$create", { type: "m.room.create", content: { creator: "@alice:example.com" } }),
  ev("$alice", {
    type: "m.room.member",
    state_key: "@alice:example.com",
    content: { membership: "join" },
    auth_events: ["$create"],
  }),
  ev("$pl", {
    type: "m.room.power_levels",
    content: { users: { "@alice:example.com": 100 } },
    auth_events: ["$create", "$alice"],
  }),
];
const auth = ["$create", "$alice", "$pl"];

function store(events: RoomEvent[]) {
  const byId = new Map(events.map((e) => [e.event_id, e]));
  return (id: string) => Promise.resolve(byId.get(id));
}

function map(entries: [ReturnType<typeof stateKey>, string][]): StateMap {
  return new Map(entries);
}

Deno.test("split: keys missing from a map or with different values are conflicted", () => {
  const { unconflicted, conflicted } = splitStateMaps([
    map([[CREATE, "$c"], [TOPIC, "$t1"], [PL, "$p"]]),
    map([[CREATE, "$c"], [TOPIC, "$t2"]]),
  ]);
  assert.deepEqual([...unconflicted], [[CREATE, "$c"]]);
  assert.deepEqual([...conflicted].map(([k, v]) => [k, [...v]]), [
    [TOPIC, ["$t1", "$t2"]],
    [PL, ["$p"]],
  ]);
});

Deno.test("resolve: nothing to merge gives the empty state; one map gives itself", async () => {
  const getEvent = store(base);
  assert.equal(
    (await resolveState({ version: v10, stateMaps: [], getEvent, checkAuth: allowAll })).size,
    0,
  );
  const only = map([[CREATE, "$create"], [PL, "$pl"]]);
  assert.deepEqual(
    await resolveState({ version: v10, stateMaps: [only], getEvent, checkAuth: allowAll }),
    only,
  );
});

Deno.test("resolve: without conflicts nothing is re-authorised, auth difference ignored", async () => {
  let calls = 0;
  const checkAuth: CheckAuth = () => (calls++, { allowed: false, reason: "stub" });
  const state = map([[CREATE, "$create"], [ALICE, "$alice"]]);
  const resolved = await resolveState({
    version: v10,
    stateMaps: [state, new Map(state)],
    authChains: [new Set(["$create"]), new Set(["$create", "$pl"])],
    getEvent: store(base),
    checkAuth,
  });
  assert.deepEqual(resolved, state);
  assert.equal(calls, 0);
});

Deno.test("resolve: conflicted non-power events go in mainline order, the last allowed wins", async () => {
  const events = [
    ...base,
    ev("$t1", { origin_server_ts: 5, auth_events: auth }),
    ev("$t2", { origin_server_ts: 6, auth_events: auth }),
  ];
  const common: [ReturnType<typeof stateKey>, string][] = [[CREATE, "$create"], [ALICE, "$alice"], [
    PL,
    "$pl",
  ]];
  const stateMaps = [map([...common, [TOPIC, "$t1"]]), map([...common, [TOPIC, "$t2"]])];
  const resolve = (checkAuth: CheckAuth) =>
    resolveState({ version: v10, stateMaps, getEvent: store(events), checkAuth });
  assert.equal((await resolve(allowAll)).get(TOPIC), "$t2");
  const denyT2: CheckAuth = (e) =>
    e.event_id === "$t2" ? { allowed: false, reason: "stub" } : { allowed: true };
  assert.equal((await resolve(denyT2)).get(TOPIC), "$t1");
  const denyAll: CheckAuth = () => ({ allowed: false, reason: "stub" });
  const resolved = await resolve(denyAll);
  assert.equal(resolved.has(TOPIC), false);
  assert.equal(resolved.get(PL), "$pl");
});

Deno.test("resolve: events that cannot be fetched are left out, not fatal", async () => {
  const events = [...base, ev("$t1", { auth_events: [...auth, "$gone-auth"] })];
  const resolved = await resolveState({
    version: v10,
    stateMaps: [
      map([[CREATE, "$create"], [TOPIC, "$t1"]]),
      map([[CREATE, "$create"], [TOPIC, "$gone"]]),
    ],
    getEvent: store(events),
    checkAuth: allowAll,
  });
  // $alice and $pl are in only the first map's auth chain: the auth difference adds them.
  assert.deepEqual(
    new Set(resolved),
    new Set([[CREATE, "$create"], [ALICE, "$alice"], [PL, "$pl"], [TOPIC, "$t1"]]),
  );
});

Deno.test("resolve: power events are authorised before the others, in power order", async () => {
  const events = [
    ...base,
    ev("$topic", { origin_server_ts: 1, auth_events: auth }),
    ev("$pl2", { type: "m.room.power_levels", origin_server_ts: 9, auth_events: auth }),
    ev("$kick", {
      type: "m.room.member",
      state_key: "@bob:example.com",
      content: { membership: "leave" },
      origin_server_ts: 2,
      auth_events: auth,
    }),
  ];
  const order: string[] = [];
  const checkAuth: CheckAuth = (e) => (order.push(e.event_id), { allowed: true });
  const common: [ReturnType<typeof stateKey>, string][] = [[CREATE, "$create"], [ALICE, "$alice"]];
  await resolveState({
    version: v10,
    stateMaps: [
      map([...common, [PL, "$pl"]]),
      map([...common, [PL, "$pl2"], [TOPIC, "$topic"], [
        stateKey("m.room.member", "@bob:example.com"),
        "$kick",
      ]]),
    ],
    getEvent: store(events),
    checkAuth,
  });
  // $pl is conflicted too; it is cited by the others, so it comes first.
  assert.deepEqual(order, ["$pl", "$kick", "$pl2", "$topic"]);
});

Deno.test("v2 starts the power checks from the unconflicted map, v2.1 from nothing", async () => {
  // Alice's newer membership is unconflicted; the conflicted power levels cite her older one.
  const make = (roomId: string) => [
    ev("$create", {
      room_id: roomId,
      type: "m.room.create",
      content: { creator: "@alice:example.com" },
    }),
    ev("$alice-old", {
      room_id: roomId,
      type: "m.room.member",
      state_key: "@alice:example.com",
      content: { membership: "join" },
    }),
    ev("$alice-new", {
      room_id: roomId,
      type: "m.room.member",
      state_key: "@alice:example.com",
      content: { membership: "join", displayname: "A" },
    }),
    ev("$pl-a", { room_id: roomId, type: "m.room.power_levels", auth_events: ["$alice-old"] }),
    ev("$pl-b", { room_id: roomId, type: "m.room.power_levels", auth_events: ["$alice-old"] }),
  ];
  const seen = async (version: typeof v10, roomId: string) => {
    const memberSeen: string[] = [];
    const checkAuth: CheckAuth = (e, state) => {
      if (e.event_id === "$pl-a") memberSeen.push(state(ALICE)?.event_id ?? "none");
      return { allowed: true };
    };
    await resolveState({
      version,
      stateMaps: [
        map([[CREATE, "$create"], [ALICE, "$alice-new"], [PL, "$pl-a"]]),
        map([[CREATE, "$create"], [ALICE, "$alice-new"], [PL, "$pl-b"]]),
      ],
      getEvent: store(make(roomId)),
      checkAuth,
    });
    return memberSeen;
  };
  assert.deepEqual(await seen(v10, "!room:example.com"), ["$alice-new"]);
  assert.deepEqual(await seen(v12, "!create"), ["$alice-old"]);
});

Deno.test("auth state: state overrides cited auth events for selected keys; rejected ones skipped", async () => {
  const events = [
    ...base,
    ev("$pl-new", { type: "m.room.power_levels", auth_events: auth }),
    ev("$alice-rejected", { type: "m.room.member", state_key: "@alice:example.com" }),
    ev("$topic-cited", { auth_events: [] }),
    ev("$x", { auth_events: ["$create", "$pl", "$alice-rejected", "$topic-cited"] }),
  ];
  const { cache } = cacheOf(events);
  const ctx = {
    version: v10,
    events: cache,
    checkAuth: allowAll,
    isRejected: (id: string) => id === "$alice-rejected",
  };
  const state = map([[PL, "$pl-new"], [TOPIC, "$topic-state"]]);
  const authState = await authStateFor((await cache.get("$x"))!, state, ctx);
  assert.equal(authState.get(PL)?.event_id, "$pl-new");
  assert.equal(authState.get(CREATE)?.event_id, "$create");
  assert.equal(authState.has(ALICE), false);
  // Not a key the auth rules select for a topic event: the cited event stays.
  assert.equal(authState.get(TOPIC)?.event_id, "$topic-cited");
});

Deno.test("auth state: in v12 the create event comes from the room ID", async () => {
  const events = [
    ev("$abc", { room_id: "!abc", type: "m.room.create", content: { room_version: "12" } }),
    ev("$x", { room_id: "!abc", auth_events: [] }),
  ];
  const { cache } = cacheOf(events);
  const ctx = { version: v12, events: cache, checkAuth: allowAll, isRejected: () => false };
  const authState = await authStateFor((await cache.get("$x"))!, new Map(), ctx);
  assert.equal(authState.get(CREATE)?.event_id, "$abc");
});
