/**
 * The read pipeline's stages and their order (domain/room_events/read_pipeline.ts), over a real
 * event store on `:memory:` KV and an in-memory account data store.
 */
import { assert, assertEquals } from "../assert.ts";
import { ALICE, BOB, CAROL, createPublicRoom, openRoomFixture } from "./room_fixture.ts";
import { ReadPipeline, type RoomRead } from "../../domain/room_events/read_pipeline.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";
import type { StoredEvent } from "../../domain/ports/event_store.ts";
import type { TransactionStore } from "../../domain/ports/transaction_store.ts";
import { roomVersion } from "../../domain/protocol/room_versions.ts";
import { KvRelationReader } from "../../kv/relation_reads.ts";

const VERSION = roomVersion("10")!;

async function fixture() {
  const base = await openRoomFixture();
  const accountData = new Map<string, JsonObject>();
  // Erased users, as the account store would answer (read on every call, like KV).
  const erased = new Set<string>();
  let erasureReads = 0;
  const transactions = {
    transactionIdsFor: () => Promise.resolve(new Map<string, string>()),
  } as unknown as TransactionStore;
  const pipeline = new ReadPipeline({
    store: base.store,
    accountData: {
      get: (userId, _roomId, type) => Promise.resolve(accountData.get(`${userId}|${type}`) ?? null),
    },
    transactions,
    now: () => 10_000,
    serverName: "example.org",
    relations: new KvRelationReader(base.kv),
    erasure: {
      erasedAmong: (ids) => {
        erasureReads++;
        return Promise.resolve(new Set(ids.filter((u) => erased.has(u))));
      },
    },
  });
  // state_default 0: any member may set the topic (the ignored-user test needs it).
  const roomId = await createPublicRoom(base.sender, "10", { state_default: 0 });
  const send = async (sender: string, type: string, content: JsonObject, stateKey?: string) => {
    const sent = await base.sender.send({ roomId, sender, type, content, stateKey });
    return (await base.store.getEvent(sent.eventId))!;
  };
  const say = (sender: string, body: string, extra: JsonObject = {}) =>
    send(sender, "m.room.message", { msgtype: "m.text", body, ...extra });
  const member = (userId: string, membership: string, by = userId) =>
    send(by, "m.room.member", { membership }, userId);
  const all = async () => (await base.store.timeline(roomId, { dir: "f", limit: 100 })).events;
  const read = (userId: string, extra: Partial<RoomRead> = {}): RoomRead => ({
    reader: { userId },
    roomId,
    version: VERSION,
    ...extra,
  });
  const ignore = (userId: string, ignored: string[]) =>
    accountData.set(`${userId}|m.ignored_user_list`, {
      ignored_users: Object.fromEntries(ignored.map((u) => [u, {}])),
    });
  return {
    ...base,
    pipeline,
    roomId,
    send,
    say,
    member,
    all,
    read,
    ignore,
    erased,
    erasureReads: () => erasureReads,
  };
}

const bodies = (events: JsonObject[]) =>
  events.flatMap((e) =>
    typeof (e.content as JsonObject)?.body === "string" ? [(e.content as JsonObject).body] : []
  );

Deno.test("visibility: a late joiner under `joined` sees from their join on, a leaver up to the leave", async () => {
  const f = await fixture();
  try {
    await f.send(ALICE, "m.room.history_visibility", { history_visibility: "joined" }, "");
    await f.say(ALICE, "before");
    await f.member(BOB, "join");
    await f.say(ALICE, "during");
    await f.member(BOB, "leave");
    await f.say(ALICE, "after");
    const out = await f.pipeline.readRoom(f.read(BOB), { timeline: await f.all() });
    assertEquals(bodies(out.timeline), ["during"]);
    const own = out.timeline.filter((e) => e.state_key === BOB).map((e) => e.content);
    assertEquals(own, [{ membership: "join" }, { membership: "leave" }], "own membership shown");
    // Alice, joined throughout, sees everything.
    const alice = await f.pipeline.readRoom(f.read(ALICE), { timeline: await f.all() });
    assertEquals(bodies(alice.timeline), ["before", "during", "after"]);
  } finally {
    f.close();
  }
});

