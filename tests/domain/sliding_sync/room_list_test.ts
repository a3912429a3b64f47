/**
 * Sliding sync room lists (domain/sliding_sync/room_list.ts): MSC4186's filters, the activity
 * order with its room ID tie-break, inclusive ranges and count, and computeLists over a source
 * (bump stamps read only for the rooms that may be sent).
 */
import assert from "node:assert/strict";
import {
  type CandidateRoom,
  compareByActivity,
  computeList,
  computeLists,
  matchesFilters,
  type RoomFacts,
  type RoomListSource,
} from "../../../domain/sliding_sync/room_list.ts";

function room(
  roomId: string,
  activity: number,
  extra: Partial<CandidateRoom> = {},
): CandidateRoom {
  return {
    roomId,
    membership: "join",
    membershipEventId: `$m-${roomId}`,
    membershipStamp: "00000000000000010000",
    activity,
    isDm: false,
    isEncrypted: false,
    roomType: null,
    ...extra,
  };
}

const ROOMS: CandidateRoom[] = [
  room("!plain:t", 5),
  room("!dm:t", 9, { isDm: true, isEncrypted: true }),
  room("!invite:t", 7, { membership: "invite" }),
  room("!space:t", 3, { roomType: "m.space" }),
  room("!custom:t", 1, { roomType: "org.example.game", isEncrypted: true }),
  room("!knock:t", 2, { membership: "knock" }),
];

const ids = (rooms: CandidateRoom[]) => rooms.map((r) => r.roomId);
const matching = (filters: Parameters<typeof matchesFilters>[1], children?: Set<string>) =>
  ids(ROOMS.filter((r) => matchesFilters(r, filters, children)));

Deno.test("room list filters: each MSC4186 filter, both ways, and combined", () => {
  assert.deepEqual(matching(undefined), ids(ROOMS));
  assert.deepEqual(matching({}), ids(ROOMS));
  assert.deepEqual(matching({ is_dm: true }), ["!dm:t"]);
  assert.equal(matching({ is_dm: false }).includes("!dm:t"), false);
  assert.deepEqual(matching({ is_encrypted: true }), ["!dm:t", "!custom:t"]);
  assert.deepEqual(matching({ is_encrypted: false }), [
    "!plain:t",
    "!invite:t",
    "!space:t",
    "!knock:t",
  ]);
  assert.deepEqual(matching({ is_invite: true }), ["!invite:t"]);
  // A knock is no invite.
  assert.equal(matching({ is_invite: false }).includes("!knock:t"), true);
  assert.equal(matching({ is_invite: false }).includes("!invite:t"), false);
  // null in room_types means "no type".
  assert.deepEqual(matching({ room_types: ["m.space"] }), ["!space:t"]);
  assert.deepEqual(matching({ room_types: [null, "org.example.game"] }), [
    "!plain:t",
    "!dm:t",
    "!invite:t",
    "!custom:t",
    "!knock:t",
  ]);
  assert.deepEqual(matching({ room_types: [] }), []);
  assert.deepEqual(matching({ not_room_types: ["m.space", null] }), ["!custom:t"]);
  // not_room_types wins over room_types.
  assert.deepEqual(matching({ room_types: ["m.space"], not_room_types: ["m.space"] }), []);
  assert.deepEqual(matching({ spaces: ["!s:t"] }, new Set(["!plain:t", "!knock:t"])), [
    "!plain:t",
    "!knock:t",
  ]);
  assert.deepEqual(matching({ spaces: ["!s:t"] }), []);
  assert.deepEqual(matching({ is_encrypted: true, is_dm: false }), ["!custom:t"]);
});

Deno.test("room list filters: a fact that was not read leaves the room out of its filter", () => {
  const unknown = room("!unknown:t", 1, { isEncrypted: undefined, roomType: undefined });
  assert.equal(matchesFilters(unknown, { is_dm: false, is_invite: false }), true);
  assert.equal(matchesFilters(unknown, { is_encrypted: false }), false);
  assert.equal(matchesFilters(unknown, { is_encrypted: true }), false);
  assert.equal(matchesFilters(unknown, { room_types: [null] }), false);
  assert.equal(matchesFilters(unknown, { not_room_types: ["m.space"] }), false);
});

Deno.test("room list order: most recent activity first, equal stamps by room ID", () => {
  const rooms = [room("!b:t", 4), room("!c:t", 4), room("!a:t", 4), room("!z:t", 10)];
  assert.deepEqual(ids([...rooms].sort(compareByActivity)), ["!z:t", "!a:t", "!b:t", "!c:t"]);
});

