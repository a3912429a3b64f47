import assert from "node:assert/strict";
import { MatrixError } from "../../../domain/errors.ts";
import {
  buildEvent,
  type BuildEventInput,
  type BuiltEvent,
  type CurrentStateEntry,
  type EventReference,
  MAX_PREV_EVENTS,
} from "../../../domain/protocol/event_builder.ts";
import {
  computeEventId,
  eventIdMatchesFormat,
  roomIdForCreateEvent,
} from "../../../domain/protocol/event_ids.ts";
import { verifyEventSignature } from "../../../domain/protocol/event_signing.ts";
import { type StateKey, stateKey } from "../../../domain/protocol/events.ts";
import { checkContentHash } from "../../../domain/protocol/hashing.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import { redactEvent } from "../../../domain/protocol/redaction.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { generateSigningSeed, signingKeyFromSeed } from "../../../domain/protocol/signing.ts";

const SERVER = "hs.example";
const key = await signingKeyFromSeed(generateSigningSeed(), "ed25519:test");
const ALICE = "@alice:hs.example";
const BOB = "@bob:hs.example";

function version(n: number): RoomVersion {
  const v = roomVersion(String(n));
  assert.ok(v);
  return v;
}

/** A minimal room: current state and one forward extremity, advanced by each built event. */
class Room {
  roomId: string | undefined;
  state = new Map<StateKey, CurrentStateEntry>();
  extremities: EventReference[] = [];
  constructor(readonly version: RoomVersion, roomId?: string) {
    this.roomId = roomId;
  }

  async send(
    fields: Pick<BuildEventInput, "sender" | "type" | "content"> & Partial<BuildEventInput>,
  ): Promise<BuiltEvent> {
    const built = await buildEvent({
      version: this.version,
      roomId: this.roomId,
      prevEvents: this.extremities,
      currentState: (k) => this.state.get(k),
      serverName: SERVER,
      signingKey: key,
      ...fields,
    });
    await assertWellFormed(built, this.version);
    if (built.pdu.type === "m.room.create") {
      this.roomId ??= roomIdForCreateEvent(built.pdu, this.version);
    }
    if (built.pdu.state_key !== undefined) {
      this.state.set(stateKey(built.pdu.type, built.pdu.state_key), { eventId: built.eventId });
    }
    this.extremities = [{ eventId: built.eventId, depth: built.pdu.depth }];
    return built;
  }

  id(type: string, sk = ""): string {
    const entry = this.state.get(stateKey(type, sk));
    assert.ok(entry, `${type}/${sk} is in state`);
    return entry.eventId;
  }
}

/** Every built event must verify, hash-check and reproduce its own ID. */
async function assertWellFormed(built: BuiltEvent, v: RoomVersion): Promise<void> {
  const { pdu, eventId, event } = built;
  assert.ok(await verifyEventSignature(pdu, v, SERVER, key.keyId, key.publicKey));
  // The signature is over the redacted form: it survives redaction.
  assert.ok(await verifyEventSignature(redactEvent(pdu, v), v, SERVER, key.keyId, key.publicKey));
  assert.ok(checkContentHash(pdu, v));
  assert.equal(computeEventId(pdu, v), eventId);
  assert.ok(eventIdMatchesFormat(eventId, v), eventId);
  assert.equal(event.event_id, eventId);
  assert.equal("origin" in pdu, false, "origin is no longer part of the PDU format");
}

const PL_CONTENT: JsonObject = { users: { [ALICE]: 100 }, users_default: 0 };

