/**
 * Sliding sync's room-list projections (roomid_bump, roomid_roomtype: kv/room_list_projection.ts)
 * and the KvRoomListSource that reads them: which events bump, which memberships are listed,
 * DM, encryption and room type facts, space children, replay's rebuild and check, and the cost
 * of listing 1,000 rooms (printed, not asserted).
 */
import assert from "node:assert/strict";
import type { NewEvent } from "../../domain/ports/event_store.ts";
import { computeLists } from "../../domain/sliding_sync/room_list.ts";
import { KvAccountDataStore } from "../../kv/account_data_store.ts";
import { KvRemoteMembershipStore } from "../../kv/remote_membership_store.ts";
import { replay } from "../../kv/replay.ts";
import { KvRoomListSource, versionstampNumber } from "../../kv/room_list_source.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const keys = new EventStoreKeys();
const ME = "@me:test";

async function setup() {
  const { kv, store } = await memoryStore();
  const remote = new KvRemoteMembershipStore(kv);
  const accountData = new KvAccountDataStore(kv);
  const source = new KvRoomListSource(store.ctx, { remoteMemberships: remote, accountData });
  return { kv, store, remote, accountData, source };
}

/** Create a room with `ME` joined; returns its builder. */
async function joinedRoom(
  store: Awaited<ReturnType<typeof memoryStore>>["store"],
  roomId: string,
  createContent: Record<string, unknown> = {},
): Promise<RoomBuilder> {
  const room = new RoomBuilder(roomId);
  await store.append({
    roomId,
    events: [
      room.event("m.room.create", {
        stateKey: "",
        sender: ME,
        content: { room_version: "10", ...createContent },
      }),
      room.member(ME, "join"),
    ],
  });
  return room;
}

Deno.test("room list projection: bump types move roomid_bump, any accepted forward event roomid_activity, backfill neither", async () => {
  const { kv, store } = await setup();
  const room = await joinedRoom(store, "!r:test");
  const afterCreate = await kv.get<{ position: number }>(keys.roomBump("!r:test"));
  assert.deepEqual(afterCreate.value, { position: 1 });
  assert.deepEqual((await kv.get(keys.roomActivity("!r:test"))).value, { position: 2 });
  assert.deepEqual((await kv.get(keys.roomType("!r:test"))).value, { type: null });

  // State, reactions, redactions and member events are not activity.
  await store.append({
    roomId: "!r:test",
    events: [
      room.event("m.room.topic", { stateKey: "", content: { topic: "t" } }),
      room.event("m.reaction", { content: {} }),
      room.member("@other:test", "join"),
    ],
  });
  assert.equal((await kv.get(keys.roomBump("!r:test"))).versionstamp, afterCreate.versionstamp);
  // They are activity all the same (MSC4186 orders lists by any event).
  assert.deepEqual((await kv.get(keys.roomActivity("!r:test"))).value, { position: 5 });

  // The batch's latest accepted bump event wins; a rejected one does not count.
  await store.append({
    roomId: "!r:test",
    events: [
      room.message("one"),
      room.event("m.room.encrypted", { content: { algorithm: "x" } }),
      room.event("m.room.topic", { stateKey: "", content: { topic: "u" } }),
    ],
  });
  assert.deepEqual((await kv.get(keys.roomBump("!r:test"))).value, { position: 7 });
  assert.deepEqual((await kv.get(keys.roomActivity("!r:test"))).value, { position: 8 });
  await store.append({
    roomId: "!r:test",
    events: [room.message("no", { status: "rejected" })],
  });
  assert.deepEqual((await kv.get(keys.roomBump("!r:test"))).value, { position: 7 });
  assert.deepEqual((await kv.get(keys.roomActivity("!r:test"))).value, { position: 8 });
  for (const type of ["m.sticker", "m.call.invite", "m.poll.start", "m.beacon_info"]) {
    const before = await kv.get(keys.roomBump("!r:test"));
    await store.append({ roomId: "!r:test", events: [room.event(type, { content: {} })] });
    const after = await kv.get(keys.roomBump("!r:test"));
    assert.ok(after.versionstamp! > before.versionstamp!, type);
  }

  // Backfilled history is older than what the room shows: no bump, no activity.
  const before = await kv.get(keys.roomBump("!r:test"));
  const activityBefore = await kv.get(keys.roomActivity("!r:test"));
  const old = new RoomBuilder("!r:test", "old");
  await store.append({
    roomId: "!r:test",
    backfill: true,
    events: [old.message("from the past", { prev: [] })],
  });
  assert.equal((await kv.get(keys.roomBump("!r:test"))).versionstamp, before.versionstamp);
  assert.equal(
    (await kv.get(keys.roomActivity("!r:test"))).versionstamp,
    activityBefore.versionstamp,
  );
  kv.close();
});

