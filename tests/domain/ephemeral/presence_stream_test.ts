/** The presence sync stream reads only the presence of users the syncing user can see. */
import { assert, assertEquals } from "../../assert.ts";
import { PresenceStream } from "../../../domain/ephemeral/ephemeral_streams.ts";
import type { JsonObject } from "../../../domain/protocol/json.ts";
import type { Membership } from "../../../domain/ports/event_store.ts";
import type { PresenceRecord } from "../../../domain/ports/presence_store.ts";
import { emptySyncResponse } from "../../../domain/sync/sync_response.ts";
import type { SyncStreamRequest } from "../../../domain/sync/sync_stream.ts";
import { KvPresenceStore } from "../../../kv/presence_store.ts";
import { presenceChangePrefix } from "../../../kv/schema.ts";
import { syncToken } from "../../../kv/stream_tokens.ts";

const ALICE = "@alice:x";
const BOB = "@bob:x";
const CAROL = "@carol:x";

/** A KV whose reads of presence records and of the change index are recorded. */
async function recordingKv() {
  const kv = await Deno.openKv(":memory:");
  const read: string[] = [];
  const listLimits: number[] = [];
  const getMany = kv.getMany.bind(kv);
  const list = kv.list.bind(kv);
  kv.getMany = ((keys: Deno.KvKey[], options?: { consistency?: Deno.KvConsistencyLevel }) => {
    for (const key of keys) if (key[0] === "userid_presence") read.push(key[1] as string);
    return getMany(keys, options);
  }) as typeof kv.getMany;
  kv.list = ((selector: Deno.KvListSelector, options?: Deno.KvListOptions) => {
    const first = "prefix" in selector ? selector.prefix : selector.start;
    if (first?.[0] === presenceChangePrefix()[0]) listLimits.push(options?.limit ?? Infinity);
    return list(selector, options);
  }) as typeof kv.list;
  return { kv, read, listLimits };
}

function members(rooms: Record<string, string[]>) {
  const reads = { count: 0 };
  return {
    reads,
    members: (roomId: string): Promise<Membership[]> => {
      reads.count++;
      return Promise.resolve(
        (rooms[roomId] ?? []).map((userId) => ({
          userId,
          roomId,
          membership: "join",
          eventId: "$m",
        })),
      );
    },
  };
}

function request(upTo: string, since?: string): SyncStreamRequest {
  return {
    userId: ALICE,
    deviceId: "D",
    since,
    upTo,
    fullState: false,
    filter: {},
    joinedRoomIds: ["!shared:x"],
    now: 1_000,
  };
}

async function fill(stream: PresenceStream, req: SyncStreamRequest) {
  const response = emptySyncResponse(req.upTo);
  await stream.fill(req, response);
  return response.presence.events.map((e) => [e.sender, (e.content as JsonObject).presence]);
}

Deno.test("presence: a user sharing no room is neither read nor returned; window changes arrive", async () => {
  const { kv, read, listLimits } = await recordingKv();
  try {
    const store = new KvPresenceStore(kv);
    const events = members({ "!shared:x": [ALICE, BOB] });
    const stream = new PresenceStream(store, events);
    const put = (userId: string, presence: PresenceRecord["presence"]) =>
      store.put({ userId, presence, lastActiveTs: 900 });
    await put(BOB, "online");
    await put(CAROL, "online");
    const first = syncToken(await put(ALICE, "online"));

    // Initial sync: current presence of the visible users, read by key, and nothing else.
    assertEquals((await fill(stream, request(first))).sort(), [
      [ALICE, "online"],
      [BOB, "online"],
    ]);
    assertEquals(read.sort(), [ALICE, BOB]);
    assertEquals(listLimits, [], "the server-wide change index is not walked");

    // Changes in (since, upTo] arrive; Carol's and those after upTo do not.
    await put(CAROL, "unavailable");
    const upTo = syncToken(await put(BOB, "unavailable"));
    await put(ALICE, "unavailable");
    assertEquals(await fill(stream, request(upTo, first)), [[BOB, "unavailable"]]);

    // An empty window costs one short list: no member list, no record.
    read.length = 0;
    const memberReads = events.reads.count;
    assertEquals(await fill(stream, request(upTo, upTo)), []);
    assertEquals([read, events.reads.count], [[], memberReads]);

    // Many outsiders changed: the walk stops early and only visible users are read by key.
    read.length = 0;
    listLimits.length = 0;
    for (let i = 0; i < 300; i++) await put(`@out${i}:x`, "online");
    const late = syncToken(await put(BOB, "online"));
    // Alice's change after the previous upTo arrives now.
    assertEquals((await fill(stream, request(late, upTo))).sort(), [
      [ALICE, "unavailable"],
      [BOB, "online"],
    ]);
    assertEquals(read.sort(), [ALICE, BOB]);
    assert(listLimits.every((limit) => limit < 300), `listed with limits ${listLimits}`);
  } finally {
    kv.close();
  }
});

Deno.test("presence: a large audience walks only the window's changes, stopping when they outnumber it", async () => {
  const { kv, read } = await recordingKv();
  try {
    const store = new KvPresenceStore(kv);
    const audience = Array.from({ length: 150 }, (_, i) => `@u${i}:x`);
    const stream = new PresenceStream(store, members({ "!shared:x": [ALICE, ...audience] }));
    let since = "";
    for (const userId of [ALICE, ...audience]) {
      since = syncToken(await store.put({ userId, presence: "online" }));
    }
    // A few changes in the window: listed, filtered to the audience.
    await store.put({ userId: CAROL, presence: "unavailable" });
    await store.put({ userId: "@u7:x", presence: "unavailable" });
    let upTo = syncToken(await store.put({ userId: "@u9:x", presence: "offline" }));
    assertEquals((await fill(stream, request(upTo, since))).sort(), [
      ["@u7:x", "unavailable"],
      ["@u9:x", "offline"],
    ]);
    assertEquals(read, [], "three changes: no record read by key");
    // More changes than the audience: read by key instead, with the same answer.
    since = upTo;
    for (let i = 0; i < 200; i++) await store.put({ userId: `@other${i}:x`, presence: "online" });
    upTo = syncToken(await store.put({ userId: "@u3:x", presence: "unavailable" }));
    assertEquals(await fill(stream, request(upTo, since)), [["@u3:x", "unavailable"]]);
    assertEquals(read.length, 151);
  } finally {
    kv.close();
  }
});