Deno.test("v12: create derives the room ID; auth events follow the selection rules", async () => {
  const room = new Room(version(12));
  const create = await room.send({
    sender: ALICE,
    type: "m.room.create",
    stateKey: "",
    content: { room_version: "12" },
  });
  assert.equal(create.pdu.room_id, undefined);
  assert.equal(create.pdu.depth, 1);
  assert.deepEqual(create.pdu.prev_events, []);
  assert.deepEqual(create.pdu.auth_events, []);
  assert.equal(room.roomId, "!" + create.eventId.slice(1));
  assert.equal(create.event.room_id, room.roomId);

  // v12 events never cite the create event; the creator's join has nothing else to cite yet.
  const join = await room.send({
    sender: ALICE,
    type: "m.room.member",
    stateKey: ALICE,
    content: { membership: "join" },
  });
  assert.equal(join.pdu.room_id, room.roomId);
  assert.deepEqual(join.pdu.prev_events, [create.eventId]);
  assert.deepEqual(join.pdu.auth_events, []);
  assert.equal(join.pdu.depth, 2);

  const pl = await room.send({
    sender: ALICE,
    type: "m.room.power_levels",
    stateKey: "",
    content: PL_CONTENT,
  });
  assert.deepEqual(pl.pdu.auth_events, [room.id("m.room.member", ALICE)]);
  await room.send({
    sender: ALICE,
    type: "m.room.join_rules",
    stateKey: "",
    content: { join_rule: "invite" },
  });

  const invite = await room.send({
    sender: ALICE,
    type: "m.room.member",
    stateKey: BOB,
    content: { membership: "invite" },
  });
  assert.deepEqual(invite.pdu.auth_events, [
    room.id("m.room.power_levels"),
    room.id("m.room.member", ALICE),
    room.id("m.room.join_rules"),
  ]);
  assert.equal(invite.pdu.depth, 5);

  const bobJoin = await room.send({
    sender: BOB,
    type: "m.room.member",
    stateKey: BOB,
    content: { membership: "join" },
  });
  assert.deepEqual(bobJoin.pdu.auth_events, [
    room.id("m.room.power_levels"),
    invite.eventId,
    room.id("m.room.join_rules"),
  ]);

  // The NEW membership decides: a leave does not cite the join rules.
  const leave = await room.send({
    sender: BOB,
    type: "m.room.member",
    stateKey: BOB,
    content: { membership: "leave" },
  });
  assert.deepEqual(leave.pdu.auth_events, [room.id("m.room.power_levels"), bobJoin.eventId]);

  const plChange = await room.send({
    sender: ALICE,
    type: "m.room.power_levels",
    stateKey: "",
    content: { ...PL_CONTENT, users: { [ALICE]: 100, [BOB]: 50 } },
  });
  assert.deepEqual(plChange.pdu.auth_events, [pl.eventId, room.id("m.room.member", ALICE)]);
});

Deno.test("v10: events carry the room ID and cite the create event", async () => {
  const room = new Room(version(10), "!room:hs.example");
  const create = await room.send({
    sender: ALICE,
    type: "m.room.create",
    stateKey: "",
    content: { creator: ALICE, room_version: "10" },
  });
  assert.equal(create.pdu.room_id, "!room:hs.example");
  const join = await room.send({
    sender: ALICE,
    type: "m.room.member",
    stateKey: ALICE,
    content: { membership: "join" },
  });
  assert.deepEqual(join.pdu.auth_events, [create.eventId]);
  const pl = await room.send({
    sender: ALICE,
    type: "m.room.power_levels",
    stateKey: "",
    content: PL_CONTENT,
  });
  assert.deepEqual(pl.pdu.auth_events, [create.eventId, join.eventId]);
  const message = await room.send({
    sender: ALICE,
    type: "m.room.message",
    content: { body: "hi", msgtype: "m.text" },
  });
  assert.deepEqual(message.pdu.auth_events, [create.eventId, pl.eventId, join.eventId]);
  assert.equal(message.pdu.state_key, undefined);
  assert.equal(message.pdu.depth, 4);
});

Deno.test("v1: server-chosen event IDs and [id, {sha256}] references", async () => {
  const v1 = version(1);
  const create = await buildEvent({
    version: v1,
    roomId: "!old:hs.example",
    sender: ALICE,
    type: "m.room.create",
    stateKey: "",
    content: { creator: ALICE },
    prevEvents: [],
    currentState: () => undefined,
    serverName: SERVER,
    signingKey: key,
  });
  await assertWellFormed(create, v1);
  assert.match(create.eventId, /^\$[A-Za-z0-9]+:hs\.example$/);
  assert.equal(create.pdu.event_id, create.eventId);

  const join = await buildEvent({
    version: v1,
    roomId: "!old:hs.example",
    sender: ALICE,
    type: "m.room.member",
    stateKey: ALICE,
    content: { membership: "join" },
    prevEvents: [{ eventId: create.eventId, depth: 1, referenceHash: "cmVm" }],
    currentState: (k) =>
      k === stateKey("m.room.create", "") ? { eventId: create.eventId } : undefined,
    serverName: SERVER,
    signingKey: key,
  });
  await assertWellFormed(join, v1);
  assert.deepEqual(join.pdu.prev_events, [[create.eventId, { sha256: "cmVm" }]]);
  assert.deepEqual(join.pdu.auth_events, [[create.eventId, {}]]);
  assert.deepEqual(join.event.prev_events, [create.eventId]);
  assert.deepEqual(join.event.auth_events, [create.eventId]);
});

