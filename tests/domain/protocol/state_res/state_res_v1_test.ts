/** State resolution v1 (room version 1) with the real auth rules. */
import assert from "node:assert/strict";
import { type RoomEvent, stateKey, type StateMap } from "../../../../domain/protocol/events.ts";
import { roomVersion } from "../../../../domain/protocol/room_versions.ts";
import { resolveState } from "../../../../domain/protocol/state_res/resolve_state.ts";
import { separateV1 } from "../../../../domain/protocol/state_res/state_res_v1.ts";
import { ev } from "./test_events.ts";

const v1 = roomVersion("1")!;
const CREATE = stateKey("m.room.create", "");
const PL = stateKey("m.room.power_levels", "");
const JR = stateKey("m.room.join_rules", "");
const TOPIC = stateKey("m.room.topic", "");
const member = (user: string) => stateKey("m.room.member", user);
const ALICE = "@alice:example.com";
const BOB = "@bob:example.com";

const base = [
  ev("$create:x", { type: "m.room.create", depth: 1, content: { creator: ALICE } }),
  ev("$alice:x", {
    type: "m.room.member",
    state_key: ALICE,
    depth: 2,
    content: { membership: "join" },
    auth_events: ["$create:x"],
  }),
  ev("$pl:x", {
    type: "m.room.power_levels",
    depth: 3,
    content: { users: { [ALICE]: 100 } },
    auth_events: ["$create:x", "$alice:x"],
  }),
  ev("$jr:x", {
    type: "m.room.join_rules",
    depth: 4,
    content: { join_rule: "public" },
    auth_events: ["$create:x", "$alice:x", "$pl:x"],
  }),
  ev("$bob:x", {
    type: "m.room.member",
    state_key: BOB,
    sender: BOB,
    depth: 5,
    content: { membership: "join" },
    auth_events: ["$create:x", "$pl:x", "$jr:x"],
  }),
];
const auth = ["$create:x", "$alice:x", "$pl:x"];
const baseState: StateMap = new Map([
  [CREATE, "$create:x"],
  [member(ALICE), "$alice:x"],
  [PL, "$pl:x"],
  [JR, "$jr:x"],
  [member(BOB), "$bob:x"],
]);

function resolve(extra: RoomEvent[], maps: [ReturnType<typeof stateKey>, string][][]) {
  const byId = new Map([...base, ...extra].map((e) => [e.event_id, e]));
  return resolveState({
    version: v1,
    stateMaps: maps.map((entries) => new Map([...baseState, ...entries])),
    getEvent: (id) => Promise.resolve(byId.get(id)),
  });
}

async function sha1Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("v1 separate: a key some maps lack is not conflicted", () => {
  const { unconflicted, conflicted } = separateV1([
    new Map([[CREATE, "$c"], [TOPIC, "$t"]]),
    new Map([[CREATE, "$c"]]),
    new Map([[CREATE, "$c"], [PL, "$p1"]]),
    new Map([[CREATE, "$c"], [PL, "$p2"]]),
  ]);
  assert.deepEqual([...unconflicted], [[CREATE, "$c"], [TOPIC, "$t"]]);
  assert.deepEqual([...conflicted].map(([k, v]) => [k, [...v]]), [[PL, ["$p1", "$p2"]]]);
});

Deno.test("v1: unconflicted entries are kept without re-running auth", async () => {
  const topic = ev("$topic:x", { sender: "@eve:example.com", depth: 6, auth_events: auth });
  const resolved = await resolve([topic], [[[TOPIC, "$topic:x"]], []]);
  assert.equal(resolved.get(TOPIC), "$topic:x");
  assert.equal(resolved.get(PL), "$pl:x");
});

