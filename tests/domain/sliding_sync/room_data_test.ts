/**
 * Sliding sync's room entries (domain/sliding_sync/room_data.ts) over a real event store on
 * `:memory:` KV and the real read pipeline: initial and incremental entries, required_state's
 * wildcards, `$LAZY` and `$ME`, and the pipeline's visibility, redaction and ignore rules.
 */
import { assert, assertEquals } from "../../assert.ts";
import { ALICE, BOB, CAROL, createPublicRoom, openRoomFixture } from "../room_fixture.ts";
import { ReadPipeline } from "../../../domain/room_events/read_pipeline.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { Pdu } from "../../../domain/protocol/events.ts";
import type { TransactionStore } from "../../../domain/ports/transaction_store.ts";
import { KvRelationReader } from "../../../kv/relation_reads.ts";
import { KvRemoteMembershipStore } from "../../../kv/remote_membership_store.ts";
import {
  type BuildRoomParams,
  RoomDataBuilder,
  type SlidingRoomResponse,
} from "../../../domain/sliding_sync/room_data.ts";
import { type RoomConfig, roomConfig } from "../../../domain/sliding_sync/room_config.ts";

async function fixture(powerLevels: JsonObject = { state_default: 0 }) {
  const base = await openRoomFixture();
  const accountData = new Map<string, JsonObject>();
  const pipeline = new ReadPipeline({
    store: base.store,
    accountData: {
      get: (userId, _roomId, type) => Promise.resolve(accountData.get(`${userId}|${type}`) ?? null),
    },
    transactions: {
      transactionIdsFor: () => Promise.resolve(new Map<string, string>()),
    } as unknown as TransactionStore,
    now: () => 10_000,
    serverName: "example.org",
    relations: new KvRelationReader(base.kv),
    erasure: { erasedAmong: () => Promise.resolve(new Set<string>()) },
  });
  const remoteMemberships = new KvRemoteMembershipStore(base.kv);
  const builder = new RoomDataBuilder({ store: base.store, pipeline, remoteMemberships });
  const roomId = await createPublicRoom(base.sender, "10", powerLevels);
  const send = async (sender: string, type: string, content: JsonObject, stateKey?: string) => {
    const sent = await base.sender.send({ roomId, sender, type, content, stateKey });
    return (await base.store.getEvent(sent.eventId))!;
  };
  const say = (sender: string, body: string) =>
    send(sender, "m.room.message", { msgtype: "m.text", body });
  const member = (userId: string, membership: string, by = userId, extra: JsonObject = {}) =>
    send(by, "m.room.member", { membership, ...extra }, userId);
  const ignore = (userId: string, ignored: string[]) =>
    accountData.set(`${userId}|m.ignored_user_list`, {
      ignored_users: Object.fromEntries(ignored.map((u) => [u, {}])),
    });
  const pos = () => base.store.syncBarrier(ALICE);
  const build = async (
    userId: string,
    config: RoomConfig,
    extra: Partial<BuildRoomParams> = {},
  ): Promise<SlidingRoomResponse | undefined> =>
    builder.buildRoom({ userId, roomId, config, upTo: await pos(), ...extra });
  return {
    ...base,
    pipeline,
    builder,
    remoteMemberships,
    roomId,
    send,
    say,
    member,
    ignore,
    pos,
    build,
  };
}

const bodies = (events: JsonObject[] | undefined) =>
  (events ?? []).flatMap((e) =>
    typeof (e.content as JsonObject)?.body === "string" ? [(e.content as JsonObject).body] : []
  );
const stateKeys = (events: JsonObject[] | undefined) =>
  (events ?? []).map((e) => `${e.type}|${e.state_key}`).sort();

