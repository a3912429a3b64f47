import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  checkSendJoinAnswer,
  type SendJoinCheckInput,
} from "../../../domain/federation/send_join_checks.ts";
import { type Pdu, stateKey } from "../../../domain/protocol/events.ts";
import type { JsonObject, JsonValue } from "../../../domain/protocol/json.ts";
import { addContentHash } from "../../../domain/protocol/hashing.ts";
import { signEvent } from "../../../domain/protocol/event_signing.ts";
import { RemoteRoom, testServer, testVerifier } from "./remote_room_builder.ts";

const A = await testServer("a.test", 1);
const B = await testServer("b.test", 2);
const EVIL = await testServer("evil.test", 3);
const ALICE = "@alice:a.test";
const CAROL = "@carol:b.test";

/** A room on A with a few members, and Carol's join built from its state, signed by B. */
async function setup(version = "10", levels: JsonObject = {}) {
  const room = await RemoteRoom.create(version, A, ALICE, levels);
  await room.add(ALICE, "m.room.message", { body: "hi", msgtype: "m.text" });
  await room.addMembers(5);
  const join = await room.build(CAROL, "m.room.member", { membership: "join" }, CAROL, B);
  return { room, join };
}

function input(
  room: RemoteRoom,
  join: { eventId: string; pdu: Pdu },
  answer: JsonValue,
  servers = [A, B],
): SendJoinCheckInput {
  return {
    roomId: room.roomId,
    version: room.version,
    ownJoin: join,
    serverName: B.name,
    answer,
    verifySignatures: testVerifier(servers),
  };
}

function answerOf(room: RemoteRoom, extra: JsonObject = {}): JsonObject {
  return {
    origin: A.name,
    state: room.statePdus() as unknown as JsonValue[],
    auth_chain: room.authChainPdus() as unknown as JsonValue[],
    ...extra,
  };
}

for (const version of ["1", "6", "10", "12"]) {
  Deno.test(`send_join checks: an honest answer passes (room version ${version})`, async () => {
    const { room, join } = await setup(version);
    const checked = await checkSendJoinAnswer(input(room, join, answerOf(room)));
    assertEquals(checked.stateBefore, room.state);
    assertEquals(checked.join.eventId, join.eventId);
    for (const id of room.state.values()) assert(checked.events.has(id));
  });
}

Deno.test("send_join checks: the v1 [200, body] answer is unwrapped", async () => {
  const { room, join } = await setup();
  const checked = await checkSendJoinAnswer(input(room, join, [200, answerOf(room)]));
  assertEquals(checked.stateBefore.size, room.state.size);
});

Deno.test("send_join checks: a state event with a forged signature is dropped, not stored", async () => {
  const { room, join } = await setup();
  // Evil mints a member event for a user of A, signed with its own key in A's name.
  const forged = await room.build(
    "@mallory:a.test",
    "m.room.member",
    { membership: "join" },
    "@mallory:a.test",
    { name: A.name, key: EVIL.key },
  );
  room.push(forged);
  const checked = await checkSendJoinAnswer(input(room, join, answerOf(room)));
  assert(!checked.events.has(forged.eventId));
  assertEquals(checked.stateBefore.get(stateKey("m.room.member", "@mallory:a.test")), undefined);
  assert(
    checked.dropped.some((d) => d.eventId === forged.eventId && /bad signature/.test(d.reason)),
  );
});

Deno.test("send_join checks: a forged event the join rests on refuses the answer", async () => {
  const { room, join } = await setup();
  const answer = answerOf(room);
  const pl = room.byId.get(room.state.get(stateKey("m.room.power_levels", ""))!)!.pdu;
  const forge = (list: JsonValue) =>
    (list as JsonValue[]).map((p) => {
      if ((p as unknown as Pdu) !== pl) return p;
      const sig = pl.signatures[A.name]["ed25519:t1"];
      const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
      return { ...pl, signatures: { [A.name]: { "ed25519:t1": flipped } } } as unknown as JsonValue;
    });
  answer.state = forge(answer.state);
  answer.auth_chain = forge(answer.auth_chain);
  await assertRejects(() => checkSendJoinAnswer(input(room, join, answer)), /is missing/);
});

Deno.test("send_join checks: an event of another server signed only by evil is dropped", async () => {
  const { room, join } = await setup();
  const fake = await room.build(
    "@x:a.test",
    "m.room.member",
    { membership: "join" },
    "@x:a.test",
    EVIL,
  );
  room.push(fake);
  const checked = await checkSendJoinAnswer(input(room, join, answerOf(room), [A, B, EVIL]));
  assert(
    checked.dropped.some((d) =>
      d.eventId === fake.eventId && /not signed by a.test/.test(d.reason)
    ),
  );
  assert(!checked.events.has(fake.eventId));
});

Deno.test("send_join checks: a tampered content hash is redacted, not trusted", async () => {
  const { room, join } = await setup();
  // A topic event whose content is changed after signing: the signature (over the redacted
  // form) still holds, the content hash no longer does.
  const topic = await room.add(ALICE, "m.room.topic", { topic: "real" }, "");
  const tampered = { ...topic.pdu, content: { topic: "tampered" } };
  const answer = answerOf(room);
  answer.state = (answer.state as JsonValue[]).map((p) =>
    (p as unknown as Pdu) === topic.pdu ? tampered as unknown as JsonValue : p
  );
  const checked = await checkSendJoinAnswer(input(room, join, answer));
  assertEquals(checked.events.get(topic.eventId)!.pdu.content, {});
});