Deno.test("room list ranges: inclusive, several at once, past the end empty, count of all", () => {
  const list = computeList(ROOMS, { ranges: [[0, 1], [3, 4], [5, 10], [20, 30]] });
  assert.equal(list.count, 6);
  assert.deepEqual(list.ranges, [
    { range: [0, 1], roomIds: ["!dm:t", "!invite:t"] },
    { range: [3, 4], roomIds: ["!space:t", "!knock:t"] },
    { range: [5, 10], roomIds: ["!custom:t"] },
    { range: [20, 30], roomIds: [] },
  ]);
  const filtered = computeList(ROOMS, { ranges: [[0, 0]], filters: { is_encrypted: true } });
  assert.equal(filtered.count, 2);
  assert.deepEqual(filtered.ranges[0].roomIds, ["!dm:t"]);
  // The caller's array keeps its order.
  assert.equal(ROOMS[0].roomId, "!plain:t");
});

/** A source over fixed rooms and space children that records what it was asked. */
class FakeSource implements RoomListSource {
  spaceRequests: string[][] = [];
  sinceSeen: (string | undefined)[] = [];
  factsSeen: (RoomFacts | undefined)[] = [];
  stampsAsked: string[][] = [];
  constructor(
    readonly rooms: CandidateRoom[],
    readonly children: Record<string, string[]>,
  ) {}
  candidateRooms(_userId: string, since?: string, facts?: RoomFacts): Promise<CandidateRoom[]> {
    this.sinceSeen.push(since);
    this.factsSeen.push(facts);
    return Promise.resolve(this.rooms);
  }
  bumpStamps(rooms: readonly CandidateRoom[]): Promise<void> {
    this.stampsAsked.push(rooms.map((r) => r.roomId).sort());
    for (const r of rooms) r.bumpStamp ??= r.activity * 10;
    return Promise.resolve();
  }
  spaceChildren(spaceIds: readonly string[]): Promise<Set<string>> {
    this.spaceRequests.push([...spaceIds]);
    return Promise.resolve(new Set(spaceIds.flatMap((s) => this.children[s] ?? [])));
  }
}

Deno.test("computeLists: one read for every list; spaces only those the user is joined to", async () => {
  const rooms = [
    room("!joinedspace:t", 1, { roomType: "m.space" }),
    room("!invitedspace:t", 2, { roomType: "m.space", membership: "invite" }),
    room("!a:t", 3),
    room("!b:t", 4),
  ];
  const source = new FakeSource(rooms, {
    "!joinedspace:t": ["!a:t"],
    "!invitedspace:t": ["!b:t"],
    "!unknownspace:t": ["!b:t"],
  });
  const result = await computeLists(source, "@u:t", {
    all: { ranges: [[0, 9]] },
    inSpace: {
      ranges: [[0, 9]],
      filters: { spaces: ["!joinedspace:t", "!invitedspace:t", "!unknownspace:t"] },
    },
    other: { ranges: [[0, 9]], filters: { spaces: ["!invitedspace:t"] } },
  }, "00000000000000050000");
  assert.deepEqual(source.sinceSeen, ["00000000000000050000"]);
  // No list filters on encryption or type: neither is read.
  assert.deepEqual(source.factsSeen, [{ encryption: false, roomType: false }]);
  assert.deepEqual(result.rooms.map((r) => r.roomId), rooms.map((r) => r.roomId));
  assert.deepEqual(result.lists.all.ranges[0].roomIds, [
    "!b:t",
    "!a:t",
    "!invitedspace:t",
    "!joinedspace:t",
  ]);
  assert.deepEqual(result.lists.inSpace, {
    count: 1,
    ranges: [{ range: [0, 9], roomIds: ["!a:t"] }],
  });
  // No readable space: nothing matches, and nothing is read for it.
  assert.deepEqual(result.lists.other, { count: 0, ranges: [{ range: [0, 9], roomIds: [] }] });
  assert.deepEqual(source.spaceRequests, [["!joinedspace:t"]]);
});

Deno.test("computeLists: reads encryption and room type only when a list filters on them", async () => {
  const source = new FakeSource([room("!a:t", 1)], {});
  await computeLists(source, "@u:t", {
    a: { ranges: [[0, 1]], filters: { is_dm: true } },
    b: { ranges: [[0, 1]], filters: { not_room_types: ["m.space"] } },
  });
  await computeLists(source, "@u:t", { a: { ranges: [[0, 1]], filters: { is_encrypted: false } } });
  assert.deepEqual(source.factsSeen, [
    { encryption: false, roomType: true },
    { encryption: true, roomType: false },
  ]);
});

Deno.test("computeLists: bump stamps only for rooms in a range and the stamped ones", async () => {
  const rooms = Array.from({ length: 10 }, (_, i) => room(`!r${i}:t`, i));
  const source = new FakeSource(rooms, {});
  const { lists } = await computeLists(
    source,
    "@u:t",
    { a: { ranges: [[0, 1]] }, b: { ranges: [[1, 2]], filters: { is_dm: false } } },
    undefined,
    ["!r0:t"],
  );
  assert.deepEqual(lists.a.ranges[0].roomIds, ["!r9:t", "!r8:t"]);
  assert.deepEqual(source.stampsAsked, [["!r0:t", "!r7:t", "!r8:t", "!r9:t"]]);
  assert.equal(rooms[9].bumpStamp, 90);
  assert.equal(rooms[5].bumpStamp, undefined);
});