Deno.test("room list source: listed memberships, own leaves only when newly left, kicks and bans", async () => {
  const { kv, store, source } = await setup();
  const owner = "@owner:test";
  const make = async (roomId: string, tail: (room: RoomBuilder) => NewEvent[]) => {
    const room = new RoomBuilder(roomId);
    await store.append({
      roomId,
      events: [
        room.event("m.room.create", {
          stateKey: "",
          sender: owner,
          content: { room_version: "10" },
        }),
        room.member(owner, "join"),
      ],
    });
    await store.append({ roomId, events: tail(room) });
    return room;
  };
  const by = (room: RoomBuilder, membership: string, sender: string) =>
    room.event("m.room.member", { stateKey: ME, sender, content: { membership } });
  await make("!joined:test", (r) => [r.member(ME, "join")]);
  await make("!invited:test", (r) => [by(r, "invite", owner)]);
  await make("!knocked:test", (r) => [r.member(ME, "knock")]);
  await make("!kicked:test", (r) => [r.member(ME, "join"), by(r, "leave", owner)]);
  await make("!banned:test", (r) => [r.member(ME, "join"), by(r, "ban", owner)]);
  await make("!left:test", (r) => [r.member(ME, "join"), r.member(ME, "leave")]);
  const mid = (await kv.get(keys.head("!left:test"))).versionstamp!;
  await make("!leftlater:test", (r) => [r.member(ME, "join"), r.member(ME, "leave")]);

  const listed = async (since?: string) =>
    Object.fromEntries(
      (await source.candidateRooms(ME, since)).map((r) => [r.roomId, r.membership]),
    );
  assert.deepEqual(await listed(), {
    "!joined:test": "join",
    "!invited:test": "invite",
    "!knocked:test": "knock",
    "!kicked:test": "leave",
    "!banned:test": "ban",
  });
  // Left after `since`: listed, so the client sees its own leave.
  assert.deepEqual(await listed(mid), {
    "!joined:test": "join",
    "!invited:test": "invite",
    "!knocked:test": "knock",
    "!kicked:test": "leave",
    "!banned:test": "ban",
    "!leftlater:test": "leave",
  });
  kv.close();
});

Deno.test("room list source: activity orders joined rooms by any event, others by membership; bump stamps by bump events", async () => {
  const { kv, store, source } = await setup();
  const a = await joinedRoom(store, "!a:test");
  const b = await joinedRoom(store, "!b:test");
  // An invite arrives, then b gets a message, then a only a state change (activity, no bump).
  const inviting = new RoomBuilder("!inv:test");
  await store.append({
    roomId: "!inv:test",
    events: [
      inviting.event("m.room.create", {
        stateKey: "",
        sender: "@o:test",
        content: { room_version: "10" },
      }),
      inviting.member("@o:test", "join"),
    ],
  });
  await store.append({
    roomId: "!inv:test",
    events: [
      inviting.event("m.room.member", {
        stateKey: ME,
        sender: "@o:test",
        content: { membership: "invite" },
      }),
    ],
  });
  // Messages in the room after the invite do not move it in the invitee's list.
  await store.append({ roomId: "!inv:test", events: [inviting.message("not for you yet")] });
  await store.append({ roomId: "!b:test", events: [b.message("hi")] });
  await store.append({
    roomId: "!a:test",
    events: [a.event("m.room.name", { stateKey: "", content: { name: "n" } })],
  });
  const rooms = await source.candidateRooms(ME);
  const byActivity = [...rooms].sort((x, y) => y.activity - x.activity).map((r) => r.roomId);
  assert.deepEqual(byActivity, ["!a:test", "!b:test", "!inv:test"]);
  // A room not joined has its stamp already; joined ones get theirs when asked.
  const inv = rooms.find((r) => r.roomId === "!inv:test")!;
  assert.equal(inv.bumpStamp, versionstampNumber(inv.membershipStamp));
  assert.equal(inv.activity, inv.bumpStamp);
  assert.equal(rooms.find((r) => r.roomId === "!a:test")!.bumpStamp, undefined);
  await source.bumpStamps(rooms);
  const byBump = [...rooms].sort((x, y) => y.bumpStamp! - x.bumpStamp!).map((r) => r.roomId);
  assert.deepEqual(byBump, ["!b:test", "!inv:test", "!a:test"]);
  for (const r of rooms) {
    assert.ok(Number.isSafeInteger(r.bumpStamp) && r.bumpStamp! > 0);
    assert.ok(Number.isSafeInteger(r.activity) && r.activity >= r.bumpStamp!);
  }
  kv.close();
});

