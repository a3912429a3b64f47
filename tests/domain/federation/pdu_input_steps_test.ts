/**
 * The incoming-PDU steps alone, over signed events and injected look-ups (no store, no
 * network): format and size, signatures, content hash, auth against the event's own auth
 * events, and checking fetched events before they are stored as outliers.
 */
import { assert, assertEquals } from "../../assert.ts";
import { checkPduFormat } from "../../../domain/federation/pdu_input/format.ts";
import { applyContentHash } from "../../../domain/federation/pdu_input/content_hash.ts";
import { checkSignatures } from "../../../domain/federation/pdu_input/signatures.ts";
import { authoriseByAuthEvents } from "../../../domain/federation/pdu_input/auth_events.ts";
import {
  admitFetchedEvents,
  type FetchedEventSinks,
} from "../../../domain/federation/pdu_input/fetched_events.ts";
import { gatherAuthEvents } from "../../../domain/federation/pdu_input/missing_auth_events.ts";
import type { RemoteEventSource } from "../../../domain/federation/pdu_input/remote_events.ts";
import type { HeldEvent } from "../../../domain/federation/pdu_input/types.ts";
import { verifyEventSignatures } from "../../../domain/federation/event_signatures.ts";
import { type Pdu, toRoomEvent } from "../../../domain/protocol/events.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { roomVersion } from "../../../domain/protocol/room_versions.ts";
import { RemoteRoom, testKeyRing, testServer, testVerifier } from "./remote_room_builder.ts";

const A = await testServer("a.test", 1);
const B = await testServer("b.test", 2);
const EVIL = await testServer("evil.test", 3);
const ALICE = "@alice:a.test";
const BOB = "@bob:b.test";

/** A room on A that Bob (of B) joined, with a message. */
async function room(version = "10", levels: JsonObject = {}) {
  const r = await RemoteRoom.create(version, A, ALICE, levels);
  await r.add(BOB, "m.room.member", { membership: "join" }, BOB, B);
  await r.add(ALICE, "m.room.message", { body: "hi", msgtype: "m.text" });
  return r;
}

/** Everything of `r` as held events, all accepted. */
function heldOf(r: RemoteRoom, except: string[] = []): Map<string, HeldEvent> {
  const held = new Map<string, HeldEvent>();
  for (const e of r.events) {
    if (!except.includes(e.eventId)) {
      held.set(e.eventId, { eventId: e.eventId, pdu: e.pdu, status: "accepted" });
    }
  }
  return held;
}

/** Sinks over an in-memory map, recording what was stored as outliers. */
function memorySinks(held: Map<string, HeldEvent>, servers = [A, B]) {
  const stored: HeldEvent[] = [];
  const sinks: FetchedEventSinks = {
    held: (ids) =>
      Promise.resolve(new Map(ids.flatMap((id) => (held.has(id) ? [[id, held.get(id)!]] : [])))),
    storeOutliers: (events) => {
      for (const e of events) {
        stored.push(e);
        held.set(e.eventId, e);
      }
      return Promise.resolve();
    },
    verify: testVerifier(servers),
  };
  return { sinks, stored };
}

for (const version of ["1", "3", "10", "12"]) {
  Deno.test(`format: an honest PDU passes and is named (room version ${version})`, async () => {
    const r = await room(version);
    const last = r.events.at(-1)!;
    const checked = checkPduFormat(structuredClone(last.pdu), r.roomId, r.version);
    assert(checked.ok);
    assertEquals(checked.value.eventId, last.eventId);
    assertEquals(checked.value.event.prev_events, last.event.prev_events);
  });
}

Deno.test("format: a PDU is dropped for each malformation, naming it when it can", async () => {
  const r = await room("10");
  const good = r.events.at(-1)!;
  const cases: [string, (pdu: Record<string, unknown>) => void, string][] = [
    ["no sender", (p) => delete p.sender, "sender"],
    ["bad depth", (p) => (p.depth = -1), "depth"],
    ["float ts", (p) => (p.origin_server_ts = 1.5), "canonical JSON"],
    ["other room", (p) => (p.room_id = "!other:a.test"), "room_id"],
    ["content", (p) => (p.content = "text"), "content"],
    ["no hashes", (p) => delete p.hashes, "hashes"],
    ["prev list", (p) => (p.prev_events = "x"), "prev_events"],
    [
      "21 prevs",
      (p) => (p.prev_events = Array.from({ length: 21 }, () => good.eventId)),
      "over 20",
    ],
    [
      "11 auths",
      (p) => (p.auth_events = Array.from({ length: 11 }, () => good.eventId)),
      "over 10",
    ],
    ["v1 id shape", (p) => (p.auth_events = ["$x:a.test"]), "format"],
    ["long type", (p) => (p.type = "t".repeat(256)), "255"],
    ["too big", (p) => (p.content = { body: "x".repeat(70_000) }), "bytes"],
  ];
  for (const [name, mutate, reason] of cases) {
    const pdu = structuredClone(good.pdu) as Record<string, unknown>;
    mutate(pdu);
    const checked = checkPduFormat(pdu, r.roomId, r.version);
    assert(!checked.ok, name);
    assert(checked.reason.includes(reason), `${name}: ${checked.reason}`);
  }
  assertEquals(checkPduFormat("nope", r.roomId, r.version).ok, false);
});