Deno.test("send_join checks: a power levels event that fails auth refuses the answer", async () => {
  const { room, join } = await setup();
  // A member with no power changes the power levels: correctly signed, but unauthorised. The
  // state then disagrees with the power levels the join's template cites.
  const member = "@member0:a.test";
  room.push(await room.build(member, "m.room.power_levels", { users: { [member]: 100 } }, ""));
  await assertRejects(
    () => checkSendJoinAnswer(input(room, join, answerOf(room))),
    /not the state's m.room.power_levels/,
  );
});

Deno.test("send_join checks: an unauthorised topic is dropped, the join goes on", async () => {
  const { room, join } = await setup();
  const topic = await room.add("@member0:a.test", "m.room.topic", { topic: "not allowed" }, "");
  const checked = await checkSendJoinAnswer(input(room, join, answerOf(room)));
  assert(checked.dropped.some((d) => d.eventId === topic.eventId && /fails auth/.test(d.reason)));
  assertEquals(checked.stateBefore.get(stateKey("m.room.topic", "")), undefined);
});

Deno.test("send_join checks: a missing auth event refuses the answer", async () => {
  const { room, join } = await setup();
  const answer = answerOf(room);
  const pl = room.state.get(stateKey("m.room.power_levels", ""))!;
  const drop = (list: JsonValue) =>
    (list as JsonValue[]).filter((p) => (p as unknown as Pdu) !== room.byId.get(pl)!.pdu);
  answer.state = drop(answer.state);
  answer.auth_chain = drop(answer.auth_chain);
  await assertRejects(() => checkSendJoinAnswer(input(room, join, answer)), /is missing/);
});

Deno.test("send_join checks: a create event of another room version is refused", async () => {
  const { room, join } = await setup("10");
  const checked = input(room, join, answerOf(room));
  checked.version = (await RemoteRoom.create("9", A, ALICE)).version;
  await assertRejects(() => checkSendJoinAnswer(checked), /./);
});

Deno.test("send_join checks: an event of another room is dropped", async () => {
  const { room, join } = await setup();
  const other = await RemoteRoom.create("10", A, ALICE);
  const answer = answerOf(room);
  (answer.state as JsonValue[]).push(other.statePdus()[0] as unknown as JsonValue);
  const checked = await checkSendJoinAnswer(input(room, join, answer));
  assert(checked.dropped.some((d) => /room_id/.test(d.reason)));
  assertEquals(checked.stateBefore, room.state);
});

Deno.test("send_join checks: a returned join that is not ours is refused", async () => {
  const { room, join } = await setup();
  const altered = { ...join.pdu, content: { membership: "join", displayname: "Mallory" } };
  await assertRejects(
    () => checkSendJoinAnswer(input(room, join, answerOf(room, { event: altered as never }))),
    /not the event we sent/,
  );
  const stripped = { ...join.pdu, signatures: { [A.name]: {} } };
  await assertRejects(
    () => checkSendJoinAnswer(input(room, join, answerOf(room, { event: stripped as never }))),
    /our signature/,
  );
});

Deno.test("send_join checks: a join the room's state forbids is refused", async () => {
  const { room } = await setup();
  await room.add(ALICE, "m.room.join_rules", { join_rule: "invite" }, "");
  const join = await room.build(CAROL, "m.room.member", { membership: "join" }, CAROL, B);
  await assertRejects(
    () => checkSendJoinAnswer(input(room, join, answerOf(room))),
    /join fails auth/,
  );
});

Deno.test("send_join checks: a restricted join comes back co-signed and is kept so", async () => {
  const room = await RemoteRoom.create("10", A, ALICE);
  const space = "!space:a.test";
  await room.add(ALICE, "m.room.join_rules", {
    join_rule: "restricted",
    allow: [{ type: "m.room_membership", room_id: space }],
  }, "");
  const content = { membership: "join", join_authorised_via_users_server: ALICE };
  const join = await room.build(CAROL, "m.room.member", content, CAROL, B);
  // Without the resident's signature the join cannot be checked: its server must sign.
  await assertRejects(
    () => checkSendJoinAnswer(input(room, join, answerOf(room))),
    /not signed by a.test/,
  );
  const cosigned = await signEvent(join.pdu, room.version, A.name, A.key);
  const checked = await checkSendJoinAnswer(
    input(room, join, answerOf(room, { event: cosigned as never })),
  );
  assert(checked.join.pdu.signatures[A.name] !== undefined);
  assert(checked.join.pdu.signatures[B.name] !== undefined);
});

Deno.test("send_join checks: an auth_events cycle is dropped", async () => {
  const { room, join } = await setup("1");
  // v1 event IDs are chosen, so a forger can make two events cite each other.
  const make = async (id: string, cites: string) => {
    const unsigned = {
      event_id: id,
      room_id: room.roomId,
      sender: ALICE,
      type: "m.room.topic",
      state_key: "",
      content: { topic: id },
      origin_server_ts: 1,
      depth: 10,
      prev_events: [[room.events.at(-1)!.eventId, {}]],
      auth_events: [[cites, {}]],
    };
    const hashed = addContentHash(unsigned, room.version);
    return await signEvent({ ...hashed, signatures: {} }, room.version, A.name, A.key);
  };
  const answer = answerOf(room);
  (answer.auth_chain as JsonValue[]).push(
    (await make("$one:a.test", "$two:a.test")) as never,
    (await make("$two:a.test", "$one:a.test")) as never,
  );
  const checked = await checkSendJoinAnswer(input(room, join, answer));
  assertEquals(checked.dropped.map((d) => d.eventId).sort(), ["$one:a.test", "$two:a.test"]);
  assert(checked.dropped.every((d) => /cycle/.test(d.reason)));
});

Deno.test("send_join checks: a malformed answer is refused", async () => {
  const { room, join } = await setup();
  for (const bad of [null, "x", { state: [] }, { state: [1], auth_chain: [] }]) {
    await assertRejects(() => checkSendJoinAnswer(input(room, join, bad as JsonValue)));
  }
});