Deno.test("room list source: m.direct, encryption, room types, remote invites' stripped state", async () => {
  const { kv, store, source, remote, accountData } = await setup();
  await joinedRoom(store, "!space:test", { type: "m.space" });
  const encRoom = await joinedRoom(store, "!enc:test");
  await store.append({
    roomId: "!enc:test",
    events: [
      encRoom.event("m.room.encryption", {
        stateKey: "",
        content: { algorithm: "m.megolm.v1.aes-sha2" },
      }),
    ],
  });
  await joinedRoom(store, "!dm:test");
  await accountData.put(ME, null, "m.direct", {
    "@friend:test": ["!dm:test", "!remote:elsewhere"],
    "@bad:test": "not a list",
  });
  await remote.record({
    userId: ME,
    roomId: "!remote:elsewhere",
    membership: "invite",
    eventId: "$remote-invite",
    pdu: {
      room_id: "!remote:elsewhere",
      sender: "@friend:elsewhere",
      type: "m.room.member",
      state_key: ME,
      content: { membership: "invite" },
      origin_server_ts: 1,
      depth: 5,
      prev_events: [],
      auth_events: [],
      hashes: { sha256: "x" },
      signatures: {},
      unsigned: {
        invite_room_state: [
          {
            type: "m.room.create",
            state_key: "",
            sender: "@friend:elsewhere",
            content: { type: "org.example.kind" },
          },
          { type: "m.room.encryption", state_key: "", sender: "@f:e", content: {} },
        ],
      },
    },
    roomVersion: "10",
    servers: ["elsewhere"],
  });
  const facts = Object.fromEntries(
    (await source.candidateRooms(ME)).map((r) => [
      r.roomId,
      [r.membership, r.isDm, r.isEncrypted, r.roomType],
    ]),
  );
  assert.deepEqual(facts, {
    "!space:test": ["join", false, false, "m.space"],
    "!enc:test": ["join", false, true, null],
    "!dm:test": ["join", true, false, null],
    "!remote:elsewhere": ["invite", true, true, "org.example.kind"],
  });
  // Without the projection (a room joined over federation holds its create event as an outlier;
  // a store from before the projection), the type comes from the create event in current state.
  await kv.delete(keys.roomType("!space:test"));
  const fresh = new KvRoomListSource(store.ctx, { accountData });
  const space = (await fresh.candidateRooms(ME)).find((r) => r.roomId === "!space:test")!;
  assert.equal(space.roomType, "m.space");
  // Facts not asked for are not read (a remote room's come free with its stripped state).
  const bare = await source.candidateRooms(ME, undefined, {});
  const enc = bare.find((r) => r.roomId === "!enc:test")!;
  assert.equal(enc.isEncrypted, undefined);
  assert.equal(enc.roomType, undefined);
  kv.close();
});