Deno.test("format: unsigned is not kept, and does not change the event ID", async () => {
  const r = await room("10");
  const good = r.events.at(-1)!;
  const checked = checkPduFormat({ ...good.pdu, unsigned: { age: 5 } }, r.roomId, r.version);
  assert(checked.ok);
  assertEquals(checked.value.eventId, good.eventId);
  assertEquals(checked.value.pdu.unsigned, undefined);
});

Deno.test("format: a v12 create event must be the one the room is named after", async () => {
  const r = await room("12");
  const create = r.events[0];
  assert(checkPduFormat(create.pdu, r.roomId, r.version).ok);
  const other = await RemoteRoom.create("12", A, "@someone:a.test");
  assertEquals(checkPduFormat(create.pdu, other.roomId, r.version).ok, false);
});

Deno.test("signatures: the sender's server must sign, with its own key", async () => {
  const r = await room("10");
  const bobs = r.events.find((e) => e.pdu.sender === BOB)!;
  assert((await checkSignatures(bobs.pdu, r.version, testVerifier([A, B]))).ok);
  // B's event signed by Evil under B's name: B's real key does not verify it.
  const forged = await r.build(BOB, "m.room.message", { body: "x" }, undefined, {
    name: B.name,
    key: EVIL.key,
  });
  const check = await checkSignatures(forged.pdu, r.version, testVerifier([A, B]));
  assert(!check.ok);
  // A key ring that throws (the signer's server unreachable) fails the check, not the caller.
  const failing = await checkSignatures(
    bobs.pdu,
    r.version,
    () => Promise.reject(new Error("down")),
  );
  assert(!failing.ok && failing.reason.includes("down"));
});

Deno.test("content hash: tampered content is redacted, the signature still holds and the ID stays", async () => {
  const r = await room("10");
  const message = r.events.at(-1)!;
  const tampered = { ...message.pdu, content: { body: "altered", msgtype: "m.text" } } as Pdu;
  // The signature covers only the redacted form, so it still verifies.
  assert((await verifyEventSignatures(tampered, r.version, testKeyRing([A, B]))).ok);
  const outcome = applyContentHash(tampered, r.version);
  assert(outcome.redacted);
  assertEquals(outcome.pdu.content, {});
  const format = checkPduFormat(outcome.pdu, r.roomId, r.version);
  assert(format.ok);
  assertEquals(format.value.eventId, message.eventId);
  assertEquals(applyContentHash(message.pdu, r.version).redacted, false);
});

Deno.test("auth events: a power-level escalation by a member is rejected", async () => {
  const r = await room("10");
  // Bob (level 0) raises himself to 100, citing the real auth events.
  const escalation = await r.build(
    BOB,
    "m.room.power_levels",
    {
      users: { [ALICE]: 100, [BOB]: 100 },
    },
    "",
    B,
  );
  const decision = authoriseByAuthEvents(escalation.event, heldOf(r), r.version);
  assert(!decision.allowed);
  assert(decision.reason.includes("power level"), decision.reason);
});

Deno.test("auth events: an event of a server with nobody in the room is rejected", async () => {
  const r = await room("10");
  const stranger = await r.build(
    "@eve:evil.test",
    "m.room.message",
    { body: "x" },
    undefined,
    EVIL,
  );
  const decision = authoriseByAuthEvents(stranger.event, heldOf(r), r.version);
  assertEquals(decision, { allowed: false, reason: "sender is not joined to the room" });
});

Deno.test("auth events: a rejected, unknown or out-of-selection auth event rejects the event", async () => {
  const r = await room("10");
  const message = await r.build(BOB, "m.room.message", { body: "x" }, undefined, B);
  const held = heldOf(r);
  assert(authoriseByAuthEvents(message.event, held, r.version).allowed);

  const bobJoin = message.event.auth_events.find((id) => held.get(id)!.pdu.sender === BOB)!;
  held.set(bobJoin, { ...held.get(bobJoin)!, status: "rejected" });
  const rejected = authoriseByAuthEvents(message.event, held, r.version);
  assert(!rejected.allowed && rejected.reason.includes("was rejected"), JSON.stringify(rejected));

  const unknown = authoriseByAuthEvents(message.event, heldOf(r, [bobJoin]), r.version);
  assert(!unknown.allowed && unknown.reason.includes("unknown"));

  // Citing the join rules (not in a message's selection) is refused.
  const joinRules = r.events.find((e) => e.pdu.type === "m.room.join_rules")!;
  const extra = toRoomEvent(message.pdu, message.eventId, r.version);
  extra.auth_events = [...extra.auth_events, joinRules.eventId];
  const outside = authoriseByAuthEvents(extra, heldOf(r), r.version);
  assert(!outside.allowed && outside.reason.includes("selection"), JSON.stringify(outside));
});

