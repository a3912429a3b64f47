/**
 * The incoming-PDU handler over a real server's store (`startTestServer`, `:memory:` KV) and a
 * remote server played by RemoteView: honest events are accepted and reach local users' sync;
 * forged, tampered and unauthorised ones are dropped, redacted, rejected or soft-failed, and
 * current state never moves because of them; gaps are filled by get_missing_events, and
 * bigger ones by state_ids.
 */
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "../routes/test_server.ts";
import { FAST_HASHING, registerUser } from "../routes/client_harness.ts";
import { publicRoom } from "../routes/sender_rooms.ts";
import { testServer, testVerifier } from "../domain/federation/remote_room_builder.ts";
import { RemoteView } from "./remote_view.ts";
import { FederationPduInput } from "../../domain/federation/pdu_input/index.ts";
import { resolveState } from "../../domain/protocol/state_res/resolve_state.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { type Pdu, stateKey } from "../../domain/protocol/events.ts";

const B = await testServer("b.test", 2);
const EVIL = await testServer("evil.test", 3);
const BOB = "@bob:b.test";

/** A room on a.test (Alice's), Bob of b.test joined through the handler. */
async function setup(version = "10") {
  const server = await startTestServer({
    TESSERA_SERVER_NAME: "a.test",
    TESSERA_REGISTRATION: "open",
    TESSERA_RATE_LIMITS: "off",
  }, FAST_HASHING);
  const alice = await registerUser(server, "alice");
  const store = server.deps.eventStore;
  const roomId = await publicRoom(server, alice.userId, version);
  const view = new RemoteView(roomId, roomVersion(version)!, B.name, B.key);
  await view.syncFrom(store);
  const input = new FederationPduInput({
    store,
    transport: view,
    verifySignatures: testVerifier([B, EVIL]),
    resolver: resolveState,
  });
  const tip = async () => {
    await view.syncFrom(store);
    return (await store.roomHead(roomId))!.forwardExtremities[0];
  };
  const join = await view.build(await tip(), {
    sender: BOB,
    type: "m.room.member",
    stateKey: BOB,
    content: { membership: "join" },
  });
  const joined = await input.handle(B.name, roomId, join.pdu);
  assertEquals(joined, { eventId: join.eventId, status: "accepted" });
  /** Current state and forward extremities, to show nothing moved. */
  const snapshot = async () => {
    const head = (await store.roomHead(roomId))!;
    return { state: await store.currentState(roomId), extremities: head.forwardExtremities };
  };
  return { server, alice, store, roomId, view, input, tip, join, snapshot };
}

/** Alice's timeline of the room in an initial sync. */
async function syncedBodies(
  server: Awaited<ReturnType<typeof setup>>["server"],
  token: string,
  roomId: string,
): Promise<string[]> {
  const res = await server.request("GET", "/_matrix/client/v3/sync", { token });
  assertEquals(res.status, 200);
  const events = res.body.rooms.join[roomId].timeline.events as {
    type: string;
    content: { body?: string };
  }[];
  return events.filter((e) => e.type === "m.room.message").map((e) => e.content.body ?? "");
}

const message = (body: string) => ({
  sender: BOB,
  type: "m.room.message",
  content: { msgtype: "m.text", body },
});

Deno.test("a valid remote PDU is accepted and shows in the local user's sync", async () => {
  const t = await setup();
  try {
    const hello = await t.view.build(t.join.eventId, message("hello from b"));
    const outcome = await t.input.handle(B.name, t.roomId, hello.pdu);
    assertEquals(outcome, { eventId: hello.eventId, status: "accepted" });
    assertEquals((await t.store.roomHead(t.roomId))!.forwardExtremities, [hello.eventId]);
    assertEquals(await syncedBodies(t.server, t.alice.accessToken, t.roomId), ["hello from b"]);
    // Sent again: answered from the store, nothing new.
    assertEquals(await t.input.handle(B.name, t.roomId, hello.pdu), outcome);
  } finally {
    t.server.close();
  }
});

Deno.test("a forged signature is dropped: nothing stored, nothing moved", async () => {
  const t = await setup();
  try {
    const before = await t.snapshot();
    // Evil signs an event in b.test's name with its own key.
    const forged = await t.view.build(
      t.join.eventId,
      { sender: BOB, type: "m.room.topic", stateKey: "", content: { topic: "forged" } },
      { signer: { name: B.name, key: EVIL.key } },
    );
    const outcome = await t.input.handle(B.name, t.roomId, forged.pdu);
    assertEquals(outcome.status, undefined);
    assert(outcome.error?.includes("does not verify"), outcome.error);
    assertEquals((await t.store.findEvents([forged.eventId])).size, 0);
    assertEquals(await t.snapshot(), before);
  } finally {
    t.server.close();
  }
});

