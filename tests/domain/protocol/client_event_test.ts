import { assertEquals } from "../../assert.ts";
import { toClientEvent, toStrippedStateEvent } from "../../../domain/protocol/client_event.ts";
import { roomVersion } from "../../../domain/protocol/room_versions.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";

const base: Pdu = {
  room_id: "!r:example.org",
  sender: "@a:example.org",
  type: "m.room.message",
  content: { body: "hi" },
  origin_server_ts: 1_000,
  depth: 3,
  prev_events: [],
  auth_events: [],
  hashes: { sha256: "x" },
  signatures: {},
};

Deno.test("client events carry age, transaction ID and prev_content, and drop federation fields", () => {
  const event = toClientEvent("$e", { ...base, state_key: "" }, {
    roomId: "!r:example.org",
    version: roomVersion("10")!,
    now: 1_500,
    transactionId: "txn1",
    prevContent: { body: "old" },
  });
  assertEquals(event, {
    content: { body: "hi" },
    event_id: "$e",
    origin_server_ts: 1_000,
    room_id: "!r:example.org",
    sender: "@a:example.org",
    type: "m.room.message",
    state_key: "",
    unsigned: { age: 500, transaction_id: "txn1", prev_content: { body: "old" } },
  });
});

Deno.test("redaction targets are shown top-level in every room version", () => {
  const v10 = toClientEvent(
    "$r",
    { ...base, type: "m.room.redaction", redacts: "$t", content: {} },
    {
      roomId: "!r:example.org",
      version: roomVersion("10")!,
      now: 1_000,
    },
  );
  assertEquals(v10.redacts, "$t");
  const v11 = toClientEvent(
    "$r",
    { ...base, type: "m.room.redaction", content: { redacts: "$t" } },
    {
      roomId: "!r:example.org",
      version: roomVersion("11")!,
      now: 1_000,
    },
  );
  assertEquals(v11.redacts, "$t");
  assertEquals(v11.content.redacts, "$t");
});

Deno.test("stripped state keeps only type, state_key, sender and content", () => {
  assertEquals(
    toStrippedStateEvent({ ...base, type: "m.room.name", state_key: "", content: { name: "N" } }),
    {
      content: { name: "N" },
      sender: "@a:example.org",
      type: "m.room.name",
      state_key: "",
    },
  );
});