Deno.test("redacts: top-level before v11, in content from v11", async () => {
  for (const [n, inContent] of [[10, false], [11, true], [12, true]] as const) {
    const room = new Room(version(n), n === 12 ? undefined : "!r:hs.example");
    await room.send({ sender: ALICE, type: "m.room.create", stateKey: "", content: {} });
    const redaction = await room.send({
      sender: ALICE,
      type: "m.room.redaction",
      content: { reason: "spam" },
      redacts: "$target",
    });
    assert.equal(redaction.pdu.redacts, inContent ? undefined : "$target", `v${n}`);
    assert.equal(redaction.pdu.content.redacts, inContent ? "$target" : undefined, `v${n}`);
    assert.equal(redaction.pdu.content.reason, "spam");
    assert.equal(redaction.event.redacts, "$target", `v${n} normalised view`);
    await assert.rejects(
      () => room.send({ sender: ALICE, type: "m.room.message", content: {}, redacts: "$x" }),
      MatrixError,
    );
  }
});

Deno.test("prev_events: deepest 20 kept, depth is max + 1 and capped", async () => {
  const room = new Room(version(11), "!r:hs.example");
  const extremities = Array.from({ length: 30 }, (_, i) => ({
    eventId: `$e${i}`,
    depth: i === 7 ? 1000 : i,
  }));
  const built = await room.send({
    sender: ALICE,
    type: "m.room.message",
    content: { body: "x" },
    prevEvents: extremities,
  });
  const prev = built.pdu.prev_events as string[];
  assert.equal(prev.length, MAX_PREV_EVENTS);
  assert.ok(prev.includes("$e7"));
  assert.ok(!prev.includes("$e0"));
  assert.equal(built.pdu.depth, 1001);

  const capped = await room.send({
    sender: ALICE,
    type: "m.room.message",
    content: {},
    prevEvents: [{ eventId: "$deep", depth: Number.MAX_SAFE_INTEGER }],
  });
  assert.equal(capped.pdu.depth, Number.MAX_SAFE_INTEGER);
});

Deno.test("unsigned data is attached but covered by neither hash nor signature", async () => {
  const room = new Room(version(11), "!r:hs.example");
  await room.send({ sender: ALICE, type: "m.room.create", stateKey: "", content: {} });
  const built = await room.send({
    sender: ALICE,
    type: "m.room.message",
    content: { body: "x" },
    unsigned: { transaction_id: "t1" },
    originServerTs: 1234,
  });
  assert.deepEqual(built.pdu.unsigned, { transaction_id: "t1" });
  assert.deepEqual(built.event.unsigned, { transaction_id: "t1" });
  assert.equal(built.pdu.origin_server_ts, 1234);
});

Deno.test("invalid inputs are refused with Matrix errors", async () => {
  const base = {
    sender: ALICE,
    stateKey: "",
    prevEvents: [] as EventReference[],
    currentState: () => undefined,
    serverName: SERVER,
    signingKey: key,
  };
  const expectCode = async (input: BuildEventInput, errcode: string) => {
    await assert.rejects(() => buildEvent(input), (err: unknown) => {
      assert.ok(err instanceof MatrixError);
      assert.equal(err.errcode, errcode);
      return true;
    });
  };
  const create = { ...base, type: "m.room.create", content: {} };
  await expectCode({ ...create, version: version(12), roomId: "!r:hs" }, "M_BAD_JSON");
  await expectCode({ ...create, version: version(11), roomId: undefined }, "M_BAD_JSON");
  const prev = [{ eventId: "$p", depth: 1 }];
  await expectCode(
    { ...create, version: version(11), roomId: "!r:hs", prevEvents: prev },
    "M_BAD_JSON",
  );
  const message = { ...base, type: "m.room.message", stateKey: undefined, roomId: "!r:hs" };
  await expectCode({ ...message, version: version(11), content: {} }, "M_BAD_JSON");
  // Floats are not canonical JSON from v6; old rooms still take them.
  const float = { ...message, prevEvents: prev, content: { ratio: 0.5 } };
  await expectCode({ ...float, version: version(6) }, "M_BAD_JSON");
  const old = await buildEvent({ ...float, version: version(5) });
  assert.ok(checkContentHash(old.pdu, version(5)));
  const huge = { ...message, prevEvents: prev, content: { body: "x".repeat(70_000) } };
  await expectCode({ ...huge, version: version(11) }, "M_TOO_LARGE");
});
