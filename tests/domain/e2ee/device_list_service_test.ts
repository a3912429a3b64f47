import assert from "node:assert/strict";
import { DeviceListService } from "../../../domain/e2ee/device_list_service.ts";
import { DeviceListStream } from "../../../domain/e2ee/device_list_stream.ts";
import type {
  DeviceListChangeReader,
  MemberTransition,
  StampedMembership,
} from "../../../domain/ports/device_list_reader.ts";
import { emptySyncResponse, isEmptySyncResponse } from "../../../domain/sync/sync_response.ts";
import type { SyncStreamRequest } from "../../../domain/sync/sync_stream.ts";
import { commitWithDeviceListChanges } from "../../../kv/device_list_log.ts";
import { KvDeviceListReader } from "../../../kv/device_list_reads.ts";
import type { KvEventStore } from "../../../kv/kv_event_store.ts";
import { memoryStore, RoomBuilder } from "../../kv/event_fixtures.ts";

/** A store with rooms built by hand, device-list changes, and the service over real KV reads. */
async function world() {
  const { kv, store } = await memoryStore();
  const rooms = new Map<string, RoomBuilder>();
  const service = new DeviceListService(new KvDeviceListReader(kv));
  const room = async (roomId: string, ...members: string[]) => {
    const builder = new RoomBuilder(roomId);
    rooms.set(roomId, builder);
    await store.append({
      roomId,
      events: [builder.create(), ...members.map((m) => builder.member(m, "join"))],
    });
  };
  const member = async (roomId: string, userId: string, membership: string) => {
    const builder = rooms.get(roomId)!;
    await store.append({ roomId, events: [builder.member(userId, membership)] });
  };
  const keysChanged = async (...userIds: string[]) => {
    await commitWithDeviceListChanges(kv, (_op, changes) => {
      for (const userId of userIds) changes.add(userId, { deviceIds: ["DEV"] });
      return Promise.resolve(true);
    });
  };
  const token = () => store.syncBarrier("@token:test");
  return { kv, store: store as KvEventStore, service, room, member, keysChanged, token };
}

Deno.test("a key change reaches room-mates and the user, not strangers", async () => {
  const w = await world();
  await w.room("!shared:test", "@a:test", "@b:test");
  await w.room("!other:test", "@c:test");
  const since = await w.token();
  await w.keysChanged("@a:test");
  const upTo = await w.token();
  assert.deepEqual(await w.service.changesBetween("@b:test", since, upTo), {
    changed: ["@a:test"],
    left: [],
  });
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), {
    changed: ["@a:test"],
    left: [],
  });
  assert.deepEqual(await w.service.changesBetween("@c:test", since, upTo), {
    changed: [],
    left: [],
  });
  // Outside the window: nothing.
  const later = await w.token();
  assert.deepEqual(await w.service.changesBetween("@b:test", upTo, later), {
    changed: [],
    left: [],
  });
  // An empty or backwards window is empty.
  assert.deepEqual(await w.service.changesBetween("@b:test", upTo, since), {
    changed: [],
    left: [],
  });
  w.kv.close();
});

Deno.test("a join in the window: the joiner is changed for members, members for the joiner", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test");
  const since = await w.token();
  await w.member("!r:test", "@c:test", "join");
  const upTo = await w.token();
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), {
    changed: ["@c:test"],
    left: [],
  });
  assert.deepEqual(await w.service.changesBetween("@c:test", since, upTo), {
    changed: ["@a:test", "@b:test"],
    left: [],
  });
  w.kv.close();
});

Deno.test("a leave in the window: the leaver is left for members, members for the leaver", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test", "@c:test");
  await w.room("!also:test", "@a:test", "@c:test");
  const since = await w.token();
  await w.member("!r:test", "@b:test", "leave");
  const upTo = await w.token();
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), {
    changed: [],
    left: ["@b:test"],
  });
  // The syncer leaving their only shared room with a and c: both are left.
  assert.deepEqual(await w.service.changesBetween("@b:test", since, upTo), {
    changed: [],
    left: ["@a:test", "@c:test"],
  });
  // c leaving one of two rooms shared with a: a still shares !also with c, so c is not left.
  const since2 = await w.token();
  await w.member("!r:test", "@c:test", "leave");
  const upTo2 = await w.token();
  assert.deepEqual(await w.service.changesBetween("@a:test", since2, upTo2), {
    changed: [],
    left: [],
  });
  // And a key change of b, who shares nothing with a any more, is not a's business.
  const since3 = await w.token();
  await w.keysChanged("@b:test");
  assert.deepEqual(await w.service.changesBetween("@a:test", since3, await w.token()), {
    changed: [],
    left: [],
  });
  w.kv.close();
});