Deno.test("initial entry: timeline to the limit with a /messages prev_batch, required state, name, counts", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join", BOB, { displayname: "Bob" });
    await f.member(CAROL, "invite", ALICE);
    await f.send(ALICE, "m.room.topic", { topic: "t" }, "");
    for (let i = 0; i < 5; i++) await f.say(BOB, `m${i}`);
    const config = roomConfig([["m.room.topic", ""], ["m.room.member", "$ME"]], 3);
    const entry = (await f.build(ALICE, config, { bumpStamp: 42, isDm: false }))!;
    assertEquals(entry.initial, true);
    assertEquals(bodies(entry.timeline), ["m2", "m3", "m4"]);
    assertEquals(entry.limited, true);
    assertEquals(entry.num_live, 0, "a new connection has no live events");
    assertEquals(stateKeys(entry.required_state), [`m.room.member|${ALICE}`, "m.room.topic|"]);
    // No name: heroes (other joined and invited members, with profiles) name the room.
    assertEquals(entry.name, undefined);
    assertEquals(entry.heroes, [{ user_id: BOB, displayname: "Bob" }, { user_id: CAROL }]);
    assertEquals(entry.joined_count, 2);
    assertEquals(entry.invited_count, 1);
    assertEquals(entry.bump_stamp, 42);
    assertEquals(entry.is_dm, false);
    assertEquals(entry.notification_count, 0);
    assertEquals(entry.highlight_count, 0);
    // prev_batch continues the timeline backwards through /messages' reader.
    const older = await f.store.timeline(f.roomId, { from: entry.prev_batch, dir: "b", limit: 2 });
    assertEquals(older.events.map((e) => e.pdu.content.body), ["m1", "m0"]);
    // A name and avatar replace the heroes.
    await f.send(ALICE, "m.room.name", { name: "Room" }, "");
    await f.send(ALICE, "m.room.avatar", { url: "mxc://example.org/a" }, "");
    const named = (await f.build(ALICE, roomConfig([], 0)))!;
    assertEquals(named.name, "Room");
    assertEquals(named.avatar, "mxc://example.org/a");
    assertEquals(named.heroes, undefined);
    assertEquals(named.timeline, []);
    assertEquals(named.limited, true, "a limit of 0 leaves every event out");
  } finally {
    f.close();
  }
});

Deno.test("required_state wildcards: `*` for any state key, any type, or everything", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.send(ALICE, "m.room.topic", { topic: "t" }, "");
    const members = await f.build(ALICE, roomConfig([["m.room.member", "*"]], 0));
    assertEquals(stateKeys(members!.required_state), [
      `m.room.member|${ALICE}`,
      `m.room.member|${BOB}`,
    ]);
    const emptyKey = await f.build(ALICE, roomConfig([["*", ""]], 0));
    assertEquals(stateKeys(emptyKey!.required_state), [
      "m.room.create|",
      "m.room.join_rules|",
      "m.room.power_levels|",
      "m.room.topic|",
    ]);
    const all = await f.build(ALICE, roomConfig([["*", "*"]], 0));
    assertEquals(all!.required_state!.length, 6);
    const missing = await f.build(ALICE, roomConfig([["m.room.name", ""]], 0));
    assertEquals(missing!.required_state, []);
  } finally {
    f.close();
  }
});

Deno.test("$LAZY returns exactly the member events of the timeline's senders (and member targets)", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.member(CAROL, "join");
    await f.say(CAROL, "early");
    await f.say(BOB, "b");
    await f.say(ALICE, "a");
    const entry = await f.build(ALICE, roomConfig([["m.room.member", "$LAZY"]], 2));
    assertEquals(bodies(entry!.timeline), ["b", "a"]);
    assertEquals(stateKeys(entry!.required_state), [
      `m.room.member|${ALICE}`,
      `m.room.member|${BOB}`,
    ]);
    // With $ME beside it, the user's own member event comes even when they sent nothing.
    await f.say(BOB, "b2");
    const withMe = await f.build(
      CAROL,
      roomConfig([["m.room.member", "$LAZY"], ["m.room.member", "$ME"]], 1),
    );
    assertEquals(stateKeys(withMe!.required_state), [
      `m.room.member|${BOB}`,
      `m.room.member|${CAROL}`,
    ]);
    // Incremental: a kick brings both the kicker's and the target's member events, and only
    // those (the members unchanged and absent from the new timeline are not sent again).
    const since = await f.pos();
    await f.member(CAROL, "leave", ALICE);
    const kick = await f.build(BOB, roomConfig([["m.room.member", "$LAZY"]], 5), { since });
    assertEquals(kick!.timeline!.length, 1);
    assertEquals(stateKeys(kick!.required_state), [
      `m.room.member|${ALICE}`,
      `m.room.member|${CAROL}`,
    ]);
  } finally {
    f.close();
  }
});

Deno.test("history visibility: a room joined late shows nothing from before the join", async () => {
  const f = await fixture();
  try {
    await f.send(ALICE, "m.room.history_visibility", { history_visibility: "joined" }, "");
    await f.say(ALICE, "before");
    await f.member(BOB, "join");
    await f.say(ALICE, "after");
    const entry = await f.build(BOB, roomConfig([], 10));
    assertEquals(bodies(entry!.timeline), ["after"]);
    assert(
      entry!.timeline!.some((e) => e.type === "m.room.member" && e.state_key === BOB),
      "the user's own join is shown",
    );
    // Alice, there all along, sees both.
    assertEquals(bodies((await f.build(ALICE, roomConfig([], 10)))!.timeline), [
      "before",
      "after",
    ]);
  } finally {
    f.close();
  }
});