Deno.test("auth events: v12 needs the create event the room ID names", async () => {
  const r = await room("12");
  const message = await r.build(BOB, "m.room.message", { body: "x" }, undefined, B);
  assert(authoriseByAuthEvents(message.event, heldOf(r), r.version).allowed);
  const withoutCreate = authoriseByAuthEvents(
    message.event,
    heldOf(r, [r.events[0].eventId]),
    r.version,
  );
  assert(!withoutCreate.allowed);
});

Deno.test("fetched events: checked in auth order, stored as outliers with their status", async () => {
  const r = await room("10");
  const escalation = await r.build(
    BOB,
    "m.room.power_levels",
    {
      users: { [ALICE]: 100, [BOB]: 100 },
    },
    "",
    B,
  );
  const forged = await r.build(BOB, "m.room.topic", { topic: "x" }, "", {
    name: B.name,
    key: EVIL.key,
  });
  const held = new Map<string, HeldEvent>();
  const { sinks, stored } = memorySinks(held);
  // Newest first, so admitting has to order them.
  const raws = [...r.events].reverse().map((e) => e.pdu);
  const admitted = await admitFetchedEvents(r.roomId, r.version, [
    ...raws,
    escalation.pdu,
    forged.pdu,
    { not: "an event" },
  ], sinks);
  for (const e of r.events) assertEquals(admitted.get(e.eventId)?.status, "accepted");
  assertEquals(admitted.get(escalation.eventId)?.status, "rejected");
  assert(!admitted.has(forged.eventId), "a forged signature is never stored");
  assertEquals(stored.length, r.events.length + 1);
});

Deno.test("fetched events: one whose auth events nobody supplied is left out", async () => {
  const r = await room("10");
  const message = r.events.at(-1)!;
  const { sinks, stored } = memorySinks(new Map());
  const admitted = await admitFetchedEvents(r.roomId, r.version, [message.pdu], sinks);
  assertEquals(admitted.size, 0);
  assertEquals(stored.length, 0);
});

Deno.test("missing auth events: fetched from the sender's auth chain, then one by one", async () => {
  const r = await room("10");
  const message = await r.build(BOB, "m.room.message", { body: "x" }, undefined, B);
  const needed = message.event.auth_events;
  const bobJoin = needed.find((id) => r.byId.get(id)!.pdu.sender === BOB)!;
  const held = heldOf(r, needed);
  const { sinks } = memorySinks(held);
  const asked: string[] = [];
  const source: RemoteEventSource = {
    authChain: (_roomId, eventId) => {
      asked.push(`chain ${eventId}`);
      // A chain that leaves Bob's join out.
      return Promise.resolve(
        needed.filter((id) => id !== bobJoin).map((id) => r.byId.get(id)!.pdu),
      );
    },
    event: (eventId) => {
      asked.push(`event ${eventId}`);
      return Promise.resolve(r.byId.get(eventId)?.pdu);
    },
    missingEvents: () => Promise.resolve([]),
    state: () => Promise.resolve([]),
    stateIds: () => Promise.resolve(undefined),
  };
  const gathered = await gatherAuthEvents(message.event, r.version, sinks, source);
  for (const id of needed) assertEquals(gathered.get(id)?.status, "accepted");
  assertEquals(asked, [`chain ${message.eventId}`, `event ${bobJoin}`]);
  assert(authoriseByAuthEvents(message.event, gathered, r.version).allowed);
  // Held now: a second event citing them asks nothing.
  asked.length = 0;
  await gatherAuthEvents(message.event, r.version, sinks, source);
  assertEquals(asked, []);
});

Deno.test("v1 events carry their ID, and references are tuples", async () => {
  const r = await room("1");
  const version = roomVersion("1")!;
  const last = r.events.at(-1)!;
  const checked = checkPduFormat(last.pdu, r.roomId, version);
  assert(checked.ok);
  assertEquals(checked.value.eventId, last.pdu.event_id);
  const stringRefs = { ...last.pdu, prev_events: [r.events[0].eventId] };
  assertEquals(checkPduFormat(stringRefs, r.roomId, version).ok, false);
});