Deno.test("a tampered content hash stores the redacted copy", async () => {
  const t = await setup();
  try {
    const honest = await t.view.build(t.join.eventId, message("the original"));
    const tampered = { ...honest.pdu, content: { msgtype: "m.text", body: "altered" } } as Pdu;
    const outcome = await t.input.handle(B.name, t.roomId, tampered);
    assertEquals(outcome, { eventId: honest.eventId, status: "accepted" });
    const stored = (await t.store.getEvent(honest.eventId))!;
    assertEquals(stored.pdu.content, {});
    // In the timeline as a redacted event: no body at all, never the altered one.
    assertEquals(await syncedBodies(t.server, t.alice.accessToken, t.roomId), [""]);
  } finally {
    t.server.close();
  }
});

Deno.test("an event from a server with nobody in the room is rejected", async () => {
  const t = await setup();
  try {
    const before = await t.snapshot();
    const intruder = await t.view.build(
      t.join.eventId,
      { sender: "@eve:evil.test", type: "m.room.topic", stateKey: "", content: { topic: "mine" } },
      { signer: EVIL },
    );
    const outcome = await t.input.handle(EVIL.name, t.roomId, intruder.pdu);
    assertEquals(outcome.status, "rejected");
    assertEquals(
      (await t.store.findEvents([intruder.eventId])).get(intruder.eventId)?.status,
      "rejected",
    );
    assertEquals(await t.snapshot(), before);
  } finally {
    t.server.close();
  }
});

Deno.test("a power-level escalation is rejected and the power levels stay", async () => {
  const t = await setup();
  try {
    const before = await t.snapshot();
    const escalation = await t.view.build(t.join.eventId, {
      sender: BOB,
      type: "m.room.power_levels",
      stateKey: "",
      content: { users: { [t.alice.userId]: 100, [BOB]: 100 } },
    });
    const outcome = await t.input.handle(B.name, t.roomId, escalation.pdu);
    assertEquals(outcome.status, "rejected");
    assertEquals(await t.snapshot(), before);
  } finally {
    t.server.close();
  }
});

Deno.test("ban evasion: built before the ban it is soft-failed, citing the ban's past it is rejected", async () => {
  const t = await setup();
  try {
    await t.server.deps.sender.send({
      roomId: t.roomId,
      sender: t.alice.userId,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "ban" },
    });
    const banned = await t.snapshot();
    // b.test had not seen the ban: Bob's message rests on his join. Allowed where it was sent,
    // not by current state.
    const unaware = await t.view.build(t.join.eventId, message("evading"));
    const soft = await t.input.handle(B.name, t.roomId, unaware.pdu);
    assertEquals(soft.status, "soft_failed");
    assertEquals(await t.snapshot(), banned);

    // Built after the ban while citing Bob's old join as its auth event.
    const banId = banned.extremities[0];
    await t.view.syncFrom(t.store);
    const join = t.join.eventId;
    const authEvents = t.join.event.auth_events.filter((id) => id !== join).concat(join);
    const cheat = await t.view.build(banId, message("still here"), { authEvents });
    const rejected = await t.input.handle(B.name, t.roomId, cheat.pdu);
    assertEquals(rejected.status, "rejected");
    assertEquals(await t.snapshot(), banned);
    assertEquals(await syncedBodies(t.server, t.alice.accessToken, t.roomId), []);
  } finally {
    t.server.close();
  }
});

Deno.test("auth events that do not match the state before the event reject it", async () => {
  const t = await setup();
  try {
    const send = (content: Record<string, unknown>) =>
      t.server.deps.sender.send({
        roomId: t.roomId,
        sender: t.alice.userId,
        type: "m.room.power_levels",
        stateKey: "",
        content: content as never,
      });
    const promoted = await send({ users: { [t.alice.userId]: 100, [BOB]: 50 } });
    await send({ users: { [t.alice.userId]: 100 } });
    const demoted = await t.snapshot();
    await t.view.syncFrom(t.store);
    // Bob, demoted, renames the room citing the power levels that promoted him.
    const stale = await t.view.build(
      demoted.extremities[0],
      { sender: BOB, type: "m.room.name", stateKey: "", content: { name: "mine now" } },
      {
        authEvents: (await t.view.build(demoted.extremities[0], {
          sender: BOB,
          type: "m.room.name",
          stateKey: "",
          content: { name: "probe" },
        })).event.auth_events.map((id) =>
          t.view.events.get(id)!.pdu.type === "m.room.power_levels" ? promoted.eventId : id
        ),
      },
    );
    const outcome = await t.input.handle(B.name, t.roomId, stale.pdu);
    assertEquals(outcome.status, "rejected");
    assertEquals(await t.snapshot(), demoted);
  } finally {
    t.server.close();
  }
});