Deno.test("a redacted event comes redacted, and an ignored user's messages are hidden", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.member(CAROL, "join");
    const secret = await f.say(BOB, "secret");
    await f.sender.send({
      roomId: f.roomId,
      sender: ALICE,
      type: "m.room.redaction",
      content: { redacts: secret.eventId },
      redacts: secret.eventId,
    });
    await f.say(CAROL, "from carol");
    await f.say(BOB, "from bob");
    f.ignore(ALICE, [CAROL]);
    const entry = await f.build(ALICE, roomConfig([], 20));
    const redacted = entry!.timeline!.find((e) => e.event_id === secret.eventId);
    assert(redacted, "the redacted event is in the timeline");
    assertEquals(redacted.content, {});
    assertEquals(bodies(entry!.timeline), ["from bob"]);
    assert(entry!.timeline!.every((e) => e.sender !== CAROL || e.type === "m.room.member"));
  } finally {
    f.close();
  }
});

Deno.test("incremental: only the new timeline events and the changed required state", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.send(ALICE, "m.room.name", { name: "Room" }, "");
    await f.say(ALICE, "old");
    const config = roomConfig([["m.room.topic", ""], ["m.room.name", ""]], 5);
    const first = await f.pos();
    const initial = await f.builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config,
      upTo: first,
    });
    assertEquals(initial!.name, "Room");
    // Nothing happened: no entry.
    const second = await f.pos();
    assertEquals(
      await f.builder.buildRoom({
        userId: BOB,
        roomId: f.roomId,
        config,
        since: first,
        previousPos: first,
        upTo: second,
      }),
      undefined,
    );
    await f.send(ALICE, "m.room.topic", { topic: "new" }, "");
    await f.say(ALICE, "new");
    const third = await f.pos();
    const entry = (await f.builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config,
      since: second,
      previousPos: second,
      upTo: third,
    }))!;
    assertEquals(entry.initial, undefined);
    assertEquals(bodies(entry.timeline), ["new"]);
    assertEquals(entry.timeline!.length, 2, "the topic change and the message");
    assertEquals(entry.limited, false);
    assertEquals(entry.num_live, 2);
    assertEquals(stateKeys(entry.required_state), ["m.room.topic|"]);
    assertEquals(entry.name, undefined, "the name did not change");
    assertEquals(entry.joined_count, undefined, "no member changed");
    // Events after the answer's position wait for the next answer.
    await f.say(ALICE, "later");
    const again = (await f.builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config,
      since: second,
      upTo: third,
    }))!;
    assertEquals(bodies(again.timeline), ["new"]);
    // A member joining changes the counts and heroes.
    await f.member(CAROL, "join");
    const fourth = await f.pos();
    const joined = (await f.builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config,
      since: third,
      upTo: fourth,
    }))!;
    assertEquals(joined.joined_count, 3);
    assertEquals(bodies(joined.timeline), ["later"]);
  } finally {
    f.close();
  }
});

Deno.test("a room joined after it was last sent comes as an initial entry", async () => {
  const f = await fixture();
  try {
    await f.say(ALICE, "history");
    await f.member(BOB, "invite", ALICE);
    const invited = await f.pos();
    const invite = await f.builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config: roomConfig([], 5),
      upTo: invited,
    });
    assertEquals(invite!.initial, true);
    assert(invite!.invite_state!.some((e) => e.type === "m.room.member" && e.state_key === BOB));
    assertEquals(invite!.timeline, undefined);
    // Sent once: an unchanged invite has nothing new.
    assertEquals(
      await f.builder.buildRoom({
        userId: BOB,
        roomId: f.roomId,
        config: roomConfig([], 5),
        since: invited,
        upTo: await f.pos(),
      }),
      undefined,
    );
    await f.member(BOB, "join");
    const entry = await f.builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config: roomConfig([], 5),
      since: invited,
      upTo: await f.pos(),
    });
    assertEquals(entry!.initial, true);
    assert(bodies(entry!.timeline).includes("history"), "shared history is shown on the join");
  } finally {
    f.close();
  }
});