Deno.test("room list source: space children from current m.space.child state with a via", async () => {
  const { kv, store, source } = await setup();
  const space = await joinedRoom(store, "!space:test", { type: "m.space" });
  await store.append({
    roomId: "!space:test",
    events: [
      space.event("m.space.child", { stateKey: "!a:test", content: { via: ["test"] } }),
      space.event("m.space.child", { stateKey: "!b:test", content: { via: ["test"] } }),
      space.event("m.space.child", { stateKey: "!gone:test", content: { via: ["test"] } }),
      space.event("m.space.child", { stateKey: "!novia:test", content: { via: [] } }),
    ],
  });
  // Removing a child is sending its event without `via`.
  await store.append({
    roomId: "!space:test",
    events: [space.event("m.space.child", { stateKey: "!gone:test", content: {} })],
  });
  await joinedRoom(store, "!a:test");
  await joinedRoom(store, "!c:test");
  assert.deepEqual([...await source.spaceChildren(["!space:test"])].sort(), [
    "!a:test",
    "!b:test",
  ]);
  const { lists } = await computeLists(source, ME, {
    space: { ranges: [[0, 10]], filters: { spaces: ["!space:test"] } },
  });
  assert.deepEqual(lists.space.ranges[0].roomIds, ["!a:test"]);
  kv.close();
});

Deno.test("replay rebuilds roomid_bump, roomid_activity and roomid_roomtype and reports a corrupted entry", async () => {
  const { kv, store } = await setup();
  const a = await joinedRoom(store, "!a:test", { type: "m.space" });
  await store.append({ roomId: "!a:test", events: [a.message("x"), a.message("y")] });
  const b = await joinedRoom(store, "!b:test");
  await store.append({
    roomId: "!b:test",
    events: [b.event("m.room.topic", { stateKey: "", content: { topic: "t" } })],
  });
  const sound = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(sound.differences, []);

  await kv.set(keys.roomBump("!a:test"), { position: 1 });
  await kv.delete(keys.roomActivity("!b:test"));
  await kv.delete(keys.roomType("!b:test"));
  const broken = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(
    broken.differences.map((d) => [d.map, d.key[1], d.live, d.rebuilt]),
    [
      ["roomid_bump", "!a:test", { position: 1 }, { position: 4 }],
      ["roomid_activity", "!b:test", undefined, { position: 3 }],
      ["roomid_roomtype", "!b:test", undefined, { type: null }],
    ],
  );
  kv.close();
});

Deno.test("room list source: 1,000 rooms, all counted and the 20 most recent returned (time printed)", async () => {
  const { kv, store, source } = await setup();
  const roomIds = Array.from({ length: 1000 }, (_, i) => `!r${String(i).padStart(4, "0")}:test`);
  for (let i = 0; i < roomIds.length; i += 50) {
    await Promise.all(
      roomIds.slice(i, i + 50).map(async (roomId) => {
        const room = await joinedRoom(store, roomId);
        await store.append({ roomId, events: [room.message("hello")] });
      }),
    );
  }
  const params = { first20: { ranges: [[0, 19]] as [number, number][] } };
  const times: number[] = [];
  let result;
  for (let run = 0; run < 7; run++) {
    const started = performance.now();
    result = await computeLists(source, ME, params);
    times.push(performance.now() - started);
  }
  assert.equal(result!.lists.first20.count, 1000);
  assert.equal(result!.lists.first20.ranges[0].roomIds.length, 20);
  // Only the rooms sent read their bump stamp.
  assert.equal(result!.rooms.filter((r) => r.bumpStamp !== undefined).length, 20);
  const filtered = {
    noSpaces: { ranges: [[0, 19]] as [number, number][], filters: { not_room_types: ["m.space"] } },
  };
  const filteredTimes: number[] = [];
  for (let run = 0; run < 7; run++) {
    const started = performance.now();
    result = await computeLists(source, ME, filtered);
    filteredTimes.push(performance.now() - started);
  }
  assert.equal(result!.lists.noSpaces.count, 1000);
  const summary = (label: string, t: number[]) => {
    t.sort((x, y) => x - y);
    return `${label}: median ${t[3].toFixed(1)} ms (min ${t[0].toFixed(1)}, max ${
      t[6].toFixed(1)
    })`;
  };
  console.log(
    `1,000 rooms listed (:memory: KV), ${summary("no filter", times)}; ` +
      summary("not_room_types, first run reads the types", filteredTimes),
  );
  kv.close();
});
