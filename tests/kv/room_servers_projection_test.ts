/**
 * The room servers projection (`roomid_servers`, kv/room_servers.ts): joined members per server,
 * moved with current state in the membership change's commit, read through
 * EventReader.serversInRoom and isServerInRoom, and rebuilt exactly by replay.
 */
import assert from "node:assert/strict";
import { serverNameOf } from "../../domain/protocol/auth_context.ts";
import { stateKey, type StateMap } from "../../domain/protocol/events.ts";
import type { NewEvent } from "../../domain/ports/event_store.ts";
import { KvEventStore } from "../../kv/kv_event_store.ts";
import { replay } from "../../kv/replay.ts";
import { EventStoreKeys } from "../../kv/schema.ts";
import { greatestIdResolver, memoryStore, RoomBuilder } from "./event_fixtures.ts";

const ROOM = "!servers:a.test";
const keys = new EventStoreKeys();

/** The servers of the room's joined members, counted from the membership projection. */
async function serversFromMembers(store: KvEventStore, roomId: string) {
  const out = new Map<string, number>();
  for (const m of await store.members(roomId, ["join"])) {
    const server = serverNameOf(m.userId);
    out.set(server, (out.get(server) ?? 0) + 1);
  }
  return out;
}

/** The projection as a sorted list, and a check that it agrees with the member listing. */
async function servers(store: KvEventStore, roomId = ROOM): Promise<[string, number][]> {
  const projected = await store.serversInRoom(roomId);
  assert.deepEqual(projected, await serversFromMembers(store, roomId));
  return [...projected].sort(([a], [b]) => a < b ? -1 : 1);
}

/** A member event for `userId` sent by `sender` (a kick or ban when they differ). */
function memberBy(room: RoomBuilder, userId: string, membership: string, sender: string) {
  return room.event("m.room.member", { stateKey: userId, sender, content: { membership } });
}

Deno.test("room servers: joins count per server, leaves, kicks and bans take them away", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  await store.append({
    roomId: ROOM,
    events: [room.create(), room.member("@alice:a.test", "join")],
  });
  assert.deepEqual(await servers(store), [["a.test", 1]]);
  assert.equal(await store.isServerInRoom(ROOM, "a.test"), true);
  assert.equal(await store.isServerInRoom(ROOM, "b.test"), false);

  await store.append({
    roomId: ROOM,
    events: [
      room.member("@b1:b.test", "join"),
      room.member("@b2:b.test", "join"),
      room.member("@c1:c.test", "join"),
      memberBy(room, "@d1:d.test", "invite", "@alice:a.test"),
    ],
  });
  // An invite is no join: d.test is not in the room.
  assert.deepEqual(await servers(store), [["a.test", 1], ["b.test", 2], ["c.test", 1]]);
  assert.equal(await store.isServerInRoom(ROOM, "d.test"), false);

  // A displayname edit keeps the join: nothing moves.
  const before = await kv.get(keys.roomServer(ROOM, "b.test"));
  await store.append({
    roomId: ROOM,
    events: [
      room.member("@b1:b.test", "join", { content: { membership: "join", displayname: "B" } }),
    ],
  });
  assert.equal((await kv.get(keys.roomServer(ROOM, "b.test"))).versionstamp, before.versionstamp);

  // One of b's two leaves: b stays. A kick of c's only member: c goes.
  await store.append({ roomId: ROOM, events: [room.member("@b1:b.test", "leave")] });
  await store.append({
    roomId: ROOM,
    events: [memberBy(room, "@c1:c.test", "leave", "@alice:a.test")],
  });
  assert.deepEqual(await servers(store), [["a.test", 1], ["b.test", 1]]);
  assert.equal(await store.isServerInRoom(ROOM, "c.test"), false);
  assert.equal((await kv.get(keys.roomServer(ROOM, "c.test"))).versionstamp, null);

  // The invitee joins, then is banned: d comes and goes. b's last member is banned: b goes.
  await store.append({ roomId: ROOM, events: [room.member("@d1:d.test", "join")] });
  assert.equal(await store.isServerInRoom(ROOM, "d.test"), true);
  await store.append({
    roomId: ROOM,
    events: [
      memberBy(room, "@d1:d.test", "ban", "@alice:a.test"),
      memberBy(room, "@b2:b.test", "ban", "@alice:a.test"),
    ],
  });
  assert.deepEqual(await servers(store), [["a.test", 1]]);

  // Join and leave in one batch: counted through, nothing left behind.
  await store.append({
    roomId: ROOM,
    events: [room.member("@e1:e.test", "join"), room.member("@e1:e.test", "leave")],
  });
  assert.deepEqual(await servers(store), [["a.test", 1]]);
  assert.equal((await kv.get(keys.roomServer(ROOM, "e.test"))).versionstamp, null);

  // The last local member leaves: the room has no server at all.
  await store.append({ roomId: ROOM, events: [room.member("@alice:a.test", "leave")] });
  assert.deepEqual(await servers(store), []);
  kv.close();
});