Deno.test("an invite from an ignored user is not delivered; a left room ends at the leave", async () => {
  const f = await fixture();
  try {
    f.ignore(CAROL, [ALICE]);
    await f.member(CAROL, "invite", ALICE);
    assertEquals(await f.build(CAROL, roomConfig([], 5)), undefined);
    await f.member(BOB, "join");
    await f.say(ALICE, "seen");
    const before = await f.pos();
    await f.say(ALICE, "also seen");
    await f.member(BOB, "leave");
    await f.say(ALICE, "not seen");
    const left = await f.build(BOB, roomConfig([], 5), { since: before });
    assertEquals(bodies(left!.timeline), ["also seen"]);
    assertEquals(left!.timeline!.at(-1)!.content, { membership: "leave" });
    // Once sent, the leave has nothing new.
    assertEquals(await f.build(BOB, roomConfig([], 5), { since: await f.pos() }), undefined);
  } finally {
    f.close();
  }
});

Deno.test("an invite over federation comes with the stripped state it carried", async () => {
  const f = await fixture();
  try {
    const roomId = "!remote:elsewhere.example";
    const invite = {
      room_id: roomId,
      type: "m.room.member",
      state_key: CAROL,
      sender: "@dave:elsewhere.example",
      content: { membership: "invite" },
      origin_server_ts: 1,
      unsigned: {
        invite_room_state: [
          {
            type: "m.room.name",
            state_key: "",
            sender: "@dave:elsewhere.example",
            content: { name: "Far away" },
          },
        ],
      },
    };
    await f.remoteMemberships.record({
      userId: CAROL,
      roomId,
      membership: "invite",
      eventId: "$invite",
      pdu: invite as unknown as Pdu,
      roomVersion: "10",
      servers: ["elsewhere.example"],
    });
    const entry = await f.builder.buildRoom({
      userId: CAROL,
      roomId,
      config: roomConfig([], 5),
      upTo: await f.pos(),
      bumpStamp: 7,
    });
    assertEquals(entry!.initial, true);
    assertEquals(entry!.name, "Far away");
    assertEquals(entry!.bump_stamp, 7);
    assertEquals(stateKeys(entry!.invite_state), ["m.room.member|" + CAROL, "m.room.name|"]);
  } finally {
    f.close();
  }
});

Deno.test("incremental past a window longer than the limit: changed state from the gap, limited", async () => {
  const f = await fixture();
  try {
    await f.send(ALICE, "m.room.name", { name: "Room" }, "");
    const config = roomConfig([["m.room.topic", ""], ["m.room.name", ""]], 1);
    const since = await f.pos();
    await f.send(ALICE, "m.room.topic", { topic: "in the gap" }, "");
    for (let i = 0; i < 15; i++) await f.say(ALICE, `m${i}`);
    const entry = (await f.build(ALICE, config, { since, previousPos: since }))!;
    assertEquals(bodies(entry.timeline), ["m14"]);
    assertEquals(entry.limited, true);
    assertEquals(entry.num_live, 1);
    assertEquals(entry.required_state!.map((e) => e.content), [{ topic: "in the gap" }]);
    assertEquals(entry.name, undefined);
  } finally {
    f.close();
  }
});

Deno.test("unread counts come from /sync's counter, or from the caller's batch read", async () => {
  const f = await fixture();
  try {
    await f.member(BOB, "join");
    await f.say(ALICE, "hi");
    const asked: string[][] = [];
    const builder = new RoomDataBuilder({
      store: f.store,
      pipeline: f.pipeline,
      notificationCounts: {
        countsFor: (_userId, roomIds) => {
          asked.push([...roomIds]);
          return Promise.resolve(
            new Map(roomIds.map((id) => [id, { notification_count: 3, highlight_count: 1 }])),
          );
        },
      },
    });
    const config = roomConfig([], 1);
    const upTo = await f.pos();
    const read = await builder.buildRoom({ userId: BOB, roomId: f.roomId, config, upTo });
    assertEquals([read!.notification_count, read!.highlight_count], [3, 1]);
    assertEquals(asked, [[f.roomId]]);
    const given = await builder.buildRoom({
      userId: BOB,
      roomId: f.roomId,
      config,
      upTo,
      counts: { notification_count: 5, highlight_count: 0 },
    });
    assertEquals([given!.notification_count, given!.highlight_count], [5, 0]);
    assertEquals(asked.length, 1, "counts given by the caller are not read again");
  } finally {
    f.close();
  }
});