Deno.test("visibility: a never-joined user sees only their own membership in state and timeline", async () => {
  const f = await fixture();
  try {
    await f.send(ALICE, "m.room.name", { name: "secret" }, "");
    await f.say(ALICE, "hidden");
    await f.member(CAROL, "invite", ALICE);
    const leave = await f.member(CAROL, "leave");
    const state = await f.store.stateAtEvent(leave.eventId, "after");
    const stateEvents = [...(await f.store.getEvents([...state!.values()])).values()];
    const out = await f.pipeline.readRoom(f.read(CAROL), {
      timeline: await f.all(),
      state: stateEvents,
    });
    assertEquals(bodies(out.timeline), []);
    assert(out.timeline.every((e) => e.state_key === CAROL));
    assertEquals(out.state.map((e) => e.state_key), [CAROL]);
    // A former member sees the state as they left it.
    await f.member(BOB, "join");
    const bobLeave = await f.member(BOB, "leave");
    const bobState = await f.store.stateAtEvent(bobLeave.eventId, "after");
    const bobOut = await f.pipeline.readRoom(f.read(BOB), {
      state: [...(await f.store.getEvents([...bobState!.values()])).values()],
    });
    assertEquals(bobOut.state.length, bobState!.size);
  } finally {
    f.close();
  }
});

Deno.test("redaction comes before format and filter: federation PDUs and contains_url see redacted content", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    const target = await f.say(ALICE, "a picture", { url: "mxc://example.org/x" });
    // v10 puts `redacts` at the top level of the PDU.
    await f.sender.send({
      roomId: f.roomId,
      sender: ALICE,
      type: "m.room.redaction",
      content: {},
      redacts: target.eventId,
    });
    const timeline = [target];
    const fed = await f.pipeline.readRoom(f.read(BOB, { format: "federation" }), { timeline });
    assertEquals(fed.timeline[0].content, {});
    assertEquals(fed.timeline[0].event_id, target.eventId);
    const client = await f.pipeline.readRoom(f.read(BOB), { timeline });
    assertEquals(client.timeline[0].content, {});
    assert((client.timeline[0].unsigned as JsonObject).redacted_because, "redacted_because");
    const withUrl = await f.pipeline.readRoom(f.read(BOB, { filter: { contains_url: true } }), {
      timeline,
    });
    assertEquals(withUrl.timeline, [], "the url went with the redaction");
  } finally {
    f.close();
  }
});

Deno.test("ignored users: messages dropped, state kept, invites withheld; the list is read on every call", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.member(CAROL, "join");
    await f.say(CAROL, "from carol");
    await f.send(CAROL, "m.room.topic", { topic: "carol's topic" }, "");
    await f.say(ALICE, "from alice");
    f.ignore(BOB, [CAROL]);
    const events = await f.all();
    const out = await f.pipeline.readRoom(f.read(BOB), { timeline: events });
    assertEquals(bodies(out.timeline), ["from alice"]);
    assert(out.timeline.some((e) => e.type === "m.room.topic"), "state events stay");
    const ignored = await f.pipeline.ignoredUsers(BOB);
    const invite: StoredEvent = {
      ...events[0],
      pdu: { ...events[0].pdu, sender: CAROL, content: { membership: "invite" } },
    };
    assertEquals(await f.pipeline.strippedState(invite, ignored, VERSION), undefined);
    f.ignore(BOB, []);
    const again = await f.pipeline.readRoom(f.read(BOB), { timeline: events });
    assertEquals(bodies(again.timeline), ["from carol", "from alice"]);
  } finally {
    f.close();
  }
});

