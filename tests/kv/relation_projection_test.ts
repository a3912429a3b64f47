/**
 * The relation projections (kv/relation_projection.ts) as the event log writes them: children by
 * parent and rel_type, summaries, thread replies per user, threads by activity, events by
 * timestamp; redactions; events folded into one commit; and replay catching a corrupted one.
 */
import assert from "node:assert/strict";
import type { NewEvent } from "../../domain/ports/event_store.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import { KvRelationReader } from "../../kv/relation_reads.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!rel:test";

function relating(room: RoomBuilder, relType: string, parent: string, sender = "@alice:test") {
  return room.message(`${relType} of ${parent}`, {
    sender,
    content: {
      msgtype: "m.text",
      body: "child",
      "m.relates_to": { rel_type: relType, event_id: parent },
    } as JsonObject,
  });
}

function redaction(room: RoomBuilder, target: string): NewEvent {
  const event = room.event("m.room.redaction", { content: {} });
  (event.pdu as { redacts?: string }).redacts = target;
  return event;
}

async function roomWithRelations() {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  const join = room.member("@alice:test", "join");
  const root = room.message("root");
  const other = room.message("other root");
  await store.append({ roomId: ROOM, events: [create, join, root, other] });
  return { kv, store, room, root: root.eventId, other: other.eventId };
}

Deno.test("relation projections: children, summary, replies, activity and timestamps", async () => {
  const { kv, store, room, root, other } = await roomWithRelations();
  const reader = new KvRelationReader(kv);
  // Folded into one commit: the batch's own earlier writes are read back while planning.
  const t1 = relating(room, "m.thread", root);
  const edit = relating(room, "m.replace", root);
  const t2 = relating(room, "m.thread", root, "@bob:test");
  const reaction = relating(room, "m.annotation", root);
  const t3 = relating(room, "m.thread", other);
  const plain = room.message("nothing");
  await Promise.all(
    [t1, edit, t2, reaction, t3, plain].map((e) => store.append({ roomId: ROOM, events: [e] })),
  );

  const all = await reader.children(ROOM, root, { dir: "f", limit: 10 });
  assert.deepEqual(all.children.map((c) => c.eventId), [
    t1.eventId,
    edit.eventId,
    t2.eventId,
    reaction.eventId,
  ]);
  assert.equal(all.next, undefined);
  const threads = await reader.children(ROOM, root, { relType: "m.thread", dir: "b", limit: 1 });
  assert.deepEqual(threads.children.map((c) => c.eventId), [t2.eventId]);
  assert.ok(threads.next);
  const summaries = await reader.summaries(ROOM, [root, other, plain.eventId]);
  assert.equal(summaries.size, 2);
  const summary = summaries.get(root)!;
  assert.equal(summary.replace, 1);
  assert.equal(summary.reference, undefined);
  assert.equal(summary.thread?.count, 2);
  assert.equal(summary.thread?.latest, t2.eventId);
  const replies = await reader.threadReplies(ROOM, [
    { rootId: root, userId: "@alice:test" },
    { rootId: root, userId: "@bob:test" },
    { rootId: root, userId: "@carol:test" },
  ]);
  assert.deepEqual([...replies.values()], [1, 1]);
  const activity = await reader.threadsByActivity(ROOM, { limit: 10 });
  assert.deepEqual(activity.map((a) => a.rootId), [other, root]);
  // Each thread has one place in the activity order, however many replies it has.
  let activityEntries = 0;
  for await (const _ of kv.list({ prefix: new EventStoreKeys().threadActivity(ROOM) })) {
    activityEntries++;
  }
  assert.equal(activityEntries, 2);
  const ts = plain.pdu.origin_server_ts as number;
  const atPlain = await reader.eventsByTimestamp(ROOM, ts, "b", 2);
  assert.deepEqual(atPlain.map((e) => e.eventId), [plain.eventId, t3.eventId]);
  kv.close();
});