Deno.test("a gap is filled by get_missing_events, oldest first", async () => {
  const t = await setup();
  try {
    let prev = t.join.eventId;
    const built = [];
    for (const body of ["one", "two", "three"]) {
      const e = await t.view.build(prev, message(body));
      built.push(e);
      prev = e.eventId;
    }
    const outcome = await t.input.handle(B.name, t.roomId, built[2].pdu);
    assertEquals(outcome.status, "accepted");
    assertEquals(t.view.requests.filter((r) => r.includes("get_missing_events")).length, 1);
    assertEquals(t.view.requests.filter((r) => r.includes("state_ids")).length, 0);
    assertEquals(await syncedBodies(t.server, t.alice.accessToken, t.roomId), [
      "one",
      "two",
      "three",
    ]);
    assertEquals((await t.store.roomHead(t.roomId))!.forwardExtremities, [built[2].eventId]);
  } finally {
    t.server.close();
  }
});

Deno.test("a gap get_missing_events cannot close is crossed with the state from state_ids", async () => {
  const t = await setup();
  try {
    let prev = t.join.eventId;
    const built = [];
    // A state change early in the gap: the state across it must carry it.
    const rename = await t.view.build(prev, {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join", displayname: "Bob of B" },
    });
    prev = rename.eventId;
    for (let i = 0; i < 14; i++) {
      const e = await t.view.build(prev, message(`m${i}`));
      built.push(e);
      prev = e.eventId;
    }
    const outcome = await t.input.handle(B.name, t.roomId, built.at(-1)!.pdu);
    assertEquals(outcome.status, "accepted");
    assert(t.view.requests.some((r) => r.includes("state_ids")), t.view.requests.join("\n"));
    // The ten events get_missing_events returned and the event itself are in the log.
    const held = await t.store.findEvents(built.map((e) => e.eventId));
    const inLog = built.filter((e) => held.get(e.eventId)?.outlier === false).length;
    assertEquals(inLog, 11);
    // The rename was never in our log, but the state across the gap carries it.
    assertEquals(
      await t.store.currentStateEventId(t.roomId, "m.room.member", BOB),
      rename.eventId,
    );
    assertEquals(held.get(built[0].eventId), undefined);
  } finally {
    t.server.close();
  }
});

Deno.test("an event rejected after a gap still gets its place in the DAG, never an extremity", async () => {
  const t = await setup();
  try {
    const missed = await t.view.build(t.join.eventId, message("missed"));
    const intruder = await t.view.build(
      missed.eventId,
      { sender: "@eve:evil.test", type: "m.room.message", content: { body: "x" } },
      { signer: EVIL },
    );
    const outcome = await t.input.handle(EVIL.name, t.roomId, intruder.pdu);
    assertEquals(outcome.status, "rejected");
    const held = await t.store.findEvents([missed.eventId, intruder.eventId]);
    assertEquals(held.get(missed.eventId)?.status, "accepted");
    assertEquals(held.get(intruder.eventId)?.outlier, false);
    assertEquals((await t.store.roomHead(t.roomId))!.forwardExtremities, [missed.eventId]);
  } finally {
    t.server.close();
  }
});

