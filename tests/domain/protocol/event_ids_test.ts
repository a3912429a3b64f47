import assert from "node:assert/strict";
import { MatrixError } from "../../../domain/errors.ts";
import {
  computeEventId,
  eventIdMatchesFormat,
  makeServerChosenEventId,
  roomIdForCreateEvent,
} from "../../../domain/protocol/event_ids.ts";
import { type Pdu, roomIdFromCreateEventId } from "../../../domain/protocol/events.ts";
import { type RoomVersion, roomVersion } from "../../../domain/protocol/room_versions.ts";
import { loadSpecVectors } from "../spec_vectors.ts";

const vectors = await loadSpecVectors();

function version(n: number): RoomVersion {
  const v = roomVersion(String(n));
  assert.ok(v);
  return v;
}

// The first signed-event vector carries no event_id, so it is valid in the v3+ format.
const specEvent = vectors.signed_events[0].signed as unknown as Pdu;
// sha256 of the vector's redacted_for_signing, computed independently with Python's hashlib.
const SPEC_EVENT_ID = "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc";

Deno.test("the spec's signed event gets its reference-hash ID under v3-10 rules", () => {
  for (let v = 3; v <= 10; v++) assert.equal(computeEventId(specEvent, version(v)), SPEC_EVENT_ID);
  // v11 redaction drops `origin`, so the same JSON hashes to another ID.
  const v11 = computeEventId(specEvent, version(11));
  assert.notEqual(v11, SPEC_EVENT_ID);
  assert.ok(eventIdMatchesFormat(v11, version(11)));
});

Deno.test("v1/v2 IDs are the carried event_id; a missing one is M_BAD_JSON", () => {
  const carried = vectors.signed_events[1].signed as unknown as Pdu;
  assert.equal(computeEventId(carried, version(1)), "$0:domain");
  assert.equal(computeEventId(carried, version(2)), "$0:domain");
  assert.throws(() => computeEventId(specEvent, version(1)), (err: unknown) => {
    assert.ok(err instanceof MatrixError);
    assert.equal(err.errcode, "M_BAD_JSON");
    return true;
  });
});

Deno.test("v3 and v4 IDs of one event differ only in the base64 alphabet", () => {
  let sawDifference = false;
  for (let ts = 0; ts < 64; ts++) {
    const pdu = { ...specEvent, origin_server_ts: ts };
    const v3 = computeEventId(pdu, version(3));
    const v4 = computeEventId(pdu, version(4));
    assert.equal(v3.length, 44);
    assert.equal(v3.replaceAll("+", "-").replaceAll("/", "_"), v4);
    assert.ok(eventIdMatchesFormat(v3, version(3)));
    assert.ok(eventIdMatchesFormat(v4, version(4)));
    if (v3 !== v4) {
      sawDifference = true;
      assert.equal(eventIdMatchesFormat(v3, version(4)), false);
      assert.equal(eventIdMatchesFormat(v4, version(3)), false);
    }
  }
  assert.ok(sawDifference, "some hash among 64 contains + or /");
});

Deno.test("v12 room IDs are ! plus the create event's URL-safe reference hash", () => {
  const { room_id: _r, ...create } = { ...specEvent, type: "m.room.create", state_key: "" };
  const v12 = version(12);
  const eventId = computeEventId(create, v12);
  const roomId = roomIdForCreateEvent(create, v12);
  assert.equal(roomId, "!" + eventId.slice(1));
  assert.equal(roomId, roomIdFromCreateEventId(eventId));
  assert.match(roomId, /^![A-Za-z0-9_-]{43}$/);
  // Before v12 the create event names its room.
  const withRoom = { ...create, room_id: "!old:domain" };
  assert.equal(roomIdForCreateEvent(withRoom, version(11)), "!old:domain");
  assert.throws(() => roomIdForCreateEvent(create, version(11)), MatrixError);
});

Deno.test("server-chosen IDs are unique, alphanumeric and in the v1 format", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const id = makeServerChosenEventId("example.org:8448");
    assert.match(id, /^\$[A-Za-z0-9]{24}:example\.org:8448$/);
    assert.ok(eventIdMatchesFormat(id, version(1)));
    assert.equal(eventIdMatchesFormat(id, version(4)), false);
    ids.add(id);
  }
  assert.equal(ids.size, 200);
});

Deno.test("eventIdMatchesFormat rejects malformed IDs", () => {
  const v1 = version(1);
  for (const bad of ["", "$", "$abc", "$:hs", "$abc:", "!abc:hs", "$" + "a".repeat(260) + ":hs"]) {
    assert.equal(eventIdMatchesFormat(bad, v1), false, bad);
  }
  const v4 = version(4);
  assert.equal(eventIdMatchesFormat(SPEC_EVENT_ID, v4), true);
  assert.equal(eventIdMatchesFormat(SPEC_EVENT_ID.slice(0, -1), v4), false);
  assert.equal(eventIdMatchesFormat(SPEC_EVENT_ID + "A", v4), false);
  assert.equal(eventIdMatchesFormat("$0:domain", v4), false);
  assert.equal(eventIdMatchesFormat("!" + SPEC_EVENT_ID.slice(1), v4), false);
});