Deno.test("relation projections: redactions take children out of the counts, once", async () => {
  const { kv, store, room, root } = await roomWithRelations();
  const reader = new KvRelationReader(kv);
  const t1 = relating(room, "m.thread", root);
  const t2 = relating(room, "m.thread", root, "@bob:test");
  await store.append({ roomId: ROOM, events: [t1, t2] });
  await store.append({ roomId: ROOM, events: [redaction(room, t2.eventId)] });
  await store.append({ roomId: ROOM, events: [redaction(room, t2.eventId)] });
  const summary = (await reader.summaries(ROOM, [root])).get(root)!;
  assert.equal(summary.thread?.count, 1);
  const replies = await reader.threadReplies(ROOM, [{ rootId: root, userId: "@bob:test" }]);
  assert.equal(replies.size, 0, "bob's only reply was redacted");
  // A child whose redaction came first (over federation) is never counted.
  const late = relating(room, "m.reference", root);
  // Both cite what came before the child: the redaction must not cite the child it outran.
  room.last = late.pdu.prev_events[0] as string;
  const early = redaction(room, late.eventId);
  await store.append({ roomId: ROOM, events: [early] });
  await store.append({ roomId: ROOM, events: [late] });
  assert.equal((await reader.summaries(ROOM, [root])).get(root)?.reference, undefined);
  kv.close();
});

Deno.test("relation projections: redacting a thread's latest reply moves the thread back", async () => {
  const { kv, store, room, root, other } = await roomWithRelations();
  const reader = new KvRelationReader(kv);
  const a1 = relating(room, "m.thread", root);
  const b1 = relating(room, "m.thread", other);
  const a2 = relating(room, "m.thread", root);
  const a3 = relating(room, "m.thread", root);
  await store.append({ roomId: ROOM, events: [a1, b1, a2, a3] });
  const order = async () =>
    (await reader.threadsByActivity(ROOM, { limit: 10 })).map((t) => t.rootId);
  assert.deepEqual(await order(), [root, other]);
  // a2 is redacted first, then a3 (the latest): the latest falls back past a2 to a1.
  await store.append({ roomId: ROOM, events: [redaction(room, a2.eventId)] });
  await store.append({ roomId: ROOM, events: [redaction(room, a3.eventId)] });
  const thread = (await reader.summaries(ROOM, [root])).get(root)!.thread!;
  assert.equal(thread.count, 1);
  assert.equal(thread.latest, a1.eventId);
  assert.deepEqual(await order(), [other, root]);
  // Its last reply gone, the thread leaves the activity order.
  await store.append({ roomId: ROOM, events: [redaction(room, a1.eventId)] });
  assert.deepEqual(await order(), [other]);
  const report = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(report.differences, []);
  kv.close();
});

Deno.test("relation projections: rejected events and malformed relations are not indexed", async () => {
  const { kv, store, room, root } = await roomWithRelations();
  const reader = new KvRelationReader(kv);
  const rejected = room.event("m.room.message", {
    content: { body: "x", "m.relates_to": { rel_type: "m.thread", event_id: root } },
    status: "rejected",
  });
  room.last = rejected.pdu.prev_events[0] as string;
  const noRelType = room.message("x", {
    content: { body: "x", "m.relates_to": { event_id: root } },
  });
  const longRelType = room.message("x", {
    content: { body: "x", "m.relates_to": { rel_type: "x".repeat(300), event_id: root } },
  });
  const reply = room.message("x", {
    content: { body: "x", "m.relates_to": { "m.in_reply_to": { event_id: root } } },
  });
  await store.append({ roomId: ROOM, events: [rejected, noRelType, longRelType, reply] });
  assert.deepEqual((await reader.children(ROOM, root, { dir: "b", limit: 10 })).children, []);
  assert.equal((await reader.summaries(ROOM, [root])).size, 0);
  kv.close();
});

Deno.test("replay rebuilds the relation projections and reports a corrupted one", async () => {
  const { kv, store, room, root } = await roomWithRelations();
  const t1 = relating(room, "m.thread", root);
  await store.append({ roomId: ROOM, events: [t1, relating(room, "m.replace", root)] });
  await store.append({ roomId: ROOM, events: [relating(room, "m.thread", root, "@bob:test")] });
  const clean = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(clean.differences, []);
  const keys = new EventStoreKeys();
  await kv.set(keys.relationSummary(ROOM, root), { thread: { count: 99 } });
  await kv.delete(keys.threadReplies(ROOM, root, "@bob:test"));
  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.deepEqual(report.differences.map((d) => d.map).sort(), [
    "roomeventid_relationsummary",
    "roomeventiduser_threadreplies",
  ]);
  kv.close();
  target.close();
});