Deno.test("kicked or banned syncer: everyone in the room is left", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test");
  const since = await w.token();
  await w.member("!r:test", "@b:test", "ban");
  const upTo = await w.token();
  assert.deepEqual(await w.service.changesBetween("@b:test", since, upTo), {
    changed: [],
    left: ["@a:test"],
  });
  w.kv.close();
});

Deno.test("invited members count as sharing: their keys are tracked, a rejection is a leave", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test");
  const since = await w.token();
  await w.member("!r:test", "@i:test", "invite");
  const afterInvite = await w.token();
  assert.deepEqual(await w.service.changesBetween("@a:test", since, afterInvite), {
    changed: ["@i:test"],
    left: [],
  });
  await w.keysChanged("@i:test");
  const afterKeys = await w.token();
  assert.deepEqual((await w.service.changesBetween("@a:test", afterInvite, afterKeys)).changed, [
    "@i:test",
  ]);
  // The invitee, only invited, tracks nobody: the room is not theirs yet.
  assert.deepEqual(await w.service.changesBetween("@i:test", since, afterKeys), {
    changed: ["@i:test"],
    left: [],
  });
  await w.member("!r:test", "@i:test", "leave");
  assert.deepEqual(await w.service.changesBetween("@a:test", afterKeys, await w.token()), {
    changed: [],
    left: ["@i:test"],
  });
  w.kv.close();
});

Deno.test("a window's answer ignores commits after its end", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test");
  const since = await w.token();
  await w.member("!r:test", "@c:test", "join");
  await w.keysChanged("@b:test");
  const upTo = await w.token();
  const before = await w.service.changesBetween("@a:test", since, upTo);
  assert.deepEqual(before, { changed: ["@b:test", "@c:test"], left: [] });
  // After upTo: b and c leave, a leaves too, d joins. The window (since, upTo] is history.
  await w.member("!r:test", "@b:test", "leave");
  await w.member("!r:test", "@c:test", "leave");
  await w.member("!r:test", "@d:test", "join");
  await w.member("!r:test", "@a:test", "leave");
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), before);
  // c, who joined in the window and has left since, still sees a and b as of upTo.
  assert.deepEqual(await w.service.changesBetween("@c:test", since, upTo), {
    changed: ["@a:test", "@b:test"],
    left: [],
  });
  w.kv.close();
});

Deno.test("left and joined again inside the window counts as a new join", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test");
  const since = await w.token();
  await w.member("!r:test", "@b:test", "leave");
  await w.member("!r:test", "@b:test", "join");
  const upTo = await w.token();
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), {
    changed: ["@b:test"],
    left: [],
  });
  assert.deepEqual(await w.service.changesBetween("@b:test", since, upTo), {
    changed: ["@a:test"],
    left: [],
  });
  w.kv.close();
});

Deno.test("many changed users are checked through the rooms' members, few through their rooms", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test", "@c:test");
  const since = await w.token();
  const strangers = Array.from({ length: 5 }, (_, i) => `@s${i}:test`);
  await w.keysChanged("@b:test", "@c:test", ...strangers);
  const upTo = await w.token();
  // Seven changed users, one room: the members path.
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), {
    changed: ["@b:test", "@c:test"],
    left: [],
  });
  // One changed user: the per-user path gives the same answer.
  const since2 = await w.token();
  await w.keysChanged("@c:test");
  assert.deepEqual(await w.service.changesBetween("@a:test", since2, await w.token()), {
    changed: ["@c:test"],
    left: [],
  });
  w.kv.close();
});

Deno.test("keyChanges rejects malformed tokens with M_INVALID_PARAM", async () => {
  const w = await world();
  const good = await w.token();
  for (const [from, to] of [["nope", good], [good, "s123"], ["", good]]) {
    await assert.rejects(w.service.keyChanges("@a:test", from, to), (e: Error) => {
      assert.equal((e as unknown as { errcode: string }).errcode, "M_INVALID_PARAM");
      return true;
    });
  }
  assert.deepEqual(await w.service.keyChanges("@a:test", good, good), { changed: [], left: [] });
  w.kv.close();
});