Deno.test("v1 power levels: walk from the oldest, stop at the first change auth refuses", async () => {
  const promote = ev("$pl-a:x", {
    type: "m.room.power_levels",
    depth: 6,
    content: { users: { [ALICE]: 100, [BOB]: 50 } },
    auth_events: auth,
  });
  // Bob, at 50, tries to raise himself to 100: refused, so alice's change stands.
  const grab = ev("$pl-b:x", {
    type: "m.room.power_levels",
    sender: BOB,
    depth: 7,
    content: { users: { [ALICE]: 100, [BOB]: 100 } },
    auth_events: ["$create:x", "$pl-a:x", "$bob:x"],
  });
  assert.equal(
    (await resolve([promote, grab], [[[PL, "$pl-a:x"]], [[PL, "$pl-b:x"]]])).get(PL),
    "$pl-a:x",
  );
  // A later change alice may make wins.
  const demote = ev("$pl-c:x", {
    type: "m.room.power_levels",
    depth: 7,
    content: { users: { [ALICE]: 100 } },
    auth_events: ["$create:x", "$pl-a:x", "$alice:x"],
  });
  assert.equal(
    (await resolve([promote, demote], [[[PL, "$pl-a:x"]], [[PL, "$pl-c:x"]]])).get(PL),
    "$pl-c:x",
  );
});

Deno.test("v1 other events: deepest allowed wins, SHA-1 of the ID breaks depth ties", async () => {
  const t6a = ev("$t6a:x", { depth: 6, auth_events: auth });
  const t6b = ev("$t6b:x", { depth: 6, auth_events: auth });
  const t7eve = ev("$t7:x", { sender: "@eve:example.com", depth: 7, auth_events: auth });
  const maps = (...ids: string[]) =>
    ids.map((id): [ReturnType<typeof stateKey>, string][] => [[TOPIC, id]]);
  const smaller = (await sha1Hex("$t6a:x")) < (await sha1Hex("$t6b:x")) ? "$t6a:x" : "$t6b:x";
  assert.equal((await resolve([t6a, t6b], maps("$t6a:x", "$t6b:x"))).get(TOPIC), smaller);
  // Eve is not in the room: her deeper topic fails auth, so a depth-6 one is chosen.
  assert.equal((await resolve([t6a, t6b, t7eve], maps("$t6a:x", "$t7:x"))).get(TOPIC), "$t6a:x");
  // When nothing passes, the shallowest event stands.
  const t5eve = ev("$t5:x", { sender: "@eve:example.com", depth: 5, auth_events: auth });
  assert.equal((await resolve([t7eve, t5eve], maps("$t7:x", "$t5:x"))).get(TOPIC), "$t5:x");
});

Deno.test("v1: a conflict with one fetchable event resolves to it; none drops the key", async () => {
  const t6 = ev("$t6:x", { depth: 6, auth_events: auth });
  const resolved = await resolve([t6], [[[TOPIC, "$t6:x"]], [[TOPIC, "$gone:x"]]]);
  assert.equal(resolved.get(TOPIC), "$t6:x");
  const none = await resolve([], [[[TOPIC, "$gone1:x"]], [[TOPIC, "$gone2:x"]]]);
  assert.equal(none.has(TOPIC), false);
  assert.equal(none.get(CREATE), "$create:x");
});

Deno.test("v1 memberships are checked against the resolved power levels", async () => {
  // Alice gives bob ban power in one fork; in the other she does not. Bob bans carol.
  const carolJoin = ev("$carol:x", {
    type: "m.room.member",
    sender: "@carol:example.com",
    state_key: "@carol:example.com",
    depth: 5,
    content: { membership: "join" },
    auth_events: ["$create:x", "$pl:x", "$jr:x"],
  });
  const plBan = ev("$pl-ban:x", {
    type: "m.room.power_levels",
    depth: 6,
    content: { users: { [ALICE]: 100, [BOB]: 50 } },
    auth_events: auth,
  });
  const plOther = ev("$pl-other:x", {
    type: "m.room.power_levels",
    depth: 6,
    content: { users: { [ALICE]: 100 }, ban: 100 },
    auth_events: auth,
  });
  const ban = ev("$ban:x", {
    type: "m.room.member",
    sender: BOB,
    state_key: "@carol:example.com",
    depth: 7,
    content: { membership: "ban" },
    auth_events: ["$create:x", "$pl-ban:x", "$bob:x", "$carol:x"],
  });
  const carol = member("@carol:example.com");
  const run = (pl: string) =>
    resolve([carolJoin, plBan, plOther, ban], [
      [[carol, "$carol:x"], [PL, pl]],
      [[carol, "$ban:x"], [PL, pl]],
    ]);
  assert.equal((await run("$pl-ban:x")).get(carol), "$ban:x");
  assert.equal((await run("$pl-other:x")).get(carol), "$carol:x");
});