Deno.test("room servers: a batch changing no membership reads and writes none of them", async () => {
  const kv = await Deno.openKv(":memory:");
  const touched: string[] = [];
  const note = (key: Deno.KvKey) => {
    if (key[0] === "roomid_servers") touched.push(String(key[2]));
  };
  // Every read and write of the store's KV, watched for the projection's keys.
  const watched = new Proxy(kv, {
    get(target, name) {
      if (name === "get") return (key: Deno.KvKey) => (note(key), target.get(key));
      if (name === "getMany") {
        return (list: Deno.KvKey[]) => (list.forEach(note), target.getMany(list));
      }
      if (name === "atomic") {
        return () => {
          const op = target.atomic();
          const set = op.set.bind(op);
          const del = op.delete.bind(op);
          op.set = (key, value, options) => (note(key), set(key, value, options));
          op.delete = (key) => (note(key), del(key));
          return op;
        };
      }
      const value = Reflect.get(target, name);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const store = new KvEventStore(watched, { resolver: greatestIdResolver });
  const room = new RoomBuilder(ROOM);
  await store.append({
    roomId: ROOM,
    events: [room.create(), room.member("@alice:a.test", "join"), room.member("@b:b.test", "join")],
  });
  // The room's first batch has nothing committed to read: one write per server.
  assert.deepEqual(touched.sort(), ["a.test", "b.test"]);
  touched.length = 0;
  await store.append({ roomId: ROOM, events: [room.message("hello"), room.message("again")] });
  await store.append({
    roomId: ROOM,
    events: [room.event("m.room.topic", { stateKey: "", content: { topic: "t" } })],
  });
  await store.append({
    roomId: ROOM,
    events: [
      room.member("@b:b.test", "join", { content: { membership: "join", displayname: "B" } }),
    ],
  });
  assert.deepEqual(touched, []);
  // A real change reads the server's count once and writes it once.
  await store.append({ roomId: ROOM, events: [room.member("@b2:b.test", "join")] });
  assert.deepEqual(touched, ["b.test", "b.test"]);
  kv.close();
});

Deno.test("room servers: a resolved fork moves them with the resolved state", async () => {
  const { kv, store } = await memoryStore();
  const room = new RoomBuilder(ROOM);
  const create = room.create();
  await store.append({ roomId: ROOM, events: [create, room.member("@alice:a.test", "join")] });
  await store.append({ roomId: ROOM, events: [room.member("@b:b.test", "join")] });
  const base = room.last!;
  // One branch: b leaves and c joins. The resolver keeps the greatest event ID of each key.
  const left = room.member("@b:b.test", "leave");
  const cJoins = room.member("@c:c.test", "join");
  await store.append({ roomId: ROOM, events: [left, cJoins] });
  assert.deepEqual(await servers(store), [["a.test", 1], ["c.test", 1]]);
  // The other branch, from before b left: b rejoins (an ID greater than its leave), c is banned.
  const bJoins = room.member("@b:b.test", "join", { prev: [base] });
  const cBanned = memberBy(room, "@c:c.test", "ban", "@alice:a.test");
  await store.append({ roomId: ROOM, events: [bJoins] });
  // The fork is an extremity of its own; current state resolves both tips: b's later join wins.
  assert.deepEqual(await servers(store), [["a.test", 1], ["b.test", 1], ["c.test", 1]]);
  await store.append({ roomId: ROOM, events: [cBanned] });
  await store.append({
    roomId: ROOM,
    events: [room.message("merge", { prev: [cJoins.eventId, cBanned.eventId] })],
  });
  assert.deepEqual(await servers(store), [["a.test", 1], ["b.test", 1]]);

  // A resolver that keeps only the create event whenever forks meet: every server goes.
  const strict = new KvEventStore(kv, {
    resolver: (input) =>
      Promise.resolve(new Map([...input.stateMaps[0]].filter(([k]) => k.startsWith("m.room.c")))),
  });
  await strict.append({ roomId: ROOM, events: [room.message("fork", { prev: [create.eventId] })] });
  assert.deepEqual(await servers(strict), []);
  kv.close();
});

/** A remote room's state as a send_join answer carries it: members of three servers. */
function remoteRoom(roomId: string): { events: NewEvent[]; state: StateMap; last: string } {
  const room = new RoomBuilder(roomId, "r");
  const events: NewEvent[] = [];
  const state: StateMap = new Map();
  const add = (event: NewEvent) => {
    events.push(event);
    state.set(stateKey(event.pdu.type, event.pdu.state_key as string), event.eventId);
  };
  const creator = "@creator:r.test";
  add(
    room.event("m.room.create", { stateKey: "", sender: creator, content: { room_version: "10" } }),
  );
  add(room.member(creator, "join"));
  add(room.event("m.room.join_rules", {
    stateKey: "",
    sender: creator,
    content: { join_rule: "public" },
  }));
  for (let i = 0; i < 1_200; i++) add(room.member(`@u${i}:s${i % 3}.test`, "join"));
  add(memberBy(room, "@gone:x.test", "ban", creator));
  return { events, state, last: room.last! };
}

Deno.test("room servers: a large join counts the staged state's servers, clearing leftovers", async () => {
  const { kv, store } = await memoryStore();
  const roomId = "!big:r.test";
  const { events, state, last } = remoteRoom(roomId);
  await store.storeOutliers(roomId, events);
  const staged = await store.stageState(roomId, "10", state);
  // An interrupted earlier attempt with another state left a server entry behind.
  await kv.set(keys.roomServer(roomId, "ghost.test"), 3);
  await kv.set(keys.roomServer(roomId, "s0.test"), 7);
  const join = new RoomBuilder(roomId, "me").member("@me:a.test", "join", { prev: [last] });
  await store.append({
    roomId,
    roomVersion: "10",
    events: [{ ...join, checkState: true, stateBefore: staged }],
  });
  assert.deepEqual(await servers(store, roomId), [
    ["a.test", 1],
    ["r.test", 1],
    ["s0.test", 400],
    ["s1.test", 400],
    ["s2.test", 400],
  ]);
  const target = await Deno.openKv(":memory:");
  const report = await replay({ source: kv, target, resolver: greatestIdResolver });
  assert.deepEqual(report.differences, []);
  target.close();
  kv.close();
});

/** Members of several servers come and go, with a fork whose merge changes a membership. */
async function serverHistory(store: KvEventStore, roomId: string): Promise<void> {
  const room = new RoomBuilder(roomId);
  await store.append({ roomId, events: [room.create(), room.member("@a:a.test", "join")] });
  for (let i = 0; i < 16; i++) {
    const user = `@u${i % 5}:s${i % 3}.test`;
    const membership = ["join", "leave", "join", "ban"][i % 4];
    await store.append({ roomId, events: [room.member(user, membership), room.message(`m${i}`)] });
  }
  const base = room.last!;
  const left = room.member("@u9:s9.test", "join");
  const right = room.member("@u9:s9.test", "leave", { prev: [base] });
  await store.append({ roomId, events: [left] });
  await store.append({ roomId, events: [right] });
  await store.append({
    roomId,
    events: [room.message("merge", { prev: [left.eventId, right.eventId] })],
  });
}

Deno.test("replay rebuilds the room servers projection and reports a corrupted entry", async () => {
  const { kv, store } = await memoryStore();
  const rooms = ["!r1:a.test", "!r2:a.test", "!r3:a.test"];
  await Promise.all(rooms.map((r) => serverHistory(store, r)));
  for (const r of rooms) await servers(store, r);
  const sound = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(sound.differences, []);

  await kv.set(keys.roomServer("!r1:a.test", "a.test"), 2);
  await kv.delete(keys.roomServer("!r2:a.test", "a.test"));
  await kv.set(keys.roomServer("!r3:a.test", "never.test"), 1);
  const broken = await replay({
    source: kv,
    target: await Deno.openKv(":memory:"),
    resolver: greatestIdResolver,
  });
  assert.deepEqual(
    broken.differences.map((d) => [d.map, d.key[1], d.key[2], d.live, d.rebuilt]),
    [
      ["roomid_servers", "!r1:a.test", "a.test", 2, 1],
      ["roomid_servers", "!r2:a.test", "a.test", undefined, 1],
      ["roomid_servers", "!r3:a.test", "never.test", 1, undefined],
    ],
  );
  kv.close();
});