/** A reader over fixed data, to count how the service reads. */
class FixedReader implements DeviceListChangeReader {
  calls: string[] = [];
  constructor(
    readonly memberships: StampedMembership[],
    /** The server-wide index's answer; null: more entries than the limit. */
    readonly changes: Set<string> | null,
    readonly transitions = new Map<string, MemberTransition[]>(),
    /** Member-change commits server-wide; null: too many to list. */
    readonly commits: { roomId: string; versionstamp: string }[] | null = [],
    /** When `changes` is null (too many to list): whose own logs hold a change. */
    readonly logs = new Set<string>(),
  ) {}
  memberChangeCommitsAfter(): Promise<{ roomId: string; versionstamp: string }[] | null> {
    this.calls.push("memberChangeCommitsAfter");
    return Promise.resolve(this.commits);
  }
  deviceListChanges(): Promise<Set<string> | null> {
    this.calls.push("deviceListChanges");
    return Promise.resolve(this.changes);
  }
  deviceListChangesOf(userIds: readonly string[]): Promise<Set<string>> {
    this.calls.push(`deviceListChangesOf ${[...userIds].sort().join(" ")}`);
    return Promise.resolve(new Set(userIds.filter((id) => this.logs.has(id))));
  }
  membershipsOf(userId: string): Promise<StampedMembership[]> {
    this.calls.push(`membershipsOf ${userId}`);
    return Promise.resolve(this.memberships.filter((m) => m.userId === userId));
  }
  membersOf(roomId: string): Promise<StampedMembership[]> {
    this.calls.push(`membersOf ${roomId}`);
    return Promise.resolve(this.memberships.filter((m) => m.roomId === roomId));
  }
  memberTransitionsAfter(roomIds: readonly string[]): Promise<Map<string, MemberTransition[]>> {
    this.calls.push(`memberTransitionsAfter ${roomIds.length}`);
    return Promise.resolve(this.transitions);
  }
}

const stamp = (n: number) => String(n).padStart(20, "0");
const tokenAt = (n: number) => `s${stamp(n)}`;

Deno.test("reads scale with what changed: idle windows, a few member changes, a long catch-up", async () => {
  const memberships = Array.from({ length: 50 }, (_, i) => ({
    roomId: `!r${i}:test`,
    userId: "@a:test",
    membership: "join",
    versionstamp: stamp(1),
  }));
  // Old left rooms are not looked at: the membership has not moved since the token.
  memberships.push({
    roomId: "!old:test",
    userId: "@a:test",
    membership: "leave",
    versionstamp: stamp(2),
  });
  // No device-list change and no member change anywhere in the window: two short lists.
  const idle = new FixedReader(memberships, new Set(), new Map(), [
    { roomId: "!r3:test", versionstamp: stamp(10) },
  ]);
  const empty = { changed: [], left: [] };
  assert.deepEqual(
    await new DeviceListService(idle).changesBetween("@a:test", tokenAt(5), tokenAt(9)),
    empty,
  );
  assert.deepEqual(idle.calls.sort(), ["deviceListChanges", "memberChangeCommitsAfter"]);
  // A member change somewhere: the user's rooms, then the transitions of those that moved.
  const some = new FixedReader(memberships, new Set(), new Map(), [
    { roomId: "!elsewhere:test", versionstamp: stamp(6) },
    { roomId: "!r3:test", versionstamp: stamp(10) },
  ]);
  assert.deepEqual(
    await new DeviceListService(some).changesBetween("@a:test", tokenAt(5), tokenAt(9)),
    empty,
  );
  assert.deepEqual(some.calls.sort(), [
    "deviceListChanges",
    "memberChangeCommitsAfter",
    "memberTransitionsAfter 1",
    "membershipsOf @a:test",
  ]);
  // Too many commits to list (a long catch-up): every joined room is checked by its marker;
  // old left rooms still are not.
  const long = new FixedReader(memberships, new Set(), new Map(), null);
  assert.deepEqual(
    await new DeviceListService(long).changesBetween("@a:test", tokenAt(5), tokenAt(9)),
    empty,
  );
  assert.ok(long.calls.includes("memberTransitionsAfter 50"));
});

Deno.test("many candidates are checked through the rooms' members, few through their own rooms", async () => {
  const joined = (roomId: string, userId: string) => ({
    roomId,
    userId,
    membership: "join",
    versionstamp: stamp(1),
  });
  const memberships = [
    joined("!r0:test", "@a:test"),
    joined("!r0:test", "@b:test"),
    joined("!x:test", "@s0:test"),
    joined("!x:test", "@s1:test"),
  ];
  const many = new FixedReader(memberships, new Set(["@b:test", "@s0:test", "@s1:test"]));
  assert.deepEqual(
    await new DeviceListService(many).changesBetween("@a:test", tokenAt(5), tokenAt(9)),
    {
      changed: ["@b:test"],
      left: [],
    },
  );
  assert.ok(many.calls.includes("membersOf !r0:test"));
  assert.ok(!many.calls.some((c) => c.startsWith("membershipsOf @b")));
  const few = new FixedReader(memberships, new Set(["@b:test"]));
  assert.deepEqual(
    await new DeviceListService(few).changesBetween("@a:test", tokenAt(5), tokenAt(9)),
    {
      changed: ["@b:test"],
      left: [],
    },
  );
  assert.ok(few.calls.includes("membershipsOf @b:test"));
  assert.ok(!few.calls.some((c) => c.startsWith("membersOf")));
});