Deno.test("erased senders: redacted for readers who were not joined when they sent, intact for those who were", async () => {
  const f = await fixture();
  try {
    // history_visibility shared (the default): later joiners see earlier messages.
    await f.member(BOB, "join");
    const said = await f.say(ALICE, "body1", { url: "mxc://example.org/x" });
    await f.send(ALICE, "m.room.topic", { topic: "alice's topic" }, "");
    await f.say(BOB, "bob speaks");
    await f.member(CAROL, "join");
    const late = await f.say(ALICE, "after carol joined");
    const events = await f.all();

    // Not erased yet: everyone sees everything, and no erasure read is needed for Bob.
    const before = await f.pipeline.readRoom(f.read(CAROL), { timeline: events });
    assertEquals(bodies(before.timeline), ["body1", "bob speaks", "after carol joined"]);
    const readsBefore = f.erasureReads();
    await f.pipeline.readRoom(f.read(BOB), {
      timeline: events.filter((e) => e.position > said.position),
    });
    assertEquals(
      f.erasureReads(),
      readsBefore,
      "a joined reader's timeline after their join reads nothing",
    );

    f.erased.add(ALICE);
    // Bob was joined when Alice spoke: he still sees her words.
    const bob = await f.pipeline.readRoom(f.read(BOB), { timeline: events });
    assertEquals(bodies(bob.timeline), ["body1", "bob speaks", "after carol joined"]);
    // Carol joined later: Alice's earlier events come redacted (no redacted_because: nobody
    // redacted them), Bob's stay, and so does what Alice said once Carol was there.
    const carol = await f.pipeline.readRoom(f.read(CAROL), { timeline: events });
    assertEquals(bodies(carol.timeline), ["bob speaks", "after carol joined"]);
    const message = carol.timeline.find((e) => e.event_id === said.eventId)!;
    assertEquals([message.type, message.content], ["m.room.message", {}]);
    assertEquals((message.unsigned as JsonObject | undefined)?.redacted_because, undefined);
    const topic = carol.timeline.find((e) => e.type === "m.room.topic")!;
    assertEquals(topic.content, {});
    assert(carol.timeline.some((e) => e.event_id === late.eventId));
    // The filter decides on the redacted event (the url went with the erasure), and the
    // federation format is redacted too.
    const withUrl = await f.pipeline.readRoom(f.read(CAROL, { filter: { contains_url: true } }), {
      timeline: events,
    });
    assertEquals(withUrl.timeline, []);
    const fed = await f.pipeline.readRoom(f.read(CAROL, { format: "federation" }), {
      timeline: [said],
    });
    assertEquals(fed.timeline[0].content, {});
    // The flag is read on every call: a store that says otherwise now is believed at once.
    f.erased.clear();
    const again = await f.pipeline.readRoom(f.read(CAROL), { timeline: events });
    assertEquals(bodies(again.timeline), ["body1", "bob speaks", "after carol joined"]);
  } finally {
    f.close();
  }
});

Deno.test("filter and event_fields apply last, to the formatted event", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.say(ALICE, "one");
    const out = await f.pipeline.readRoom(
      f.read(BOB, {
        filter: { types: ["m.room.message"] },
        eventFields: ["content.body", "event_id"],
      }),
      { timeline: await f.all() },
    );
    assertEquals(out.timeline.length, 1);
    assertEquals(Object.keys(out.timeline[0]).sort(), ["content", "event_id"]);
    assertEquals(out.timeline[0].content, { body: "one" });
    assertEquals(out.timelineKept.length, 1);
  } finally {
    f.close();
  }
});

Deno.test("visibility reads the state once per linear chain, not once per event", async () => {
  const f = await fixture();
  try {
    await f.send(ALICE, "m.room.history_visibility", { history_visibility: "joined" }, "");
    for (let i = 0; i < 8; i++) await f.say(ALICE, `before ${i}`);
    await f.member(BOB, "join");
    await f.say(ALICE, "after");
    let stateReads = 0;
    const store = new Proxy(f.store, {
      get(target, key) {
        const value = Reflect.get(target, key, target);
        if (key === "stateAtEvent") {
          return (...args: Parameters<typeof target.stateAtEvent>) => {
            stateReads++;
            return target.stateAtEvent(...args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const pipeline = new ReadPipeline({
      store,
      accountData: { get: () => Promise.resolve(null) },
      transactions: {
        transactionIdsFor: () => Promise.resolve(new Map<string, string>()),
      } as unknown as TransactionStore,
      now: () => 10_000,
      serverName: "example.org",
      erasure: { erasedAmong: () => Promise.resolve(new Set<string>()) },
      relations: new KvRelationReader(f.kv),
    });
    const timeline = (await f.all()).slice(-10);
    const out = await pipeline.readRoom(f.read(BOB), { timeline });
    assertEquals(bodies(out.timeline), ["after"]);
    assertEquals(stateReads, 1, "one read for the chain of eight messages before the join");
  } finally {
    f.close();
  }
});