Deno.test("handleAll: a room's PDUs in order, each resting on the one before, with the same outcomes as one by one", async () => {
  const t = await setup();
  try {
    const rename = await t.view.build(t.join.eventId, {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join", displayname: "Bob" },
    });
    // A message citing the rename as its auth event, queued right behind it.
    const after = await t.view.build(rename.eventId, message("after the rename"));
    const escalation = await t.view.build(after.eventId, {
      sender: BOB,
      type: "m.room.power_levels",
      stateKey: "",
      content: { users: { [t.alice.userId]: 100, [BOB]: 100 } },
    });
    // Resting on the rejected escalation (whose state is the one before it), citing the
    // power levels that hold.
    const last = await t.view.build(escalation.eventId, message("last"), {
      authEvents: after.event.auth_events,
    });
    const outcomes = await t.input.handleAll(B.name, t.roomId, [
      rename.pdu,
      after.pdu,
      escalation.pdu,
      last.pdu,
      after.pdu,
    ]);
    assertEquals(outcomes.map((o) => [o.eventId, o.status]), [
      [rename.eventId, "accepted"],
      [after.eventId, "accepted"],
      [escalation.eventId, "rejected"],
      [last.eventId, "accepted"],
      [after.eventId, "accepted"],
    ]);
    assert(t.view.requests.length === 0, t.view.requests.join("\n"));
    assertEquals(await syncedBodies(t.server, t.alice.accessToken, t.roomId), [
      "after the rename",
      "last",
    ]);
    assertEquals(
      await t.store.currentStateEventId(t.roomId, "m.room.member", BOB),
      rename.eventId,
    );
  } finally {
    t.server.close();
  }
});

Deno.test("a gap across a big state fetches it whole with /state, not event by event", async () => {
  const t = await setup();
  try {
    let prev = t.join.eventId;
    // Eighty members of b.test join while we are not listening.
    for (let i = 0; i < 80; i++) {
      const user = `@member${i}:b.test`;
      const join = await t.view.build(prev, {
        sender: user,
        type: "m.room.member",
        stateKey: user,
        content: { membership: "join" },
      });
      prev = join.eventId;
    }
    const last = await t.view.build(prev, message("after the crowd"));
    const outcome = await t.input.handle(B.name, t.roomId, last.pdu);
    assertEquals(outcome.status, "accepted");
    const asked = t.view.requests;
    assert(asked.some((r) => r.includes("/state/")), asked.join("\n"));
    assert(asked.filter((r) => r.includes("/event/")).length < 10, asked.join("\n"));
    const members = await t.store.members(t.roomId, ["join"]);
    assertEquals(members.length, 82);
  } finally {
    t.server.close();
  }
});

Deno.test("prev events on two branches, one never seen: the states are resolved across the gap", async () => {
  const t = await setup();
  try {
    // Our branch: Alice names the room.
    const named = await t.server.deps.sender.send({
      roomId: t.roomId,
      sender: t.alice.userId,
      type: "m.room.name",
      stateKey: "",
      content: { name: "ours" },
    });
    await t.view.syncFrom(t.store);
    // b.test's branch from Bob's join, which we never get: Bob renames himself.
    const rename = await t.view.build(t.join.eventId, {
      sender: BOB,
      type: "m.room.member",
      stateKey: BOB,
      content: { membership: "join", displayname: "Bob on the other branch" },
    });
    const merge = await t.view.build([named.eventId, rename.eventId], message("merged"));
    const next = await t.view.build(merge.eventId, message("next"));
    // The walk back from `next` yields the merge alone: its state comes from state_ids.
    t.view.missingEventsAnswer = [merge.eventId];
    const outcome = await t.input.handle(B.name, t.roomId, next.pdu);
    assertEquals(outcome.status, "accepted");
    assert(t.view.requests.some((r) => r.includes("state_ids")), t.view.requests.join("\n"));
    const before = (await t.store.stateAtEvent(merge.eventId, "before"))!;
    assertEquals(before.get(stateKey("m.room.name", "")), named.eventId);
    assertEquals(before.get(stateKey("m.room.member", BOB)), rename.eventId);
    assertEquals(
      await t.store.currentStateEventId(t.roomId, "m.room.member", BOB),
      rename.eventId,
    );
  } finally {
    t.server.close();
  }
});

Deno.test("a pushed event whose prev events the sender withholds is dropped, its state never asked", async () => {
  const t = await setup();
  try {
    const before = await t.snapshot();
    const hidden = await t.view.build(t.join.eventId, message("hidden"));
    const pushed = await t.view.build(hidden.eventId, message("pushed"));
    t.view.missingEventsAnswer = [];
    const outcome = await t.input.handle(B.name, t.roomId, pushed.pdu);
    assertEquals(outcome.status, undefined);
    assert(outcome.error?.includes("withheld"), outcome.error);
    assert(!t.view.requests.some((r) => r.includes("state")), t.view.requests.join("\n"));
    assertEquals((await t.store.findEvents([pushed.eventId])).size, 0);
    assertEquals(await t.snapshot(), before);
  } finally {
    t.server.close();
  }
});