Deno.test("past the listing limit, only the logs of users sharing a room are read", async () => {
  const joined = (roomId: string, userId: string) => ({
    roomId,
    userId,
    membership: "join",
    versionstamp: stamp(1),
  });
  const memberships = [
    joined("!r0:test", "@a:test"),
    joined("!r0:test", "@b:test"),
    joined("!r0:test", "@c:test"),
    joined("!x:test", "@s0:test"),
  ];
  const reader = new FixedReader(
    memberships,
    null,
    new Map(),
    [],
    new Set(["@b:test", "@s0:test"]),
  );
  assert.deepEqual(
    await new DeviceListService(reader).changesBetween("@a:test", tokenAt(5), tokenAt(9)),
    { changed: ["@b:test"], left: [] },
  );
  // The stranger's log is never read: the audience is a's room-mates and a itself.
  assert.ok(reader.calls.includes("deviceListChangesOf @a:test @b:test @c:test"));
});

Deno.test("a catch-up over more device-list changes than one listing gives the same answer", async () => {
  const w = await world();
  const bounded = new DeviceListService(new KvDeviceListReader(w.kv), {
    maxListedDeviceChanges: 3,
  });
  await w.room("!shared:test", "@a:test", "@b:test", "@c:test");
  await w.room("!strangers:test", "@s:test");
  const since = await w.token();
  for (let i = 0; i < 5; i++) await w.keysChanged(`@s${i}:test`);
  await w.keysChanged("@b:test");
  await w.member("!shared:test", "@d:test", "join");
  for (let i = 5; i < 10; i++) await w.keysChanged(`@s${i}:test`);
  const upTo = await w.token();
  // After the window: b changes again (its log is walked back past this one), c for the first
  // time (outside the window, so not changed).
  await w.keysChanged("@b:test", "@c:test");
  const expected = { changed: ["@b:test", "@d:test"], left: [] };
  assert.deepEqual(await w.service.changesBetween("@a:test", since, upTo), expected);
  assert.deepEqual(await bounded.changesBetween("@a:test", since, upTo), expected);
  // A small window still lists the index: same answers both ways.
  const later = await w.token();
  assert.deepEqual(await bounded.changesBetween("@a:test", upTo, later), {
    changed: ["@b:test", "@c:test"],
    left: [],
  });
  w.kv.close();
});

Deno.test("the sync stream adds the window's lists once, beside other streams' entries", async () => {
  const w = await world();
  await w.room("!r:test", "@a:test", "@b:test", "@c:test");
  const since = await w.token();
  await w.keysChanged("@b:test");
  await w.member("!r:test", "@c:test", "leave");
  const upTo = await w.token();
  const stream = new DeviceListStream(w.service);
  const request = (sinceToken?: string): SyncStreamRequest => ({
    userId: "@a:test",
    deviceId: "DEV",
    since: sinceToken,
    upTo,
    fullState: false,
    filter: {},
    joinedRoomIds: ["!r:test"],
    now: 0,
  });
  const response = emptySyncResponse(upTo);
  // A signature notice listed b already.
  response.device_lists.changed.push("@b:test");
  await stream.fill(request(since), response);
  assert.deepEqual(response.device_lists, { changed: ["@b:test"], left: ["@c:test"] });
  const full = emptySyncResponse(upTo);
  await stream.fill(request(undefined), full);
  assert.deepEqual(full.device_lists, { changed: [], left: [] });
  w.kv.close();
});

Deno.test("device-list entries end a long-poll, key counts alone do not", () => {
  const counts = emptySyncResponse("s1");
  counts.device_one_time_keys_count = { signed_curve25519: 50 };
  counts.device_unused_fallback_key_types = ["signed_curve25519"];
  assert.equal(isEmptySyncResponse(counts), true);
  const changed = emptySyncResponse("s1");
  changed.device_lists.changed.push("@a:test");
  assert.equal(isEmptySyncResponse(changed), false);
  const left = emptySyncResponse("s1");
  left.device_lists.left.push("@a:test");
  assert.equal(isEmptySyncResponse(left), false);
});
