import { assertEquals } from "../assert.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";
import type { NewEvent } from "../../domain/ports/event_store.ts";

const ROOM = "!redact:test";

function redaction(
  room: RoomBuilder,
  target: string,
  options: { status?: NewEvent["status"] } = {},
) {
  const event = room.event("m.room.redaction", { content: {}, ...options });
  event.pdu.redacts = target;
  return event;
}

Deno.test("accepted redactions are indexed under their target, in arrival order", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:test", "join");
  const hello = room.message("hello");
  const first = redaction(room, hello.eventId);
  await store.append({ roomId: ROOM, events: [create, join, hello, first] });
  const rejected = redaction(room, hello.eventId, { status: "rejected" });
  room.last = first.eventId;
  await store.append({ roomId: ROOM, events: [rejected] });
  const second = redaction(room, hello.eventId);
  // A redaction may name an event not (yet) known: it is indexed all the same.
  const early = redaction(room, "$later:test");
  await store.append({ roomId: ROOM, events: [second] });
  await store.append({ roomId: ROOM, events: [early] });
  // A duplicate append changes nothing.
  await store.append({ roomId: ROOM, events: [second] });

  const found = await store.redactionsOf(ROOM, [hello.eventId, join.eventId, "$later:test"]);
  assertEquals(found.get(hello.eventId), [first.eventId, second.eventId]);
  assertEquals(found.has(join.eventId), false);
  assertEquals(found.get("$later:test"), [early.eventId]);
  // Keys are per room: another room reading the same target sees nothing.
  assertEquals((await store.redactionsOf("!other:test", [hello.eventId])).size, 0);

  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assertEquals(report.differences, []);
  let rebuilt = 0;
  for await (const _ of target.list({ prefix: ["roomeventid_redactions"] })) rebuilt++;
  assertEquals(rebuilt, 2);
  kv.close();
  target.close();
});

Deno.test("replay catches a missing or altered redaction index entry", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:test", "join");
  const hello = room.message("hello");
  const events = [create, join, hello];
  const r = redaction(room, hello.eventId);
  await store.append({ roomId: ROOM, events: [...events, r] });
  await kv.set(new EventStoreKeys().redactions(ROOM, hello.eventId), ["$forged:test"]);
  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assertEquals(report.differenceCount, 1);
  assertEquals(report.differences[0].map, "roomeventid_redactions");
  assertEquals(report.differences[0].rebuilt, [r.eventId]);
  kv.close();
  target.close();
});
