/**
 * The full-text search index (`roomid_searchterm`): written in the event's own commit, one entry
 * per distinct term, redactions take the target's entries out, and replay rebuilds and checks it.
 */
import assert from "node:assert/strict";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { KvSearchIndex } from "../../kv/search_index.ts";
import type { SearchPostingRecord } from "../../kv/search_projection.ts";
import { MAX_TERMS_PER_EVENT } from "../../domain/search/search_terms.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!search:test";
const keys = new EventStoreKeys();

async function entries(kv: Deno.Kv, roomId = ROOM) {
  const out: { term: string; position: number; value: SearchPostingRecord }[] = [];
  for await (const e of kv.list<SearchPostingRecord>({ prefix: keys.searchTermPrefix(roomId) })) {
    out.push({
      term: e.key[e.key.length - 2] as string,
      position: e.key[e.key.length - 1] as number,
      value: e.value,
    });
  }
  return out;
}

function redactionOf(room: RoomBuilder, target: string) {
  const redaction = room.event("m.room.redaction", {});
  redaction.pdu.redacts = target;
  return redaction;
}

async function roomWithMessages() {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({ roomId: ROOM, events: [room.create(), room.member("@alice:test", "join")] });
  return { kv, store, room };
}

Deno.test("an event's terms are indexed in its own commit, one entry per distinct term", async () => {
  const { kv, store, room } = await roomWithMessages();
  const message = room.message("Hello hello, WÖRLD of Messages!");
  const topic = room.event("m.room.topic", { stateKey: "", content: { topic: "Wombles" } });
  const result = await store.append({ roomId: ROOM, events: [message, topic] });
  const [m, t] = result.events;
  const found = await entries(kv);
  // "hello" twice, "world" folded, "messages" stemmed, the stop word "of" left out (but counted
  // among the words); the topic's one word.
  assert.deepEqual(
    found.map((e) => [e.term, e.position, e.value]),
    [
      ["hello", m.position, [0, message.pdu.origin_server_ts, 2, 5]],
      ["messag", m.position, [0, message.pdu.origin_server_ts, 1, 5]],
      ["wombl", t.position, [2, topic.pdu.origin_server_ts, 1, 1]],
      ["world", m.position, [0, message.pdu.origin_server_ts, 1, 5]],
    ],
  );
  // Every entry was written by the commit that appended the events.
  for await (const e of kv.list({ prefix: keys.searchTermPrefix(ROOM) })) {
    assert.equal(e.versionstamp, result.versionstamp);
  }
  kv.close();
});

Deno.test("rejected, soft-failed and non-text events are not indexed; member events neither", async () => {
  const { kv, store, room } = await roomWithMessages();
  await store.append({
    roomId: ROOM,
    events: [room.message("kept words")],
  });
  const base = room.last!;
  await store.append({
    roomId: ROOM,
    events: [room.message("rejected words", { status: "rejected", prev: [base] })],
  });
  room.last = base;
  await store.append({
    roomId: ROOM,
    events: [
      room.message("soft words", { status: "soft_failed", prev: [base] }),
    ],
  });
  room.last = base;
  await store.append({
    roomId: ROOM,
    events: [
      room.event("m.room.message", { content: { msgtype: "m.text", body: 42 } }),
      room.event("m.room.encrypted", { content: { ciphertext: "secret words" } }),
      room.event("m.room.name", { stateKey: "x", content: { name: "not the room name" } }),
    ],
  });
  assert.deepEqual((await entries(kv)).map((e) => e.term), ["kept", "word"]);
  kv.close();
});

Deno.test("a long text indexes its first distinct terms only, within the commit limits", async () => {
  const { kv, store, room } = await roomWithMessages();
  const words = Array.from({ length: 1_000 }, (_, i) => `w${i}x`).join(" ");
  await store.append({ roomId: ROOM, events: [room.message(words)] });
  const found = await entries(kv);
  assert.equal(found.length, MAX_TERMS_PER_EVENT);
  assert.equal(found[0].value[3], 1_000, "the word count covers the whole text");
  kv.close();
});

Deno.test("a redaction deletes its target's entries, in a later commit or the same one", async () => {
  const { kv, store, room } = await roomWithMessages();
  const first = room.message("alpha beta");
  await store.append({ roomId: ROOM, events: [first, room.message("beta gamma")] });
  await store.append({
    roomId: ROOM,
    events: [redactionOf(room, first.eventId)],
  });
  // In the same batch as its target.
  const third = room.message("delta");
  await store.append({ roomId: ROOM, events: [third, redactionOf(room, third.eventId)] });
  // A redaction of an unknown event or of a member event deletes nothing and fails nothing.
  await store.append({ roomId: ROOM, events: [redactionOf(room, "$unknown:test")] });
  assert.deepEqual((await entries(kv)).map((e) => e.term), ["beta", "gamma"]);
  kv.close();
});

Deno.test("the index reads prefixes of terms per room and events at positions", async () => {
  const { kv, store, room } = await roomWithMessages();
  const appended = await store.append({
    roomId: ROOM,
    events: [
      room.message("wombat"),
      room.message("wombles"),
      room.message("womb"),
      room.message("x"),
    ],
  });
  const index = new KvSearchIndex(store.ctx);
  const { postings, more } = await index.postings(ROOM, "womb", 10);
  assert.equal(more, false);
  assert.deepEqual(postings.map((p) => p.term).sort(), ["womb", "wombat", "wombl"]);
  const capped = await index.postings(ROOM, "womb", 2);
  assert.equal(capped.postings.length, 2);
  assert.equal(capped.more, true);
  assert.deepEqual((await index.postings("!other:test", "womb", 10)).postings, []);
  // A term too common to read whole gives its newest events first.
  const zebras = await store.append({
    roomId: ROOM,
    events: [room.message("zebra"), room.message("zebra"), room.message("zebra")],
  });
  const newest = await index.postings(ROOM, "zebra", 2);
  assert.deepEqual(
    newest.postings.map((p) => p.position),
    zebras.events.slice(1).map((e) => e.position).reverse(),
  );
  const positions = appended.events.map((e) => e.position);
  const events = await index.eventsAt(ROOM, [...positions, 999]);
  assert.deepEqual([...events.keys()].sort((a, b) => a - b), positions);
  assert.equal(events.get(positions[0])?.pdu.content.body, "wombat");
  kv.close();
});

Deno.test("replay rebuilds the search index, redactions included, and catches a corrupted one", async () => {
  const { kv, store, room } = await roomWithMessages();
  const targets = [];
  for (let i = 0; i < 40; i++) {
    const m = room.message(`message number ${i} about Café and 世界`);
    targets.push(m);
    await store.append({ roomId: ROOM, events: [m] });
  }
  for (const target of targets.filter((_, i) => i % 3 === 0)) {
    await store.append({ roomId: ROOM, events: [redactionOf(room, target.eventId)] });
  }
  const clean = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(clean.differences, []);
  const live = await entries(kv);
  assert.ok(live.some((e) => e.term === "cafe"), "accents folded");
  assert.ok(live.some((e) => e.term === "世界"), "CJK words segmented");

  // An entry left behind by a redaction, and one missing.
  await kv.set(keys.searchPosting(ROOM, "stale", 5), [0, 0, 1, 1]);
  await kv.delete(keys.searchPosting(ROOM, live[0].term, live[0].position));
  const report = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.equal(report.differenceCount, 2);
  assert.ok(report.differences.every((d) => d.map === "roomid_searchterm"));
  kv.close();
});
