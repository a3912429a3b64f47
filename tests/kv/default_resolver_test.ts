import assert from "node:assert/strict";
import type { NewEvent } from "../../domain/ports/event_store.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";

const ROOM = "!real:test";
const ALICE = "@alice:test";

function event(
  id: string,
  type: string,
  content: Record<string, unknown>,
  prev: string[],
  auth: string[],
  ts: number,
  stateKey = "",
): NewEvent {
  return {
    eventId: id,
    status: "accepted",
    pdu: {
      room_id: ROOM,
      sender: ALICE,
      type,
      state_key: stateKey,
      content: content as never,
      origin_server_ts: ts,
      depth: ts,
      prev_events: prev,
      auth_events: auth,
      hashes: { sha256: "x" },
      signatures: {},
    },
  };
}

Deno.test("by default forks are merged by the real state resolution", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvEventStore(kv);
  const create = event(
    "$create",
    "m.room.create",
    { creator: ALICE, room_version: "10" },
    [],
    [],
    1,
  );
  const join = event(
    "$join",
    "m.room.member",
    { membership: "join" },
    ["$create"],
    ["$create"],
    2,
    ALICE,
  );
  const power = event(
    "$power",
    "m.room.power_levels",
    { users: { [ALICE]: 100 } },
    ["$join"],
    ["$create", "$join"],
    3,
  );
  const auth = ["$create", "$join", "$power"];
  // Same power, so v2 orders the fork by timestamp: the later topic wins despite its smaller ID,
  // where the tests' greatest-ID resolver would pick the other.
  const later = event("$a-later", "m.room.topic", { topic: "later" }, ["$power"], auth, 20);
  const earlier = event("$z-earlier", "m.room.topic", { topic: "earlier" }, ["$power"], auth, 10);
  await store.append({ roomId: ROOM, events: [create, join, power, earlier, later] });
  assert.deepEqual(
    new Set((await store.roomHead(ROOM))?.forwardExtremities),
    new Set(["$a-later", "$z-earlier"]),
  );
  assert.equal(await store.currentStateEventId(ROOM, "m.room.topic", ""), "$a-later");
  kv.close();
});
